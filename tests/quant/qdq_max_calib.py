"""TEMPORARY max calibration for tests until trtcompress.quant.calibrate lands on main.

Runs ONNX Runtime with the planned tensors as extra outputs and records max |x| per tensor.
"""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort

from trtcompress.quant.table import CalibrationTable


def max_calibrate(model: onnx.ModelProto, tensors, feeds) -> CalibrationTable:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    for t in tensors:
        if t not in have:
            m.graph.output.append(onnx.ValueInfoProto(name=t))
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    amax = {t: 0.0 for t in tensors}
    n = 0
    for feed in feeds:
        outs = dict(zip(names, sess.run(None, feed)))
        n += next(iter(feed.values())).shape[0]
        for t in tensors:
            amax[t] = max(amax[t], float(np.abs(outs[t]).max()))
    return CalibrationTable(amax=amax, method="max", num_samples=n)
