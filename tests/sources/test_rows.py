"""The row-reader driver (curate/sources/rows.py): unreadable and empty files, a 50 MB document, and
``subset_by``."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.errors import InputError, SchemaError
from tests.sources import JSONL, read, write_lines


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


def test_subset_by_takes_subset_from_a_column_with_partition_fallback(tmp_path):
    p = tmp_path / "a.parquet"
    pq.write_table(pa.table({"text": ["a", "b", "c"], "lang": ["de", None, "fr"]}), p)
    docs, _, _ = read(p, "culturax", subset_by="lang", subset="other")
    assert docs.column("subset").to_pylist() == ["de", "other", "fr"]
    assert docs.column("lang").to_pylist() == ["de", None, "fr"]
    with pytest.raises(SchemaError, match="required column `bucket` not found"):
        read(p, "culturax", subset_by="bucket")
