"""Run one reader over one file and check the reader contract on every batch (shared by the source tests)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from curate.recipe import SourceConfig
from curate.schema import DOC_SCHEMA, QUARANTINE_SCHEMA
from curate.sources.base import Partition, ReadContext


def src_config(fmt: str, **kw) -> SourceConfig:
    return SourceConfig(format=fmt, paths=["unused"], **kw)


def read_file(reader, path: Path, fmt: str, *, source: str, subset: str, pid: int, batch_rows: int = 4096,
              row_groups=None, **kw):
    """Return ``(batches, docs, quarantine)`` of ``reader`` over ``path``, asserting the contract per batch."""
    part = Partition(pid=pid, source=source, subset=subset, format=fmt, path=str(path), row_groups=row_groups)
    batches = list(reader(part, src_config(fmt, **kw), ReadContext(batch_rows=batch_rows)))
    for b in batches:
        assert b.docs.schema.equals(DOC_SCHEMA)
        assert b.quarantine.schema.equals(QUARANTINE_SCHEMA)
        assert b.records == b.docs.num_rows + b.quarantine.num_rows
    docs = pa.concat_tables([b.docs for b in batches]) if batches else DOC_SCHEMA.empty_table()
    quar = pa.concat_tables([b.quarantine for b in batches]) if batches else QUARANTINE_SCHEMA.empty_table()
    return batches, docs, quar
