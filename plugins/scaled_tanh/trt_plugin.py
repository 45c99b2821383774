"""``trtcompress::ScaledTanh`` as a TensorRT Python plugin (``tensorrt.plugin``, TensorRT 10.6+).

Imported by ``trtcompress.trt.plugins.load_plugins`` (``--plugin scaled_tanh``) before the ONNX
is parsed or the engine loaded; importing registers the op. The GPU implementation uses torch's
CUDA tensors over TensorRT's buffers; ``reference.py`` holds the CPU reference it is checked
against (``tests/trt/test_plugins.py``: on the CPU always, on TensorRT when present).
"""
from __future__ import annotations

import numpy as np
import tensorrt.plugin as trtp


@trtp.register("trtcompress::ScaledTanh")
def scaled_tanh_desc(x: trtp.TensorDesc, alpha: float) -> trtp.TensorDesc:
    return x.like()


@trtp.impl("trtcompress::ScaledTanh")
def scaled_tanh_impl(x: trtp.Tensor, alpha: float, outputs: tuple[trtp.Tensor], stream: int) -> None:
    import torch

    with torch.cuda.stream(torch.cuda.ExternalStream(stream)):
        inp = torch.as_tensor(x, device="cuda")
        out = torch.as_tensor(outputs[0], device="cuda")
        out.copy_(torch.tanh(inp) * np.float32(alpha))
