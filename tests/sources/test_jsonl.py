"""JSON-lines parsing (curate/sources/jsonl.py): per-record problems, whole-file schema errors from the first
records, and the pyarrow.json fast path against the line parser."""

from __future__ import annotations

import json

import pytest

from curate.errors import SchemaError
from curate.sources import jsonl
from tests.sources import JSONL, read, reasons, write_lines


def test_malformed_json_line_is_quarantined_with_its_line_number(tmp_path):
    p = write_lines(tmp_path / "a.jsonl", [{"id": 1, "text": "one"}, '{"id": 2, "text": "two"', "",
                                           {"id": 3, "text": "three"}, "[1, 2]"])
    docs, q, records = read(p, "jsonl", **JSONL)
    assert docs.column("text").to_pylist() == ["one", "three"]
    assert records == 4  # the blank line is not a record
    assert reasons(q) == ["malformed_json", "malformed_json"]
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
    assert reasons(q) == ["invalid_utf8", "invalid_utf8"]
    assert q.column("field").to_pylist() == ["text", "text"]
    assert "line 2, field `text`: not valid UTF-8" in q.column("detail")[0].as_py()
    assert records == 4


def test_jsonl_text_key_of_wrong_type_in_every_record_is_a_schema_error(tmp_path):
    p = write_lines(tmp_path / "a.jsonl", [{"id": i, "text": i} for i in range(3)])
    with pytest.raises(SchemaError, match=r"key `text` holds number values") as e:
        read(p, "jsonl", **JSONL)
    assert e.value.column == "text" and e.value.file == str(p)


def test_jsonl_missing_required_key_is_a_schema_error_listing_keys_found(tmp_path):
    p = write_lines(tmp_path / "a.jsonl", [{"id": 1, "body": "x"}])
    with pytest.raises(SchemaError, match=r"required key `text` .*keys found: \['id', 'body'\]"):
        read(p, "jsonl", **JSONL)


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
    assert small[1].equals(one[1]) and reasons(small[1]) == ["empty_text"]
    assert json.loads(small[0].column("meta")[0].as_py()) == {"timestamp": "2020-01-01T00:00:00Z", "source": "mC4"}


def test_fast_path_falls_back_on_a_dirty_block(tmp_path):
    rows: list = [{"id": i, "text": f"t{i}"} for i in range(6)]
    rows[4] = b'{"id": 4, "text": "bad \xfe"}'
    p = write_lines(tmp_path / "d.jsonl", rows)
    docs, q, _ = read(p, "jsonl", batch_rows=2, **JSONL)
    assert docs.column("native_id").to_pylist() == ["0", "1", "2", "3", "5"]
    assert reasons(q) == ["invalid_utf8"] and q.column("row").to_pylist() == [4]
