"""Partition planning and record counting (curate/sources/__init__.py)."""

from __future__ import annotations

import itertools

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import curate.sources as sources
from curate.errors import RecipeError
from curate.pipeline import parse_recipe
from curate.sources import count_records, plan_partitions, read_partition
from curate.sources.base import ReadContext
from tests.sources import write_bytes, write_lines


def _recipe(tmp_path, srcs: dict, mixture: dict):
    return parse_recipe({"name": "t", "budget_tokens": 1000, "sources": srcs,
                         "mixture": {"all": {"share": 1.0, "sources": mixture}}}, base_dir=tmp_path,
                        check_paths=False)


def test_partitions_are_numbered_by_source_subset_and_sorted_file(tmp_path):
    (tmp_path / "web").mkdir()
    (tmp_path / "code").mkdir()
    for name in ("b.jsonl", "a.jsonl", "c.jsonl.gz"):
        write_lines(tmp_path / "web" / name, [{"text": "x"}, {"text": "y"}])
    pq.write_table(pa.table({"content": ["c"], "max_stars_repo_licenses": [["MIT"]]}), tmp_path / "code" / "p.parquet")
    r = _recipe(tmp_path, {
        "web": {"format": "culturax", "subsets": {"z": {"paths": ["web/c.*"]}, "a": {"paths": ["web/[ab].jsonl"]}}},
        "code": {"format": "the-stack-v1", "paths": ["code/*.parquet", "code/p.parquet"]},
    }, {"web": 1.0, "code": 1.0})
    parts = plan_partitions(r)
    got = [(p.pid, p.source, p.subset, p.path.rsplit("/", 1)[1]) for p in parts]
    assert got == [(0, "web", "z", "c.jsonl.gz"), (1, "web", "a", "a.jsonl"), (2, "web", "a", "b.jsonl"),
                   (3, "code", "", "p.parquet")]  # two globs naming one file give one partition
    assert parts[1].nbytes == (tmp_path / "web" / "a.jsonl").stat().st_size
    assert [count_records(p, r.sources[p.source]) for p in parts] == [2, 2, 2, 1]


def test_glob_matching_nothing_names_the_yaml_path(tmp_path):
    r = _recipe(tmp_path, {"web": {"format": "culturax", "paths": ["nothing/*.parquet"]}}, {"web": 1.0})
    with pytest.raises(RecipeError, match=r"`sources\.web\.paths\[0\]`: path glob 'nothing/\*\.parquet' matches no"):
        plan_partitions(r)


def test_large_parquet_splits_into_row_group_ranges_read_once_each(tmp_path, monkeypatch):
    p = tmp_path / "big.parquet"
    t = pa.table({"text": [f"document {i} " + "z" * (i % 50) for i in range(1000)]})
    pq.write_table(t, p, row_group_size=100, compression="none")
    monkeypatch.setattr(sources, "PARQUET_SPLIT_BYTES", 5000)
    r = _recipe(tmp_path, {"w": {"format": "culturax", "paths": ["big.parquet"]}}, {"w": 1.0})
    parts = plan_partitions(r)
    assert len(parts) > 1 and parts == plan_partitions(r)
    assert parts[0].row_groups[0] == 0 and parts[-1].row_groups[1] == 10
    assert all(a.row_groups[1] == b.row_groups[0] for a, b in itertools.pairwise(parts))
    texts, uids = [], []
    for part in parts:
        batches = list(read_partition(part, r.sources["w"], ReadContext(batch_rows=64)))
        assert sum(b.records for b in batches) == count_records(part, r.sources["w"])
        texts += [x for b in batches for x in b.docs.column("text").to_pylist()]
        uids += [x for b in batches for x in b.docs.column("uid").to_pylist()]
    assert texts == t.column("text").to_pylist() and len(set(uids)) == 1000
    # quarantine rows name the row of the file, not of the range
    pq.write_table(pa.table({"text": ["a"] * 150 + [""] + ["b"] * 49}), p, row_group_size=100)
    (batch,) = read_partition(sources.Partition(pid=0, source="w", subset="", format="culturax", path=str(p),
                                                row_groups=(1, 2)), r.sources["w"], ReadContext())
    assert batch.quarantine.column("row").to_pylist() == [150]


def test_count_records_of_jsonl_counts_non_blank_lines_and_a_truncation(tmp_path):
    r = _recipe(tmp_path, {"w": {"format": "culturax", "paths": ["*.jsonl*"]}}, {"w": 1.0})
    write_bytes(tmp_path / "a.jsonl", b'{"text": "x"}\n\n  \n{"text": "y"}')
    raw = write_bytes(tmp_path / "b.jsonl.gz", b'{"text": "x"}\n' * 20000).read_bytes()
    (tmp_path / "b.jsonl.gz").write_bytes(raw[: len(raw) // 2])
    parts = plan_partitions(r)
    for part in parts:
        read_total = sum(b.records for b in read_partition(part, r.sources["w"], ReadContext()))
        assert count_records(part, r.sources["w"]) == read_total
    assert count_records(parts[0], r.sources["w"]) == 2
