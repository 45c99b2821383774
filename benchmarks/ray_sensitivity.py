"""The sensitivity analysis and range refinement in a Ray task against the same analysis in this process.

``quantize`` on the shipped Fashion CNN and EfficientNet-Lite0-sized work is not needed to see the
cost: what the task adds is the model, plan, table and kept samples sent to a worker and the
result sent back. Runs ``quantize`` (TensorRT form, 8 sensitivity samples, range refinement on) on
the Fashion CNN with 320 Fashion-MNIST calibration images, without and with ``--ray`` (a local
cluster of 2 CPUs started once), interleaved; reports the whole stage's time, the task's own time
(``sensitivity_ray.seconds``), and checks the written model and the per-layer errors are equal.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/ray_sensitivity.py --rounds 3
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics as pystats
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    import ray

    from trtcompress import zoo
    from trtcompress.model_io import load_model
    from trtcompress.stages.quantize import QuantizeConfig, quantize

    folder = Path(tempfile.mkdtemp())
    x, _ = zoo.fashion_mnist("train", limit=320)
    np.savez(folder / "calib.npz", x=x)
    model = load_model(zoo.onnx_path("fashion_cnn"))
    config = QuantizeConfig(calib=str(folder), progress=False)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    rows: dict[str, list[float]] = {"local": [], "ray": [], "task": []}
    for r in range(args.rounds):
        t = time.perf_counter()
        a = quantize(model, config)
        rows["local"].append(time.perf_counter() - t)
        t = time.perf_counter()
        b = quantize(model, config.replace(ray="local", ray_tasks=2))
        rows["ray"].append(time.perf_counter() - t)
        rows["task"].append(b.report["sensitivity_ray"]["seconds"])
        if a.model.SerializeToString() != b.model.SerializeToString() or a.report["layer_error"] != b.report["layer_error"]:
            raise SystemExit("the Ray run differs from the local one")
        print(json.dumps({"round": r, **{k: round(v[-1], 2) for k, v in rows.items()}}), flush=True)
    ray.shutdown()
    print(json.dumps({k: round(pystats.median(v), 2) for k, v in rows.items()}))


if __name__ == "__main__":
    main()
