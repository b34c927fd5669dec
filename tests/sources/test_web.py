"""CulturaX, MADLAD-400 and RefinedWeb readers (curate/sources/web.py)."""

from __future__ import annotations

import datetime as dt
import json

import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

from tests.sources import read, write_lines


def test_culturax_fixture_lang_from_column_or_file_name(tmp_path):
    t = pa.table({"text": ["Hallo Welt", "Bonjour"], "timestamp": ["2019-01-01T00:00:00Z", None],
                  "url": ["https://de.example/1", None], "source": ["mC4", "OSCAR-2019"]})
    (tmp_path / "de").mkdir()
    p = tmp_path / "de" / "de_part_00003.parquet"
    pq.write_table(t, p)
    docs, q, records = read(p, "culturax")
    assert records == 2 and q.num_rows == 0
    assert docs.column("lang").to_pylist() == ["de", "de"]
    assert docs.column("license").to_pylist() == ["web-unknown"] * 2
    assert docs.column("doc_id").to_pylist() == [
        "src:https://de.example/1", f"src:h{xxhash.xxh3_64_hexdigest(b'Bonjour')}"]
    assert json.loads(docs.column("meta")[1].as_py()) == {"timestamp": None, "source": "OSCAR-2019"}
    # a language column wins over the file name; an unconventional name gives null
    pq.write_table(t.append_column("language", pa.array(["de", "fr"])), p)
    assert read(p, "culturax")[0].column("lang").to_pylist() == ["de", "fr"]
    pq.write_table(t, tmp_path / "sample.parquet")
    assert read(tmp_path / "sample.parquet", "culturax")[0].column("lang").to_pylist() == [None, None]


def test_culturax_real_sample(real_data):
    p = real_data / "culturax.parquet"
    native = pq.read_table(p)
    docs, q, records = read(p, "culturax")
    assert records == docs.num_rows == native.num_rows == 2030 and q.num_rows == 0
    assert docs.column("text").to_pylist() == native.column("text").to_pylist()
    assert docs.column("native_id").to_pylist() == native.column("url").to_pylist()
    assert docs.column("url").to_pylist() == native.column("url").to_pylist()
    assert set(docs.column("lang").to_pylist()) == {None}  # CulturaX carries no language column
    assert set(docs.column("license").to_pylist()) == {"web-unknown"}
    metas = [json.loads(m) for m in docs.column("meta").to_pylist()]
    assert [m["timestamp"] for m in metas] == native.column("timestamp").to_pylist()
    assert [m["source"] for m in metas] == native.column("source").to_pylist()
    assert docs.column("nbytes").to_pylist() == [len(t.encode()) for t in native.column("text").to_pylist()]


def test_madlad_lang_and_split_from_file_name(tmp_path):
    (tmp_path / "zh_Latn").mkdir()
    p = write_lines(tmp_path / "zh_Latn" / "zh_Latn_noisy_0001.jsonl.gz", [{"text": "ni hao"}, {"text": "  "}])
    docs, q, records = read(p, "madlad")
    assert records == 2 and q.column("reason").to_pylist() == ["empty_text"]
    assert docs.column("lang").to_pylist() == ["zh_Latn"]
    assert json.loads(docs.column("meta")[0].as_py()) == {"split": "noisy"}
    p2 = write_lines(tmp_path / "de_clean_0000.jsonl", [{"text": "Hallo", "url": "https://x"}])
    docs, _, _ = read(p2, "madlad")
    assert docs.column("lang").to_pylist() == ["de"] and docs.column("doc_id").to_pylist() == ["src:https://x"]


def test_refinedweb_fixture(tmp_path):
    t = pa.table({
        "content": ["page one", "page two"],
        "url": ["https://a.example/", None],
        "timestamp": pa.array([dt.datetime(2023, 5, 1, 12, 0, 1), None], pa.timestamp("ms")),
        "dump": ["CC-MAIN-2023-14", None],
        "segment": ["1679296945.1", None],
        "image_urls": pa.array([[["https://a.example/i.png", "alt"], ["https://a.example/j.png", None]], []],
                               pa.list_(pa.list_(pa.string()))),
    })
    p = tmp_path / "rw.parquet"
    pq.write_table(t, p)
    docs, _, _ = read(p, "refinedweb")
    assert docs.column("text").to_pylist() == ["page one", "page two"]
    assert [json.loads(m) for m in docs.column("meta").to_pylist()] == [
        {"timestamp": "2023-05-01T12:00:01", "dump": "CC-MAIN-2023-14", "segment": "1679296945.1", "n_image_urls": 2},
        {"timestamp": None, "dump": None, "segment": None, "n_image_urls": 0},
    ]
    assert docs.column("license").to_pylist() == ["web-unknown"] * 2


def test_refinedweb_real_sample(real_data):
    p = real_data / "refinedweb.parquet"
    native = pq.read_table(p)
    docs, q, records = read(p, "refinedweb")
    assert records == docs.num_rows == native.num_rows == 2036 and q.num_rows == 0
    assert docs.column("text").to_pylist() == native.column("content").to_pylist()
    assert docs.column("url").to_pylist() == native.column("url").to_pylist()
    metas = [json.loads(m) for m in docs.column("meta").to_pylist()]
    assert [m["n_image_urls"] for m in metas] == [len(x) for x in native.column("image_urls").to_pylist()]
    assert sum(m["n_image_urls"] > 0 for m in metas) == 464
    assert [m["dump"] for m in metas] == native.column("dump").to_pylist()
    ts = [None if x is None else x.strftime("%Y-%m-%dT%H:%M:%S") for x in native.column("timestamp").to_pylist()]
    assert [m["timestamp"] for m in metas] == ts
    no_url = [d for d, u in zip(docs.column("doc_id").to_pylist(), native.column("url").to_pylist(), strict=True)
              if u is None]
    assert len(no_url) == 2036 - 1236 and all(d.startswith("src:h") and len(d) == len("src:h") + 16 for d in no_url)
