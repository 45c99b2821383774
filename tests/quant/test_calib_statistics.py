"""Histograms on the power-of-two grid: exact regrouping, order/batch invariance, shard merging."""
from __future__ import annotations

import numpy as np
import pytest
from calib_graphs import TENSORS, batches

from trtcompress.data import ListSource
from trtcompress.errors import ConfigError, DataError, ModelError
from trtcompress.quant import _kernels
from trtcompress.quant.calibrate import CollectConfig, calibrate, collect_statistics, compute_amax
from trtcompress.quant.histogram import AbsHistogram
from trtcompress.quant.stats import Statistics

QUIET = CollectConfig(progress=False)


def test_histogram_counts_match_direct_binning():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(50_000) * 3).astype(np.float32)
    x[:100] = 0
    h = AbsHistogram(bins=1024)
    h.add(x)
    assert h.range > np.abs(x).max() >= h.range / 2
    direct = np.floor(np.abs(x.astype(np.float64)) / h.bin_width).astype(int)
    assert np.array_equal(h.counts, np.bincount(direct, minlength=1024))
    assert h.zeros == 100 and h.total == x.size and h.amax == np.abs(x).max()


def test_compiled_kernel_is_built():
    # scripts/setup.sh builds it (setup.py, optional only for installs without a C compiler)
    assert _kernels.have_compiled(), "trtcompress/quant/_count.c was not built: install a C compiler and rerun scripts/setup.sh"
    assert _kernels.resolve("auto") == "compiled"


@pytest.mark.parametrize("kernel", ["numpy", "compiled"])
def test_growing_range_regroups_exactly(kernel):
    rng = np.random.default_rng(1)
    parts = [rng.standard_normal(5000).astype(np.float32) * s for s in (0.01, 1.0, 0.2, 300.0, 5.0)]
    one = AbsHistogram(bins=512)
    one.add(np.concatenate(parts), kernel=kernel)
    for order in (range(5), [3, 0, 4, 1, 2], [4, 3, 2, 1, 0]):
        h = AbsHistogram(bins=512)
        for k in order:
            h.add(parts[k], kernel=kernel)
        assert h == one


def test_kernels_agree():
    rng = np.random.default_rng(2)
    relu = np.maximum(rng.standard_normal(100_003).astype(np.float32), 0)
    # a huge value next to subnormals: scaled by 2**-114 they underflow to 0 yet are not zeros
    tiny = np.array([3e38, 1e-45, -1e-40, 0.0, 1e-38], np.float32)
    for x in (rng.standard_normal(10_001).astype(np.float32), rng.exponential(size=999) * 1e-30, np.zeros(10, np.float32), relu, tiny):
        a, b = AbsHistogram(), AbsHistogram()
        a.add(x, kernel="numpy")
        b.add(x, kernel="compiled")
        assert a == b
    assert b.zeros == 1


def test_compiled_kernel_refuses_values_outside_the_bins_and_leaves_counts():
    counts = np.zeros(8, np.int64)
    with pytest.raises(ValueError, match="2 values are NaN or fall outside the 8 bins"):
        _kernels.count_compiled(np.array([1.0, 9.0, np.nan, 0.0], np.float32), np.float32(1.0), counts)
    assert not counts.any()
    late = np.full(1500, 0.5, np.float32)  # in a later block of the kernel's than the first
    late[1000] = -8.0
    with pytest.raises(ValueError, match="1 values"):
        _kernels.count_compiled(late, np.float32(1.0), counts)
    assert not counts.any()
    assert _kernels.count_compiled(np.array([0.5, -7.9, 0.0]), np.float64(1.0), counts) == 1  # float64
    assert counts.tolist() == [2, 0, 0, 0, 0, 0, 0, 1]
    with pytest.raises(TypeError, match="float32 or float64"):
        _kernels.count_compiled(np.ones(3, np.int32), np.float32(1.0), counts)


def test_nonfinite_values_are_counted_apart():
    h = AbsHistogram()
    h.add(np.array([1.0, np.nan, -np.inf, 0.0, -2.0], np.float32))
    assert h.nonfinite == 2 and h.total == 3 and h.zeros == 1 and h.amax == 2.0


def test_extreme_ranges_stay_exact():
    for scale in (1e-38, 3e38):
        x = np.array([scale, scale / 3, -scale / 7], np.float32)
        h = AbsHistogram()
        h.add(x)
        assert h.counts.sum() == 3 and h.amax == np.float32(scale)


def test_batch_size_and_order_do_not_change_statistics(small_model, samples):
    ref = collect_statistics(small_model, TENSORS, ListSource(batches(samples, 1)), QUIET)
    for bs in (4, 7, 24):
        assert collect_statistics(small_model, TENSORS, ListSource(batches(samples, bs)), QUIET) == ref
    perm = np.random.default_rng(0).permutation(len(samples))
    shuffled = collect_statistics(small_model, TENSORS, ListSource(batches(samples[perm], 5)), CollectConfig(progress=False, overlap=True, kernel="numpy"))
    assert shuffled == ref
    assert ref.num_samples == len(samples)


def test_shards_merge_to_the_whole(small_model, samples, tmp_path):
    whole = collect_statistics(small_model, TENSORS, ListSource(batches(samples, 6)), QUIET)
    shards = [collect_statistics(small_model, TENSORS, ListSource(batches(part, 3)), QUIET) for part in np.array_split(samples, 3)]
    paths = []
    for k, s in enumerate(shards):
        paths.append(s.save(tmp_path / f"shard{k}.npz"))
    loaded = [Statistics.load(p) for p in paths]
    assert loaded == shards
    assert Statistics.merge_all(loaded) == whole
    assert Statistics.merge_all(loaded[::-1]) == whole
    assert loaded[1].merge(loaded[2]).merge(loaded[0]) == whole
    assert compute_amax(Statistics.merge_all(loaded), "entropy").amax == compute_amax(whole, "entropy").amax


def test_max_only_tensors_are_reduced_in_the_graph(small_model, samples, tmp_path):
    # a tensor whose range is its observed max (a ReLU6 output) gets no histogram, only the same
    # exact max; shards with maxima merge and round-trip through .npz like histograms
    full = collect_statistics(small_model, TENSORS, ListSource(batches(samples, 5)), QUIET)
    only = TENSORS[1:]
    part = collect_statistics(small_model, TENSORS, ListSource(batches(samples, 5)), QUIET, max_only=only)
    assert list(part.histograms) == TENSORS[:1] and part.histograms[TENSORS[0]] == full.histograms[TENSORS[0]]
    assert part.maxima == {t: full.histograms[t].amax for t in only}
    shards = [collect_statistics(small_model, TENSORS, ListSource(batches(p, 4)), QUIET, max_only=only) for p in np.array_split(samples, 2)]
    loaded = [Statistics.load(s.save(tmp_path / f"s{k}.npz")) for k, s in enumerate(shards)]
    assert Statistics.merge_all(loaded) == part
    table = compute_amax(part, "entropy")
    assert all(table.amax[t] == full.histograms[t].amax for t in only)
    assert calibrate(small_model, TENSORS, ListSource(batches(samples, 5)), "max", QUIET).amax == compute_amax(full, "max").amax


def test_fixed_batch_model_is_rebatched(samples):
    from calib_graphs import conv_relu_mlp

    fixed = conv_relu_mlp(batch=1)
    dyn = conv_relu_mlp()
    a = collect_statistics(fixed, TENSORS, ListSource(batches(samples, 8)), QUIET)
    b = collect_statistics(dyn, TENSORS, ListSource(batches(samples, 8)), QUIET)
    assert a == b


def test_model_on_disk_with_external_data(small_model, samples, tmp_path):
    import onnx

    from trtcompress.model_io import save_model

    copy = onnx.ModelProto()
    copy.CopyFrom(small_model)  # saving with external data rewrites the proto it is given
    path = save_model(copy, tmp_path / "m.onnx", external_data=True)
    assert (tmp_path / "m.onnx.data").exists()
    a = collect_statistics(path, TENSORS, ListSource(batches(samples, 8)), QUIET)
    assert a == collect_statistics(small_model, TENSORS, ListSource(batches(samples, 8)), QUIET)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.onnx.data"]  # no temp copy left


def test_bad_inputs_are_named(small_model, samples):
    bad = samples[:4].copy()
    bad[2, 0, 0, 0] = np.nan
    with pytest.raises(DataError, match="calibration batch 2.*NaN"):
        collect_statistics(small_model, TENSORS, ListSource(batches(samples[:4], 2) + batches(bad, 4)), QUIET)
    with pytest.raises(ModelError, match="nope"):
        collect_statistics(small_model, ["nope"], ListSource(batches(samples, 4)), QUIET)
    with pytest.raises(ConfigError, match="initialisers"):
        collect_statistics(small_model, ["w1"], ListSource(batches(samples, 4)), QUIET)
    with pytest.raises(DataError, match="empty"):
        collect_statistics(small_model, TENSORS, ListSource([]), QUIET)
    with pytest.raises(ConfigError, match="percentile"):
        calibrate(small_model, TENSORS, ListSource(batches(samples, 4)), "entropy", QUIET, percentile=99.9)


def test_calibrate_gives_a_table(small_model, samples):
    table = calibrate(small_model, TENSORS, ListSource(batches(samples, 8)), "entropy", QUIET)
    assert set(table.amax) == set(TENSORS) and table.num_samples == len(samples)
    assert all(v > 0 for v in table.amax.values())
    # r2 is a Clip(0, 6) output: never above 6
    assert table.amax["r2"] <= 6.0
    assert table.details["tensors"]["x"]["max"] >= table.amax["x"]
    from trtcompress.quant.table import CalibrationTable

    assert CalibrationTable.from_json(table.to_json()).amax == table.amax


@pytest.mark.parametrize("method,opts", [("max", {}), ("percentile", {"percentile": 99.0}), ("mse", {}), ("entropy", {"zeros": "damp"})])
def test_methods_on_real_statistics(small_model, samples, method, opts):
    stats = collect_statistics(small_model, TENSORS, ListSource(batches(samples, 8)), QUIET)
    table = compute_amax(stats, method, **opts)
    for t in TENSORS:
        h = stats.histograms[t]
        assert 0 < table.amax[t] <= h.amax
    if method == "max":
        assert all(table.amax[t] == stats.histograms[t].amax for t in TENSORS)
    if method == "percentile":
        # about 1% of |x| lies above the 99th percentile (to bin resolution), unless the
        # percentile falls on a spike at the maximum (the Clip(0, 6) output saturates)
        for t in TENSORS:
            clipped = table.details["tensors"][t]["clipped"]
            assert clipped <= 0.011
            assert clipped >= 0.005 or table.amax[t] == stats.histograms[t].amax


def test_compiled_collection_equals_numpy(small_model, samples):
    src = ListSource(batches(samples, 5))
    a = collect_statistics(small_model, TENSORS, src, CollectConfig(progress=False, kernel="numpy", workers=1))
    b = collect_statistics(small_model, TENSORS, src, CollectConfig(progress=False, kernel="compiled", workers=2))
    assert a == b and (a.kernel, b.kernel) == ("numpy", "compiled")


def test_bounded_maxima_are_exact_whichever_batch_reaches_the_bound(small_model, samples, monkeypatch):
    """A bounded tensor (a ReLU6 output) leaves the pass once its max reaches the bound; the
    session is rebuilt for the next batch only when that drops enough work, never after the last
    batch. The maxima are the exact maxima whenever each tensor reaches its bound."""
    from trtcompress.quant import calibrate as calib

    full = collect_statistics(small_model, TENSORS, ListSource(batches(samples, 1)), QUIET)
    bounds = {t: full.histograms[t].amax for t in TENSORS[1:]}  # each can never exceed its true max
    builds = []
    build = calib._Passes._build
    monkeypatch.setattr(calib._Passes, "_build", lambda self, reduced: (builds.append(list(reduced)), build(self, reduced))[1])
    got = collect_statistics(small_model, TENSORS, ListSource(batches(samples, 1)), QUIET, max_only=bounds)
    assert got.maxima == bounds
    assert 1 < len(builds) <= 1 + calib._Passes.MAX_REBUILDS and len(builds) < len(samples)
    assert all(set(b) < set(a) for a, b in zip(builds, builds[1:]))  # each rebuild drops reductions
