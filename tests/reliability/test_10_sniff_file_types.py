"""Issue 22, item 10: a file that is not what its name says is ONE quarantine record naming what it holds.

Magic bytes decide (Parquet ``PAR1`` header and footer, gzip, zstd, bz2, xz, zip, JSON/CSV text); a truncated
Parquet file is a quarantine record, not a run abort; a 0-byte file is zero records with a warning in ``plan``.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.errors import InputError
from curate.planner import plan
from curate.pipeline import parse_recipe
from curate.sources import count_records
from curate.sources.decompress import sniff
from tests.sources import partition, read, src_config

CSV = "id,text\n" + "".join(f"{i},row number {i}\n" for i in range(50))


def _parquet_bytes(tmp_path: Path) -> bytes:
    pq.write_table(pa.table({"text": ["x" * 50] * 20, "url": ["u"] * 20}), tmp_path / "_p.parquet")
    return (tmp_path / "_p.parquet").read_bytes()


@pytest.mark.parametrize(("name", "fmt", "content", "found"), [
    ("csv.parquet", "parquet", "csv", "holds CSV text"),
    ("csv.parquet", "culturax", "csv", "holds CSV text"),
    ("gz.jsonl", "jsonl", "gzip", "holds gzip; rename it to match (a .gz name)"),
    ("pq.jsonl", "culturax", "parquet", "holds parquet; rename it to match (a .parquet name)"),
    ("csv.jsonl", "jsonl", "csv", "holds CSV text"),
    ("jsonl.jsonl.gz", "jsonl", "jsonl", "not gzip as its name"),
    ("pq.txt", "text", "parquet", "holds parquet"),
    ("pq.parquet", "jsonl", "parquet", "format `jsonl` reads JSON lines"),
])
def test_file_not_what_its_name_says_is_one_record_22(tmp_path, name, fmt, content, found) -> None:
    data = {"csv": CSV.encode(), "gzip": gzip.compress(b'{"text": "x"}\n' * 30),
            "parquet": _parquet_bytes(tmp_path), "jsonl": b'{"text": "x"}\n' * 30}[content]
    p = tmp_path / name
    p.write_bytes(data)
    kw = {"text_column": "text"} if fmt in ("jsonl", "parquet") else {}
    docs, q, records = read(p, fmt, **kw)
    assert (docs.num_rows, records) == (0, 1), q.to_pylist()
    (rec,) = q.to_pylist()
    assert rec["reason"] == "wrong_file_type" and found in rec["detail"] and rec["file"] == str(p)
    assert count_records(partition(p, fmt), src_config(fmt, **kw)) == 1, "plan counts it as the reader does"
    with pytest.raises(InputError, match=r": wrong_file_type: "):
        read(p, fmt, on_error="error", **kw)


def test_truncated_parquet_is_a_record_not_a_run_abort_22(tmp_path) -> None:
    raw = _parquet_bytes(tmp_path)
    p = tmp_path / "cut.parquet"
    p.write_bytes(raw[: len(raw) // 2])
    assert sniff(str(p)) == "truncated parquet"
    docs, q, records = read(p, "culturax")
    assert records == 1 and q.column("reason").to_pylist() == ["truncated_file"]
    assert "no PAR1 footer" in q.column("detail")[0].as_py()


def test_xz_and_zip_are_unsupported_records_22(tmp_path) -> None:
    import lzma
    import zipfile

    (tmp_path / "a.jsonl.xz").write_bytes(lzma.compress(b'{"text": "x"}\n'))
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as z:
        z.writestr("a.jsonl", '{"text": "x"}\n')
    for name in ("a.jsonl.xz", "a.zip"):
        _, q, records = read(tmp_path / name, "jsonl", text_column="text")
        assert records == 1 and q.column("reason").to_pylist() == ["unsupported_file_type"], name


def test_sniff_names_each_type_22(tmp_path) -> None:
    import bz2

    import zstandard

    cases = {"a": _parquet_bytes(tmp_path), "b": gzip.compress(b"x"), "c": zstandard.ZstdCompressor().compress(b"x"),
             "d": bz2.compress(b"x"), "e": b'{"a": 1}\n', "f": CSV.encode(), "g": b"just words\n", "h": b"",
             "i": b"\x00\x01\x02binary\x00"}
    want = {"a": "parquet", "b": "gzip", "c": "zstd", "d": "bz2", "e": "JSON lines", "f": "CSV text", "g": "text",
            "h": "empty", "i": "binary data"}
    for k, data in cases.items():
        (tmp_path / k).write_bytes(data)
        assert sniff(str(tmp_path / k)) == want[k], k


def test_valid_files_are_read_as_before_22(tmp_path) -> None:
    (tmp_path / "a.jsonl").write_text(json.dumps({"text": "hello"}) + "\n")
    (tmp_path / "b.parquet").write_bytes(_parquet_bytes(tmp_path))
    (tmp_path / "noext").write_bytes(_parquet_bytes(tmp_path))  # a name that promises nothing: its bytes decide
    assert read(tmp_path / "a.jsonl", "jsonl", text_column="text")[0].num_rows == 1
    assert read(tmp_path / "b.parquet", "culturax")[0].num_rows == 20
    assert read(tmp_path / "noext", "culturax")[0].num_rows == 20


def test_zero_byte_file_is_a_plan_warning_22(tmp_path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_text(json.dumps({"text": "hello there friend"}) + "\n")
    (tmp_path / "in" / "b.jsonl").write_bytes(b"")
    r = parse_recipe({"name": "z", "budget_tokens": 10,
                      "sources": {"s": {"format": "jsonl", "paths": ["in/*.jsonl"], "text_column": "text"}},
                      "mixture": {"g": {"share": 1.0, "sources": {"s": 1}}}}, base_dir=tmp_path)
    result = plan(r)
    assert any("b.jsonl is empty (0 bytes)" in w for w in result["warnings"]), result["warnings"]
    assert result["input_roots"] == {"s": [str(tmp_path / "in" / "*.jsonl")]}
