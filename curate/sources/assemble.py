"""Assembling documents: a raw batch and its normalized columns become a ``ReadBatch`` of ``DOC_SCHEMA`` rows.

:func:`assemble` is step 3 of :func:`curate.sources.rows.read_rows`. Rows with null text become quarantine
records ``null_text``, rows whose text is empty or only whitespace become ``empty_text``, rows the format
rejected (``Normalized.reject``) or whose text is not UTF-8 (``invalid_utf8``) keep their reason; the rest become
documents with ``uid = pid << 32 | record_index`` (:func:`uids`), ``doc_id = <source>:<native_id>`` (or
``<source>:h<xxh3_64 hex of the text's UTF-8 bytes>`` when the native id is null or empty, :func:`make_doc_ids`,
hashed straight from the Arrow buffers), ``nbytes`` = UTF-8 byte length, and ``subset`` from ``src.subset_by``'s
column (null values fall back to the partition's subset).

Text hygiene
------------
One policy for every reader, applied to the document text in :func:`assemble` (vectorized, per batch) by
:func:`clean_text`: a leading U+FEFF (BOM) is removed, CRLF and lone CR become LF, NUL (U+0000) is dropped.
A text that is empty after that is ``empty_text``. The ingest ledger counts the documents each fix changed
(``text_bom_stripped``, ``text_newlines_normalized``, ``text_nul_dropped``). A JSON-lines file's leading BOM is
removed before its first line is parsed (:mod:`curate.sources.jsonl`), so the first record is not lost to
``malformed_json``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from curate.schema import DOC_SCHEMA
from curate.sources.arrow_utils import column, constant, non_empty, to_string
from curate.sources.base import Partition, ReadBatch
from curate.sources.rawbatch import Normalized, RawBatch, quarantine_from_records, quarantine_record, raise_for

if TYPE_CHECKING:
    from curate.recipe import SourceConfig


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


# ---------------------------------------------------------------------------- text hygiene
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


# ---------------------------------------------------------------------------- assembly
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
