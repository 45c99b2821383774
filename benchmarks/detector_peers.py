"""INT8 calibration of a VGG-class detector: ours against NVIDIA Model Optimizer, whole commands.

The model is an SSD-style detector on a VGG-16 backbone (conv1_1 .. conv5_3, the dilated fc6/fc7
convs, four extra stages and box/class heads on six feature maps, 21 classes), exported by the
TorchScript exporter at 320x320 with a dynamic batch. Its weights are random (He-initialised, a
fixed seed): what is measured is time and memory, which depend on the shapes, not the weights.
Calibration data: 32 views of the ``calib`` photos at 320x320 (ImageNet mean/std).

Each tool is a whole command in a fresh process (start-up, calibration, writing the model), run
interleaved (ours, Model Optimizer, ours, ...) so load on the machine hits both alike; per run:
wall time and the process's peak resident memory. Ours also runs its default per-layer
sensitivity analysis (8 samples), which Model Optimizer does not have.

    .venv/bin/python benchmarks/detector_peers.py [--repeat 1] [--size 320] [--samples 32]

Model Optimizer comes from its own venv (see benchmarks/int8_peers.py).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from large_model import measured  # noqa: E402  (wall time and peak memory of a whole command)

WORK = ROOT / "benchmarks" / "_work" / "detector"


def _ssd_vgg(num_classes: int = 21):
    import torch
    from torch import nn

    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "C", 512, 512, 512, "M", 512, 512, 512]

    class SSD(nn.Module):
        def __init__(self):
            super().__init__()
            layers, c = [], 3
            for v in cfg:
                if v in ("M", "C"):
                    layers.append(nn.MaxPool2d(2, 2, ceil_mode=v == "C"))
                else:
                    layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU(inplace=True)]
                    c = v
            self.conv4 = nn.Sequential(*layers[:23])  # through conv4_3's ReLU
            self.conv7 = nn.Sequential(*layers[23:], nn.MaxPool2d(3, 1, 1), nn.Conv2d(512, 1024, 3, padding=6, dilation=6), nn.ReLU(inplace=True),
                                       nn.Conv2d(1024, 1024, 1), nn.ReLU(inplace=True))
            extras, c = [], 1024
            for mid, out, stride, pad in ((256, 512, 2, 1), (128, 256, 2, 1), (128, 256, 1, 0), (128, 256, 1, 0)):
                extras.append(nn.Sequential(nn.Conv2d(c, mid, 1), nn.ReLU(inplace=True), nn.Conv2d(mid, out, 3, stride, pad), nn.ReLU(inplace=True)))
                c = out
            self.extras = nn.ModuleList(extras)
            chans, boxes = (512, 1024, 512, 256, 256, 256), (4, 6, 6, 6, 4, 4)
            self.loc = nn.ModuleList(nn.Conv2d(ch, b * 4, 3, padding=1) for ch, b in zip(chans, boxes))
            self.conf = nn.ModuleList(nn.Conv2d(ch, b * num_classes, 3, padding=1) for ch, b in zip(chans, boxes))
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                    nn.init.zeros_(m.bias)

        def forward(self, x):
            feats = [self.conv4(x)]
            feats.append(self.conv7(feats[0]))
            for e in self.extras:
                feats.append(e(feats[-1]))
            n = x.shape[0]
            loc = torch.cat([h(f).permute(0, 2, 3, 1).reshape(n, -1, 4) for h, f in zip(self.loc, feats)], 1)
            conf = torch.cat([h(f).permute(0, 2, 3, 1).reshape(n, -1, num_classes) for h, f in zip(self.conf, feats)], 1)
            return loc, conf

    torch.manual_seed(0)
    return SSD().eval()


def prepare(size: int, samples: int) -> dict:
    """The exported detector, its calibration data (one npz for Model Optimizer, a folder of
    npz for ours) under WORK."""
    import torch

    from trtcompress.data.preprocess import PreprocessConfig
    from trtcompress.zoo.photos import photo_batch

    d = WORK / f"ssd_vgg{size}"
    d.mkdir(parents=True, exist_ok=True)
    fp32 = d / "fp32.onnx"
    if not fp32.exists():
        tmp = d / "fp32.tmp.onnx"
        torch.onnx.export(_ssd_vgg(), (torch.randn(1, 3, size, size),), str(tmp), input_names=["input"], output_names=["loc", "conf"],
                          dynamic_axes={"input": {0: "batch"}, "loc": {0: "batch"}, "conf": {0: "batch"}}, dynamo=False, opset_version=17)
        os.replace(tmp, fp32)
    pre = PreprocessConfig(resize=size, crop=size, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    cal = np.concatenate(list(photo_batch("calib", pre, augment=True, batch_size=32)))[:samples]
    npz_dir = d / "calib_npz"
    npz_dir.mkdir(exist_ok=True)
    for f in npz_dir.glob("*.npz"):
        f.unlink()
    for k in range(0, len(cal), 8):
        np.savez(npz_dir / f"{k // 8:04d}.npz", input=cal[k : k + 8])
    np.savez(d / "calib_all.npz", input=cal)
    return {"dir": d, "fp32": fp32, "calib": cal}


def main() -> None:
    import int8_peers

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--out", default=str(WORK / "detector_peers.json"))
    args = ap.parse_args()
    if not int8_peers.MODELOPT_PY.exists():
        sys.exit(f"Model Optimizer venv missing: {int8_peers.MODELOPT_PY} (see benchmarks/int8_peers.py)")
    m = prepare(args.size, args.samples)
    d = m["dir"]
    commands = {
        "ours": lambda: [str(Path(sys.executable).parent / "trtcompress"), "quantize", str(m["fp32"]), "--calib", str(d / "calib_npz"),
                         "--method", "entropy", "--target", "tensorrt", "-o", str(d / "int8_ours.onnx")],
        "modelopt": lambda: int8_peers.cmd_modelopt({"fp32": m["fp32"], "dir": d}, d / "int8_modelopt.onnx"),
    }
    runs: dict[str, list[dict]] = {t: [] for t in commands}
    for rep in range(args.repeat):
        for tool, cmd in commands.items():  # interleaved
            wall, peak, rc = measured(cmd(), d / f"{tool}.log")
            runs[tool].append({"wall_s": round(wall, 1), "peak_rss_gb": round(peak, 2), "exit": rc})
            print(f"{tool} run {rep}: {wall:.1f} s, peak {peak:.2f} GB, exit {rc}", flush=True)
    result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "size": args.size, "samples": len(m["calib"]),
              "load_average": os.getloadavg(), "runs": runs}
    ok = all(r["exit"] == 0 for rs in runs.values() for r in rs)
    if ok:
        result["modelopt_over_ours"] = [round(b["wall_s"] / a["wall_s"], 2) for a, b in zip(runs["ours"], runs["modelopt"])]
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
