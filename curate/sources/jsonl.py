"""Parsing JSON-lines files (transparently decompressed) into raw batches of a format's columns.

A *record* is a non-blank line; blank and whitespace-only lines are skipped and are not records, but line
numbers count them. The first block (``FIRST_BLOCK_LINES`` records) of a file is parsed line by line with
:mod:`json` so that a file whose records lack a required key, or whose text key never holds a string, fails
as a whole with :class:`~curate.errors.SchemaError` (naming the keys found). Later blocks take a fast path,
``pyarrow.json.read_json`` with an explicit schema of the projected columns, and fall back to the line-by-line
parser when the block is not clean (a malformed line, a wrong-typed value, invalid UTF-8). Both paths give the
same result for a clean block.

The per-record reason codes (``malformed_json``, ``invalid_utf8``, ``wrong_type``, ``truncated_file``) are
listed in :mod:`curate.sources.rawbatch`. A file's leading BOM is removed before its first line is parsed (the
text-hygiene policy, :mod:`curate.sources.assemble`), so the first record is not lost to ``malformed_json``.

Truncated or corrupt compressed streams: every complete line before the break is read and kept; with
``on_error: quarantine`` one more record, ``truncated_file`` (row = 0-based index of the first line that could
not be read), stands for the lost rest; with ``on_error: error`` an :class:`~curate.errors.InputError`
("truncated or corrupt gzip stream at line N") is raised after the complete lines were yielded. An empty file
(zero bytes, or a compressed stream of zero bytes) is zero records and no error.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.json as pj

from curate.errors import InputError, SchemaError
from curate.sources.base import Partition
from curate.sources.decompress import BrokenStream, iter_lines
from curate.sources.rawbatch import Col, RawBatch, quarantine_record, truncated_batch


#: A JSON-lines batch is cut at ``ctx.batch_rows`` records or at this many bytes, whichever comes first.
MAX_BATCH_BYTES = 64 << 20
PARQUET_MAGIC = b"PAR1"
UTF8_BOM = b"\xef\xbb\xbf"
#: The first block of a JSON-lines file is parsed line by line (to check its keys); later blocks take the fast path.
FIRST_BLOCK_LINES = 256


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
