"""curate.schema: the run-directory file schemas, checked against the files a demo run writes."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.layout import RunLayout
from curate.schema import (
    BALANCE_FIELD,
    DOCUMENT_STATUSES,
    LINEAGE_SCHEMA,
    ORDER_SCHEMA,
    QUARANTINE_SCHEMA,
    documents_problems,
    schema_problems,
)


def _files(audit_run):
    *_, res = audit_run
    return RunLayout(res.run_dir), res.manifest


def test_order_files_conform(audit_run) -> None:
    layout, manifest = _files(audit_run)
    n = len(manifest["shards"])
    assert n > 1
    for i in range(n):
        s = pq.read_schema(layout.order(i))
        assert schema_problems(s, ORDER_SCHEMA, optional=(BALANCE_FIELD,)) == [], layout.order(i)
        assert "balance" in s.names  # the demo recipe balances culturax by language


def test_lineage_files_conform(audit_run) -> None:
    layout, manifest = _files(audit_run)
    for e in manifest["shards"]:
        p = layout.shard_file(e["lineage"])
        assert schema_problems(pq.read_schema(p), LINEAGE_SCHEMA, optional=(BALANCE_FIELD,)) == [], p


def test_documents_and_quarantine_files_conform(audit_run) -> None:
    layout, _ = _files(audit_run)
    docs = sorted(layout.documents_dir.glob("p*.parquet"))
    assert docs
    statuses: set[str] = set()
    for p in docs:
        t = pq.read_table(p)
        assert documents_problems(t.schema) == [], p
        statuses |= set(pc.unique(t["status"]).to_pylist())
        quarantine = layout.part(p.stem).quarantine
        assert schema_problems(pq.read_schema(quarantine), QUARANTINE_SCHEMA) == [], quarantine
    assert statuses <= DOCUMENT_STATUSES and {"kept", "dropped"} <= statuses


def test_schema_problems_name_what_differs() -> None:
    s = pa.schema([("seq", pa.int64()), ("uid", pa.int32())])
    assert schema_problems(s, ORDER_SCHEMA)[0] == "column 1 is `uid` (int32), expected `uid` (int64)"
    assert any("`pid` (int64) is missing" in x for x in schema_problems(s, ORDER_SCHEMA))
    extra = pa.schema([*LINEAGE_SCHEMA, ("oops", pa.string())])
    assert schema_problems(extra, LINEAGE_SCHEMA) == ["unexpected column(s) ['oops']"]
    assert schema_problems(pa.schema([*LINEAGE_SCHEMA, BALANCE_FIELD]), LINEAGE_SCHEMA, optional=(BALANCE_FIELD,)) == []
    docs = pa.schema([*[(f.name, f.type) for f in pa.schema(ORDER_SCHEMA)][:2]])
    assert documents_problems(docs)
