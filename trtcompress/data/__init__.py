"""Input data for comparison, benchmarking and calibration.

A *source* is an iterable of feed dicts (input name -> numpy array, batch dimension included)
with a length. Readers are registered by kind and opened from a spec with :func:`open_data` (the
user's options: :class:`DataOptions`) or :func:`open_source` (parsed :class:`ReaderOptions`).
"""
from __future__ import annotations

from .base import FeedSource, ListSource, ModelInput, model_inputs, rebatch, validate_feed
from .readers import open_source, register_reader, registered_readers
from .options import DataOptions, open_data
from . import pysource  # noqa: F401  (registers the module/pymodule readers)
from .pysource import from_dataloader
from .preprocess import PreprocessConfig

__all__ = [
    "FeedSource",
    "ListSource",
    "ModelInput",
    "model_inputs",
    "rebatch",
    "validate_feed",
    "open_source",
    "DataOptions",
    "open_data",
    "register_reader",
    "registered_readers",
    "PreprocessConfig",
    "from_dataloader",
]
