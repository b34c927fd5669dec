"""Raw batches and quarantine records (curate/sources/rawbatch.py): ``on_error: error`` raises the first record
naming file, line and field; a Parquet column that is missing or not a string is a schema error."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.errors import InputError, SchemaError
from tests.sources import JSONL, read, write_lines


def test_on_error_error_raises_naming_file_line_and_field(tmp_path):
    p = write_lines(tmp_path / "a.jsonl", [{"id": 1, "text": "ok"}, {"id": 2, "text": ""}])
    with pytest.raises(InputError, match=r"a\.jsonl, line 2, column `text`: empty_text") as e:
        read(p, "jsonl", on_error="error", **JSONL)
    assert e.value.line == 2


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
