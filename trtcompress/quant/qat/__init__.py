"""Quantization-aware training (QAT): fine-tuning with fake quantization when post-training
quantization misses its accuracy.

After calibration, the float ONNX graph is replayed in torch (:mod:`.replay`) with fake
quantization on exactly the tensors the TensorRT form quantizes, from the same plan and table
(:mod:`.fake_quant`); it is distilled from the FP32 graph (:mod:`.train`), and the trained weights
and learned activation ranges go back into the ONNX model and the calibration table, from which
both writers produce their forms as before. torch is imported only when QAT runs.
"""
from __future__ import annotations

from .train import QatOptions, QatResult, quantization_aware, write_back

__all__ = ["QatOptions", "QatResult", "quantization_aware", "write_back"]
