"""Helpers shared by the source-reader tests: build a partition, read it whole, write fixtures."""

from __future__ import annotations

import bz2
import gzip
import json
from pathlib import Path

import pyarrow as pa

from curate.recipe import SourceConfig
from curate.schema import DOC_SCHEMA, QUARANTINE_SCHEMA
from curate.sources import read_partition
from curate.sources.base import Partition, ReadContext


#: the ``jsonl`` format's column settings of the fixtures
JSONL = {"text_column": "text", "id_column": "id"}


def reasons(q: pa.Table) -> list[str]:
    """The quarantine reasons of ``q``, in order."""
    return q.column("reason").to_pylist()


def src_config(fmt: str, **kw) -> SourceConfig:
    """A source entry of format ``fmt`` (paths are not used by the readers)."""
    return SourceConfig(format=fmt, paths=["unused"], **kw)


def partition(path: str | Path, fmt: str, *, pid: int = 0, source: str = "src", subset: str = "",
              row_groups: tuple[int, int] | None = None) -> Partition:
    return Partition(pid=pid, source=source, subset=subset, format=fmt, path=str(path), row_groups=row_groups)


def read(path: str | Path, fmt: str, *, pid: int = 0, batch_rows: int = 4096, subset: str = "",
         row_groups: tuple[int, int] | None = None, ctx: ReadContext | None = None,
         **src_kw) -> tuple[pa.Table, pa.Table, int]:
    """Read a whole partition; check the per-batch conservation rule; return ``(docs, quarantine, records)``."""
    part = partition(path, fmt, pid=pid, subset=subset, row_groups=row_groups)
    src = src_config(fmt, **src_kw)
    batches = list(read_partition(part, src, ctx or ReadContext(batch_rows=batch_rows)))
    for b in batches:
        assert b.records == b.docs.num_rows + b.quarantine.num_rows
    docs = pa.concat_tables([DOC_SCHEMA.empty_table(), *[b.docs for b in batches]])
    quarantine = pa.concat_tables([QUARANTINE_SCHEMA.empty_table(), *[b.quarantine for b in batches]])
    records = sum(b.records for b in batches)
    assert records == docs.num_rows + quarantine.num_rows
    return docs, quarantine, records


def write_lines(path: Path, lines: list[bytes | str | dict]) -> Path:
    """Write JSON lines (dicts are dumped, str/bytes written as they are), compressed by the suffix."""
    raw = b"".join(
        (json.dumps(x).encode() if isinstance(x, dict) else x.encode() if isinstance(x, str) else x) + b"\n"
        for x in lines
    )
    return write_bytes(path, raw)


def write_bytes(path: Path, raw: bytes) -> Path:
    """Write ``raw`` to ``path``, compressed according to its suffix (.gz, .zst, .bz2)."""
    if path.suffix == ".gz":
        raw = gzip.compress(raw)
    elif path.suffix == ".zst":
        import zstandard

        raw = zstandard.ZstdCompressor().compress(raw)
    elif path.suffix == ".bz2":
        raw = bz2.compress(raw, compresslevel=1)  # 100 kB blocks: a cut file still has whole blocks
    path.write_bytes(raw)
    return path
