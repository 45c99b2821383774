"""Latency benchmark of one or more models, measured in interleaved rounds in one run.

Interleaving (round 1: A, B, C; round 2: A, B, C; ...) spreads drift from other load on the
machine over every model equally, so the ratios between models are fair. Only the model whose turn
it is has a live session: ONNX Runtime's idle worker threads keep spinning after a run, and with
several sessions alive they take the cores from the one being timed (measured on 2 cores: every
model of a 4-model round ran 2x slower, and an INT8 model 1.75x faster than FP32 alone read as
0.9x). Each turn starts a fresh session and runs ``warmup`` untimed inferences first, never more
than the turn's timed runs (``--iterations 10`` over 5 rounds: 2 warm-up and 2 timed runs a turn,
not 3 and 2; the first run of a fresh session is the slow one). Latency is the backend's own
inference time (``runner.last_inference_time()``), without Python-side feed handling.

A ``budget`` (seconds per batch size, every model's runs together, warm-up included) keeps a slow
model from taking minutes: each model gets an equal share, and a turn runs as many of its planned
iterations as the model's measured time per run allows (at least one per round), and no round
after the second starts once the budget is spent. Its first turn
estimates that time from its first warm-up run, which overstates it (a fresh session's first run
is the slowest), so the budget errs towards fewer runs; later turns use the median of its timed
runs. The compress job sets one (``job.BENCH_BUDGET``); ``bench`` does not unless asked.

On the TensorRT backend that time includes host/device copies, so runners that can
(``gpu_latency_ms``, the TensorRT runner) also report GPU compute time measured with CUDA events
and no copies in the timed region (``gpu`` in each model's stats, as trtexec's "GPU Compute
Time"), optionally replaying a CUDA graph; speedups are then taken on GPU time.
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Callable, Sequence

import numpy as np

from .config import Config
from .data.base import batch_size_of, model_inputs
from .data.options import DataOptions, open_data
from .errors import ConfigError, DataError, MissingDependencyError
from .progress import Progress
from .runners import RunnerOptions, make_runner

__all__ = ["BenchConfig", "BenchResult", "bench", "latency_stats"]


@dataclasses.dataclass(frozen=True)
class BenchConfig(Config):
    """``iterations`` timed runs per model and batch size (spread over ``rounds`` turns, at most
    one round per iteration), or ``duration`` seconds each when set; ``warmup`` untimed runs start
    every turn (no more than the turn's timed runs). ``budget``: seconds per batch size for every
    model's runs, warm-up included; fewer iterations where they would take longer (see the module
    docstring)."""

    batch_sizes: tuple[int, ...] = (1,)
    warmup: int = 3
    iterations: int = 100
    duration: float | None = None
    rounds: int = 5
    seed: int = 0
    inputs: tuple[str, ...] = ()  # NAME:DIMS[:DTYPE] shapes of dynamic inputs (the batch axis: a named dimension)
    cuda_graph: bool = False  # GPU timing (TensorRT) replays a CUDA graph of one inference
    data: str | None = None  # a data spec (as compare's); None: random data within the input ranges
    preprocess: str | None = None  # image preprocessing for ``data``
    budget: float | None = None

    def validate(self) -> None:
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes):
            raise ConfigError("batch sizes must be >= 1")
        if self.warmup < 0 or self.iterations < 1 or self.rounds < 1:
            raise ConfigError("warmup >= 0, iterations >= 1 and rounds >= 1 are required")
        if self.duration is not None and self.duration <= 0:
            raise ConfigError("duration must be > 0 seconds")
        if self.budget is not None and self.budget <= 0:
            raise ConfigError("budget must be > 0 seconds (leave it unset for no budget)")
        self.data_options(1)  # refuses a bad --input or --preprocess now

    def data_options(self, batch: int) -> DataOptions:
        """How the feed of ``batch`` samples is read: the first ``batch`` samples of ``data``, or
        random values within each input's valid values."""
        return DataOptions(batch=batch, limit=batch if self.data else None, seed=self.seed, preprocess=self.preprocess, inputs=self.inputs)


SAMPLES_KEPT = 200  # timed runs a report keeps for its latency distribution (quantiles beyond)


def latency_stats(seconds: Sequence[float], batch: int) -> dict[str, Any]:
    ms = np.asarray(seconds, dtype=np.float64) * 1e3
    mean = float(ms.mean())
    # the distribution itself, bounded: every run sorted, or evenly spaced quantiles of them
    kept = np.sort(ms) if ms.size <= SAMPLES_KEPT else np.quantile(ms, np.linspace(0.0, 1.0, SAMPLES_KEPT))
    return {
        "iterations": int(ms.size),
        "mean_ms": mean,
        "min_ms": float(ms.min()),
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "std_ms": float(ms.std()),
        "throughput_per_s": batch * 1e3 / mean,
        "samples_ms": [float(f"{v:.4g}") for v in kept],
    }


@dataclasses.dataclass
class BenchResult:
    models: list[str]
    backend: str
    threads: int
    results: dict[int, dict[str, dict[str, Any]]]  # batch -> model -> stats
    ratios: dict[int, dict[str, float]]  # batch -> model -> speedup against models[0] (p50)

    def to_dict(self) -> dict[str, Any]:
        return {
            "models": self.models,
            "backend": self.backend,
            "threads": self.threads,
            "results": {str(b): r for b, r in self.results.items()},
            "speedup_vs_first": {str(b): r for b, r in self.ratios.items()},
        }


def bench(models: Sequence[str | os.PathLike], config: BenchConfig | None = None, backend: str = "onnxrt", options: RunnerOptions | None = None, labels: Sequence[str] | None = None, log: Callable[[str], None] | None = None) -> BenchResult:
    """Measure every model at every batch size; the first model is the baseline for ratios."""
    config = config or BenchConfig()
    options = options or RunnerOptions()
    labels = list(labels or [str(m) for m in models])
    if len(set(labels)) != len(labels):
        labels = [f"{i}:{m}" for i, m in enumerate(labels)]
    results: dict[int, dict[str, dict[str, Any]]] = {}
    ratios: dict[int, dict[str, float]] = {}
    runners = [make_runner(m, backend, options, name=label) for m, label in zip(models, labels)]
    turns = _rounds(config) * len(config.batch_sizes) * len(runners)
    with Progress("benchmarking", turns, unit="turn") as bar:
        for batch in config.batch_sizes:
            _bench_batch(batch, models, labels, runners, config, results, ratios, bar, log)
    return BenchResult([str(m) for m in models], backend, options.threads, results, ratios)


def _bench_batch(batch: int, models, labels: list[str], runners, config: BenchConfig, results, ratios, bar: Progress, log) -> None:
    """Measure every model at ``batch`` in interleaved rounds into ``results`` and ``ratios``."""
    feeds = [_feed(m, batch, config) for m in models]
    times: list[list[float]] = [[] for _ in runners]
    gpu_times: list[list[float]] = [[] for _ in runners]
    gpu_facts: list[dict[str, Any]] = [{} for _ in runners]
    rounds = _rounds(config)
    planned = [config.iterations // rounds + (r < config.iterations % rounds) for r in range(rounds)]
    share = config.budget / len(runners) / rounds if config.budget and not config.duration else None  # seconds a turn
    start = time.perf_counter()
    for rnd in range(rounds):
        if share is not None and rnd >= MIN_ROUNDS and time.perf_counter() - start > config.budget:
            bar.update(len(runners) * (rounds - rnd), batch=batch)  # the rounds not run
            if log:
                log(f"batch {batch}: stopped after {rnd} rounds, past the {config.budget:g} s budget")
            break
        for r, feed, t, gt, gf in zip(runners, feeds, times, gpu_times, gpu_facts):
            with r:  # one live session at a time (see the module docstring)
                n_turn, warmup = _plan_turn(config, planned[rnd], share, t)
                k = 0
                while k < warmup:
                    r.infer(feed, check_inputs=False)
                    k += 1
                    if k == 1 and share is not None and not t:  # no timed run yet: this one is the estimate
                        n_turn, warmup = _within(share, r.last_inference_time(), n_turn, warmup)
                deadline = time.perf_counter() + config.duration / rounds if config.duration else None
                n = 0
                while (deadline is None and n < n_turn) or (deadline is not None and (n == 0 or time.perf_counter() < deadline)):
                    r.infer(feed, check_inputs=False)
                    t.append(r.last_inference_time())
                    n += 1
                bar.update(1, batch=batch)
                gpu_timer = getattr(r, "gpu_latency_ms", None)
                if gpu_timer is not None and gf.get("skipped") is None:  # as many runs as end-to-end
                    try:
                        ms, facts = gpu_timer(feed, n, warmup, config.cuda_graph)
                    except MissingDependencyError as e:  # no cuda-python/torch: end-to-end time only
                        gf["skipped"] = str(e)
                        if log:
                            log(f"no GPU compute time for {r.name}: {e}")
                        continue
                    gt.extend(m / 1e3 for m in ms)
                    gf.update(facts)
        if log:
            log(f"batch {batch}: round {rnd + 1}/{rounds}")
    results[batch] = {label: latency_stats(t, batch) for label, t in zip(labels, times)}
    for label, gt, gf in zip(labels, gpu_times, gpu_facts):
        if gt:
            results[batch][label]["gpu"] = {**latency_stats(gt, batch), **gf}
    on_gpu = all("gpu" in results[batch][label] for label in labels)
    p50 = {label: (results[batch][label]["gpu"] if on_gpu else results[batch][label])["p50_ms"] for label in labels}
    ratios[batch] = {label: p50[labels[0]] / p50[label] for label in labels}


# Rounds a budget never cuts: one run a model a round is all a slow model gets, and two rounds
# still spread drift over both models. Past the budget no further round starts (a VGG-class
# detector at 320x320 on 2 loaded cores: each turn's fresh session, warm-up and run took 8 s, and
# the floor of one run a round made 5 rounds 82 s against a 30 s budget).
MIN_ROUNDS = 2


def _rounds(config: BenchConfig) -> int:
    """Interleaved rounds per batch size (no more than one per iteration)."""
    return config.rounds if config.duration else min(config.rounds, config.iterations)


def _plan_turn(config: BenchConfig, planned: int, share: float | None, times: list[float]) -> tuple[int, int]:
    """Timed and warm-up runs of one turn (``times``: the model's timed runs so far)."""
    if config.duration:
        return planned, config.warmup
    warmup = min(config.warmup, planned)
    if share is None or not times:
        return planned, warmup
    return _within(share, sorted(times)[len(times) // 2], planned, warmup)


def _within(share: float, seconds: float, planned: int, warmup: int) -> tuple[int, int]:
    """The most timed runs up to ``planned`` (at least one) that fit ``share`` seconds at
    ``seconds`` a run with their warm-up, which is never more than them."""
    n = planned
    while n > 1 and (n + min(warmup, n)) * seconds > share:
        n -= 1
    return n, min(warmup, n)


def _feed(model: str | os.PathLike, batch: int, config: BenchConfig) -> dict[str, np.ndarray]:
    """One feed of ``batch`` samples: the first of ``config.data`` (repeated when it holds fewer)
    or random data within each input's valid values, the batch on each input's batch axis."""
    from .trt.sidecar import input_source

    options = config.data_options(batch)
    inputs = options.with_batch_axes(model_inputs(input_source(model)))  # an engine's inputs are its source ONNX's
    feed = next(iter(open_data(config.data or "random:1", inputs, options)), None)
    if feed is None:
        raise DataError(f"{config.data} holds no samples to benchmark {model} with")
    got = batch_size_of(feed, inputs)
    if got < batch and config.data:
        feed = _repeat(feed, inputs, batch)
        got = batch
    if got != batch:
        raise ConfigError(f"{model} has a fixed batch size of {got}; re-export it with a dynamic batch (the default of 'trtcompress export') to measure batch {batch}")
    return feed


def _repeat(feed: dict[str, np.ndarray], inputs, batch: int) -> dict[str, np.ndarray]:
    """``feed``'s samples repeated along each batch axis up to ``batch`` samples."""
    axes = {i.name: i.batch_axis for i in inputs}
    out = {}
    for k, v in feed.items():
        ax = axes.get(k)
        if ax is None:
            out[k] = v
        else:
            reps = -(-batch // v.shape[ax])
            out[k] = np.take(np.concatenate([v] * reps, axis=ax), np.arange(batch), axis=ax)
    return out
