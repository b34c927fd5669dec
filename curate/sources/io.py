"""Shared input plumbing of the row-oriented source readers: opening, decoding, batching, normalizing.

Every row-oriented format (the-stack, CulturaX, MADLAD, RefinedWeb, open-web-math, proof-pile-2, generic
jsonl/parquet, and ``hf://`` datasets) goes through one driver, :func:`read_rows`:

1. *Raw batches.* A file is read as native Arrow columns, projected to the columns the format declares
   (:class:`Col`). Parquet is read with ``ParquetFile.iter_batches`` (whole file or a row-group range);
   JSON lines are decompressed transparently (``.gz``, ``.zst``/``.zstd``, ``.bz2``, by suffix) and parsed
   in blocks of ``ctx.batch_rows`` lines; ``hf://`` datasets stream through :mod:`curate.sources.hf`.
   Whether a native-format file is Parquet is decided by its magic bytes (``PAR1``), not its name.
2. *Normalizing.* The format's ``normalize(table, nctx)`` maps native columns to ``text``, ``native_id``,
   ``url``, ``lang``, ``license`` and ``meta`` (:class:`Normalized`) with ``pyarrow.compute`` and polars
   expressions over the whole batch; it may reject rows with a reason code (``missing_content``).
3. *Assembling* (:func:`assemble`). Rows with null text become quarantine records ``null_text``, rows whose
   text is empty or only whitespace become ``empty_text``; the rest become documents with
   ``uid = pid << 32 | record_index``, ``doc_id = <source>:<native_id>`` (or ``<source>:h<xxh3_64 hex of the
   text's UTF-8 bytes>`` when the native id is null or empty), ``nbytes`` = UTF-8 byte length, and ``subset``
   from ``src.subset_by``'s column (null values fall back to the partition's subset).

Text hygiene
------------
One policy for every reader, applied to the document text in :func:`assemble` (vectorized, per batch) by
:func:`clean_text`: a leading U+FEFF (BOM) is removed, CRLF and lone CR become LF, NUL (U+0000) is dropped.
A text that is empty after that is ``empty_text``. The ingest ledger counts the documents each fix changed
(``text_bom_stripped``, ``text_newlines_normalized``, ``text_nul_dropped``). A JSON-lines file's leading BOM is
removed before its first line is parsed, so the first record is not lost to ``malformed_json``.

File types
----------
Before a file is read its first 64 KiB (and, for Parquet, its last 4 bytes) are sniffed (:func:`sniff`):
Parquet (``PAR1`` header and footer), gzip, zstd, bz2, xz, zip, or text (JSON lines, CSV, plain, binary). A file
that is not what its name says (a CSV named ``.parquet``, gzip bytes named ``.jsonl``, a ``.jsonl`` holding
Parquet) is one quarantine record ``wrong_file_type`` naming what was found; a Parquet file cut before its
footer is one ``truncated_file`` record; ``.xz``/``.zip`` are one ``unsupported_file_type`` record; a Parquet
file whose footer or data cannot be decoded is one ``corrupt_file`` record (for everything from the row where
it breaks). ``on_error: error`` raises :class:`~curate.errors.InputError` instead. A name that promises nothing
(no known suffix) is read by its bytes, as before.

JSON lines
----------
A *record* is a non-blank line; blank and whitespace-only lines are skipped and are not records, but line
numbers count them. The first block (``FIRST_BLOCK_LINES`` records) of a file is parsed line by line with
:mod:`json` so that a file whose records lack a required key, or whose text key never holds a string, fails
as a whole with :class:`~curate.errors.SchemaError` (naming the keys found). Later blocks take a fast path,
``pyarrow.json.read_json`` with an explicit schema of the projected columns, and fall back to the line-by-line
parser when the block is not clean (a malformed line, a wrong-typed value, invalid UTF-8). Both paths give the
same result for a clean block. Per-record problems and their reason codes:

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

Truncated or corrupt compressed streams: every complete line before the break is read and kept; with
``on_error: quarantine`` one more record, ``truncated_file`` (row = 0-based index of the first line that could
not be read), stands for the lost rest; with ``on_error: error`` an :class:`~curate.errors.InputError`
("truncated or corrupt gzip stream at line N") is raised after the complete lines were yielded. An empty file
(zero bytes, or a compressed stream of zero bytes) is zero records and no error.

Parquet
-------
A missing required column or a text column that is not a string type is a whole-file
:class:`~curate.errors.SchemaError` naming the file, the column and the columns found, raised whatever
``on_error`` says; a file that is not readable Parquet is a quarantine record (see File types).
Files are read single-threaded (``use_threads=False``): Ray already runs one task per core.
"""

from __future__ import annotations

import bz2
import io
import json
import os
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
import pyarrow.parquet as pq
import xxhash

from curate.errors import InputError, SchemaError
from curate.recipe import HF_PREFIX, SourceConfig
from curate.schema import DOC_SCHEMA, QUARANTINE_SCHEMA, empty_docs
from curate.sources.base import Partition, ReadBatch, ReadContext

# ---------------------------------------------------------------------------- constants
#: Compression by file-name suffix; anything else is read as plain bytes.
COMPRESSION_SUFFIXES = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd", ".bz2": "bz2"}
#: Bytes read from disk per step of the decompressor.
CHUNK_BYTES = 4 << 20
#: Compressed bytes given to the decompressor per call: where a stream breaks is known to within this.
FEED_BYTES = 64 << 10
#: A JSON-lines batch is cut at ``ctx.batch_rows`` records or at this many bytes, whichever comes first.
MAX_BATCH_BYTES = 64 << 20
PARQUET_MAGIC = b"PAR1"
UTF8_BOM = b"\xef\xbb\xbf"
#: The first block of a JSON-lines file is parsed line by line (to check its keys); later blocks take the fast path.
FIRST_BLOCK_LINES = 256

ColKind = Literal["text", "str", "list", "license", "json", "any"]


# ---------------------------------------------------------------------------- decompression and lines
class BrokenStream(Exception):  # noqa: N818 - a signal between io helpers and readers, never reaches the runner
    """A compressed stream ended early or is corrupt. ``line`` is the 0-based index of the first lost line."""

    def __init__(self, compression: str, reason: str, *, line: int = 0, partial_bytes: int = 0,
                 at_byte: int | None = None, file_bytes: int | None = None) -> None:
        self.compression, self.reason, self.line, self.partial_bytes = compression, reason, line, partial_bytes
        self.at_byte, self.file_bytes = at_byte, file_bytes
        super().__init__(f"truncated or corrupt {compression} stream ({reason})")

    def message(self) -> str:
        """Human text: ``truncated or corrupt gzip stream at line N (reason)``; N is 1-based."""
        return f"truncated or corrupt {self.compression} stream at line {self.line + 1} ({self.reason})"

    def loss(self) -> str:
        """What the break cost: lines read before it, and the compressed bytes (and estimated lines) after it.

        The lines after a break cannot be counted (the stream cannot be decoded past it); they are estimated
        at the rate of the lines read (lines per compressed byte), which is exact for a uniform file.
        """
        text = f"{self.line:,} line(s) were read before the break"
        if self.at_byte is None or not self.file_bytes:
            return text
        left = max(0, self.file_bytes - self.at_byte)
        if left == 0:
            return text + "; the break is at the end of the file, so only the line in progress is lost"
        est = round(self.line * left / self.at_byte) if self.at_byte else 0
        return (text + f"; the remaining {left:,} of {self.file_bytes:,} compressed bytes "
                f"({left / self.file_bytes:.0%}) cannot be decoded: about {est:,} more line(s) lost")


def compression_of(path: str) -> str | None:
    """Return ``gzip``/``zstd``/``bz2`` from the file-name suffix, or None for an uncompressed file."""
    return COMPRESSION_SUFFIXES.get(os.path.splitext(path)[1].lower())


def _decompressor(kind: str) -> Any:
    if kind == "gzip":
        return zlib.decompressobj(wbits=31)
    if kind == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj()
    return bz2.BZ2Decompressor()


def iter_decompressed(path: str, *, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    """Yield the decompressed bytes of ``path`` in chunks; multi-member gzip and multi-frame zstd are joined.

    Raises
    ------
    BrokenStream
        When the stream ends inside a member/frame or the decompressor rejects the data. Every byte that
        could be decompressed before the break has been yielded.
    """
    kind = compression_of(path)
    with open(path, "rb") as fh:
        if kind is None:
            while chunk := fh.read(chunk_bytes):
                yield chunk
            return
        size = os.fstat(fh.fileno()).st_size
        dec, fed = _decompressor(kind), False
        pos = 0  # compressed bytes given to the decompressors so far
        while raw := fh.read(chunk_bytes):
            # fed in FEED_BYTES pieces: a break is located (and the output before it kept) to within one piece
            for lo in range(0, len(raw), FEED_BYTES):
                data = raw[lo:lo + FEED_BYTES]
                while data:
                    try:
                        out = dec.decompress(data)
                    except Exception as e:  # zlib.error, OSError (bz2), zstandard.ZstdError: all mean corrupt data
                        raise BrokenStream(kind, f"corrupt data: {e}", at_byte=pos, file_bytes=size) from None
                    fed = True
                    if out:
                        yield out
                    if dec.eof:
                        data = dec.unused_data
                        dec, fed = _decompressor(kind), False
                    else:
                        data = b""
                pos += min(FEED_BYTES, len(raw) - lo)
        if fed and not dec.eof:
            raise BrokenStream(kind, "the file ends inside a compressed block", at_byte=size, file_bytes=size)


def iter_lines(path: str, *, chunk_bytes: int = CHUNK_BYTES) -> Iterator[tuple[int, list[bytes]]]:
    """Yield ``(index_of_first_line, lines)`` over the decompressed file; lines exclude the ``\\n``.

    A final line without a newline is yielded if the stream is intact. On a broken stream the complete
    lines are yielded first, then :class:`BrokenStream` is raised with ``line`` set to the index of the first
    incomplete line and ``partial_bytes`` to the bytes read of it.
    """
    pieces: list[bytes] = []
    line_no = 0
    try:
        for chunk in iter_decompressed(path, chunk_bytes=chunk_bytes):
            if b"\n" not in chunk:
                pieces.append(chunk)
                continue
            if pieces:
                pieces.append(chunk)
                chunk = b"".join(pieces)
                pieces = []
            lines = chunk.split(b"\n")
            tail = lines.pop()
            if tail:
                pieces.append(tail)
            yield line_no, lines
            line_no += len(lines)
    except BrokenStream as e:
        e.line, e.partial_bytes = line_no, sum(len(p) for p in pieces)
        raise
    if pieces:
        yield line_no, [b"".join(pieces)]


def read_all(path: str) -> bytes:
    """Return the whole decompressed content of ``path``; raises :class:`BrokenStream` with the line set."""
    parts: list[bytes] = []
    try:
        for chunk in iter_decompressed(path):
            parts.append(chunk)
    except BrokenStream as e:
        data = b"".join(parts)
        e.line, e.partial_bytes = data.count(b"\n"), len(data)
        raise
    return b"".join(parts)


def is_parquet(path: str) -> bool:
    """True when ``path`` starts with the Parquet magic bytes."""
    with open(path, "rb") as fh:
        return fh.read(4) == PARQUET_MAGIC


# ---------------------------------------------------------------------------- file types
#: Leading bytes of the containers a file may hold, and the name of each.
MAGIC = ((PARQUET_MAGIC, "parquet"), (b"\x1f\x8b", "gzip"), (b"\x28\xb5\x2f\xfd", "zstd"), (b"BZh", "bz2"),
         (b"\xfd7zXZ\x00", "xz"), (b"PK\x03\x04", "zip"))
#: Suffixes that name a container; ``.xz`` and ``.zip`` are recognised but not read.
NAMED_TYPES = {".parquet": "parquet", ".pq": "parquet", ".gz": "gzip", ".zst": "zstd", ".zstd": "zstd",
               ".bz2": "bz2", ".xz": "xz", ".zip": "zip"}
#: Suffixes that name uncompressed text (JSON lines, or a one-document text file).
TEXT_SUFFIXES = frozenset({".jsonl", ".json", ".ndjson", ".txt", ".text", ".md", ".csv", ".tsv"})
SNIFF_BYTES = 1 << 16
_READABLE = frozenset({"parquet", "gzip", "zstd", "bz2"})


def sniff(path: str) -> str:
    """What ``path`` holds, from its bytes: a container of :data:`MAGIC`, ``truncated parquet`` (the ``PAR1`` header
    without the ``PAR1`` footer), ``empty``, ``blank text`` (only whitespace), or for text ``JSON lines`` (a
    line of the first 64 KiB starts with ``{`` or ``[``), ``CSV text`` (the first line has a comma or tab),
    ``text``, or ``binary data`` (NUL bytes or mostly undecodable bytes in the first 64 KiB).
    """
    with open(path, "rb") as fh:
        head = fh.read(SNIFF_BYTES)
        if not head:
            return "empty"
        for magic, name in MAGIC:
            if head.startswith(magic):
                if name == "parquet":
                    size = os.fstat(fh.fileno()).st_size
                    if size < 12:
                        return "truncated parquet"
                    fh.seek(size - 4)
                    return "parquet" if fh.read(4) == PARQUET_MAGIC else "truncated parquet"
                return name
    body = head[3:] if head.startswith(b"\xef\xbb\xbf") else head
    if not body.strip():
        return "blank text"
    if b"\x00" in body or len(body.decode("utf-8", "ignore")) < 0.7 * len(body.decode("latin-1")):
        return "binary data"
    lines = [x.strip() for x in body.split(b"\n")]
    if any(x[:1] in (b"{", b"[") for x in lines):
        return "JSON lines"
    first = next((x for x in lines if x), b"")
    return "CSV text" if (b"," in first or b"\t" in first) else "text"


def _named_type(path: str, kind: str) -> str | None:
    """The type the file's name (and the reader's ``kind``) promises; None when the name promises nothing."""
    ext = os.path.splitext(path)[1].lower()
    if ext in NAMED_TYPES:
        return NAMED_TYPES[ext]
    if kind == "parquet":
        return "parquet"
    if ext in TEXT_SUFFIXES or kind in ("jsonl", "text"):
        return "text" if kind == "text" else "JSON lines"
    return None


def file_type_problem(path: str, kind: str) -> tuple[str, str] | None:
    """``(reason, message)`` when a file is not what its name says, else None.

    ``kind`` is ``parquet``, ``jsonl`` (JSON lines, also compressed), ``text`` (a one-document file) or
    ``auto`` (a native format: Parquet or JSON lines; a name that promises nothing is taken by its bytes).
    Reasons: ``wrong_file_type`` (named one thing, holds another: the message names both),
    ``truncated_file`` (a Parquet file cut before its footer), ``unsupported_file_type`` (``.xz``, ``.zip``).
    """
    named = _named_type(path, kind)
    got = sniff(path)
    if got == "empty":
        return None
    name = os.path.basename(path)
    if got == "truncated parquet" and named in (None, "parquet"):
        return ("truncated_file", "truncated Parquet file: it starts with the PAR1 magic bytes but has no PAR1 "
                                  "footer (the end of the file is missing); re-download or re-export it")
    if named in ("xz", "zip") or (named is None and got in ("xz", "zip")):
        return ("unsupported_file_type", f"{got} files are not read (gzip, zstd and bz2 are); decompress it, or "
                                         "recompress it with gzip or zstd")
    if named is None:
        return None if got in ("parquet", "JSON lines", "text", "CSV text", "blank text") or kind == "text" else (
            "wrong_file_type", f"the file holds {got}, which format `{kind}` cannot read")
    if kind == "jsonl" and got == "parquet":
        return ("wrong_file_type", "the file holds parquet, but the source's format `jsonl` reads JSON lines; use "
                                   "format `parquet`")
    if named in _READABLE:
        ok = got == named
    elif named == "JSON lines":
        ok = got in ("JSON lines", "blank text")
    else:  # a one-document text file: any text; its encoding is checked when it is decoded
        ok = got not in {n for _m, n in MAGIC} and got != "truncated parquet"
    if ok:
        return None
    hint = {"parquet": "a .parquet name", "gzip": "a .gz name", "zstd": "a .zst name", "bz2": "a .bz2 name"}
    fix = f"; rename it to match ({hint[got]})" if got in hint else "; fix or remove the file"
    return ("wrong_file_type", f"not {named} as its name {name!r} says: the file holds {got}{fix}")


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


# ---------------------------------------------------------------------------- array helpers
def column(table: pa.Table, name: str) -> pa.Array:
    """Return column ``name`` of ``table`` as one contiguous ``pa.Array``."""
    col = table.column(name)
    if col.num_chunks == 1:
        return col.chunk(0)
    if col.num_chunks == 0:
        return pa.array([], type=col.type)
    return pa.concat_arrays(col.chunks)


def constant(n: int, value: str | None, type_: pa.DataType | None = None) -> pa.Array:
    """An array of ``n`` copies of ``value`` (nulls when ``value`` is None); ``type_`` defaults to string."""
    arr = pa.nulls(n, type_ or pa.string())
    return arr if value is None else arr.fill_null(value)


def _is_stringlike(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def to_string(arr: pa.Array) -> pa.Array:
    """Cast a scalar column (string, integer, float, bool, timestamp, dictionary) to ``string``."""
    t = arr.type
    if pa.types.is_dictionary(t):
        arr, t = arr.dictionary_decode(), t.value_type
    if pa.types.is_timestamp(t):
        return iso_timestamps(arr)
    if pa.types.is_null(t):
        return pa.nulls(len(arr), pa.string())
    return pc.cast(arr, pa.string())


def iso_timestamps(arr: pa.Array) -> pa.Array:
    """Format a timestamp column as ISO-8601 seconds (``2020-03-29T09:04:10``, ``Z`` appended when UTC)."""
    t = arr.type
    secs = pc.cast(arr, pa.timestamp("s", tz=t.tz), safe=False)
    out = pc.strftime(secs, format="%Y-%m-%dT%H:%M:%S")
    if t.tz in ("UTC", "utc", "+00:00", "Z"):
        out = pc.binary_join_element_wise(out, pa.scalar("Z"), "")
    return out


def non_empty(arr: pa.Array) -> pa.Array:
    """``arr`` with empty strings replaced by null."""
    arr = to_string(arr)
    return pc.if_else(pc.equal(pc.binary_length(arr), 0), pa.scalar(None, pa.string()), arr)


def coalesce(*arrays: pa.Array | None) -> pa.Array | None:
    """First non-null (and non-empty) value across string arrays, row by row."""
    arrs = [non_empty(a) for a in arrays if a is not None]
    if not arrs:
        return None
    return arrs[0] if len(arrs) == 1 else pc.coalesce(*arrs)


def _for_json(arr: pa.Array) -> pa.Array:
    t = arr.type
    if pa.types.is_timestamp(t):
        return iso_timestamps(arr)
    if pa.types.is_dictionary(t):
        return arr.dictionary_decode()
    if pa.types.is_date(t) or pa.types.is_time(t) or pa.types.is_duration(t) or pa.types.is_decimal(t):
        return pc.cast(arr, pa.string())
    return arr


def json_objects(fields: dict[str, pa.Array]) -> pa.Array:
    """Encode aligned arrays as one compact JSON object per row (polars ``struct.json_encode``).

    Keys keep the given order; null values are written as ``null``; timestamps become ISO-8601 strings.
    """
    n = len(next(iter(fields.values())))
    if n == 0:
        return pa.array([], pa.string())
    df = pl.DataFrame({k: pl.from_arrow(_for_json(v)) for k, v in fields.items()})
    out = df.select(pl.struct(pl.all()).struct.json_encode().alias("m")).to_series().to_arrow()
    return pc.cast(out, pa.string())


def json_string_lists(arrays: list[pa.Array]) -> pa.Array:
    """Union of list-of-string columns per row as a JSON list: sorted, de-duplicated, ``[]`` when none.

    The text is ``json.dumps`` of the sorted list (``["Apache-2.0", "MIT"]``). Null lists, null items and
    empty strings are dropped; a string column counts as a one-item list. Each row's lists are joined into
    one key string (items split by ``\\x1f``, columns by ``\\x1e``, which license ids never contain) in
    polars, and ``json.dumps`` runs once per distinct key, i.e. per license combination, not per row.
    """
    n = len(arrays[0])
    if n == 0:
        return pa.array([], pa.string())
    keys = []
    for a in arrays:
        s = pl.from_arrow(a)
        if s.dtype in (pl.Null, pl.String, pl.Categorical):
            keys.append(s.cast(pl.String).fill_null(""))
        else:
            keys.append(s.cast(pl.List(pl.String)).list.join("\x1f", ignore_nulls=True).fill_null(""))
    combined = pl.DataFrame({f"k{i}": k for i, k in enumerate(keys)}).select(
        pl.concat_str(pl.all(), separator="\x1e").alias("k")).to_series()
    mapping = {k: json.dumps(sorted({x for part in k.split("\x1e") for x in part.split("\x1f") if x}))
               for k in combined.unique().to_list()}
    out = combined.replace_strict(mapping, return_dtype=pl.String).to_arrow()
    return pc.cast(out, pa.string())


def json_fields(arr: pa.Array, names: list[str]) -> tuple[pa.Array, dict[str, pa.Array]]:
    """Parse a column of JSON-object strings once: ``(is_object, {name: top-level field as string})``.

    Fast path: polars ``str.json_decode`` into a struct of string fields ``names`` (one pass, about 2.5x
    faster than a JSON-path match per field; scalar fields are cast to their text). It fails as a whole
    when a value is not JSON, not an object, or a field holds an object/array; then polars ``json_path_match``
    runs per field, which returns such fields as JSON text. ``is_object`` is false for null and non-object
    values; fields are null where absent.
    """
    s = to_string(arr)
    if len(s) == 0:
        return pa.array([], pa.bool_()), {k: pa.array([], pa.string()) for k in names}
    ser = pl.from_arrow(s)
    try:
        dec = ser.str.json_decode(pl.Struct(dict.fromkeys(names, pl.String)))
    except pl.exceptions.PolarsError:
        dec = None
    if dec is not None:
        fields = dec.struct.unnest()
        is_obj = pc.cast(dec.is_not_null().to_arrow(), pa.bool_())
        return is_obj, {k: pc.cast(fields.get_column(k).to_arrow(), pa.string()) for k in names}
    stripped = ser.str.strip_chars()
    is_obj = (stripped.str.starts_with("{") & ser.str.json_path_match("$").is_not_null()).fill_null(False)
    fields = {k: pc.cast(ser.str.json_path_match(f"$.{k}").to_arrow(), pa.string()) for k in names}
    return pc.cast(is_obj.to_arrow(), pa.bool_()), fields


def json_text(arr: pa.Array) -> pa.Array:
    """A ``json`` column as JSON strings: structs/maps/lists are encoded, strings are kept as they are."""
    t = arr.type
    if _is_stringlike(t) or pa.types.is_null(t):
        return to_string(arr)
    if len(arr) == 0:
        return pa.array([], pa.string())
    # encode {"v": <value>} and cut the fixed ASCII prefix `{"v":` and the closing brace
    enc = pl.struct("v").struct.json_encode().str.slice(5).str.strip_suffix("}")
    out = pl.DataFrame({"v": pl.from_arrow(arr)}).select(
        pl.when(pl.col("v").is_null()).then(None).otherwise(enc).alias("m")).to_series()
    return pc.cast(out.to_arrow(), pa.string())


def list_lengths(arr: pa.Array) -> pa.Array:
    """Length of each list (0 for null lists); for non-list columns, 0 where null and 1 elsewhere."""
    if pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type):
        return pc.fill_null(pc.list_value_length(arr), 0)
    return pc.cast(pc.is_valid(arr), pa.int64())


# ---------------------------------------------------------------------------- ids
def xxh3_hex(text: pa.Array) -> list[str]:
    """xxh3_64 hex digests of the UTF-8 bytes of each string, read straight from the Arrow buffers.

    Per-row Python here is unavoidable (no Arrow or polars kernel computes xxh3); it runs only for rows
    without a native id and hashes memory views, never decoded Python strings.
    """
    text = pc.cast(text, pa.large_string())
    n = len(text)
    if n == 0:
        return []
    bufs = text.buffers()
    offsets = np.frombuffer(bufs[1], dtype=np.int64)[text.offset : text.offset + n + 1]
    data = memoryview(bufs[2]) if bufs[2] is not None else memoryview(b"")
    starts, ends = offsets[:-1].tolist(), offsets[1:].tolist()
    return [xxhash.xxh3_64_hexdigest(data[s:e]) for s, e in zip(starts, ends, strict=True)]


def make_doc_ids(source: str, native_id: pa.Array, text: pa.Array) -> pa.Array:
    """``<source>:<native_id>``, or ``<source>:h<xxh3_64 hex of text>`` where the native id is null/empty."""
    native_id = non_empty(native_id)
    ids = pc.binary_join_element_wise(pa.scalar(f"{source}:"), native_id, "")
    missing = pc.is_null(native_id)
    if pc.any(missing).as_py():
        hashes = [f"{source}:h{h}" for h in xxh3_hex(text.filter(missing))]
        ids = pc.replace_with_mask(ids, missing, pa.array(hashes, pa.string()))
    return ids


def uids(pid: int, record_index: np.ndarray) -> pa.Array:
    """``pid << 32 | record_index``: stable, unique per input record of a run."""
    if int(record_index.max(initial=0)) >= 1 << 32:
        msg = f"partition {pid} has more than 2**32 records; split the input file"
        raise ValueError(msg)
    return pa.array((np.int64(pid) << np.int64(32)) | record_index.astype(np.int64), pa.int64())


# ---------------------------------------------------------------------------- quarantine helpers
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


# ---------------------------------------------------------------------------- schema checks
def _check_table_schema(schema: pa.Schema, cols: list[Col], file: str) -> list[Col]:
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
            ok = _is_stringlike(vt) or pa.types.is_null(vt)
        elif c.kind == "str":
            ok = (_is_stringlike(vt) or pa.types.is_integer(vt) or pa.types.is_floating(vt)
                  or pa.types.is_boolean(vt) or pa.types.is_null(vt) or pa.types.is_timestamp(vt))
        elif c.kind in ("list", "license"):
            ok = (pa.types.is_list(vt) or pa.types.is_large_list(vt) or _is_stringlike(vt) or pa.types.is_null(vt))
        if not ok:
            expected = {"text": "a string", "str": "a string or number", "list": "a list of strings",
                        "license": "a string or a list of strings"}[c.kind]
            msg = f"column `{c.name}` has type {t}, expected {expected}; fix the file or pick the right column"
            raise SchemaError(msg, file=file, column=c.name)
        present.append(c)
    return present


def _complete(table: pa.Table, cols: list[Col]) -> pa.Table:
    """Add absent optional columns as nulls, so normalizers can index every declared column."""
    n = table.num_rows
    for c in cols:
        if c.name not in table.column_names:
            table = table.append_column(c.name, pa.nulls(n, c.json_type() or pa.null()))
    return table


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
    present = _check_table_schema(pf.schema_arrow, cols, part.path)
    md = pf.metadata
    groups = list(range(md.num_row_groups) if part.row_groups is None else range(*part.row_groups))
    row = sum(md.row_group(i).num_rows for i in range(groups[0])) if groups else 0
    names = [c.name for c in present]
    try:
        for rb in pf.iter_batches(batch_size=batch_rows, row_groups=groups, columns=names, use_threads=False):
            n = rb.num_rows
            if n == 0:
                continue
            table = _complete(pa.Table.from_batches([rb]), cols)
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


# ---------------------------------------------------------------------------- raw readers: JSON lines
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _type_name(v: Any) -> str:
    return {dict: "object", list: "array", bool: "boolean", int: "number", float: "number"}.get(type(v), "value")


def _py_value(c: Col, v: Any) -> Any:
    if v is None:
        return None
    if c.kind == "str":
        if isinstance(v, str):
            return v
        return json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else str(v)
    if c.kind == "json":
        return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
    if c.kind == "license":
        if isinstance(v, list):  # the same text json_string_lists gives for a list column
            return json.dumps(sorted({str(x) for x in v if x is not None and x != ""}))
        return v if isinstance(v, str) else str(v)
    if c.kind == "list":
        items = v if isinstance(v, list) else [v]
        return [x if isinstance(x, str) or x is None else str(x) for x in items]
    return v


def _py_array(c: Col, values: list) -> pa.Array:
    t = c.json_type()
    if c.kind in ("text", "str", "json", "license"):
        return pa.array(values, pa.string())
    if t is not None:
        try:
            return pa.array(values, t)
        except (pa.ArrowException, TypeError, ValueError, OverflowError):
            pass
    try:
        return pa.array(values)
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        return pa.array([None if v is None else json.dumps(v, ensure_ascii=False) for v in values], pa.string())


def _bad_utf8(v: Any) -> bool:
    if isinstance(v, str):
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(v, list):
        return any(_bad_utf8(x) for x in v)
    return False


class _JsonlParser:
    """Parses blocks of JSON lines of one file into :class:`RawBatch` objects (fast path and fallback)."""

    def __init__(self, part: Partition, cols: list[Col], text_col: str) -> None:
        self.part, self.cols, self.text_col = part, cols, text_col
        jtypes = [c.json_type() for c in cols]
        self.fast_ok = all(t is not None for t in jtypes)
        self.schema = pa.schema([(c.name, t) for c, t in zip(cols, jtypes, strict=True)]) if self.fast_ok else None
        self.checked = False  # the whole-file schema check runs on the first block with an object in it

    def parse(self, lines: list[bytes], idx: list[int]) -> RawBatch:
        if self.checked and self.fast_ok:
            fast = self._fast(lines, idx)
            if fast is not None:
                return fast
        return self._slow(lines, idx)

    def _fast(self, lines: list[bytes], idx: list[int]) -> RawBatch | None:
        data = b"\n".join(lines)
        try:
            table = pj.read_json(
                io.BytesIO(data),
                read_options=pj.ReadOptions(use_threads=False, block_size=len(data) + 64),
                parse_options=pj.ParseOptions(explicit_schema=self.schema, unexpected_field_behavior="ignore"),
            )
        except pa.ArrowException:
            return None
        if table.num_rows != len(lines):
            return None
        for c in self.cols:  # pyarrow.json does not validate UTF-8
            if c.kind in ("text", "str", "list", "license"):
                try:
                    table.column(c.name).validate(full=True)
                except pa.ArrowException:
                    return None
        n = len(lines)
        return RawBatch(table=table.select([c.name for c in self.cols]), rows=np.asarray(idx, dtype=np.int64),
                        ordinals=np.arange(n, dtype=np.int64), n_records=n, line_based=True)

    def _slow(self, lines: list[bytes], idx: list[int]) -> RawBatch:
        part = self.part
        values: dict[str, list] = {c.name: [] for c in self.cols}
        seen: dict[str, int] = dict.fromkeys(values, 0)
        text_types: dict[str, int] = {}
        first_keys: list[str] | None = None
        rows: list[int] = []
        ords: list[int] = []
        quarantine: list[dict] = []
        n_obj = 0
        for k, (line, li) in enumerate(zip(lines, idx, strict=True)):
            dirty = False
            try:
                s = line.decode("utf-8")
            except UnicodeDecodeError:
                s, dirty = line.decode("utf-8", "surrogateescape"), True
            if not dirty and b"\\u" in line and _SURROGATE_ESCAPE.search(line):
                dirty = True
            try:
                obj = json.loads(s)
            except json.JSONDecodeError as e:
                quarantine.append(quarantine_record(part, row=li, field=None, reason="malformed_json",
                                                    msg=f"malformed JSON at column {e.colno}: {e.msg}",
                                                    nbytes=len(line), line_based=True) | {"_ord": k})
                continue
            if not isinstance(obj, dict):
                quarantine.append(quarantine_record(part, row=li, field=None, reason="malformed_json",
                                                    msg=f"expected a JSON object, got a JSON {_type_name(obj)}",
                                                    nbytes=len(line), line_based=True) | {"_ord": k})
                continue
            n_obj += 1
            if first_keys is None:
                first_keys = list(obj)
            raw = {c.name: obj.get(c.name) for c in self.cols}
            for c in self.cols:
                if c.name in obj:
                    seen[c.name] += 1
            tv = raw[self.text_col]
            if tv is not None and not isinstance(tv, str):
                tn = _type_name(tv)
                text_types[tn] = text_types.get(tn, 0) + 1
                quarantine.append(quarantine_record(part, row=li, field=self.text_col, reason="wrong_type",
                                                    msg=f"expected a string, got a {tn}", nbytes=len(line),
                                                    line_based=True) | {"_ord": k})
                continue
            if isinstance(tv, str):
                text_types["string"] = text_types.get("string", 0) + 1
            if dirty:
                bad = next((c.name for c in self.cols if c.kind != "any" and _bad_utf8(raw[c.name])), None)
                if bad is not None:
                    quarantine.append(quarantine_record(
                        part, row=li, field=bad, reason="invalid_utf8", nbytes=len(line), line_based=True,
                        msg="not valid UTF-8 (undecodable bytes or an unpaired \\u surrogate escape)") | {"_ord": k})
                    continue
            for c in self.cols:
                values[c.name].append(_py_value(c, raw[c.name]))
            rows.append(li)
            ords.append(k)
        if n_obj and not self.checked:
            self._check_first_block(seen, text_types, first_keys or [], n_obj)
        table = pa.table({c.name: _py_array(c, values[c.name]) for c in self.cols})
        return RawBatch(table=table, rows=np.asarray(rows, dtype=np.int64), ordinals=np.asarray(ords, dtype=np.int64),
                        quarantine=quarantine, n_records=len(lines), line_based=True)

    def _check_first_block(self, seen: dict[str, int], text_types: dict[str, int], keys: list[str],
                           n_obj: int) -> None:
        self.checked = True
        file = self.part.path
        for c in self.cols:
            if c.required and seen[c.name] == 0:
                msg = (f"required key `{c.name}` is in none of the first {n_obj} records; keys found: {keys}. "
                       "Fix the file, or map the key with `text_column`/`id_column` and use format `jsonl`")
                raise SchemaError(msg, file=file, column=c.name)
        if text_types and "string" not in text_types:
            got = ", ".join(sorted(text_types))
            msg = (f"key `{self.text_col}` holds {got} values in the first {n_obj} records, expected strings; "
                   "fix the file or pick the right key with `text_column`")
            raise SchemaError(msg, file=file, column=self.text_col)


def jsonl_raw(part: Partition, cols: list[Col], text_col: str, *, batch_rows: int) -> Iterator[RawBatch]:
    """Raw batches of a JSON-lines file (transparently decompressed); see the module docstring."""
    parser = _JsonlParser(part, cols, text_col)
    pending: list[bytes] = []
    idx: list[int] = []
    size = 0
    try:
        for first, lines in iter_lines(part.path):
            if first == 0 and lines and lines[0].startswith(UTF8_BOM):
                lines[0] = lines[0][len(UTF8_BOM):]  # the text-hygiene policy: a file's leading BOM is not data
            for i, line in enumerate(lines):
                if not line or line.isspace():
                    continue
                pending.append(line)
                idx.append(first + i)
                size += len(line)
                limit = batch_rows if parser.checked else min(batch_rows, FIRST_BLOCK_LINES)
                if len(pending) >= limit or size >= MAX_BATCH_BYTES:
                    yield parser.parse(pending, idx)
                    pending, idx, size = [], [], 0
    except BrokenStream as e:
        if pending:
            yield parser.parse(pending, idx)
        yield truncated_batch(part, cols, e)
        return
    except OSError as e:
        msg = f"cannot read file ({e})"
        raise InputError(msg, file=part.path) from None
    if pending:
        yield parser.parse(pending, idx)


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


# ---------------------------------------------------------------------------- raw readers: Hugging Face
def hf_raw(part: Partition, cols: list[Col], *, batch_rows: int) -> Iterator[RawBatch]:
    """Raw batches of an ``hf://`` partition (see :mod:`curate.sources.hf`)."""
    from curate.sources import hf

    row = 0
    checked: list[Col] | None = None
    for table in hf.iter_tables(part.path, batch_rows=batch_rows):
        if checked is None:
            checked = _check_table_schema(table.schema, cols, part.path)
        n = table.num_rows
        if n == 0:
            continue
        table = _complete(table.select([c.name for c in checked]), cols)
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


def invalid_utf8_rows(text: pa.Array) -> np.ndarray | None:
    """Indices of strings that are not valid UTF-8, or None when all are valid.

    Arrow does not validate UTF-8 when it reads Parquet, so a writer that skipped validation can hand us
    invalid strings. The whole-array check is one SIMD pass (about 7 GB/s); only a batch that fails it is
    checked row by row.
    """
    try:
        text.validate(full=True)
    except pa.ArrowInvalid:
        pass
    else:
        return None
    bad = []
    for i, v in enumerate(pc.cast(text, pa.large_binary()).to_pylist()):
        if v is not None:
            try:
                v.decode("utf-8")
            except UnicodeDecodeError:
                bad.append(i)
    return np.asarray(bad, dtype=np.int64)


#: The text-hygiene fixes :func:`clean_text` applies, by ledger counter.
TEXT_FIXES = ("text_bom_stripped", "text_newlines_normalized", "text_nul_dropped")


def clean_text(text: pa.Array) -> tuple[pa.Array, dict[str, int]]:
    """Apply the text-hygiene policy to every document text; return the texts and how many each fix changed.

    The policy (docs/recipes.md, "Text hygiene"), the same for every reader: a leading U+FEFF (byte-order
    mark) is removed; CRLF and lone CR line ends become LF; NUL characters (U+0000) are dropped. Counters:
    ``text_bom_stripped``, ``text_newlines_normalized``, ``text_nul_dropped`` (documents changed).

    Cost: a ``memchr`` over the batch's character buffer per byte looked for (CR, NUL), one more per row that holds
    one (a hit jumps to the end of its row); only those rows are rewritten (``pyarrow.compute`` on those rows, put
    back with ``replace_with_mask``). Arrow's ``match_substring`` is about 100x slower than ``memchr`` for a
    one-byte needle (measured 190 ms vs 1 ms on the 8.4 MB refinedweb sample), so it is not used as the test. Measured
    (2 shared cores, load average 34): refinedweb 8.4 MB, nothing to fix, 7.9 ms; the-stack 23 MB, 38 files with CR
    and one BOM, 111 ms.
    """
    counts: dict[str, int] = {}
    text = pc.cast(text, pa.large_string())
    if len(text) == 0:
        return text, counts
    bom = pc.fill_null(pc.starts_with(text, "\ufeff"), False)
    n = int(pc.sum(bom).as_py() or 0)
    if n:
        text = pc.replace_with_mask(text, bom, pc.utf8_slice_codeunits(text.filter(bom), 1))
        counts["text_bom_stripped"] = n
    # rows are found on one copy of the character buffer; fixing CR neither adds nor removes a NUL
    hits = _rows_containing(text, (b"\r", b"\x00"))
    for byte, name, fix in ((b"\r", "text_newlines_normalized",
                             lambda a: pc.replace_substring(pc.replace_substring(a, "\r\n", "\n"), "\r", "\n")),
                            (b"\x00", "text_nul_dropped", lambda a: pc.replace_substring(a, "\x00", ""))):
        rows = hits.get(byte)
        if rows is None:
            continue
        mask = np.zeros(len(text), dtype=bool)
        mask[rows] = True
        text = pc.replace_with_mask(text, pa.array(mask), fix(text.take(pa.array(rows))))
        counts[name] = len(rows)
    return text, counts


def _rows_containing(text: pa.Array, needles: tuple[bytes, ...]) -> dict[bytes, np.ndarray]:
    """Rows of a ``large_string`` array whose characters hold each one-byte needle (absent: no such row)."""
    n = len(text)
    bufs = text.buffers()
    if bufs[2] is None:
        return {}
    offsets = np.frombuffer(bufs[1], dtype=np.int64)[text.offset : text.offset + n + 1]
    lo, hi = int(offsets[0]), int(offsets[-1])
    data = bufs[2].to_pybytes()
    ends = offsets[1:]
    out = {}
    for byte in needles:
        rows: list[int] = []
        at = data.find(byte, lo, hi)
        # one memchr per affected row: each hit jumps to the end of its row
        while at >= 0:
            r = int(np.searchsorted(ends, at, side="right"))
            rows.append(r)
            at = data.find(byte, int(ends[r]), hi)
        if rows:
            out[byte] = np.asarray(rows, dtype=np.int64)
    return out


def assemble(part: Partition, src: SourceConfig, raw: RawBatch, norm: Normalized, *, first_record: int) -> ReadBatch:
    """Turn a raw batch and its normalized columns into a :class:`ReadBatch` (see the module docstring)."""
    n = raw.table.num_rows
    text = pc.cast(norm.text, pa.large_string())
    reject, reject_detail = norm.reject, norm.reject_detail
    bad_utf8 = invalid_utf8_rows(text)
    if bad_utf8 is not None and len(bad_utf8):
        mask = np.zeros(n, dtype=bool)
        mask[bad_utf8] = True
        m = pa.array(mask)
        text = pc.if_else(m, pa.scalar(None, pa.large_string()), text)
        own = pc.if_else(m, pa.scalar("invalid_utf8"), pa.scalar(None, pa.string()))
        reject = own if reject is None else pc.coalesce(reject, own)
        msg = pc.if_else(m, pa.scalar("not valid UTF-8"), pa.scalar(None, pa.string()))
        reject_detail = msg if reject_detail is None else pc.coalesce(reject_detail, msg)
    text, fixes = clean_text(text)
    is_null = pc.is_null(text)
    empty = pc.or_kleene(pc.equal(pc.binary_length(text), 0), pc.utf8_is_space(text))
    reason = pc.if_else(is_null, pa.scalar("null_text"),
                        pc.if_else(pc.fill_null(empty, False), pa.scalar("empty_text"), pa.scalar(None, pa.string())))
    if reject is not None:
        reason = pc.coalesce(reject, reason)
    keep = pc.is_null(reason)
    keep_np = keep.to_numpy(zero_copy_only=False)

    if src.subset_by:
        sub = pc.fill_null(non_empty(column(raw.table, src.subset_by)), part.subset)
    else:
        sub = constant(n, part.subset)

    native_id = to_string(norm.native_id) if norm.native_id is not None else constant(n, None)
    lic = norm.license if isinstance(norm.license, pa.Array) else constant(n, norm.license)
    cols = {
        "uid": uids(part.pid, first_record + raw.ordinals[keep_np]),
        "doc_id": None,
        "native_id": native_id.filter(keep),
        "source": constant(int(keep_np.sum()), part.source),
        "subset": sub.filter(keep),
        "text": text.filter(keep),
        "url": (to_string(norm.url) if norm.url is not None else constant(n, None)).filter(keep),
        "lang": (to_string(norm.lang) if norm.lang is not None else constant(n, None)).filter(keep),
        "license": to_string(lic).filter(keep),
        "meta": (to_string(norm.meta) if norm.meta is not None else constant(n, None)).filter(keep),
        "nbytes": None,
    }
    cols["doc_id"] = make_doc_ids(part.source, cols["native_id"], cols["text"])
    cols["nbytes"] = pc.cast(pc.binary_length(cols["text"]), pa.int64())
    docs = pa.Table.from_arrays([cols[name] for name in DOC_SCHEMA.names], schema=DOC_SCHEMA)

    records = list(raw.quarantine)
    if not keep_np.all():
        bad = np.flatnonzero(~keep_np)
        reasons = reason.take(pa.array(bad)).to_pylist()
        details = reject_detail.take(pa.array(bad)).to_pylist() if reject_detail is not None else None
        raw_text = pc.cast(norm.text, pa.large_binary()).take(pa.array(bad))
        sizes = pc.fill_null(pc.binary_length(raw_text), 0).to_pylist()
        subs = sub.take(pa.array(bad)).to_pylist()
        for j, i in enumerate(bad.tolist()):
            r = reasons[j]
            if details is not None and details[j]:
                msg = details[j]
            elif r == "null_text":
                msg = "text is null or absent"
            else:
                msg = "text is empty or whitespace only"
            records.append(quarantine_record(part, row=int(raw.rows[i]), field=norm.text_field, reason=r, msg=msg,
                                             nbytes=sizes[j], subset=subs[j], line_based=raw.line_based)
                           | {"_ord": int(raw.ordinals[i])})
    records.sort(key=lambda r: r["_ord"])
    if records and src.on_error == "error":
        raise_for(records[0])
    quarantine = quarantine_from_records(records)
    return ReadBatch(docs=docs, quarantine=quarantine, records=raw.n_records, counters=fixes)


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


def count_lines(path: str) -> int:
    """Records of a JSON-lines file: non-blank lines, plus one when the compressed stream is truncated."""
    n = 0
    try:
        for _, lines in iter_lines(path):
            n += sum(1 for line in lines if line and not line.isspace())
    except BrokenStream:
        n += 1
    return n
