"""Weight sharing: per-layer or per-channel k-means of the weights (``kmeans``), the ONNX form
with uint8 indices and float codebooks (``onnx_share``) and the packed artifact (``pack``)."""
from __future__ import annotations

from .config import GRANULARITIES, SENSITIVITIES, SHARE_OPS, SHARE_RULES, ShareConfig
from .kmeans import INITS, kmeans_1d, kmeans_rows

__all__ = ["ShareConfig", "GRANULARITIES", "SENSITIVITIES", "SHARE_OPS", "SHARE_RULES", "INITS", "kmeans_1d", "kmeans_rows"]
