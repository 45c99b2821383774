"""The corpus: graphs nobody here exported by hand, each with real calibration and held-out data.

The zoo's models through the TorchScript exporter (several opsets) and the dynamo exporter, a
MobileNetV3-style network (squeeze-excite, hardswish), a BERT-style encoder from ``transformers``
(random weights, small config), a network with an explicit ``F.pad`` before every Conv and its
BatchNorms left unfolded, and the ONNX files the ``rapidocr-onnxruntime`` package ships. Builders
are cached per session by ``conftest.py``; inputs are kept small.
"""
from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from trtcompress import zoo

RAPIDOCR = Path(np.__file__).resolve().parents[1] / "rapidocr_onnxruntime" / "models"


@dataclasses.dataclass
class Case:
    name: str
    path: Path
    calib: list[dict[str, np.ndarray]]  # feeds used for calibration
    eval: list[dict[str, np.ndarray]]  # held-out feeds, disjoint from ``calib``
    inputs: tuple[str, ...] = ()  # --input specs for dynamic dims beyond the batch
    classifier: bool = True  # first output is logits: top-1 agreement is meaningful
    # INT8 output cosine to FP32: trained weights keep 0.98; random weights (nothing learned to
    # protect, near-tied logits) and the CPU form's chained uint8 requantisation lose more
    min_cosine: float = 0.98
    # how INT8 outputs are judged: "cosine" (+ top-1 on classifiers), "text" (the characters a CTC
    # recognizer's greedy decoding reads), "mask" (IoU of the >0.3 text mask a DB detector thresholds)
    metric: str = "cosine"

    def calib_dir(self, root: Path) -> Path:
        d = root / f"{self.name}-calib"
        if not d.is_dir():
            d.mkdir(parents=True)
            for i, feed in enumerate(self.calib):
                np.savez(d / f"{i:03d}.npz", **feed)
        return d


# -- data -------------------------------------------------------------------------------------------

def fashion(name: str = "x", n: int = 32) -> tuple[list[dict], list[dict]]:
    xc, _ = zoo.fashion_mnist("train", limit=n)
    xe, _ = zoo.fashion_mnist("test", limit=n)
    return [{name: xc}], [{name: xe}]


def photos(size: int, preprocess: str = "efficientnet-lite", name: str = "x", width: int | None = None, n: int = 8, augment: bool = True) -> tuple[list[dict], list[dict]]:
    """Real photos, centre ``size`` crops; ``width`` tiles views side by side (text-line shapes)."""
    pre = f"{preprocess},resize={size},crop={size}"

    def take(split: str) -> list[dict]:
        x = np.concatenate(list(zoo.photo_batch(split, pre, augment=augment, batch_size=64)))
        if width:
            k = width // size
            x = np.concatenate([x[i::k][: len(x) // k] for i in range(k)], axis=3)
        return [{name: np.ascontiguousarray(x[:n])}]

    return take("calib"), take("eval")


# -- exporters --------------------------------------------------------------------------------------

def torchscript(model, example: tuple, path: Path, opset: int, names: list[str], out_names: list[str], **kw) -> Path:
    import torch

    axes = {n: {0: "batch"} for n in names + out_names}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, example, str(path), dynamo=False, opset_version=opset, input_names=names, output_names=out_names, dynamic_axes=axes, **kw)
    return path


def dynamo(model, example: tuple, path: Path, names: list[str], out_names: list[str]) -> Path:
    import torch

    batch = torch.export.Dim("batch", min=1, max=1024)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, example, str(path), dynamo=True, input_names=names, output_names=out_names,
                          dynamic_shapes=tuple({0: batch} for _ in example), external_data=False, opset_version=18, verbose=False)
    return path


# -- networks written in code -----------------------------------------------------------------------

def mobilenet_se(seed: int = 0):
    """MobileNetV3-style: inverted residuals with depthwise convs, squeeze-excite, hardswish; BN
    statistics randomised so folding them is not a no-op."""
    import torch
    from torch import nn

    torch.manual_seed(seed)

    class SE(nn.Module):
        def __init__(self, c: int):
            super().__init__()
            self.fc1, self.fc2 = nn.Conv2d(c, c // 4, 1), nn.Conv2d(c // 4, c, 1)

        def forward(self, x):
            s = x.mean((2, 3), keepdim=True)
            return x * nn.functional.hardsigmoid(self.fc2(torch.relu(self.fc1(s))))

    def block(cin: int, cexp: int, cout: int, stride: int) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(cin, cexp, 1, bias=False), nn.BatchNorm2d(cexp), nn.Hardswish(),
            nn.Conv2d(cexp, cexp, 3, stride, 1, groups=cexp, bias=False), nn.BatchNorm2d(cexp), nn.Hardswish(),
            SE(cexp), nn.Conv2d(cexp, cout, 1, bias=False), nn.BatchNorm2d(cout),
        )

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.Hardswish())
            self.blocks = nn.ModuleList([block(16, 64, 24, 2), block(24, 96, 24, 1), block(24, 96, 40, 2)])
            self.head = nn.Sequential(nn.Linear(40, 128), nn.Hardswish(), nn.Dropout(0.2), nn.Linear(128, 10))

        def forward(self, x):
            x = self.stem(x)
            for i, b in enumerate(self.blocks):
                y = b(x)
                x = x + y if i == 1 else y
            return self.head(x.mean((2, 3)))

    return _randomise_bn(Net().eval())


def padded_bn(seed: int = 0):
    """An explicit asymmetric ``F.pad`` before every Conv, a zero pad before an AveragePool and
    before a MaxPool reading a ReLU, and BatchNorm modules the exporter is told not to fold."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    torch.manual_seed(seed)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.b1 = nn.Conv2d(1, 16, 3), nn.BatchNorm2d(16)
            self.c2, self.b2 = nn.Conv2d(16, 32, 3, stride=2), nn.BatchNorm2d(32)
            self.c3, self.b3 = nn.Conv2d(32, 32, 3, groups=32), nn.BatchNorm2d(32)
            self.fc, self.bf = nn.Linear(32, 10), nn.BatchNorm1d(10)

        def forward(self, x):
            x = torch.relu(self.b1(self.c1(F.pad(x, (1, 1, 1, 1)))))
            x = F.max_pool2d(F.pad(x, (0, 1, 0, 1)), 2)
            x = torch.relu(self.b2(self.c2(F.pad(x, (0, 1, 0, 1)))))
            x = F.avg_pool2d(F.pad(x, (1, 0, 1, 0)), 2)
            x = torch.relu(self.b3(self.c3(F.pad(x, (1, 1, 1, 1)))))
            return self.bf(self.fc(x.mean((2, 3))))

    return _randomise_bn(Net().eval())


def _randomise_bn(net):
    import torch

    g = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)
    return net


def bert(seed: int = 0):
    """A BERT-style encoder with random weights from a small config (no hub download)."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=512, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                     max_position_embeddings=64, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    model = BertModel(cfg, add_pooling_layer=False).eval()

    class Encoder(torch.nn.Module):  # a tensor out, not a ModelOutput
        def __init__(self):
            super().__init__()
            self.m = model

        def forward(self, input_ids, attention_mask):
            return self.m(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    return Encoder().eval()


def tokens(n: int = 8, seq: int = 16, vocab: int = 512) -> tuple[list[dict], list[dict]]:
    def take(seed: int) -> list[dict]:
        rng = np.random.default_rng(seed)
        ids = rng.integers(1, vocab, (n, seq)).astype(np.int64)
        mask = np.ones((n, seq), np.int64)
        mask[n // 2:, seq * 3 // 4:] = 0  # padded sequences
        return [{"input_ids": ids, "attention_mask": mask}]

    return take(0), take(1)


# -- the corpus -------------------------------------------------------------------------------------

def _zoo(name: str) -> Callable:
    return getattr(zoo, name)


def build(name: str, root: Path) -> Case:
    """Build (export) one corpus entry into ``root``."""
    import torch

    path = root / f"{name}.onnx"
    if name.startswith(("fashion_cnn", "fashion_vit")):
        model_name, exporter = name.rsplit("-", 1)
        model = _zoo(model_name)()
        x = (torch.from_numpy(zoo.fashion_mnist("test", limit=2)[0]),)
        if exporter == "dynamo":
            dynamo(model, x, path, ["x"], ["logits"])
        else:
            torchscript(model, x, path, int(exporter.removeprefix("ts")), ["x"], ["logits"])
        calib, ev = fashion()
        return Case(name, path, calib, ev)
    if name.startswith("efficientnet_lite0"):
        exporter = name.rsplit("-", 1)[1]
        model = zoo.efficientnet_lite0()
        x = (torch.randn(1, 3, 224, 224),)
        if exporter == "dynamo":
            dynamo(model, x, path, ["x"], ["logits"])
        else:
            torchscript(model, x, path, int(exporter.removeprefix("ts")), ["x"], ["logits"])
        calib, ev = photos(224)
        return Case(name, path, calib, ev)
    if name.startswith("mobilenet_se"):
        exporter = name.rsplit("-", 1)[1]
        x = (torch.randn(1, 3, 96, 96),)
        if exporter == "dynamo":
            dynamo(mobilenet_se(), x, path, ["x"], ["logits"])
        else:
            torchscript(mobilenet_se(), x, path, int(exporter.removeprefix("ts")), ["x"], ["logits"])
        calib, ev = photos(96, "imagenet")
        return Case(name, path, calib, ev, min_cosine=0.95)
    if name == "padded_bn":
        x = (torch.from_numpy(zoo.fashion_mnist("test", limit=2)[0]),)
        torchscript(padded_bn(), x, path, 13, ["x"], ["logits"], do_constant_folding=False, training=torch.onnx.TrainingMode.PRESERVE)
        calib, ev = fashion()
        return Case(name, path, calib, ev, min_cosine=0.95)
    if name == "bert":
        calib, ev = tokens()
        feed = calib[0]
        torchscript(bert(), (torch.from_numpy(feed["input_ids"][:2]), torch.from_numpy(feed["attention_mask"][:2])), path, 17,
                    ["input_ids", "attention_mask"], ["hidden"])
        return Case(name, path, calib, ev, classifier=False, min_cosine=0.95)
    if name.startswith("rapidocr"):
        kind = name.rsplit("-", 1)[1]
        src = {"det": "ch_PP-OCRv4_det_infer.onnx", "cls": "ch_ppocr_mobile_v2.0_cls_infer.onnx", "rec": "ch_PP-OCRv4_rec_infer.onnx"}[kind]
        path = RAPIDOCR / src
        if kind == "det":
            calib, ev = photos(160, "imagenet", n=16, augment=False)  # whole photos: some hold text
            return Case(name, path, calib, ev, inputs=("x:1x3x160x160",), classifier=False, metric="mask")
        if kind == "rec":  # printed text: calibrated on one page, judged on another
            calib, ev = [{"x": zoo.text_lines("calib")[::3]}], [{"x": zoo.text_lines("heldout")}]
            return Case(name, path, calib, ev, inputs=("x:1x3x48x192",), classifier=False, metric="text")
        calib, ev = photos(48, "imagenet", width=192, n=8)
        return Case(name, path, calib, ev, inputs=("x:1x3x48x192",), metric="cosine")
    raise KeyError(name)


FAST = ("fashion_cnn-ts13", "fashion_cnn-ts17", "fashion_cnn-dynamo", "fashion_vit-ts17", "mobilenet_se-ts17", "mobilenet_se-dynamo",
        "padded_bn", "bert", "rapidocr-cls")
SLOW = ("fashion_vit-dynamo", "efficientnet_lite0-ts17", "efficientnet_lite0-dynamo", "rapidocr-det", "rapidocr-rec")
