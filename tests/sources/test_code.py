"""the-stack v1 and v2 readers (curate/sources/code.py), on generated fixtures and the real sample."""

from __future__ import annotations

import gzip
import json

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from curate.errors import InputError
from curate.sources.assemble import clean_text
from curate.sources.base import ReadContext
from tests.sources import read, write_lines

LIST = pa.list_(pa.string())


def _v1_table() -> pa.Table:
    return pa.table({
        "hexsha": ["a1", "b2", "c3", None],
        "size": [5, 3, 0, 4],
        "ext": ["py", "c", "py", "go"],
        "lang": ["Python", "C", "Python", "Go"],
        "max_stars_repo_path": ["src/x.py", "y.c", "z.py", "w.go"],
        "max_stars_repo_name": ["o/r", "o/s", "o/t", "o/u"],
        "max_stars_repo_head_hexsha": ["h1", "h2", "h3", None],
        "max_stars_repo_licenses": pa.array([["MIT"], ["GPL-2.0-or-later"], [], []], LIST),
        "max_stars_count": pa.array([10, None, None, None], pa.int64()),
        "max_issues_repo_path": ["src/x.py", "y.c", "z.py", "w.go"],
        "max_issues_repo_name": ["o/r2", "o/s", "o/t", "o/u"],
        "max_issues_repo_head_hexsha": ["i1", "h2", "h3", "h4"],
        "max_issues_repo_licenses": pa.array([["Apache-2.0", "MIT"], ["GPL-2.0-or-later"], None, []], LIST),
        "max_forks_repo_path": ["src/x.py", "y.c", "z.py", "w.go"],
        "max_forks_repo_name": ["o/r", "o/s", "o/t", "o/u"],
        "max_forks_repo_head_hexsha": ["h1", "h2", "h3", "h4"],
        "max_forks_repo_licenses": pa.array([["MIT"], None, None, []], LIST),
        "content": ["print", "int", "  ", "main"],
        "avg_line_length": [5.0, 3.0, 2.0, 4.0],
        "max_line_length": [5, 3, 2, 4],
        "alphanum_fraction": [1.0, 1.0, 0.0, 1.0],
    })


@pytest.mark.parametrize("name", ["v1.parquet", "v1.jsonl.gz"])
def test_the_stack_v1_normalizes_licenses_meta_and_urls(tmp_path, name):
    t = _v1_table()
    p = tmp_path / name
    if name.endswith(".parquet"):
        pq.write_table(t, p)
    else:
        write_lines(p, t.to_pylist())
    docs, q, records = read(p, "the-stack-v1")
    assert records == 4
    assert q.column("reason").to_pylist() == ["empty_text"] and q.column("field").to_pylist() == ["content"]
    assert docs.column("text").to_pylist() == ["print", "int", "main"]
    assert docs.column("native_id").to_pylist() == ["a1", "b2", None]
    assert docs.column("license").to_pylist() == ['["Apache-2.0", "MIT"]', '["GPL-2.0-or-later"]', "[]"]
    assert docs.column("lang").to_pylist() == [None, None, None]
    assert docs.column("url").to_pylist() == ["https://github.com/o/r/blob/h1/src/x.py",
                                              "https://github.com/o/s/blob/h2/y.c",
                                              "https://github.com/o/u/blob/h4/w.go"]
    meta = json.loads(docs.column("meta")[0].as_py())
    assert meta == {"lang": "Python", "ext": "py", "size": 5, "repo": "o/r", "path": "src/x.py", "stars": 10,
                    "licenses": {"max_stars": ["MIT"], "max_issues": ["Apache-2.0", "MIT"], "max_forks": ["MIT"]},
                    "avg_line_length": 5.0, "max_line_length": 5, "alphanum_fraction": 1.0}
    assert docs.column("doc_id")[2].as_py().startswith("src:h")


def test_the_stack_v1_real_sample(real_data):
    p = real_data / "thestack.parquet"
    native = pq.read_table(p)
    docs, q, records = read(p, "the-stack-v1")
    assert records == native.num_rows == docs.num_rows == 3180 and q.num_rows == 0
    # as stored, up to the text-hygiene policy (CRLF -> LF, BOM and NUL removed; issue 22)
    assert docs.column("text").to_pylist() == clean_text(native.column("content").combine_chunks())[0].to_pylist()
    assert docs.column("native_id").to_pylist() == native.column("hexsha").to_pylist()
    assert docs.column("nbytes").to_pylist() == pc.binary_length(docs.column("text")).to_pylist()
    repos = native.column("max_stars_repo_name").to_pylist()
    lic = dict(zip(repos, docs.column("license").to_pylist(), strict=True))
    assert lic["htop-dev/htop"] == '["GPL-2.0-or-later"]'
    assert lic["karpathy/ng-video-lecture"] == "[]"
    assert lic["serde-rs/json"] == '["Apache-2.0", "MIT"]'
    for lic_json, row in zip(docs.column("license").to_pylist(), native.to_pylist(), strict=True):
        assert json.loads(lic_json) == sorted(set(row["max_stars_repo_licenses"]))
    metas = [json.loads(m) for m in docs.column("meta").to_pylist()]
    assert [m["lang"] for m in metas] == native.column("lang").to_pylist()
    assert [m["path"] for m in metas] == native.column("max_stars_repo_path").to_pylist()
    row = native.slice(0, 1).to_pylist()[0]
    assert docs.column("url")[0].as_py() == (f"https://github.com/{row['max_stars_repo_name']}/blob/"
                                             f"{row['max_stars_repo_head_hexsha']}/{row['max_stars_repo_path']}")
    assert set(docs.column("lang").to_pylist()) == {None}


def test_the_stack_v1_real_sample_same_through_jsonl_gz(real_data, tmp_path):
    native = pq.read_table(real_data / "thestack.parquet").slice(0, 600)
    pq.write_table(native, tmp_path / "s.parquet")
    write_lines(tmp_path / "s.jsonl.gz", native.to_pylist())
    a, _, _ = read(tmp_path / "s.parquet", "the-stack-v1", batch_rows=128)
    b, _, _ = read(tmp_path / "s.jsonl.gz", "the-stack-v1", batch_rows=128)
    assert a.equals(b)


# ---------------------------------------------------------------------------- v2
def _v2_table(with_content: bool = False) -> pa.Table:
    cols = {
        "blob_id": ["b1", "b2", "b3", "b4", "b5", None],
        "path": ["/a.py", "/b.c", "/c.txt", "/d.py", "/e.py", "/f.py"],
        "repo_name": ["o/r"] * 6,
        "revision_id": ["rev"] * 6,
        "detected_licenses": pa.array([["MIT"], [], ["BSD-3-Clause", "MIT", "MIT"], ["MIT"], ["MIT"], ["MIT"]], LIST),
        "license_type": ["permissive", "no_license", "permissive", "permissive", "permissive", "permissive"],
        "language": ["Python", "C", "Text", "Python", "Python", "Python"],
        "src_encoding": ["UTF-8", "UTF-8", "ISO-8859-1", "UTF-8", "UTF-8", "UTF-8"],
        "is_vendor": [False, True, False, False, False, False],
        "is_generated": [False, False, True, False, False, False],
        "length_bytes": [5, 3, 4, 1, 3, 0],
    }
    if with_content:
        cols["content"] = ["from column", None, None, None, None, None]
    return pa.table(cols)


def _blobs(tmp_path):
    d = tmp_path / "blobs"
    d.mkdir()
    (d / "b1").write_bytes("print('é')".encode())
    (d / "b2.gz").write_bytes(gzip.compress(b"int x;"))
    (d / "b3").write_bytes("caf\xe9".encode("latin-1"))
    (d / "b4").write_bytes(b"bad \xff utf8")
    return d


def test_the_stack_v2_reads_blobs_decodes_and_quarantines_missing_content(tmp_path):
    p = tmp_path / "v2.parquet"
    pq.write_table(_v2_table(with_content=True), p)
    d = _blobs(tmp_path)
    docs, q, records = read(p, "the-stack-v2", blob_dir="blobs", ctx=ReadContext(
        resolve_path=lambda x: str(tmp_path / x)))
    assert records == 6
    assert docs.column("text").to_pylist() == ["from column", "int x;", "café"]
    assert docs.column("native_id").to_pylist() == ["b1", "b2", "b3"]
    assert docs.column("license").to_pylist() == ['["MIT"]', "[]", '["BSD-3-Clause", "MIT"]']
    assert docs.column("url")[0].as_py() == "https://github.com/o/r/blob/rev/a.py"
    meta = json.loads(docs.column("meta")[1].as_py())
    assert meta["license_type"] == "no_license" and meta["is_vendor"] is True and meta["language"] == "C"
    assert q.column("reason").to_pylist() == ["invalid_utf8", "missing_content", "missing_content"]
    assert q.column("row").to_pylist() == [3, 4, 5]
    assert f"blob b5 not found in {d}" in q.column("detail")[1].as_py()


def test_the_stack_v2_without_blob_dir_never_makes_empty_documents(tmp_path):
    p = tmp_path / "v2.parquet"
    pq.write_table(_v2_table(), p)
    docs, q, records = read(p, "the-stack-v2")
    assert docs.num_rows == 0 and records == 6
    assert set(q.column("reason").to_pylist()) == {"missing_content"}
    assert "sets no `blob_dir`" in q.column("detail")[0].as_py()
    with pytest.raises(InputError, match=r"v2\.parquet, row 0, column `content`: missing_content"):
        read(p, "the-stack-v2", on_error="error")
