"""curate.mix.select and the mix driver (#16): a cell selected in several hash ranges, each a bounded Ray task.

With ``ROWS_PER_TASK`` lowered, the demo's cells are split into many leaves (cell x hash range); the mixture
still gives every member (and every balance value) exactly its target, each leaf trims at most one sequence,
the audit's share and window checks pass (validation sets held out too), every kept document has its times
selected or its reason in the per-partition ``selected`` files, and 1 vs 2 workers write identical bytes.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from curate.io_utils import read_json
from curate.layout import RunLayout
from curate.mix.prepare import RANGE_BUCKETS, uid_bucket
from curate.mix.task import _ranges, split_target

ROWS = 40  # documents per select task: the demo's members have hundreds, so most cells get several ranges
WINDOW = 150  # items per interleave window: the demo run's order (hundreds of sequences) takes several


def test_ranges_cover_every_bucket_once_and_follow_the_document_count() -> None:
    docs = np.zeros(RANGE_BUCKETS, np.int64)
    docs[::3] = 7
    for rows, want in ((10**9, 1), (int(docs.sum()), 1), (int(docs.sum()) - 1, 2), (100, -(-int(docs.sum()) // 100))):
        r = _ranges(docs, rows)
        assert len(r) == want
        assert r[0][0] == 0 and r[-1][1] == RANGE_BUCKETS and all(a[1] == b[0] for a, b in zip(r, r[1:]))
    assert len(_ranges(np.full(RANGE_BUCKETS, 10**6, np.int64), 1)) == RANGE_BUCKETS  # at most one per bucket
    assert _ranges(np.zeros(RANGE_BUCKETS, np.int64), 5) == [(0, RANGE_BUCKETS)]


@pytest.mark.parametrize("seed", range(5))
def test_a_cells_target_splits_over_its_ranges_exactly_and_within_their_passes(seed) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(200):
        supply = rng.integers(1, 10**rng.integers(1, 12), size=rng.integers(1, 40))
        passes = int(rng.integers(1, 5))
        target = int(rng.integers(0, passes * int(supply.sum()) + 1))
        if rng.random() < 0.3:
            target = passes * int(supply.sum())  # at the cap: rounding must not push a range over its own
        t = split_target(target, supply, passes)
        assert int(t.sum()) == target and (t >= 0).all() and (t <= passes * supply).all()
        share = target * (supply / supply.sum())
        assert np.abs(t - share).max() <= 1 + 1e-6 * target  # proportional to supply (largest remainder)


def test_uid_buckets_spread_one_partitions_consecutive_uids() -> None:
    uid = (np.int64(7) << 32) + np.arange(200_000, dtype=np.int64)
    b = uid_bucket(uid)
    assert b.min() >= 0 and b.max() < RANGE_BUCKETS
    counts = np.bincount(b, minlength=RANGE_BUCKETS)
    assert counts.min() > 0.7 * counts.mean() and counts.max() < 1.3 * counts.mean()
    assert np.array_equal(uid_bucket(uid[::-1])[::-1], b)  # a function of the uid alone


def _run(tmp: Path, monkeypatch, name: str, **overrides):
    from curate.demo import generate
    from curate.mix import interleave as interleave_mod
    from curate.mix import select as select_mod
    from curate.pipeline import parse_recipe
    from curate.runner import run
    from tests._demo import demo_recipe

    if not (tmp / "data").exists():
        generate(tmp / "data", seed=2, scale=0.3)
    monkeypatch.setattr(select_mod, "ROWS_PER_TASK", ROWS)
    monkeypatch.setattr(interleave_mod, "WINDOW_ITEMS", WINDOW)  # the windowed interleave's Ray path, not one task
    data = demo_recipe(tmp / "data", tmp / name, budget_tokens=60_000, **overrides)
    return data, run(parse_recipe(data, base_dir=tmp), quiet=True)


@pytest.fixture(scope="module")
def split_run(tmp_path_factory, ray_session):
    mp = pytest.MonkeyPatch()
    try:
        # validation sets too: the select tasks must leave out the held-out documents of their ranges
        yield _run(tmp_path_factory.mktemp("select"), mp, "run", validation={"tokens": 600},
                   shards={"format": "megatron", "max_tokens": 15_000})
    finally:
        mp.undo()


def _leaves(run_dir: Path) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for p in sorted((RunLayout(run_dir).mix_dir / "streams").glob("c*_r*.parquet")):
        c, r = map(int, re.match(r"c(\d+)_r(\d+)", p.stem).groups())
        out.setdefault(c, []).append(r)
    return out


def test_cells_split_into_ranges_still_hit_every_target_exactly(split_run) -> None:
    _data, res = split_run
    layout = RunLayout(res.run_dir)
    leaves = _leaves(res.run_dir)
    assert sum(len(r) > 1 for r in leaves.values()) >= 3, leaves  # several cells really are split
    plan = read_json(layout.mix_plan)
    order = pa.concat_tables([pq.read_table(layout.order(i)) for i in range(plan["n_shards"])])
    assert order["seq"].to_pylist() == list(range(order.num_rows)) and order.num_rows == plan["sequences"]
    # every member gives exactly its target; every value of a balanced member too
    keys = {(m["group"], m["source"], m["subset"]): m["key"] for m in plan["members"]["members"]}
    got: dict[str, int] = {}
    for r in order.group_by(["group", "source", "subset"]).aggregate([("tokens", "sum")]).to_pylist():
        key = keys.get((r["group"], r["source"], r["subset"] or None)) or keys[(r["group"], r["source"], None)]
        got[key] = got.get(key, 0) + r["tokens_sum"]
    assert got == {m["key"]: m["target"] for m in plan["members"]["members"] if m["target"]}
    bal = order.filter(pa.compute.is_valid(order["balance"]))
    by_value = {r["balance"]: r["tokens_sum"]
                for r in bal.group_by("balance").aggregate([("tokens", "sum")]).to_pylist()}
    scope = next(iter(plan["members"]["balance"].values()))
    want = {v: t for cells in scope["cells"].values() for v, t in cells.items()}
    assert by_value == want
    # each leaf gives exactly its own target; a cell's leaves split its target by supply, seeded per range
    planned = read_json(layout.mix_leaves)
    assert [(lf["cell"], lf["range"]) for lf in planned] == [(c, r) for c in sorted(leaves) for r in leaves[c]]
    for lf in planned:
        s = pq.read_table(layout.mix_stream(lf["cell"], lf["range"]), columns=["tokens"])["tokens"].to_numpy()
        assert int(s.sum()) == lf["tokens"] == lf["target"] and s.size == lf["sequences"]
    for c in leaves:
        cell = [lf for lf in planned if lf["cell"] == c]
        assert len({lf["seed"] for lf in cell}) == len(cell)
        assert [lf["lo"] for lf in cell[1:]] == [lf["hi"] for lf in cell[:-1]]
        want = want_cell = sum(lf["target"] for lf in cell)
        if cell[0]["value"] is None:
            want = next(m["target"] for m in plan["members"]["members"] if m["key"] == cell[0]["key"])
        else:
            want = next(cells[cell[0]["key"]][cell[0]["value"]] for cells in
                        (sp["cells"] for sp in plan["members"]["balance"].values()) if cell[0]["key"] in cells)
        assert want_cell == want
    # each leaf trims at most its one closing sequence, and every trim is in the plan
    for c, rs in leaves.items():
        for r in rs:
            s = pq.read_table(layout.mix_stream(c, r), columns=["trimmed"])
            assert sum(s["trimmed"].to_pylist()) <= 1
    assert len(plan.get("trims", [])) == sum(order["trimmed"].to_pylist())


def test_each_leaf_is_spread_over_its_whole_cell(split_run) -> None:
    """A cell's leaves are merged by share, not concatenated: every leaf reaches both ends of its cell's stream,
    so a document's repeats lie as far apart as with one range."""
    _data, res = split_run
    layout = RunLayout(res.run_dir)
    plan = read_json(layout.mix_plan)
    order = pa.concat_tables([pq.read_table(layout.order(i), columns=["seq", "uid", "chunk", "epoch"])
                              for i in range(plan["n_shards"])])
    checked = 0
    for c, rs in _leaves(res.run_dir).items():
        if len(rs) < 2:
            continue
        parts = [pq.read_table(layout.mix_stream(c, r), columns=["uid", "chunk", "epoch"]).append_column(
            "leaf", pa.array(np.full(pq.read_metadata(layout.mix_stream(c, r)).num_rows, r))) for r in rs]
        cell = order.join(pa.concat_tables(parts), ["uid", "chunk", "epoch"], join_type="inner").sort_by("seq")
        leaf = cell["leaf"].to_numpy()
        n = leaf.size
        for r in rs:
            at = np.flatnonzero(leaf == r)
            if at.size >= 4:
                assert at.min() < 0.25 * n and at.max() > 0.75 * n, (c, r, at.min(), at.max(), n)
                checked += 1
    assert checked >= 4


def test_the_order_was_interleaved_in_windows(split_run) -> None:
    """The split run's order came from the windowed Ray path: several windows per level, one order file per shard."""
    _data, res = split_run
    work = RunLayout(res.run_dir).mix_dir / "interleave"
    assert len(list(work.glob("order_w*.npy"))) > 1 and len(list(work.glob("group*_w*.npy"))) > 1
    assert len(list(work.glob("cell*_w*.npy"))) >= 1  # split cells merged their ranges
    n = sum(pq.read_metadata(p).num_rows for p in RunLayout(res.run_dir).mix_dir.glob("shard_*.order.parquet"))
    assert n == read_json(RunLayout(res.run_dir).mix_plan)["sequences"] > WINDOW


def test_split_run_passes_the_audit_share_and_window_checks(split_run) -> None:
    from curate import audit as audit_mod

    _data, res = split_run
    result = audit_mod.audit(res.run_dir)
    assert result["violations"] == [], result["violations"]
    assert result["stream"]["max_deviation_pp"] <= 1.0, result["stream"]


def test_selected_is_written_per_partition_and_accounts_for_every_kept_document(split_run) -> None:
    _data, res = split_run
    layout = RunLayout(res.run_dir)
    parts = read_json(layout.partitions_json)
    plan = read_json(layout.mix_plan)
    n_seq = sum(pq.read_metadata(layout.order(i)).num_rows for i in range(plan["n_shards"]))
    total, kept_after_dedup, held = 0, 0, 0
    for p in parts:
        sel = pq.read_table(layout.mix_selected(p["pid"]))
        uid = sel["uid"].to_numpy()
        assert (np.diff(uid) > 0).all() and ((uid >> 32) == p["pid"]).all()
        times, reason = sel["selected"].to_numpy(), sel["reason"].to_pylist()
        assert all((t > 0) == (r is None) for t, r in zip(times, reason))
        assert set(reason) - {None} <= {"downsampled", "not_in_mixture", "balance_min_tokens", "validation",
                                        "validation_near_duplicate"}
        held += reason.count("validation")
        total += int(times.sum())
        kept_after_dedup += pq.read_metadata(layout.mix_prepared(p["pid"])).num_rows
        assert sel.num_rows == pq.read_metadata(layout.mix_prepared(p["pid"])).num_rows
    assert total == n_seq
    assert held > 0 and held == len(pq.read_table(layout.mix_validation_order, columns=["uid"])["uid"].unique())
    led = {(e["stage"], e["source"], e["subset"]): e for e in read_json(layout.step_ledger("mix"))}
    assert sum(e["docs_in"] for (st, *_k), e in led.items() if st == "mix") == kept_after_dedup
    assert sum(e["counters"].get("sequences", 0) for (st, *_k), e in led.items() if st == "mix") == n_seq


@pytest.mark.slow
def test_one_and_two_workers_write_identical_bytes_with_split_cells(tmp_path, ray_session, monkeypatch) -> None:
    data, res = _run(tmp_path, monkeypatch, "a")
    assert sum(len(r) > 1 for r in _leaves(res.run_dir).values()) >= 3
    b = dict(data, output=str(tmp_path / "b"))
    f = tmp_path / "b.yaml"
    f.write_text(yaml.safe_dump(b, sort_keys=False))  # key order numbers the partitions
    code = (f"import sys; import curate.mix.select as s; s.ROWS_PER_TASK = {ROWS}; import curate.mix.interleave as i; "
            f"i.WINDOW_ITEMS = {WINDOW}; from curate.cli import main; "
            f"sys.exit(main(['run', {str(f)!r}, '--num-cpus', '1', '--quiet']))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=900,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr[-3000:]
    assert _leaves(tmp_path / "a") == _leaves(tmp_path / "b")

    def digests(d: Path) -> dict[str, str]:
        files = [p for sub in ("shards", "documents") for p in sorted((d / sub).iterdir())]
        files += sorted((d / "work" / "mix").glob("*.order.parquet")) + [d / "ledger.json"]
        return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}

    assert digests(tmp_path / "a") == digests(tmp_path / "b")
