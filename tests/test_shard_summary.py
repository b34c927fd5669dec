"""curate.shard_summary: the audit's per-shard tasks give exactly the one-table results, and the driver never reads
the training lineage."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate import audit as audit_mod
from curate.mix.core import default_window, window_deviation_at, window_max_deviation
from curate.shard_summary import Summaries, stream_series, weighted_keys, window_check


def _summaries(ray, lens: np.ndarray, grp: np.ndarray, cuts: list[int], n_groups: int) -> Summaries:
    """Summaries of a stream split at ``cuts`` (sequence indexes), as pass 1 would return them."""
    s = Summaries(group_names=[f"g{i}" for i in range(n_groups)])
    bounds = [0, *cuts, len(lens)]
    for a, b in zip(bounds[:-1], bounds[1:]):
        ln, g = lens[a:b].astype(np.int64), grp[a:b].astype(np.int32)
        by_g = np.zeros(n_groups, np.int64)
        np.add.at(by_g, g, ln)
        keys = [[f"g{i}", f"s{i}", "", None, None, None] for i in range(n_groups)]
        key_tok = by_g.tolist()
        s.shards.append({"ok": True, "rows": int(b - a), "idx_tokens": int(ln.sum()),
                         "idx_max": int(ln.max()) if ln.size else 0, "idx_by_group": by_g.tolist(),
                         "keys": keys, "key_tokens": key_tok, "key_sequences": np.bincount(g, minlength=n_groups).tolist(),
                         "hits": {}})
        s.streams.append(ray.put({"lens": ln, "grp": g, "key": g}))
    for i in range(n_groups):
        s.keys[(f"g{i}", f"s{i}", "", None, None, None)] = {"tokens": 0, "sequences": 0}
    return s


def _stream(rng, n: int, n_groups: int, *, zeros: bool = False) -> tuple[np.ndarray, np.ndarray]:
    lens = rng.integers(1, 400, n) if rng.random() < 0.5 else rng.geometric(1 / 60, n)
    if zeros:
        lens[rng.random(n) < 0.05] = 0
    grp = rng.choice(n_groups, n, p=rng.dirichlet(np.ones(n_groups)))
    return lens.astype(np.int64), grp.astype(np.int64)


def _cuts(rng, n: int, k: int) -> list[int]:
    cuts = sorted(rng.choice(np.arange(0, n + 1), size=k, replace=True).tolist())  # repeats: empty shards
    return cuts


@pytest.mark.parametrize("seed", range(12))
def test_window_check_split_into_shards_equals_the_whole_stream(ray_session, seed) -> None:
    rng = np.random.default_rng(seed)
    n_groups = int(rng.integers(1, 5))
    n = int(rng.integers(50, 3000))
    lens, grp = _stream(rng, n, n_groups, zeros=seed % 3 == 0)
    if seed % 4 == 1:  # runs of one group: a real deviation to find
        grp = np.sort(grp)
    total = int(lens.sum())
    shares = [float(lens[grp == i].sum() / total) for i in range(n_groups)]
    w = default_window(lens)
    if seed % 2:  # a window much shorter than the default one: many windows, each across many shards
        w = max(1, total // int(rng.integers(5, 40)))
    want = window_deviation_at(lens, grp, shares, w)
    assert want[0] == window_max_deviation(lens, grp, shares, w)
    for k in (0, 1, int(rng.integers(2, 10)), int(rng.integers(10, 200))):
        s = _summaries(ray_session, lens, grp, _cuts(rng, n, k), n_groups)
        got = window_check(s, w if seed % 2 else None)
        assert got["window_tokens"] == w
        assert got["max_deviation_pp"] == want[0], (k, got, want)  # the same float, not an approximation
        assert got["_at"] == (want[1], want[2]), (k, got, want)


def _brute_weights(lens: np.ndarray, key: np.ndarray, lo: np.ndarray, hi: np.ndarray, n_keys: int) -> np.ndarray:
    ends = np.cumsum(lens)
    starts = ends - lens
    w = np.zeros(len(lens), np.int64)
    for a, b in zip(lo, hi):
        w += np.maximum(np.minimum(ends, b) - np.maximum(starts, a), 0)
    out = np.zeros(n_keys, np.int64)
    np.add.at(out, key, w)
    return out


@pytest.mark.parametrize("seed", range(6))
def test_weighted_keys_split_into_shards_equal_a_replay(ray_session, seed) -> None:
    rng = np.random.default_rng(100 + seed)
    n_groups = int(rng.integers(1, 4))
    n = int(rng.integers(20, 2000))
    lens, grp = _stream(rng, n, n_groups)
    total = int(lens.sum())
    lo = rng.integers(-50, total + 50, int(rng.integers(1, 300)))
    hi = lo + rng.integers(0, max(total // 10, 2), len(lo))
    if seed == 0:
        lo, hi = np.array([0]), np.array([int(rng.integers(0, total + 1))])  # the consumed view: one prefix
    want = _brute_weights(lens, grp, lo, hi, n_groups)
    for k in (0, 3, 50):
        s = _summaries(ray_session, lens, grp, _cuts(rng, n, k), n_groups)
        got = weighted_keys(s, lo, hi)
        assert [got[(f"g{i}", f"s{i}", "", None, None, None)] for i in range(n_groups)] == want.tolist()


# ---------------------------------------------------------------------------- on a real run
def _lineage_and_sizes(run_dir) -> tuple[pa.Table, np.ndarray]:
    from curate.shard_formats import WRITERS, shard_formats

    manifest = audit_mod.read_json(run_dir / "manifest.json")
    tabs, sizes = [], []
    for e in manifest["shards"]:
        tabs.append(pq.read_table(run_dir / "shards" / e["lineage"]))
        fmt, f = next(iter(shard_formats(e).items()))
        sizes.append(WRITERS[fmt].read_sizes(run_dir / "shards", f))
    return pa.concat_tables(tabs), np.concatenate(sizes)


def test_audit_stream_check_equals_the_one_table_window(audit_run) -> None:
    _tmp, _data, recipe, res = audit_run
    lin, sizes = _lineage_and_sizes(res.run_dir)
    assert len(set(lin["shard"].to_pylist())) >= 3, "the run must have several shards for this to test"
    names = list(recipe.mixture)
    grp = np.array([names.index(g) for g in lin["group"].to_pylist()])
    total = sizes.sum()
    shares = [float(sizes[grp == i].sum() / total) for i in range(len(names))]
    w = default_window(sizes)
    assert w > int(sizes[: lin.num_rows // 3].sum()), "the window must span several shards for this to test"
    stream = audit_mod.audit(res.run_dir)["stream"]
    assert stream == {"window_tokens": w, "max_deviation_pp": window_max_deviation(sizes, grp, shares, w)}


def _one_table_series(run_dir, groups, points, window=None) -> dict:
    """The report's stream series as it was computed over the concatenated lineage (the reference)."""
    files = sorted((run_dir / "shards").glob("*.lineage.parquet"))
    tabs = [pq.read_table(f, columns=["group", "tokens"]) for f in files]
    grp = np.concatenate([t["group"].to_numpy(zero_copy_only=False) for t in tabs])
    tok = np.concatenate([t["tokens"].to_numpy() for t in tabs]).astype(np.float64)
    ends = np.cumsum(tok)
    pos = np.concatenate([[0.0], ends])
    if window is not None and 0 < window < ends[-1]:
        centres = np.linspace(window / 2, ends[-1] - window / 2, points)
        lo, hi = centres - window / 2, centres + window / 2
    else:
        edges = np.linspace(0, ends[-1], points + 1)
        lo, hi = edges[:-1], edges[1:]
    out = {}
    for g in groups:
        cum = np.concatenate([[0.0], np.cumsum(np.where(grp == g, tok, 0.0))])
        out[g] = list((np.interp(hi, pos, cum) - np.interp(lo, pos, cum)) / (hi - lo))
    return out


@pytest.mark.parametrize(("points", "window"), [(50, None), (7, None), (50, 20_000), (333, 4_000)])
def test_report_stream_series_equals_the_one_table_series(audit_run, points, window) -> None:
    _tmp, _data, recipe, res = audit_run
    groups = list(recipe.mixture)
    assert stream_series(res.run_dir, groups, points, window=window) == \
        _one_table_series(res.run_dir, groups, points, window)


def test_the_driver_never_reads_the_training_lineage(audit_run, monkeypatch) -> None:
    """Every read of a shard's lineage happens in a Ray task: a spy on the driver's Parquet readers sees none
    (the audit used to concatenate every shard's lineage in the driver)."""
    _tmp, _data, recipe, res = audit_run
    seen: list[str] = []
    real_read, real_file = pq.read_table, pq.ParquetFile.__init__

    def read_table(source, *a, **k):
        seen.append(str(source))
        return real_read(source, *a, **k)

    def parquet_file(self, source, *a, **k):
        seen.append(str(source))
        return real_file(self, source, *a, **k)

    monkeypatch.setattr(pq, "read_table", read_table)
    monkeypatch.setattr(pq.ParquetFile, "__init__", parquet_file)
    from curate.report import stream_frame

    result = audit_mod.audit(res.run_dir, verify=True, consumed_tokens=20_000,
                             rwkv={"magic_prime": 59, "ctx_len": 256, "samples": 30})
    assert result["violations"] == [] and result["stream"]["max_deviation_pp"] > 0
    assert stream_frame(result).height > 0
    lineage_reads = [p for p in seen if p.endswith(".lineage.parquet") and "/shards/" in p]
    assert seen, "the spy saw no Parquet read at all: it does not watch the readers the audit uses"
    assert lineage_reads == []


def test_trainer_views_of_the_whole_stream_are_the_composition(audit_run) -> None:
    """Consuming at least the whole stream gives the audit's own composition (every shard summed)."""
    _tmp, _data, _recipe, res = audit_run
    r = audit_mod.audit(res.run_dir, consumed_tokens=10**12)
    tv = r["trainer_view"]
    assert tv["consumed_tokens"] == tv["stream_tokens"] == r["total_tokens"]
    for level in ("groups", "sources", "subsets"):
        assert {k: v["tokens"] for k, v in tv[level].items()} == {k: v["tokens"] for k, v in r[level].items()}
    assert math.isclose(sum(v["actual"] for v in tv["groups"].values()), 1.0)
