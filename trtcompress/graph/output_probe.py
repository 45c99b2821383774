"""Measure how far a model's outputs move when one weight is replaced: the end-to-end error a
model-level bit allocation (HAWQ-v2/v3, mixed-precision search) spends its budget by.

:mod:`layer_probe` asks how far the replaced layer's own output moves; here the whole model runs
on the calibration data with that weight fed as a graph input (the copy's initializer made an
input), so trying a weight costs one model run per calibration batch and no rebuilt session. One
session per probed weight, opened when that weight is first tried and dropped when the next one
is: every other weight stays a constant initializer, which ONNX Runtime pre-packs (a session with
all of EfficientNet-Lite0's 46 weights fed ran 3x slower than one with a single weight fed).
"""
from __future__ import annotations

import hashlib
import math
from typing import Callable, Iterable, Sequence

import numpy as np
import onnx
from onnx import helper

from ..errors import DataError

__all__ = ["output_probes"]

Feed = dict[str, np.ndarray]


def output_probes(model: onnx.ModelProto, weights: Sequence[str], feeds: Iterable[Feed], stage: str,
                  threads: int = 0) -> list[Callable[[np.ndarray], float]]:
    """For each initializer named in ``weights``, ``error(w)``: the relative (Frobenius) distance of
    the model's floating-point outputs with that initializer set to ``w`` (every other one as it
    is) from the outputs as they are, over every calibration feed; the squared distances of several
    outputs are averaged, each relative to its own norm, so no output's scale dominates.

    Why this measure for every kind of output (logits, embeddings, boxes, masks): it assumes nothing
    about what an output means, and independent perturbations of several layers add in it to first
    order (their output changes add linearly, their squared norms add when uncorrelated), which is
    what a budget spent per layer assumes. A classifier's KL divergence would need the outputs to be
    logits, and to second order it is this squared error weighted by the softmax's Fisher matrix."""
    from ..sessions import SessionConfig, open_session

    feeds = list(feeds)
    if not feeds:
        raise DataError(f"{stage}: the calibration data holds no samples")
    config = SessionConfig(threads=threads)
    names = [o.name for o in model.graph.output]
    ref_session = open_session(model, config)
    refs = [ref_session.run(names, f) for f in feeds]
    del ref_session
    floating = [j for j, r in enumerate(refs[0]) if np.issubdtype(np.asarray(r).dtype, np.floating)]
    if not floating:
        raise DataError(f"{stage}: the model has no floating-point output to measure the error at; use sensitivity 'layer'")
    names = [names[j] for j in floating]
    refs = [[np.asarray(r[j], np.float64) for j in floating] for r in refs]
    dens = [sum(float(np.sum(r[j] ** 2)) for r in refs) or 1.0 for j in range(len(names))]
    inits = {t.name: t for t in model.graph.initializer}
    missing = [w for w in weights if w not in inits]
    if missing:
        raise DataError(f"{stage}: {missing[0]!r} is not an initializer of the main graph; the model-level measure feeds initializers")
    state: dict = {"weight": None, "session": None}

    def session(weight: str):
        if state["weight"] != weight:
            state["session"] = None  # one session held at a time
            state["session"] = open_session(_with_input(model, inits[weight]), config)
            state["weight"] = weight
        return state["session"]

    def probe(weight: str) -> Callable[[np.ndarray], float]:
        dtype = helper.tensor_dtype_to_np_dtype(inits[weight].data_type)
        cache: dict[bytes, float] = {}  # the rule and the report ask for the same clustering twice

        def error(w: np.ndarray) -> float:
            w = np.ascontiguousarray(w, dtype=dtype)
            key = hashlib.blake2b(w.tobytes(), digest_size=16).digest()
            if key not in cache:
                nums = [0.0] * len(names)
                for feed, ref in zip(feeds, refs):
                    outs = session(weight).run(names, {**feed, weight: w})
                    for j, (o, r) in enumerate(zip(outs, ref)):
                        # a data-dependent shape that changed (detections kept): count the batch as fully wrong
                        nums[j] += float(np.sum((np.asarray(o, np.float64) - r) ** 2)) if o.shape == r.shape else float(np.sum(r ** 2))
                cache[key] = math.sqrt(sum(n / d for n, d in zip(nums, dens)) / len(names))
            return cache[key]

        return error

    return [probe(w) for w in weights]


def _with_input(model: onnx.ModelProto, init: onnx.TensorProto) -> onnx.ModelProto:
    """A copy of ``model`` whose initializer ``init`` is a graph input of the same type and shape."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    keep = [t for t in graph.initializer if t.name != init.name]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    if all(i.name != init.name for i in graph.input):  # IR < 4 lists initializers among the inputs too
        graph.input.append(helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
    return out
