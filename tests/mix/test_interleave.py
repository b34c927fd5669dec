"""Tests of curate.mix.interleave: the windowed interleaving is core.interleave, item for item, at any window size."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.mix.core import interleave
from curate.mix.interleave import (
    LEAF_ROW_GROUP,
    global_order,
    read_items,
    shard_bounds,
    write_order_file,
    write_orders,
)


def _leaf_file(path, lens, leaf):
    """A leaf stream file: the order columns the shard writer reads (uid encodes leaf and position)."""
    n = len(lens)
    pos = np.arange(n, dtype=np.int64)
    t = pa.table({"uid": pa.array(leaf * 1_000_000 + pos), "pid": pa.array(np.zeros(n, np.int64)),
                  "tok_offset": pa.array(pos * 10), "ntok": pa.array(np.asarray(lens, np.int64) - 1),
                  "tokens": pa.array(np.asarray(lens, np.int64)), "doc_id": pa.array([f"d{leaf}-{i}" for i in pos])})
    pq.write_table(t, path, row_group_size=max(1, min(LEAF_ROW_GROUP, 5)))
    return str(path)


def _random_cells(rng, n_cells, n_groups, *, empty=True):
    """Per cell: group and a list of range streams (lengths >= 1)."""
    cells = []
    for c in range(n_cells):
        r = int(rng.integers(1, 4))
        ranges = []
        for _ in range(r):
            n = 0 if (empty and rng.random() < 0.15) else int(rng.integers(1, 40))
            ranges.append(rng.integers(1, int(rng.choice([3, 30, 300])), size=n).astype(np.int64))
        cells.append((c % n_groups if c < n_groups else int(rng.integers(0, n_groups)), ranges))
    return cells


def _reference(cells, seed):
    """core.interleave over cells whose ranges are merged in memory by the same midpoint rule (rank = range)."""
    cell_streams, cell_origin = [], []
    for _g, ranges in cells:
        tot = sum(int(r.sum()) for r in ranges)
        if len(ranges) == 1 or tot == 0:
            lens = ranges[0] if len(ranges) == 1 else np.zeros(0, np.int64)
            origin = [(0, i) for i in range(len(lens))]
        else:
            ks, org, ls = [], [], []
            for j, r in enumerate(ranges):
                if r.sum() == 0:
                    continue
                share = np.int64(r.sum()) / np.int64(tot)
                ks.append(((np.cumsum(r) - r) + 0.5 * r) / share)
                org += [(j, i) for i in range(len(r))]
                ls.append(r)
            o = np.argsort(np.concatenate(ks), kind="stable")
            lens = np.concatenate(ls)[o]
            origin = [org[i] for i in o]
        cell_streams.append(lens)
        cell_origin.append(origin)
    out = interleave(cell_streams, [g for g, _ in cells], seed=seed)
    return [(int(m), *cell_origin[int(m)][int(p)]) for m, p in out]


def _leaves(tmp_path, cells):
    files, leaves, where = [], [], []
    for c, (g, ranges) in enumerate(cells):
        for r, lens in enumerate(ranges):
            i = len(files)
            files.append(_leaf_file(tmp_path / f"leaf{i}.parquet", lens, i))
            leaves.append({"cell": c, "range": r, "group": g, "sequences": len(lens), "tokens": int(lens.sum())})
            where.append((c, r))
    return files, leaves, where


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("window", [1, 3, 17, 10_000])
def test_windowed_order_is_core_interleave(tmp_path, seed, window):
    rng = np.random.default_rng(seed)
    cells = _random_cells(rng, int(rng.integers(1, 7)), int(rng.integers(1, 4)))
    files, leaves, where = _leaves(tmp_path, cells)
    order = global_order(files, leaves, tmp_path / "work", seed=seed, window_items=window)
    got = read_items(order, 0, order.n)
    mine = [(where[int(lf)][0], where[int(lf)][1], int(p)) for lf, p in got[:, :2]]
    assert mine == _reference(cells, seed)
    assert (got[:, 3] == np.cumsum(got[:, 2])).all()  # `end` is the global token count
    if window < order.n:
        assert len(order.chunks) > 1  # the windows really split the work


def test_equal_lengths_tie_like_core(tmp_path):
    """Equal lengths make many equal keys: the rank order breaks them exactly as core's stable sort."""
    cells = [(0, [np.full(20, 4, np.int64)]), (0, [np.full(20, 4, np.int64)]), (1, [np.full(40, 2, np.int64)]),
             (1, [np.full(10, 8, np.int64)])]
    files, leaves, where = _leaves(tmp_path, cells)
    for window in (1, 2, 5, 1000):
        order = global_order(files, leaves, tmp_path / f"w{window}", seed=3, window_items=window)
        got = read_items(order, 0, order.n)
        assert [(where[int(lf)][0], 0, int(p)) for lf, p in got[:, :2]] == _reference(cells, 3)


def _cut_reference(lens, limit):
    cum, bounds, base = np.cumsum(lens), [0], 0
    while bounds[-1] < len(lens):
        j = max(int(np.searchsorted(cum, base + limit, side="right")), bounds[-1] + 1)
        bounds.append(j)
        base = int(cum[j - 1])
    return bounds


@pytest.mark.parametrize("limit", [1, 7, 50, 10_000])
def test_shard_cut_and_order_files(tmp_path, limit):
    rng = np.random.default_rng(limit)
    cells = _random_cells(rng, 4, 2, empty=False)
    files, leaves, _where = _leaves(tmp_path, cells)
    order = global_order(files, leaves, tmp_path / "work", seed=1, window_items=9)
    lens = read_items(order, 0, order.n)[:, 2]
    bounds = shard_bounds(order, max_tokens=limit, single_file=False)
    assert bounds == _cut_reference(lens, limit)
    assert shard_bounds(order, max_tokens=limit, single_file=True) == [0, order.n]
    # the order files, in batches of 4 items, carry the leaf rows in global order
    rows = []
    for i in range(len(bounds) - 1):
        p = tmp_path / f"shard_{i}.order.parquet"
        assert write_order_file(order, files, bounds[i], bounds[i + 1], p, batch_items=4) == bounds[i + 1] - bounds[i]
        rows.append(pq.read_table(p))
    t = pa.concat_tables(rows)
    items = read_items(order, 0, order.n)
    assert t["seq"].to_pylist() == list(range(order.n))
    assert t["uid"].to_numpy().tolist() == (items[:, 0] * 1_000_000 + items[:, 1]).tolist()
    assert t["tokens"].to_numpy().tolist() == lens.tolist()
    assert t.column_names == ["seq", "uid", "pid", "tok_offset", "ntok", "tokens", "doc_id"]


def test_empty_order_file_keeps_the_schema(tmp_path):
    files, leaves, _ = _leaves(tmp_path, [(0, [np.zeros(0, np.int64)])])
    order = global_order(files, leaves, tmp_path / "work", seed=0)
    assert order.n == 0 and shard_bounds(order, max_tokens=10, single_file=False) == [0, 0]
    p = tmp_path / "empty.order.parquet"
    write_order_file(order, files, 0, 0, p)
    t = pq.read_table(p)
    assert t.num_rows == 0 and t.column_names[:2] == ["seq", "uid"]


def test_cell_without_leaf_is_refused(tmp_path):
    files, leaves, _ = _leaves(tmp_path, [(0, [np.ones(3, np.int64)]), (0, [np.ones(3, np.int64)])])
    leaves[1]["cell"] = 2  # cell 1 has no leaf
    with pytest.raises(ValueError, match="cells \\[1\\] have no leaf"):
        global_order(files, leaves, tmp_path / "work", seed=0)


@pytest.mark.parametrize("window", [5, 10_000])
def test_write_orders_on_ray_matches_in_process(tmp_path, ray_session, window):
    """The Ray path (a wave of window tasks per level, one task per shard) writes what one process writes."""
    from curate.layout import RunLayout

    rng = np.random.default_rng(5)
    cells = _random_cells(rng, 5, 3, empty=False)
    files, leaves, _ = _leaves(tmp_path, cells)
    run_dir = tmp_path / "run"
    RunLayout(run_dir).mix_dir.mkdir(parents=True)
    info = write_orders(files, leaves, run_dir, seed=9, max_tokens=60, single_file=False, window_items=window)
    order = global_order(files, leaves, tmp_path / "ref", seed=9, window_items=10_000)
    lens = read_items(order, 0, order.n)[:, 2]
    bounds = _cut_reference(lens, 60)
    assert info["n_shards"] == len(bounds) - 1 and info["sequences"] == order.n and info["tokens"] == int(lens.sum())
    assert info["shard_tokens"] == [int(lens[a:b].sum()) for a, b in zip(bounds[:-1], bounds[1:])]
    uids = pa.concat_tables([pq.read_table(RunLayout(run_dir).order(i)) for i in range(info["n_shards"])])["uid"]
    items = read_items(order, 0, order.n)
    assert uids.to_numpy().tolist() == (items[:, 0] * 1_000_000 + items[:, 1]).tolist()


def test_window_memory_does_not_grow_with_the_streams(tmp_path):
    """The traced heap of the windowed path follows the window, not the number of items (4x more: same peak)."""
    import tracemalloc

    peaks = []
    for n in (50_000, 200_000):
        rng = np.random.default_rng(0)
        files, leaves = [], []
        for c in range(6):
            lens = rng.integers(1, 50, size=n // 6).astype(np.int64)
            f = tmp_path / f"n{n}_l{c}.parquet"
            pq.write_table(pa.table({"tokens": lens}), f, row_group_size=LEAF_ROW_GROUP)
            files.append(str(f))
            leaves.append({"cell": c, "range": 0, "group": c % 2, "sequences": lens.size, "tokens": int(lens.sum())})
        tracemalloc.start()
        # leaf streams are read whole (a select task's output, bounded by its task size): measure the merges
        order = global_order(files, leaves, tmp_path / f"w{n}", seed=1, window_items=5_000)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert order.n == sum(lf["sequences"] for lf in leaves)
    assert peaks[1] < 1.3 * peaks[0] + (2 << 20), peaks


def test_distributed_mix_keeps_shares_and_windows_at_two_million_documents(tmp_path):
    """Members selected per hash range (exact targets split by supply), then the windowed interleave: every
    member gives exactly its target and every 1% window keeps each group within 1 pp, over 2M documents."""
    from curate.mix.core import (_split_budget, default_window, member_seed, plan_member_targets, select_sequences,
                                 window_deviation_bound, window_max_deviation)
    from curate.pipeline import parse_recipe

    rng = np.random.default_rng(42)
    sizes = {"a": 150_000, "b": 40_000, "c": 200_000, "d": 100_000, "e": 700_000, "f": 500_000, "g": 310_000}
    lengths = {k: np.maximum(2, rng.lognormal(6.0, 1.2, n).astype(np.int64)) for k, n in sizes.items()}
    r = parse_recipe({
        "name": "scale", "seed": 3, "max_epochs": 4, "budget_tokens": int(lengths["b"].sum() * 2.6 / 0.05),
        "sources": {n: {"format": "text", "paths": [f"{n}/*"]} for n in "abcdefg"},
        "mixture": {"x": {"share": 0.15, "sources": {"a": 2, "b": 1}},
                    "y": {"share": 0.15, "sources": {"c": 1, "d": 1}},
                    "z": {"share": 0.70, "sources": {"e": 3, "f": 2, "g": 1}}},
    }, base_dir=tmp_path, check_paths=False)
    plan = plan_member_targets(r, {k: int(v.sum()) for k, v in lengths.items()})
    gidx = {"x": 0, "y": 1, "z": 2}
    files, leaves, streams, groups = [], [], [], []
    for c, m in enumerate(plan.members):
        lens = lengths[m.key]
        rng_ranges = (np.arange(lens.size) * 2654435761) % 7 % max(1, -(-lens.size // 200_000))  # a hash of the row
        ranges = [lens[rng_ranges == j] for j in range(int(rng_ranges.max()) + 1)]
        targets = _split_budget(m.target, np.array([x.sum() for x in ranges], float))
        assert targets.sum() == m.target
        for j, (x, t) in enumerate(zip(ranges, targets)):
            idx, _ep, take = select_sequences(x, int(t), seed=member_seed(r.seed, f"{m.key}\x1fr{j}"),
                                              max_epochs=r.max_epochs)
            assert int(take.sum()) == int(t)  # each range is exact, so the member is
            f = tmp_path / f"leaf{len(files)}.parquet"
            pq.write_table(pa.table({"tokens": take}), f, row_group_size=LEAF_ROW_GROUP)
            files.append(str(f))
            leaves.append({"cell": c, "range": j, "group": gidx[m.group], "sequences": take.size,
                           "tokens": int(take.sum())})
            streams.append(take)
            groups.append(gidx[m.group])
    assert len(leaves) > len(plan.members)  # members really split into ranges
    order = global_order(files, leaves, tmp_path / "work", seed=r.seed, window_items=250_000)
    items = read_items(order, 0, order.n)
    lens, grp = items[:, 2], np.asarray([leaves[int(i)]["group"] for i in range(len(leaves))])[items[:, 0]]
    assert lens.size > 2_000_000 and len(order.chunks) > 8
    assert int(lens.sum()) == sum(m.target for m in plan.members)
    w = default_window(lens)
    assert window_max_deviation(lens, grp, [0.15, 0.15, 0.70], w) <= 1.0
    achieved = np.bincount(grp, weights=lens) / lens.sum()
    assert window_max_deviation(lens, grp, achieved, w) <= window_deviation_bound(streams, groups, w)


def test_an_order_file_decodes_each_leaf_row_group_once(tmp_path, monkeypatch):
    """A batch takes a few rows from each of many leaves; the shard task still decodes every leaf row group it
    needs once (it used to decode one per batch that read from it: L / 4 times at 256k-item batches)."""
    from collections import Counter

    rng = np.random.default_rng(8)
    cells = [(c % 3, [rng.integers(1, 30, size=60).astype(np.int64)]) for c in range(12)]  # 12 leaves of 60 rows
    files, leaves, _ = _leaves(tmp_path, cells)
    order = global_order(files, leaves, tmp_path / "work", seed=2, window_items=1000)
    import curate.mix.interleave as il

    decoded = Counter()
    real = il._leaf_groups

    class Counting:
        def __init__(self, path):
            self.path, (self.pf, self.starts) = path, real(path)

        def read_row_group(self, g, *a, **k):
            decoded[(self.path, g)] += 1
            return self.pf.read_row_group(g, *a, **k)

    monkeypatch.setattr(il, "_leaf_groups", lambda path: ((c := Counting(path)), c.starts))
    p = tmp_path / "shard.order.parquet"
    write_order_file(order, files, 0, order.n, p, batch_items=6)  # a batch: about half a row of each leaf
    t = pq.read_table(p)
    items = read_items(order, 0, order.n)
    assert t["uid"].to_numpy().tolist() == (items[:, 0] * 1_000_000 + items[:, 1]).tolist()
    assert sum(decoded.values()) == 12 * 12  # every row group of every leaf (60 rows in groups of 5), once
    assert max(decoded.values()) == 1
    assert not (tmp_path / "shard.order.parquet.scatter").exists()
