"""Generic formats: ``jsonl``, ``parquet`` (columns mapped in the recipe) and ``text`` (one document per file).

jsonl / parquet
---------------
The recipe maps columns (keys for JSON lines): ``text_column`` (required), and optionally ``id_column``,
``url_column``, ``lang_column``, ``license_column``. A mapped column that the file lacks is a
:class:`~curate.errors.SchemaError` (the recipe asked for it); ``jsonl`` files may be compressed
(``.gz``, ``.zst``, ``.bz2``). ``format: jsonl`` always parses JSON lines and ``format: parquet`` always reads
Parquet, whatever the file name; ``hf://`` paths work with both.

=========== ===================================================================================================
text        ``text_column``
native_id   ``id_column`` cast to string (integers become their decimal text); null -> text-hash ``doc_id``
url         ``url_column``
lang        ``lang_column``
license     ``license_column``: a string is kept; a list of strings becomes a sorted, de-duplicated JSON list
meta        null: a generic file has no native fields the pipeline knows of
=========== ===================================================================================================

text
----
One document per file: the whole decompressed file, decoded as strict UTF-8 and kept as written, up to the
text-hygiene policy every reader applies (:func:`curate.sources.assemble.clean_text`: a leading BOM is removed, CRLF
and CR become LF, NUL is dropped). Paragraph splitting would invent document boundaries the source never had, so it
is not done; split files beforehand to get smaller documents. ``native_id`` is null (``doc_id`` is the text
hash, so a renamed file keeps its id) and ``meta`` is ``{"file": <path>}``. An empty file is zero records; a
whitespace-only file is one ``empty_text`` record; undecodable bytes make the file one ``invalid_utf8``
record (its detail gives the byte offset and line); a truncated compressed file is one ``truncated_file``
record. ``subset_by`` cannot be used (a text file has no columns).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from curate.recipe import SourceConfig
from curate.sources.base import Partition, ReadBatch, ReadContext, register
from curate.sources.arrow_utils import column, constant, json_objects, json_string_lists, to_string
from curate.sources.assemble import assemble
from curate.sources.decompress import BrokenStream, compression_of, iter_decompressed
from curate.sources.rawbatch import Col, Normalized, NormContext, RawBatch
from curate.sources.rows import read_one_document_file, read_rows


# ---------------------------------------------------------------------------- jsonl / parquet
def mapped_columns(src: SourceConfig) -> list[Col]:
    """The columns a generic source reads, from its recipe mapping (each mapped column is required)."""
    cols: list[Col] = [Col(src.text_column or "text", "text", required=True)]
    for name in (src.id_column, src.url_column, src.lang_column):
        if name and all(c.name != name for c in cols):
            cols.append(Col(name, "str", required=True))
    if src.license_column and all(c.name != src.license_column for c in cols):
        cols.append(Col(src.license_column, "license", required=True))
    return cols


def _license(arr: pa.Array) -> pa.Array:
    if pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type):
        return json_string_lists([arr])
    return to_string(arr)


def normalize_mapped(t: pa.Table, nctx: NormContext) -> Normalized:
    """Map the recipe-named columns to document columns (see the module docstring)."""
    src = nctx.src
    text_col = src.text_column or "text"
    return Normalized(
        text=column(t, text_col),
        text_field=text_col,
        native_id=column(t, src.id_column) if src.id_column else None,
        url=column(t, src.url_column) if src.url_column else None,
        lang=column(t, src.lang_column) if src.lang_column else None,
        license=_license(column(t, src.license_column)) if src.license_column else None,
        meta=None,
    )


@register("jsonl", file_kind="jsonl")
def read_jsonl(part: Partition, src: SourceConfig, ctx: ReadContext) -> Iterator[ReadBatch]:
    """Read JSON lines with the recipe's column mapping; see the module docstring."""
    yield from read_rows(part, src, ctx, columns=mapped_columns(src), text_col=src.text_column or "text",
                         normalize=normalize_mapped, kind="jsonl")


@register("parquet", row_groups=True, file_kind="parquet")
def read_parquet(part: Partition, src: SourceConfig, ctx: ReadContext) -> Iterator[ReadBatch]:
    """Read Parquet with the recipe's column mapping; see the module docstring."""
    yield from read_rows(part, src, ctx, columns=mapped_columns(src), text_col=src.text_column or "text",
                         normalize=normalize_mapped, kind="parquet")


# ---------------------------------------------------------------------------- text
def text_file_records(path: str) -> int:
    """Records of a ``text`` file: 0 when it (decompressed) is empty, else 1."""
    if os.path.getsize(path) == 0:
        return 0
    if compression_of(path) is None:
        return 1
    try:
        return 1 if any(len(c) for c in iter_decompressed(path, chunk_bytes=1 << 16)) else 0
    except BrokenStream:
        return 1


@register("text", one_doc=True)
def read_text(part: Partition, src: SourceConfig, ctx: ReadContext) -> Iterator[ReadBatch]:
    """Read one plain-text file as one document; see the module docstring."""
    data = read_one_document_file(part, src, what="document")
    if isinstance(data, ReadBatch):
        yield data
        return
    if data is None:
        return
    reject = detail = None
    try:
        text: str | None = data.decode("utf-8")
    except UnicodeDecodeError as e:
        text = None
        reject = pa.array(["invalid_utf8"], pa.string())
        line = data.count(b"\n", 0, e.start) + 1
        detail = pa.array([f"not valid UTF-8 at byte {e.start} (line {line}): {e.reason}"], pa.string())
    table = pa.table({"text": pa.array([text], pa.large_string())})
    raw = RawBatch(table=table, rows=np.zeros(1, np.int64), ordinals=np.zeros(1, np.int64), n_records=1)
    norm = Normalized(text=column(table, "text"), text_field="text", native_id=None,
                      meta=json_objects({"file": constant(1, part.path)}), reject=reject, reject_detail=detail)
    yield assemble(part, src, raw, norm, first_record=0)
