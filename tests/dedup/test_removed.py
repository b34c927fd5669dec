"""Tests of curate.dedup.removed: one removal file per input file (sorted by uid, only that file's documents),
read_removed's partition windows, and the summary summed from per-file aggregates equal to the summary of
all removals at once."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate import dedup
from curate.dedup.files import EXACT
from curate.recipe import DedupConfig, MinHashConfig
from tests.test_dedup import _write_parts, planted_corpus


def _reference_summary(t: pa.Table) -> dict:
    """The summary of one table of all removals (what one merge task computed before removals were per file)."""
    summary = {"removed_exact": 0, "removed_near": 0, "matrix": {}, "per_source": {}}
    for row in t.group_by(["source", "dup_of_source"]).aggregate([("uid", "count")]).to_pylist():
        summary["matrix"].setdefault(row["source"], {})[row["dup_of_source"]] = row["uid_count"]
    agg = t.group_by(["source", "reason"]).aggregate([("uid", "count"), ("nbytes", "sum"), ("tokens", "sum")])
    for row in sorted(agg.to_pylist(), key=lambda r: (r["source"], r["reason"])):
        ps = summary["per_source"].setdefault(row["source"], {"docs": 0, "bytes": 0, "tokens": 0, "by_reason": {}})
        docs, nb, tk = row["uid_count"], row["nbytes_sum"] or 0, row["tokens_sum"] or 0
        ps["docs"] += docs
        ps["bytes"] += nb
        ps["tokens"] += tk
        ps["by_reason"][row["reason"]] = {"docs": docs, "bytes": nb, "tokens": tk}
        summary["removed_exact" if row["reason"] == EXACT else "removed_near"] += docs
    summary["matrix"] = {k: dict(sorted(v.items())) for k, v in sorted(summary["matrix"].items())}
    return summary


@pytest.fixture(scope="module")
def finished(ray_session, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("removed")
    docs = planted_corpus(bases=12, distractors=10, seed=9)
    docs += [("wiki", "wiki:" + d[4:], t.upper()) for _, d, t in docs[::5]]
    files = sorted(_write_parts(tmp, docs, parts=4, minhash=MinHashConfig()))
    s = dedup.find_duplicates(files, cfg=DedupConfig(minhash=MinHashConfig()), priority={"wiki": 0, "web": 1},
                              out_dir=str(tmp / "d"), num_buckets=3)
    return tmp / "d", files, s


def test_one_sorted_file_per_input_file_holding_only_its_documents(finished):
    out, files, s = finished
    assert not (out / "removed.parquet").exists()
    index = json.loads((out / "removed" / "_index.json").read_text())["files"]
    assert [e["file"] for e in index] == [f"f{i:06d}.parquet" for i in range(len(files))]
    total = 0
    for i, e in enumerate(index):
        t = pq.read_table(out / "removed" / e["file"])
        assert t.schema == dedup.REMOVED_SCHEMA
        uids = t["uid"].to_pylist()
        assert uids == sorted(uids) and e["rows"] == len(uids)
        mine = set(pq.read_table(files[i], columns=["uid"])["uid"].to_pylist())
        assert set(uids) <= mine, "a removal is filed under another input file"
        if uids:
            assert (e["uid_min"], e["uid_max"]) == (uids[0], uids[-1])
        total += len(uids)
    assert total == s["removed_exact"] + s["removed_near"] > 0
    assert s["removed_exact"] > 0 and s["removed_near"] > 0


def test_summary_from_per_file_parts_equals_the_summary_of_all_removals(finished):
    out, _, s = finished
    want = _reference_summary(dedup.read_removed(out))
    assert {k: s[k] for k in want} == want
    assert json.dumps({k: s[k] for k in want}) == json.dumps(want)  # key order too (done.json is byte-stable)


def test_read_removed_windows_columns_and_uids(finished, tmp_path):
    out, files, _ = finished
    every = dedup.read_removed(out)
    assert every["uid"].to_pylist() == sorted(every["uid"].to_pylist())
    # the whole folder reads as one dataset too (the index is skipped as a _-file)
    assert pq.read_table(out / "removed").sort_by("uid").equals(every)
    for pid in range(len(files)):
        got = dedup.read_removed(out, pids=[pid], columns=["uid", "reason"])
        u = every["uid"].to_numpy()
        want = every.filter(pa.array((u >= pid << 32) & (u < (pid + 1) << 32))).select(["uid", "reason"])
        assert got.equals(want)
    some = every["uid"].to_pylist()[::3]
    assert dedup.read_removed(out, uids=some, columns=["dup_of"]).num_rows == len(some)
    assert dedup.read_removed(out, pids=[99], columns=["uid"]).num_rows == 0
    assert dedup.has_removed(out) and not dedup.has_removed(tmp_path)
    with pytest.raises(FileNotFoundError, match="dedup step has not finished"):
        dedup.read_removed(tmp_path)
