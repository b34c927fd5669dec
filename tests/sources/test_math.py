"""open-web-math and proof-pile-2 readers (curate/sources/math.py)."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq

from curate.sources.arrow_utils import json_fields
from curate.sources.assemble import clean_text
from curate.sources.math import merge_date
from tests.sources import read, write_lines


def test_merge_date_keeps_metadata_and_handles_odd_values():
    md = pa.array(['{"a": 1, "b": "é"}', "{}", '{"date": "own"}', "not json", None, " { } "])
    date = pa.array(["2020-01-01", "d2", "d3", "d4", "d5", None])
    out = merge_date(md, date).to_pylist()
    assert out[0] == '{"date":"2020-01-01","a": 1, "b": "é"}'
    assert [json.loads(x) for x in out] == [
        {"date": "2020-01-01", "a": 1, "b": "é"}, {"date": "d2"}, {"date": "own"},
        {"date": "d4", "metadata_raw": "not json"}, {"date": "d5"}, {"date": None}]


def test_json_fields_fast_path_agrees_with_the_fallback():
    clean = ['{"date": "d1", "license": "MIT", "x": {"y": 1}}', '{"x": 2}', None, '{"license": null}']
    fast = json_fields(pa.array(clean), ["date", "license"])
    # a value that is not an object forces the JSON-path fallback for the whole column
    slow = json_fields(pa.array([*clean, '{"date": "d5"}', "[1]"]), ["date", "license"])
    assert fast[0].to_pylist() == [True, True, False, True] == slow[0].to_pylist()[:4]
    assert slow[0].to_pylist()[4:] == [True, False]
    for k in ("date", "license"):
        assert fast[1][k].to_pylist() == slow[1][k].to_pylist()[:4]
    assert fast[1]["date"].to_pylist() == ["d1", None, None, None] and slow[1]["date"][4].as_py() == "d5"


def test_open_web_math_fixture_license_from_metadata(tmp_path):
    t = pa.table({"url": ["https://arxiv.org/abs/1", None], "text": ["$x^2$", "proof"],
                  "date": ["2017-11-30T09:05:56Z", "2021-10-28"],
                  "metadata": ['{"arxiv_id": "1", "license": "CC-BY-4.0"}', '{"dataset": "gsm8k"}']})
    p = tmp_path / "owm.parquet"
    pq.write_table(t, p)
    docs, q, records = read(p, "open-web-math")
    assert records == 2 and q.num_rows == 0
    assert docs.column("license").to_pylist() == ["CC-BY-4.0", None]
    assert [json.loads(m) for m in docs.column("meta").to_pylist()] == [
        {"date": "2017-11-30T09:05:56Z", "arxiv_id": "1", "license": "CC-BY-4.0"},
        {"date": "2021-10-28", "dataset": "gsm8k"}]
    assert docs.column("native_id").to_pylist() == ["https://arxiv.org/abs/1", None]


def test_open_web_math_real_sample(real_data):
    p = real_data / "openwebmath.parquet"
    native = pq.read_table(p)
    docs, q, records = read(p, "open-web-math")
    assert records == docs.num_rows == native.num_rows == 13803 and q.num_rows == 0
    # as stored, up to the text-hygiene policy (CRLF -> LF, BOM and NUL removed; issue 22)
    assert docs.column("text").to_pylist() == clean_text(native.column("text").combine_chunks())[0].to_pylist()
    assert docs.column("native_id").to_pylist() == native.column("url").to_pylist()
    for meta, row in zip(docs.column("meta").to_pylist(), native.to_pylist(), strict=True):
        assert json.loads(meta) == {"date": row["date"], **json.loads(row["metadata"])}
    assert set(docs.column("license").to_pylist()) == {None}  # no sample row carries a license field
    arxiv = [json.loads(m) for m in docs.column("meta").to_pylist() if '"source": "arxiv"' in m]
    assert len(arxiv) == 11 and all(m["url"].startswith("https://arxiv.org/abs/") for m in arxiv)


def test_proof_pile_2_jsonl_zst_with_object_meta(tmp_path):
    rows = [
        {"text": "\\begin{proof}", "meta": {"arxiv_id": "2101.1", "url": "https://arxiv.org/abs/2101.1",
                                            "license": "CC-BY-4.0"}},
        {"text": "theorem foo : 1 = 1 := rfl", "meta": {"max_stars_repo_name": "o/r"}},
        {"text": "x", "meta": None},
        {"text": None, "meta": {}},
    ]
    p = write_lines(tmp_path / "arxiv_000.jsonl.zst", rows)
    docs, q, records = read(p, "proof-pile-2", subset="arxiv")
    assert records == 4 and q.column("reason").to_pylist() == ["null_text"]
    assert docs.column("url").to_pylist() == ["https://arxiv.org/abs/2101.1", None, None]
    assert docs.column("license").to_pylist() == ["CC-BY-4.0", None, None]
    assert [None if m is None else json.loads(m) for m in docs.column("meta").to_pylist()] == [
        rows[0]["meta"], rows[1]["meta"], None]
    assert docs.column("subset").to_pylist() == ["arxiv"] * 3
    # the same rows as Parquet with a struct column give the same documents
    pq.write_table(pa.Table.from_pylist(rows[:2]), tmp_path / "pp.parquet")
    pdocs, _, _ = read(tmp_path / "pp.parquet", "proof-pile-2")
    assert pdocs.column("url").to_pylist() == ["https://arxiv.org/abs/2101.1", None]
    # a Parquet struct has every field in every row: fields a row lacks are written as null
    meta = json.loads(pdocs.column("meta")[0].as_py())
    assert meta == {**rows[0]["meta"], "max_stars_repo_name": None}
