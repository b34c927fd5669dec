"""The row-reader driver: opening, decoding, batching, normalizing and assembling a row-oriented partition.

Every row-oriented format (the-stack, CulturaX, MADLAD, RefinedWeb, open-web-math, proof-pile-2, generic
jsonl/parquet, and ``hf://`` datasets) goes through one driver, :func:`read_rows`:

1. *Raw batches* (:class:`~curate.sources.rawbatch.RawBatch`). A file is read as native Arrow columns, projected
   to the columns the format declares (:class:`~curate.sources.rawbatch.Col`). Parquet is read here with
   ``ParquetFile.iter_batches`` (whole file or a row-group range, :func:`parquet_raw`); JSON lines are
   decompressed transparently (:mod:`curate.sources.decompress`) and parsed in blocks of ``ctx.batch_rows``
   lines (:mod:`curate.sources.jsonl`); ``hf://`` datasets stream through :mod:`curate.sources.hf`
   (:func:`hf_raw`). Whether a native-format file is Parquet is decided by its magic bytes (``PAR1``), not its
   name, and before a file is read it is sniffed (:func:`curate.sources.decompress.file_type_problem`): a file
   that is not what its name says is one quarantine record (reasons: :mod:`curate.sources.rawbatch`).
2. *Normalizing.* The format's ``normalize(table, nctx)`` maps native columns to ``text``, ``native_id``,
   ``url``, ``lang``, ``license`` and ``meta`` (:class:`~curate.sources.rawbatch.Normalized`) with
   ``pyarrow.compute`` and polars expressions over the whole batch; it may reject rows with a reason code
   (``missing_content``).
3. *Assembling* (:mod:`curate.sources.assemble`): null and empty texts are quarantined, the text-hygiene policy
   applied, ids and sizes computed.

:func:`read_one_document_file` reads a whole one-document file (formats ``text``, ``gutenberg-txt``) with the
same file-type checks.

Parquet
-------
A file that is not readable Parquet, or whose data breaks off at row N, is one ``corrupt_file`` record (for the
whole file, or its rest) with ``on_error: quarantine``, an :class:`~curate.errors.InputError` otherwise.
Files are read single-threaded (``use_threads=False``): Ray already runs one task per core.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curate.errors import InputError, SchemaError
from curate.recipe import HF_PREFIX
from curate.schema import empty_docs
from curate.sources.assemble import assemble
from curate.sources.base import Partition, ReadBatch, ReadContext
from curate.sources.decompress import BrokenStream, compression_of, file_type_problem, is_parquet, read_all
from curate.sources.jsonl import jsonl_raw
from curate.sources.rawbatch import (
    Col,
    NormContext,
    Normalizer,
    RawBatch,
    check_table_schema,
    complete_columns,
    quarantine_from_records,
    quarantine_record,
    whole_file_batch,
)

if TYPE_CHECKING:
    from curate.recipe import SourceConfig


# ---------------------------------------------------------------------------- raw readers: Parquet
def open_parquet(path: str) -> pq.ParquetFile:
    """Open a Parquet file; an unreadable one is an ``InputError`` naming it."""
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        msg = f"cannot read Parquet file ({e}); re-download or re-export it"
        raise InputError(msg, file=path) from None


def parquet_raw(part: Partition, cols: list[Col], *, batch_rows: int,
                on_error: str = "error") -> Iterator[RawBatch]:
    """Raw batches of a Parquet partition (whole file or its row-group range).

    A file whose footer cannot be read, or whose data breaks off at row N, is an ``InputError`` with
    ``on_error: error``; with ``quarantine`` it becomes one ``corrupt_file`` record (for the whole file, or for
    everything from row N on: the rows before it are read).
    """
    try:
        pf = open_parquet(part.path)
    except InputError as e:
        if on_error == "error":
            raise
        msg = str(e).split(": ", 1)[-1]
        yield whole_file_batch(part, cols, quarantine_record(part, row=None, field=None, reason="corrupt_file",
                                                             msg=msg, nbytes=part.nbytes), line_based=False)
        return
    present = check_table_schema(pf.schema_arrow, cols, part.path)
    md = pf.metadata
    groups = list(range(md.num_row_groups) if part.row_groups is None else range(*part.row_groups))
    row = sum(md.row_group(i).num_rows for i in range(groups[0])) if groups else 0
    names = [c.name for c in present]
    try:
        for rb in pf.iter_batches(batch_size=batch_rows, row_groups=groups, columns=names, use_threads=False):
            n = rb.num_rows
            if n == 0:
                continue
            table = complete_columns(pa.Table.from_batches([rb]), cols)
            yield RawBatch(table=table, rows=np.arange(row, row + n, dtype=np.int64),
                           ordinals=np.arange(n, dtype=np.int64), n_records=n)
            row += n
    except (pa.ArrowException, OSError) as e:
        msg = f"cannot read Parquet file at row {row} ({e}); re-download or re-export it"
        if on_error == "error":
            raise InputError(msg, file=part.path) from None
        yield whole_file_batch(part, cols, quarantine_record(
            part, row=row, field=None, reason="corrupt_file", nbytes=0,
            msg=f"{msg}; the {row:,} row(s) before it were read, the rest of the row groups is lost"),
            line_based=False)


# ---------------------------------------------------------------------------- raw readers: Hugging Face
def hf_raw(part: Partition, cols: list[Col], *, batch_rows: int) -> Iterator[RawBatch]:
    """Raw batches of an ``hf://`` partition (see :mod:`curate.sources.hf`)."""
    from curate.sources import hf

    row = 0
    checked: list[Col] | None = None
    for table in hf.iter_tables(part.path, batch_rows=batch_rows):
        if checked is None:
            checked = check_table_schema(table.schema, cols, part.path)
        n = table.num_rows
        if n == 0:
            continue
        table = complete_columns(table.select([c.name for c in checked]), cols)
        yield RawBatch(table=table, rows=np.arange(row, row + n, dtype=np.int64),
                       ordinals=np.arange(n, dtype=np.int64), n_records=n)
        row += n


# ---------------------------------------------------------------------------- driver
def file_kind(part: Partition, *, default: str = "auto") -> str:
    """``hf``, ``parquet`` or ``jsonl``: how to read the partition's file."""
    if part.path.startswith(HF_PREFIX):
        return "hf"
    if default != "auto":
        return default
    if compression_of(part.path) is None and os.path.getsize(part.path) >= 4 and is_parquet(part.path):
        return "parquet"
    return "jsonl"


def with_subset_col(cols: list[Col], src: SourceConfig) -> list[Col]:
    """Add ``src.subset_by``'s column (required) to ``cols`` when the source sets it."""
    if src.subset_by and all(c.name != src.subset_by for c in cols):
        return [*cols, Col(src.subset_by, "str", required=True)]
    return cols


def raw_batches(part: Partition, src: SourceConfig, cols: list[Col], text_col: str, *, batch_rows: int,
                kind: str = "auto") -> Iterator[RawBatch]:
    """Dispatch to the Parquet, JSON-lines or Hugging Face raw reader."""
    if part.path.startswith(HF_PREFIX):
        yield from hf_raw(part, cols, batch_rows=batch_rows)
        return
    try:
        size = os.path.getsize(part.path)
        problem = file_type_problem(part.path, kind) if size else None
    except OSError as e:
        msg = f"cannot read file ({e})"
        raise InputError(msg, file=part.path) from None
    if size == 0:
        return
    if problem is not None:
        reason, msg = problem
        if src.on_error == "error":
            raise InputError(f"{reason}: {msg}", file=part.path)
        yield whole_file_batch(part, cols, quarantine_record(part, row=None, field=None, reason=reason, msg=msg,
                                                             nbytes=size))
        return
    k = file_kind(part, default=kind)
    if k == "parquet":
        yield from parquet_raw(part, cols, batch_rows=batch_rows, on_error=src.on_error)
    else:
        yield from jsonl_raw(part, cols, text_col, batch_rows=batch_rows)


def read_rows(part: Partition, src: SourceConfig, ctx: ReadContext, *, columns: list[Col], text_col: str,
              normalize: Normalizer, kind: str = "auto") -> Iterator[ReadBatch]:
    """Read a row-oriented partition and yield normalized :class:`ReadBatch` objects.

    Parameters
    ----------
    part, src, ctx
        The reader contract's arguments (:mod:`curate.sources.base`).
    columns
        Native columns the format reads; ``src.subset_by``'s column is added when set.
    text_col
        Name of the text column among ``columns``.
    normalize
        The format's mapping from native columns to document columns.
    kind
        ``auto`` (Parquet by magic bytes, else JSON lines), ``parquet`` or ``jsonl``.
    """
    cols = with_subset_col(columns, src)
    nctx = NormContext(part=part, src=src, ctx=ctx)
    first = 0
    for raw in raw_batches(part, src, cols, text_col, batch_rows=ctx.batch_rows, kind=kind):
        if raw.broken is not None and src.on_error == "error":
            raise InputError(raw.broken.message(), file=part.path, line=raw.broken.line + 1)
        norm = normalize(raw.table, nctx)
        batch = assemble(part, src, raw, norm, first_record=first)
        first += raw.n_records
        if batch.records:
            yield batch


# ---------------------------------------------------------------------------- one-document files
def read_one_document_file(part: Partition, src: SourceConfig, *, what: str) -> bytes | ReadBatch | None:
    """Read a whole one-document file (formats ``text``, ``gutenberg-txt``), decompressed.

    Returns the bytes; ``None`` for an empty file (zero records); or, for a truncated/corrupt compressed file
    with ``on_error: quarantine``, a ``ReadBatch`` holding one ``truncated_file`` record ("the ``what`` is
    incomplete"). Raises ``InputError`` naming the file (and line) otherwise, and ``SchemaError`` when the
    source sets ``subset_by`` (such files have no columns).
    """
    if src.subset_by:
        msg = (f"format `{part.format}` has no columns, so `subset_by` cannot be used; "
               "declare `subsets:` with paths instead")
        raise SchemaError(msg, file=part.path, column=src.subset_by)
    try:
        size = os.path.getsize(part.path)
        if size == 0:
            return None
        problem = file_type_problem(part.path, "text")
        if problem is not None:
            reason, msg = problem
            if src.on_error == "error":
                raise InputError(f"{reason}: {msg}", file=part.path)
            rec = quarantine_record(part, row=None, field=None, reason=reason, nbytes=size, msg=msg)
            return ReadBatch(docs=empty_docs(), quarantine=quarantine_from_records([rec]), records=1)
        data = read_all(part.path)
    except BrokenStream as e:
        if src.on_error == "error":
            raise InputError(e.message(), file=part.path, line=e.line + 1) from None
        rec = quarantine_record(part, row=0, field=None, reason="truncated_file", nbytes=e.partial_bytes,
                                msg=f"{e.message()}; the {what} is incomplete ({e.loss()})")
        return ReadBatch(docs=empty_docs(), quarantine=quarantine_from_records([rec]), records=1)
    except OSError as e:
        msg = f"cannot read file ({e})"
        raise InputError(msg, file=part.path) from None
    return data or None
