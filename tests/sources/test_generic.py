"""Generic jsonl / parquet / text readers (curate/sources/generic.py)."""

from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import xxhash

from curate.errors import InputError, SchemaError
from tests.sources import read, write_lines

MAP = {"text_column": "body", "id_column": "key", "url_column": "link", "lang_column": "lg",
       "license_column": "lic"}


def test_jsonl_column_mapping(tmp_path):
    p = write_lines(tmp_path / "x.jsonl.bz2", [
        {"key": 17, "body": "eins", "link": "https://a", "lg": "de", "lic": "CC-BY-4.0"},
        {"key": None, "body": "deux", "link": None, "lg": "fr", "lic": ["MIT", "Apache-2.0"]},
    ])
    docs, q, records = read(p, "jsonl", **MAP)
    assert records == 2 and q.num_rows == 0
    assert docs.column("text").to_pylist() == ["eins", "deux"]
    assert docs.column("native_id").to_pylist() == ["17", None]
    assert docs.column("doc_id").to_pylist() == ["src:17", f"src:h{xxhash.xxh3_64_hexdigest(b'deux')}"]
    assert docs.column("url").to_pylist() == ["https://a", None]
    assert docs.column("lang").to_pylist() == ["de", "fr"]
    assert docs.column("license").to_pylist() == ["CC-BY-4.0", '["Apache-2.0", "MIT"]']
    assert docs.column("meta").to_pylist() == [None, None]


def test_parquet_column_mapping_and_license_lists(tmp_path):
    p = tmp_path / "x.data"  # format: parquet reads Parquet whatever the name
    pq.write_table(pa.table({"key": [1, 2], "body": ["a", "b"], "link": ["u1", "u2"], "lg": ["en", None],
                             "lic": pa.array([["MIT"], []], pa.list_(pa.string()))}), p)
    docs, _, _ = read(p, "parquet", **MAP)
    assert docs.column("native_id").to_pylist() == ["1", "2"]
    assert docs.column("license").to_pylist() == ['["MIT"]', "[]"]


def test_mapped_column_absent_from_the_file_is_a_schema_error(tmp_path):
    p = tmp_path / "x.parquet"
    pq.write_table(pa.table({"body": ["a"]}), p)
    with pytest.raises(SchemaError, match=r"required column `key` not found; columns found: \['body'\]"):
        read(p, "parquet", text_column="body", id_column="key")


def test_text_one_document_per_file_text_hygiene(tmp_path):
    """Kept as written except for the text-hygiene policy (issue 22): BOM stripped, CRLF/CR -> LF, NUL dropped."""
    raw = "\ufeffTitle\r\n\r\nSecond\x00 paragraph.\rEnd\n"
    body = "Title\n\nSecond paragraph.\nEnd\n"
    p = tmp_path / "doc.txt"
    p.write_bytes(raw.encode())
    docs, q, records = read(p, "text", pid=2)
    assert records == 1 and q.num_rows == 0
    assert docs.column("text").to_pylist() == [body]
    assert docs.column("uid").to_pylist() == [2 << 32]
    assert docs.column("doc_id").to_pylist() == [f"src:h{xxhash.xxh3_64_hexdigest(body.encode())}"]
    assert json.loads(docs.column("meta")[0].as_py()) == {"file": str(p)}
    gz = tmp_path / "doc.txt.gz"
    gz.write_bytes(gzip.compress(raw.encode()))
    assert read(gz, "text")[0].column("text").to_pylist() == [body]


def test_text_bad_inputs(tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    assert read(tmp_path / "empty.txt", "text")[2] == 0
    (tmp_path / "blank.txt").write_bytes(b" \n\n ")
    _, q, _ = read(tmp_path / "blank.txt", "text")
    assert q.column("reason").to_pylist() == ["empty_text"]
    (tmp_path / "bad.txt").write_bytes(b"line one\nline \xc3\x28 two\n")
    docs, q, records = read(tmp_path / "bad.txt", "text")
    assert (docs.num_rows, records) == (0, 1)
    assert q.column("reason").to_pylist() == ["invalid_utf8"]
    assert "not valid UTF-8 at byte 14 (line 2)" in q.column("detail")[0].as_py()
    big = gzip.compress(b"word " * 200_000)
    (tmp_path / "cut.txt.gz").write_bytes(big[: len(big) // 2])
    _, q, records = read(tmp_path / "cut.txt.gz", "text")
    assert q.column("reason").to_pylist() == ["truncated_file"] and records == 1
    with pytest.raises(InputError, match=r"cut\.txt\.gz, line 1: truncated or corrupt gzip stream"):
        read(tmp_path / "cut.txt.gz", "text", on_error="error")


def test_text_50mb_document(tmp_path):
    body = "abcdefghij" * (5 << 20)
    p = tmp_path / "big.txt"
    p.write_text(body)
    docs, _, _ = read(p, "text")
    assert docs.column("nbytes").to_pylist() == [len(body)] and docs.column("text")[0].as_py() == body
