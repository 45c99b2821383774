"""The graph layer on onnx-ir: normalisation and cleanup as passes with declared contracts.

Each rewrite is one onnx-ir pass in its own module (``fold_constants``, ``fold_pad``,
``fold_batchnorm``, ``remove_noops``); :mod:`.normalize` runs them, with onnx-ir's own passes
(identity elimination, initializer deduplication, dead-code removal), as one reported pipeline.

onnx-ir takes about 0.6 s to import (sympy), so nothing here is imported by ``import trtcompress``:
the stage module imports :mod:`.normalize` when it runs.
"""
from __future__ import annotations
