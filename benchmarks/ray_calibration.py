"""Calibration throughput on Ray against the data set's size, memory per worker, Ray's overhead.

The shipped Fashion CNN (real weights) calibrated on Fashion-MNIST training images, repeated with
horizontal flips and one-pixel shifts to reach the larger sizes, stored as .npz files of 1000
samples (as a user's shared storage would hold them). Per size, interleaved in rounds:

- ``single``: :func:`collect_statistics` in this process (the path without --ray: ONNX Runtime's
  own threads, two counting threads),
- ``ray1``: one shard on the Ray cluster (one task, one CPU, ONNX Runtime on one thread),
- ``ray2``: two shards, two tasks at once (one CPU each).

Only the statistics pass is timed (what --ray distributes); each Ray run's statistics are checked
equal to the single-process run's. A task's peak RSS is its worker's VmHWM, reset when the task
starts; the single run's is this process's, reset before it. CPU seconds (the tasks' processes,
or this process for the single run) give samples per CPU-second, which the load of other work on
the shared cores does not inflate as it does wall time. The cluster is started once (its
start and the first call, which starts the worker processes, are reported apart) on this
machine's 2 cores. The merge: ``Statistics.merge`` timed on this model's shard statistics, per
shard and per histogram.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/ray_calibration.py --sizes 1000,10000,100000
"""
from __future__ import annotations

import argparse
import json
import statistics as pystats
import time
from pathlib import Path

import numpy as np


def make_data(folder: Path, n: int) -> Path:
    from trtcompress import zoo

    d = folder / f"n{n}"
    if d.is_dir() and len(list(d.glob("*.npz"))) == -(-n // 1000):
        return d
    d.mkdir(parents=True, exist_ok=True)
    x, _ = zoo.fashion_mnist("train")
    variants = [lambda a: a, lambda a: a[..., ::-1], lambda a: np.roll(a, 1, axis=-1), lambda a: np.roll(a, 1, axis=-2)]
    k = 0
    for part in range(-(-n // 1000)):
        take = min(1000, n - k)
        idx = np.arange(k, k + take)
        batch = np.stack([variants[(i // len(x)) % len(variants)](x[i % len(x)]) for i in idx]).astype(np.float32)
        np.savez(d / f"part{part:04d}.npz", x=batch)
        k += take
    return d


def reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--rounds", default="5,3,1", help="interleaved rounds per size")
    ap.add_argument("--data", default="/tmp/trtcompress-ray-bench")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args()
    import ray

    from trtcompress import zoo
    from trtcompress.data.base import model_inputs
    from trtcompress.data.options import DataOptions, open_data
    from trtcompress.distributed.ray_calibrate import RayCollector, RayOptions, ShardedData, peak_rss_mb
    from trtcompress.model_io import infer_shapes, load_model
    from trtcompress.quant._ir import as_ir, name_main_nodes
    from trtcompress.quant.calibrate import CollectConfig, collect_statistics
    from trtcompress.quant.placement import plan_quantization

    work = infer_shapes(load_model(zoo.onnx_path("fashion_cnn")))
    graph = as_ir(work)
    name_main_nodes(graph, work)
    plan = plan_quantization(graph, (), (), None)
    tensors = plan.activation_tensors
    max_only = {t: plan.bounds[t] for t in tensors if t in plan.bounds}
    inputs = model_inputs(work)
    options = DataOptions(batch=64)  # what quantize picks for this model (calibration_batch)
    collect = CollectConfig(progress=False)
    sizes = [int(s) for s in args.sizes.split(",")]
    rounds = [int(r) for r in args.rounds.split(",")]
    folders = {n: make_data(Path(args.data), n) for n in sizes}

    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    init_s = time.perf_counter() - t0

    def single(n):
        reset_peak()
        t, c = time.perf_counter(), time.process_time()
        stats = collect_statistics(work, tensors, open_data(str(folders[n]), inputs, options), collect, max_only)
        return stats, time.perf_counter() - t, {"peak_rss_mb": peak_rss_mb(), "cpu_seconds": time.process_time() - c}

    def on_ray(n, tasks):
        c = RayCollector(RayOptions(tasks=tasks))
        t = time.perf_counter()
        stats = c(work, tensors, ShardedData(str(folders[n]), options), collect, max_only)
        return stats, time.perf_counter() - t, c.report

    t0 = time.perf_counter()
    on_ray(sizes[0], 2)  # starts the worker processes
    first_call_s = time.perf_counter() - t0
    results = {"ray_init_s": round(init_s, 2), "first_call_s": round(first_call_s, 2), "tensors": len(tensors),
               "histograms": len([t for t in tensors if t not in max_only]), "sizes": {}}
    for n, r in zip(sizes, rounds + [1] * len(sizes)):
        runs: dict[str, list] = {"single": [], "ray1": [], "ray2": []}
        for k in range(r):
            ref, s, info = single(n)
            runs["single"].append((s, info["peak_rss_mb"], 0.0, info["cpu_seconds"]))
            for name, tasks in (("ray1", 1), ("ray2", 2)) if k % 2 == 0 else (("ray2", 2), ("ray1", 1)):
                got, s, rep = on_ray(n, tasks)
                if got != ref or got.num_batches != ref.num_batches:
                    raise SystemExit(f"{name} statistics differ from the single-process run at {n} samples")
                runs[name].append((s, max(t["peak_rss_mb"] for t in rep["tasks"]), rep["merge_seconds"], sum(t["cpu_seconds"] for t in rep["tasks"])))
        row = {}
        for name, vals in runs.items():
            sec = pystats.median(v[0] for v in vals)
            row[name] = {"seconds": round(sec, 3), "samples_per_s": round(n / sec), "peak_rss_mb": max(v[1] for v in vals),
                         "merge_s": round(max(v[2] for v in vals), 4), "runs": len(vals),
                         # CPU time of the pass (the tasks' processes for Ray): what the load on the shared cores does not inflate
                         "samples_per_cpu_s": round(n / pystats.median(v[3] for v in vals))}
        results["sizes"][n] = row
        print(n, json.dumps(row), flush=True)

    # the driver's merge: Statistics.merge on this model's shard statistics
    shard_stats = [RayCollector(RayOptions(tasks=8))(work, tensors, ShardedData(str(folders[sizes[0]]), options), collect, max_only)]
    one = shard_stats[0]
    t = time.perf_counter()
    m = one
    reps = 200
    for _ in range(reps):
        m = m.merge(one)
    per_merge = (time.perf_counter() - t) / reps
    results["merge_ms_per_shard"] = round(per_merge * 1e3, 3)
    results["merge_us_per_histogram"] = round(per_merge * 1e6 / max(1, len(one.histograms)), 1)
    results["bins"] = one.bins
    ray.shutdown()
    print(json.dumps({k: v for k, v in results.items() if k != "sizes"}), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
