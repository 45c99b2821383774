"""Distillation on Ray Train: training throughput of 1 and 2 DDP workers against the local trainer, and Ray's overhead.

The shipped Fashion CNN as teacher, its 2:4 student (``--transform 2to4``), Fashion-MNIST training
images, batch 64 (the ``finetune`` default), one torch thread per process. Interleaved in rounds:

- ``local``: :func:`trtcompress.finetune.finetune` in this process (the path without --ray),
- ``ray1``: :func:`ray_finetune` with one worker (its weights are checked equal to ``local``'s,
  bit for bit, or the script stops),
- ``ray2``: two workers, each on 32 samples of every batch of 64.

Per run: the training loop's wall time and CPU time (rank 0's process for Ray), and the whole
call's wall time for Ray (the worker group's start, the model and data built in each worker, the
weights sent back). The Ray cluster (2 CPUs, this machine) is started once; its start is reported
apart.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/ray_train.py --steps 60 --rounds 2
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics as pystats
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--samples", type=int, default=8192)
    args = ap.parse_args()

    import ray
    import torch

    from trtcompress.distributed.ray_train import RayTrainOptions, ray_finetune
    from trtcompress.finetune import FinetuneConfig, finetune
    from trtcompress.finetune.jobs import SpecJob

    torch.set_num_threads(1)
    job = SpecJob(teacher="zoo:fashion_cnn", data=f"fashion-mnist:train:{args.samples}", batch_size=64, transform="2to4")
    config = FinetuneConfig(steps=args.steps, batch_size=64, threads=1, progress=False)
    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    start = time.perf_counter() - t0
    rows: dict[str, list[dict]] = {"local": [], "ray1": [], "ray2": []}
    for r in range(args.rounds):
        parts = job.build()
        t = time.perf_counter()
        local = finetune(parts.student, parts.teacher, parts.data, config)
        rows["local"].append({"loop_s": local.report["seconds"], "loop_cpu_s": local.report["cpu_seconds"], "call_s": time.perf_counter() - t})
        for n in (1, 2):
            t = time.perf_counter()
            res = ray_finetune(job, job.build().student, config, RayTrainOptions(workers=n))
            call = time.perf_counter() - t
            if n == 1:
                a, b = local.student.state_dict(), res.student.state_dict()
                if not all(torch.equal(a[k], b[k]) for k in a):
                    raise SystemExit("one Ray worker did not give the local weights")
            rows[f"ray{n}"].append({"loop_s": res.report["seconds"], "loop_cpu_s": res.report["cpu_seconds"], "call_s": call})
        print(json.dumps({"round": r, **{k: v[-1] for k, v in rows.items()}}), flush=True)
    ray.shutdown()
    samples = args.steps * 64
    out = {"cluster_start_s": round(start, 1), "steps": args.steps, "batch": 64}
    for k, v in rows.items():
        loop = pystats.median(x["loop_s"] for x in v)
        out[k] = {"loop_s": round(loop, 2), "samples_per_s": round(samples / loop, 1), "loop_cpu_s": round(pystats.median(x["loop_cpu_s"] for x in v), 2),
                  "call_s": round(pystats.median(x["call_s"] for x in v), 1), "overhead_s": round(pystats.median(x["call_s"] - x["loop_s"] for x in v), 1)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
