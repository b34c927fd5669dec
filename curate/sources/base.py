"""Source reader contract: partitions in, normalized document batches (plus quarantine records) out.

A *partition* is the unit of parallel work and of resume: one input file (or, for large Parquet files, a
range of row groups). Partitions are numbered (``pid``) over the recipe's sources in order and their sorted
file lists, so numbering is identical across runs with the same inputs.

A reader is a generator registered per ``format``::

    @register("culturax", row_groups=True)
    def read_culturax(part: Partition, src: SourceConfig, ctx: ReadContext) -> Iterator[ReadBatch]: ...

``register`` carries what the format can do (:class:`FormatInfo`: code, honours row-group ranges, one document
per file, the file kind), so no table elsewhere lists formats: a plugin's reader module is all a new format needs.

It yields ``ReadBatch`` objects whose ``docs`` follow ``curate.schema.DOC_SCHEMA`` exactly (same column order
and types) and whose ``quarantine`` follows ``QUARANTINE_SCHEMA``. Every input record ends in exactly one of the
two: ``records == docs.num_rows + quarantine.num_rows`` for every batch. ``uid`` is ``pid << 32 | record_index``
where ``record_index`` counts input records of the partition from 0, quarantined ones included, so uids are
stable and unique.

Per-record problems (null/empty text, invalid UTF-8, a malformed JSON line, a wrong-typed value) become
quarantine records when ``src.on_error == "quarantine"`` (the default), and raise ``InputError`` naming the
file, line/row and field when it is ``"error"``. Whole-file problems (unreadable file, missing required
column) raise ``InputError``/``SchemaError`` regardless.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pyarrow as pa

from typing import TYPE_CHECKING, Literal

from curate.schema import DOC_SCHEMA, QUARANTINE_SCHEMA

if TYPE_CHECKING:
    from curate.recipe import SourceConfig


@dataclass(frozen=True)
class Partition:
    """One unit of input work. ``row_groups`` is ``(start, stop)`` for a slice of a Parquet file, else None."""

    pid: int
    source: str
    subset: str
    format: str
    path: str
    nbytes: int = 0
    row_groups: tuple[int, int] | None = None

    @property
    def key(self) -> str:
        """File-name-safe partition key used for work files: ``p000012``."""
        return f"p{self.pid:06d}"


@dataclass
class ReadContext:
    """What a reader needs besides the partition and its source config."""

    batch_rows: int = 4096
    resolve_path: Callable[[str], str] = field(default=lambda p: p)


@dataclass
class ReadBatch:
    """Documents and quarantine records of a run of input records.

    ``counters`` are added to the partition's ``ingest`` ledger counters (e.g. ``text_bom_stripped``: documents
    whose text the hygiene policy of :func:`curate.sources.assemble.clean_text` changed, by fix).
    """

    docs: pa.Table
    quarantine: pa.Table
    records: int
    counters: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        assert self.docs.schema.equals(DOC_SCHEMA, check_metadata=False), (
            f"reader produced docs with schema {self.docs.schema}, expected DOC_SCHEMA"
        )
        assert self.quarantine.schema.equals(QUARANTINE_SCHEMA, check_metadata=False)
        assert self.records == self.docs.num_rows + self.quarantine.num_rows, "reader lost or invented records"


Reader = Callable[["Partition", "SourceConfig", ReadContext], Iterator[ReadBatch]]
READERS: dict[str, Reader] = {}


@dataclass(frozen=True)
class FormatInfo:
    """What a registered format can do.

    ``code``: its documents are source code (language ID is skipped unless ``langid.annotate_code``, and an
    unknown licence is dropped by default). ``row_groups``: the reader honours ``Partition.row_groups``, so a
    large Parquet file is split into row-group ranges, and ``curate plan`` counts its records from the
    footer. ``one_doc``: every file is one document. ``file_kind``: what the reader's files are (``auto``:
    Parquet or JSON lines, by content; ``jsonl``, ``parquet``; ``other``: a format of its own, counted by reading).
    """

    name: str
    code: bool = False
    row_groups: bool = False
    one_doc: bool = False
    file_kind: Literal["auto", "jsonl", "parquet", "other"] = "other"


FORMATS: dict[str, FormatInfo] = {}


def register(fmt: str, *, code: bool = False, row_groups: bool = False, one_doc: bool = False,
             file_kind: Literal["auto", "jsonl", "parquet", "other"] | None = None) -> Callable[[Reader], Reader]:
    """Register a reader for ``format: fmt`` with its capabilities (:class:`FormatInfo`).

    ``file_kind`` defaults to ``auto`` for a ``row_groups`` reader and ``other`` otherwise.
    """
    kind = file_kind or ("auto" if row_groups else "other")
    info = FormatInfo(fmt, code=code, row_groups=row_groups, one_doc=one_doc, file_kind=kind)

    def deco(fn: Reader) -> Reader:
        READERS[fmt] = fn
        FORMATS[fmt] = info
        return fn

    return deco
