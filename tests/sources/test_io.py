"""Shared reader plumbing: decompression, bad input, quarantine reasons, ids, batching (curate/sources/decompress.py, jsonl.py,
arrow_utils.py, rawbatch.py, assemble.py, rows.py)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import xxhash

from curate.errors import InputError, SchemaError
from curate.sources import arrow_utils, jsonl
from tests.sources import read, write_bytes, write_lines

JSONL = {"text_column": "text", "id_column": "id"}


def _reasons(q: pa.Table) -> list[str]:
    return q.column("reason").to_pylist()


# ---------------------------------------------------------------------------- per-record problems (JSON lines)
def test_malformed_json_line_is_quarantined_with_its_line_number(tmp_path):
    p = write_lines(tmp_path / "a.jsonl", [{"id": 1, "text": "one"}, '{"id": 2, "text": "two"', "",
                                           {"id": 3, "text": "three"}, "[1, 2]"])
    docs, q, records = read(p, "jsonl", **JSONL)
    assert docs.column("text").to_pylist() == ["one", "three"]
    assert records == 4  # the blank line is not a record
    assert _reasons(q) == ["malformed_json", "malformed_json"]
    assert q.column("row").to_pylist() == [1, 4]
    detail = q.column("detail").to_pylist()
    assert f"{p}, line 2: malformed JSON at column" in detail[0]
    assert "line 5: expected a JSON object, got a JSON array" in detail[1]


def test_invalid_utf8_and_unpaired_surrogate_are_quarantined(tmp_path):
    p = write_lines(tmp_path / "a.jsonl", [b'{"id": 1, "text": "ok"}', b'{"id": 2, "text": "bad \xff byte"}',
                                           b'{"id": 3, "text": "lone \\ud800 half"}',
                                           b'{"id": 4, "text": "pair \\ud83d\\ude00 ok"}'])
    docs, q, records = read(p, "jsonl", **JSONL)
    assert docs.column("text").to_pylist() == ["ok", "pair \U0001f600 ok"]
    assert _reasons(q) == ["invalid_utf8", "invalid_utf8"]
    assert q.column("field").to_pylist() == ["text", "text"]
    assert "line 2, field `text`: not valid UTF-8" in q.column("detail")[0].as_py()
    assert records == 4


def test_invalid_utf8_in_a_parquet_string_column_is_quarantined(tmp_path):
    # Arrow validates neither on write nor on read, so such files exist; build one from raw buffers
    data, offsets = b"okbad\xff\xfeyes", np.array([0, 2, 7, 10], np.int32)
    arr = pa.Array.from_buffers(pa.string(), 3, [None, pa.py_buffer(offsets.tobytes()), pa.py_buffer(data)])
    p = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"text": arr}), p)
    docs, q, records = read(p, "culturax")
    assert docs.column("text").to_pylist() == ["ok", "yes"] and records == 3
    assert _reasons(q) == ["invalid_utf8"] and q.column("row").to_pylist() == [1]
    assert q.column("detail")[0].as_py() == f"{p}, row 1, field `text`: not valid UTF-8"
    assert q.column("nbytes").to_pylist() == [5]


def test_null_absent_empty_and_wrong_typed_text(tmp_path):
    p = write_lines(tmp_path / "a.jsonl", [{"id": 1, "text": "keep"}, {"id": 2, "text": None}, {"id": 3},
                                           {"id": 4, "text": ""}, {"id": 5, "text": " \n\t\u3000"},
                                           {"id": 6, "text": 7}])
    docs, q, records = read(p, "jsonl", **JSONL)
    assert docs.column("native_id").to_pylist() == ["1"]
    assert _reasons(q) == ["null_text", "null_text", "empty_text", "empty_text", "wrong_type"]
    assert q.column("row").to_pylist() == [1, 2, 3, 4, 5]
    assert "line 6, field `text`: expected a string, got a number" in q.column("detail")[4].as_py()
    assert records == 6


def test_on_error_error_raises_naming_file_line_and_field(tmp_path):
    p = write_lines(tmp_path / "a.jsonl", [{"id": 1, "text": "ok"}, {"id": 2, "text": ""}])
    with pytest.raises(InputError, match=r"a\.jsonl, line 2, column `text`: empty_text") as e:
        read(p, "jsonl", on_error="error", **JSONL)
    assert e.value.line == 2


# ---------------------------------------------------------------------------- whole-file problems
def test_jsonl_text_key_of_wrong_type_in_every_record_is_a_schema_error(tmp_path):
    p = write_lines(tmp_path / "a.jsonl", [{"id": i, "text": i} for i in range(3)])
    with pytest.raises(SchemaError, match=r"key `text` holds number values") as e:
        read(p, "jsonl", **JSONL)
    assert e.value.column == "text" and e.value.file == str(p)


def test_jsonl_missing_required_key_is_a_schema_error_listing_keys_found(tmp_path):
    p = write_lines(tmp_path / "a.jsonl", [{"id": 1, "body": "x"}])
    with pytest.raises(SchemaError, match=r"required key `text` .*keys found: \['id', 'body'\]"):
        read(p, "jsonl", **JSONL)


def test_parquet_wrong_column_type_is_a_schema_error(tmp_path):
    p = tmp_path / "a.parquet"
    pq.write_table(pa.table({"text": [1, 2]}), p)
    with pytest.raises(SchemaError, match=r"column `text` has type int64, expected a string") as e:
        read(p, "parquet", text_column="text")
    assert e.value.file == str(p) and e.value.column == "text"


def test_parquet_missing_column_names_file_column_and_columns_found(tmp_path):
    p = tmp_path / "a.parquet"
    pq.write_table(pa.table({"body": ["x"], "url": ["u"]}), p)
    with pytest.raises(SchemaError, match=r"a\.parquet, column `text`: required column `text` not found; "
                                          r"columns found: \['body', 'url'\]"):
        read(p, "culturax")


@pytest.mark.parametrize("damage", ["garbage", "cut"])
def test_unreadable_parquet_is_an_input_error_naming_the_file(tmp_path, damage):
    p = tmp_path / "a.parquet"
    pq.write_table(pa.table({"text": ["x" * 100] * 100}), p)
    raw = p.read_bytes()
    p.write_bytes(b"PAR1 not parquet at all" if damage == "garbage" else raw[: len(raw) - 20])
    with pytest.raises(InputError, match=r"a\.parquet: truncated_file: truncated Parquet file"):
        read(p, "parquet", text_column="text", on_error="error")
    # issue 22: with on_error: quarantine (the default) the file is one record, not a run abort
    docs, q, records = read(p, "parquet", text_column="text")
    assert (docs.num_rows, records) == (0, 1) and q.column("reason").to_pylist() == ["truncated_file"]


@pytest.mark.parametrize("name", ["a.jsonl", "a.jsonl.gz", "a.jsonl.zst", "a.parquet"])
def test_empty_file_is_zero_records(tmp_path, name):
    p = tmp_path / name
    p.write_bytes(b"")
    docs, q, records = read(p, "culturax")
    assert (docs.num_rows, q.num_rows, records) == (0, 0, 0)


def test_empty_compressed_stream_and_blank_lines_are_zero_records(tmp_path):
    p = write_bytes(tmp_path / "a.jsonl.gz", b"\n  \n\n")
    assert read(p, "culturax")[2] == 0


# ---------------------------------------------------------------------------- truncated / corrupt streams
def _lines(n: int) -> list[dict]:
    return [{"id": i, "text": f"document number {i} " + "x" * (i % 97)} for i in range(n)]


@pytest.mark.parametrize(("suffix", "name"), [(".gz", "gzip"), (".zst", "zstd"), (".bz2", "bz2")])
def test_truncated_stream_keeps_lines_before_the_break(tmp_path, suffix, name):
    rows = _lines(5000)
    p = write_lines(tmp_path / f"a.jsonl{suffix}", rows)
    raw = p.read_bytes()
    p.write_bytes(raw[: len(raw) * 2 // 3])
    docs, q, records = read(p, "jsonl", batch_rows=500, **JSONL)
    n = docs.num_rows
    assert 0 < n < 5000
    assert docs.column("text").to_pylist() == [r["text"] for r in rows[:n]]
    assert _reasons(q) == ["truncated_file"]
    assert q.column("row").to_pylist() == [n]
    assert f"truncated or corrupt {name} stream at line {n + 1}" in q.column("detail")[0].as_py()
    assert records == n + 1
    with pytest.raises(InputError, match=rf"a\.jsonl{suffix}, line {n + 1}: truncated or corrupt {name} stream "
                                         rf"at line {n + 1}"):
        read(p, "jsonl", on_error="error", **JSONL)


def test_corrupt_gzip_member_is_reported_like_a_truncation(tmp_path):
    p = write_lines(tmp_path / "a.jsonl.gz", _lines(3000))
    raw = bytearray(p.read_bytes())
    for i in range(len(raw) // 2, len(raw) // 2 + 64):
        raw[i] ^= 0xFF
    p.write_bytes(bytes(raw))
    docs, q, records = read(p, "jsonl", **JSONL)
    assert _reasons(q) == ["truncated_file"]
    assert "corrupt data" in q.column("detail")[0].as_py()
    assert records == docs.num_rows + 1


def test_multi_member_gzip_and_multi_frame_zstd_are_read_whole(tmp_path):
    import gzip

    import zstandard

    a, b = b'{"id": 1, "text": "a"}\n', b'{"id": 2, "text": "b"}\n'
    (tmp_path / "m.jsonl.gz").write_bytes(gzip.compress(a) + gzip.compress(b))
    c = zstandard.ZstdCompressor()
    (tmp_path / "m.jsonl.zst").write_bytes(c.compress(a) + c.compress(b))
    for name in ("m.jsonl.gz", "m.jsonl.zst"):
        docs, _, _ = read(tmp_path / name, "jsonl", **JSONL)
        assert docs.column("text").to_pylist() == ["a", "b"]


# ---------------------------------------------------------------------------- big documents, batching
def test_50mb_single_document_reads_in_jsonl_and_parquet(tmp_path):
    text = ("0123456789abcdef" * 65536) * 50  # 50 MiB
    p = write_lines(tmp_path / "big.jsonl", [{"id": "big", "text": text}, {"id": "small", "text": "s"}])
    docs, q, _ = read(p, "jsonl", **JSONL)
    assert q.num_rows == 0 and docs.column("nbytes").to_pylist() == [len(text), 1]
    assert docs.column("text")[0].as_py() == text
    pp = tmp_path / "big.parquet"
    pq.write_table(pa.table({"text": [text]}), pp)
    docs, _, _ = read(pp, "culturax")
    assert docs.column("nbytes").to_pylist() == [len(text)]


def test_fast_path_gives_the_same_batches_as_the_line_parser(tmp_path, monkeypatch):
    rows = [{"id": i, "text": f"t{i} é", "url": f"https://x/{i}", "timestamp": "2020-01-01T00:00:00Z",
             "source": "mC4"} for i in range(12)]
    rows[7]["text"] = ""  # a quarantined record in a later block
    p = write_lines(tmp_path / "c.jsonl", rows)
    calls = {"fast": 0}
    orig = jsonl._JsonlParser._fast

    def counting(self, lines, idx):
        out = orig(self, lines, idx)
        calls["fast"] += out is not None
        return out

    monkeypatch.setattr(jsonl._JsonlParser, "_fast", counting)
    small = read(p, "culturax", batch_rows=3)
    assert calls["fast"] == 3  # blocks 2..4 went through pyarrow.json
    monkeypatch.setattr(jsonl._JsonlParser, "_fast", lambda self, lines, idx: None)
    slow = read(p, "culturax", batch_rows=3)
    one = read(p, "culturax", batch_rows=100)
    assert small[0].equals(slow[0]) and small[0].equals(one[0])
    assert small[1].equals(one[1]) and _reasons(small[1]) == ["empty_text"]
    assert json.loads(small[0].column("meta")[0].as_py()) == {"timestamp": "2020-01-01T00:00:00Z", "source": "mC4"}


def test_fast_path_falls_back_on_a_dirty_block(tmp_path):
    rows: list = [{"id": i, "text": f"t{i}"} for i in range(6)]
    rows[4] = b'{"id": 4, "text": "bad \xfe"}'
    p = write_lines(tmp_path / "d.jsonl", rows)
    docs, q, _ = read(p, "jsonl", batch_rows=2, **JSONL)
    assert docs.column("native_id").to_pylist() == ["0", "1", "2", "3", "5"]
    assert _reasons(q) == ["invalid_utf8"] and q.column("row").to_pylist() == [4]


# ---------------------------------------------------------------------------- ids, uids, subsets
def test_uid_counts_quarantined_records_and_doc_id_falls_back_to_text_hash(tmp_path):
    p = write_lines(tmp_path / "a.jsonl", [{"text": "a", "url": "https://a"}, {"text": ""},
                                           {"text": "c", "url": ""}, {"text": "d"}])
    docs, _, _ = read(p, "culturax", pid=7)
    assert docs.column("uid").to_pylist() == [7 << 32 | 0, 7 << 32 | 2, 7 << 32 | 3]
    assert docs.column("doc_id").to_pylist() == [
        "src:https://a", f"src:h{xxhash.xxh3_64_hexdigest(b'c')}", f"src:h{xxhash.xxh3_64_hexdigest(b'd')}"]


def test_subset_by_takes_subset_from_a_column_with_partition_fallback(tmp_path):
    p = tmp_path / "a.parquet"
    pq.write_table(pa.table({"text": ["a", "b", "c"], "lang": ["de", None, "fr"]}), p)
    docs, _, _ = read(p, "culturax", subset_by="lang", subset="other")
    assert docs.column("subset").to_pylist() == ["de", "other", "fr"]
    assert docs.column("lang").to_pylist() == ["de", None, "fr"]
    with pytest.raises(SchemaError, match="required column `bucket` not found"):
        read(p, "culturax", subset_by="bucket")


def test_json_string_lists_sorts_dedups_and_unions():
    a = pa.array([["MIT", "Apache-2.0"], None, [], ["MIT"], None], pa.list_(pa.string()))
    b = pa.array([["MIT"], ["GPL-3.0-only", ""], None, None, None], pa.list_(pa.string()))
    out = arrow_utils.json_string_lists([a, b]).to_pylist()
    assert out == ['["Apache-2.0", "MIT"]', '["GPL-3.0-only"]', "[]", '["MIT"]', "[]"]
