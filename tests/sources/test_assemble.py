"""Assembling documents (curate/sources/assemble.py): null, empty and wrong-typed text, invalid UTF-8 in Parquet
strings, uids that count quarantined records, and doc ids that fall back to the text hash."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

from tests.sources import JSONL, read, reasons, write_lines


def test_null_absent_empty_and_wrong_typed_text(tmp_path):
    p = write_lines(tmp_path / "a.jsonl", [{"id": 1, "text": "keep"}, {"id": 2, "text": None}, {"id": 3},
                                           {"id": 4, "text": ""}, {"id": 5, "text": " \n\t\u3000"},
                                           {"id": 6, "text": 7}])
    docs, q, records = read(p, "jsonl", **JSONL)
    assert docs.column("native_id").to_pylist() == ["1"]
    assert reasons(q) == ["null_text", "null_text", "empty_text", "empty_text", "wrong_type"]
    assert q.column("row").to_pylist() == [1, 2, 3, 4, 5]
    assert "line 6, field `text`: expected a string, got a number" in q.column("detail")[4].as_py()
    assert records == 6


def test_invalid_utf8_in_a_parquet_string_column_is_quarantined(tmp_path):
    # Arrow validates neither on write nor on read, so such files exist; build one from raw buffers
    data, offsets = b"okbad\xff\xfeyes", np.array([0, 2, 7, 10], np.int32)
    arr = pa.Array.from_buffers(pa.string(), 3, [None, pa.py_buffer(offsets.tobytes()), pa.py_buffer(data)])
    p = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"text": arr}), p)
    docs, q, records = read(p, "culturax")
    assert docs.column("text").to_pylist() == ["ok", "yes"] and records == 3
    assert reasons(q) == ["invalid_utf8"] and q.column("row").to_pylist() == [1]
    assert q.column("detail")[0].as_py() == f"{p}, row 1, field `text`: not valid UTF-8"
    assert q.column("nbytes").to_pylist() == [5]


def test_uid_counts_quarantined_records_and_doc_id_falls_back_to_text_hash(tmp_path):
    p = write_lines(tmp_path / "a.jsonl", [{"text": "a", "url": "https://a"}, {"text": ""},
                                           {"text": "c", "url": ""}, {"text": "d"}])
    docs, _, _ = read(p, "culturax", pid=7)
    assert docs.column("uid").to_pylist() == [7 << 32 | 0, 7 << 32 | 2, 7 << 32 | 3]
    assert docs.column("doc_id").to_pylist() == [
        "src:https://a", f"src:h{xxhash.xxh3_64_hexdigest(b'c')}", f"src:h{xxhash.xxh3_64_hexdigest(b'd')}"]
