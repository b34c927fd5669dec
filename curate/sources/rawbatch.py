"""What a raw reader yields before a format normalizes it, and the quarantine records of bad input.

A raw reader (Parquet and ``hf://`` in :mod:`curate.sources.rows`, JSON lines in :mod:`curate.sources.jsonl`)
reads the native columns a format declares (:class:`Col`) into :class:`RawBatch` objects: an Arrow table of the
records that could be read, their file rows or lines, and a quarantine record for each one that could not. The
format's normalizer (:data:`Normalizer`) maps the native columns to document columns (:class:`Normalized`) with
the context of :class:`NormContext`; :mod:`curate.sources.assemble` turns both into the reader contract's
``ReadBatch`` (:mod:`curate.sources.base`).

Quarantine records follow ``QUARANTINE_SCHEMA`` (:mod:`curate.schema`); :func:`quarantine_record` builds one,
whose ``detail`` names the file, the line (1-based, JSON lines) or row (0-based, Parquet) and the field.
With ``on_error: error`` the first record of a batch is raised instead (:func:`raise_for`). The reason codes of
every reader:

================ ==================================================================================
reason           when
================ ==================================================================================
malformed_json   the line is not valid JSON, or not a JSON object (detail: line number and column)
invalid_utf8     a projected string field holds bytes that are not UTF-8 or an unpaired ``\\u`` surrogate
                 (JSON lines); the text column holds bytes that are not UTF-8 (Parquet: Arrow does not
                 validate strings when reading Parquet, so the reader does)
wrong_type       the text field holds a non-string value (a number, list, object)
null_text        the text field is null or absent
empty_text       the text is empty or whitespace only
truncated_file   a compressed stream ends early or is corrupt (one record for everything after the break;
                 its detail says how many lines were read and estimates the lines lost), or a Parquet file
                 has no footer
wrong_file_type  the file is not what its name says (one record for the whole file)
corrupt_file     a Parquet file cannot be decoded (one record for the whole file, or its rest)
================ ==================================================================================

A Parquet or ``hf://`` table is checked against the declared columns once per file (:func:`check_table_schema`):
a missing required column or a text column that is not a string type is a whole-file
:class:`~curate.errors.SchemaError` naming the file, the column and the columns found, whatever ``on_error``
says.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa

from curate.errors import InputError, SchemaError
from curate.schema import QUARANTINE_SCHEMA
from curate.sources.arrow_utils import is_stringlike
from curate.sources.base import Partition, ReadContext
from curate.sources.decompress import BrokenStream

if TYPE_CHECKING:
    from curate.recipe import SourceConfig


ColKind = Literal["text", "str", "list", "license", "json", "any"]


# ---------------------------------------------------------------------------- column specs and batches
@dataclass(frozen=True)
class Col:
    """A native column a format reads.

    ``kind``: ``text`` (the document text; must be a string), ``str`` (scalar cast to string: ids, urls,
    languages), ``list`` (list of strings), ``license`` (a license string, kept, or a list of ids, turned
    into a sorted JSON list), ``json`` (an object: a struct in Parquet, an object or a JSON string in JSON
    lines; normalized to a JSON string) or ``any`` (kept with its native type, for ``meta``).
    ``jtype`` is the Arrow type the JSON-lines fast path parses the key as; a ``json`` or ``any`` column
    without a ``jtype`` turns the fast path off for the file (a ``json`` column with ``jtype=pa.string()``
    takes the fast path while the values are JSON strings, and falls back where one is an object).
    """

    name: str
    kind: ColKind = "str"
    required: bool = False
    jtype: pa.DataType | None = None

    def json_type(self) -> pa.DataType | None:
        """The type the JSON-lines fast path parses this key as (None: no fast path for the file)."""
        if self.jtype is not None:
            return self.jtype
        return {"text": pa.string(), "str": pa.string(), "license": pa.string(),
                "list": pa.list_(pa.string())}.get(self.kind)


@dataclass
class RawBatch:
    """Native columns of a run of records, plus records that failed before normalizing.

    ``rows`` is the 0-based file row (Parquet) or line (JSON lines) of each table row; ``ordinals`` its
    record index relative to the first record of this batch; ``n_records`` counts table rows and
    ``quarantine`` entries. ``broken`` is set on the batch that reports a truncated stream.
    """

    table: pa.Table
    rows: np.ndarray
    ordinals: np.ndarray
    quarantine: list[dict] = field(default_factory=list)
    n_records: int = 0
    line_based: bool = False
    broken: BrokenStream | None = None


@dataclass
class NormContext:
    """What a normalizer may look at besides the batch: the file, the partition and the source config."""

    part: Partition
    src: SourceConfig
    ctx: ReadContext

    @property
    def file(self) -> str:
        """The partition's file (or ``hf://`` path)."""
        return self.part.path


@dataclass
class Normalized:
    """Document columns a format derives from a raw batch; every array has the batch's length.

    ``license`` may be one string for the whole batch. ``reject`` holds a reason code per row (null = keep)
    and ``reject_detail`` its human text, for rows the format itself refuses (``missing_content``).
    ``text_field`` names the native text column for quarantine records.
    """

    text: pa.Array
    text_field: str
    native_id: pa.Array | None = None
    url: pa.Array | None = None
    lang: pa.Array | None = None
    license: pa.Array | str | None = None
    meta: pa.Array | None = None
    reject: pa.Array | None = None
    reject_detail: pa.Array | None = None


Normalizer = Callable[[pa.Table, NormContext], Normalized]


# ---------------------------------------------------------------------------- quarantine records
def quarantine_record(part: Partition, *, row: int | None, field: str | None, reason: str, msg: str,
                      nbytes: int = 0, subset: str | None = None, line_based: bool = False) -> dict:
    """One ``QUARANTINE_SCHEMA`` record for ``part``; ``detail`` reads ``<file>, line 3, field `text`: <msg>``.

    Keys starting with ``_`` (the bare message, the ordering key) are dropped when the table is built.
    """
    loc = where(part.path, row, line_based=line_based)
    if field:
        loc += f", field `{field}`"
    return {"source": part.source, "subset": part.subset if subset is None else subset, "file": part.path,
            "row": row, "field": field, "reason": reason, "detail": f"{loc}: {msg}", "nbytes": nbytes,
            "_msg": msg, "_line_based": line_based}


def quarantine_from_records(records: list[dict]) -> pa.Table:
    """Build the quarantine table from :func:`quarantine_record` dicts."""
    return pa.Table.from_pylist([{k: v for k, v in r.items() if not k.startswith("_")} for r in records],
                                schema=QUARANTINE_SCHEMA)


def where(file: str, row: int | None, *, line_based: bool) -> str:
    """``file, line 3`` (1-based lines) or ``file, row 2`` (0-based rows) for messages."""
    if row is None:
        return file
    return f"{file}, line {row + 1}" if line_based else f"{file}, row {row}"


def raise_for(rec: dict) -> None:
    """Raise the ``InputError`` that ``on_error: error`` turns a quarantine record into."""
    row = rec["row"]
    kw: dict[str, Any] = {"line": row + 1} if (rec["_line_based"] and row is not None) else {"row": row}
    msg = (f"{rec['reason']}: {rec['_msg']} (set `on_error: quarantine` on the source to skip such records "
           "and list them in quarantine/)")
    raise InputError(msg, file=rec["file"], column=rec["field"], **kw)


def truncated_batch(part: Partition, cols: list[Col], e: BrokenStream) -> RawBatch:
    """The one-record batch that stands for everything after a break in a compressed stream."""
    rec = quarantine_record(part, row=e.line, field=None, reason="truncated_file", line_based=True,
                            msg=f"{e.message()}; {e.loss()}", nbytes=e.partial_bytes) | {"_ord": 0}
    return whole_file_batch(part, cols, rec, broken=e)


def whole_file_batch(part: Partition, cols: list[Col], rec: dict, *, broken: BrokenStream | None = None,
                     line_based: bool = True) -> RawBatch:
    """A batch of no rows and one quarantine record standing for a whole file (or its unreadable rest)."""
    table = pa.table({c.name: pa.nulls(0, c.json_type() or pa.null()) for c in cols})
    return RawBatch(table=table, rows=np.zeros(0, np.int64), ordinals=np.zeros(0, np.int64),
                    quarantine=[rec | {"_ord": 0}], n_records=1, line_based=line_based, broken=broken)


# ---------------------------------------------------------------------------- schema checks
def check_table_schema(schema: pa.Schema, cols: list[Col], file: str) -> list[Col]:
    """Check a Parquet/HF schema against ``cols``; return the columns present. Raises ``SchemaError``."""
    names = schema.names
    present = []
    for c in cols:
        if c.name not in names:
            if c.required:
                msg = (f"required column `{c.name}` not found; columns found: {names}. Fix the file, or map "
                       "the column with `text_column`/`id_column` and use format `parquet`")
                raise SchemaError(msg, file=file, column=c.name)
            continue
        t = schema.field(c.name).type
        vt = t.value_type if pa.types.is_dictionary(t) else t
        ok = True
        if c.kind == "text":
            ok = is_stringlike(vt) or pa.types.is_null(vt)
        elif c.kind == "str":
            ok = (is_stringlike(vt) or pa.types.is_integer(vt) or pa.types.is_floating(vt)
                  or pa.types.is_boolean(vt) or pa.types.is_null(vt) or pa.types.is_timestamp(vt))
        elif c.kind in ("list", "license"):
            ok = (pa.types.is_list(vt) or pa.types.is_large_list(vt) or is_stringlike(vt) or pa.types.is_null(vt))
        if not ok:
            expected = {"text": "a string", "str": "a string or number", "list": "a list of strings",
                        "license": "a string or a list of strings"}[c.kind]
            msg = f"column `{c.name}` has type {t}, expected {expected}; fix the file or pick the right column"
            raise SchemaError(msg, file=file, column=c.name)
        present.append(c)
    return present


def complete_columns(table: pa.Table, cols: list[Col]) -> pa.Table:
    """Add absent optional columns as nulls, so normalizers can index every declared column."""
    n = table.num_rows
    for c in cols:
        if c.name not in table.column_names:
            table = table.append_column(c.name, pa.nulls(n, c.json_type() or pa.null()))
    return table
