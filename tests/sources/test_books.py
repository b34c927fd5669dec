"""Book readers: PG boilerplate stripping and header parsing, ``pg19`` Parquet and ``gutenberg-txt`` files.

Fixtures are generated here (PG-style headers/footers in UTF-8 and ISO-8859-1, compressed variants); the real-data
tests read ``gutenberg.parquet`` through the ``real_data`` fixture and check every book against PROVENANCE.md.
"""

from __future__ import annotations

import bz2
import gzip
import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from curate.errors import InputError, SchemaError
from curate.recipe import SourceConfig
from curate.sources.base import READERS
from curate.sources.books import (
    LICENSE_COPYRIGHTED,
    LICENSE_PUBLIC_DOMAIN,
    language_code,
    parse_header,
    read_gutenberg_txt,
    read_pg19,
    strip_boilerplate,
)
from tests.sources._read import read_file, src_config

BODY = "CHAPITRE I\n\nLe café était très élevé, dit l'élève.\n\nFIN"

HEADER = """The Project Gutenberg EBook of Le Café, by Jean Dupont

This eBook is for the use of anyone anywhere at no cost and with
almost no restrictions whatsoever.  You may copy it, give it away or
re-use it under the terms of the Project Gutenberg License included
with this eBook or online at www.gutenberg.org


Title: Le Café
       Histoire véritable

Author: Jean Dupont

Posting Date: May 3, 2009 [EBook #12345]
Release Date: March, 2001

Language: French

Character set encoding: ISO-8859-1

*** START OF THIS PROJECT GUTENBERG EBOOK LE CAFÉ ***




"""

FOOTER = """




End of the Project Gutenberg EBook of Le Café, by Jean Dupont

*** END OF THIS PROJECT GUTENBERG EBOOK LE CAFÉ ***

***** This file should be named 12345-8.txt or 12345-8.zip *****

Updated editions will replace the previous one--the old editions
will be renamed.  Project Gutenberg-tm electronic works are not protected by U.S. copyright law.
"""

BOOK = HEADER + BODY + FOOTER

OLD_BOOK = """**The Project Gutenberg Etext of Old Tales, by Anon**
Copyright laws are changing all over the world, be sure to check
the copyright laws for your country before posting these files!!

Old Tales

[Etext #77]

*START*THE SMALL PRINT!**FOR PUBLIC DOMAIN ETEXTS**START*
Among other things, this means that no one owns a United States copyright
on or for this work, and that works copyrighted elsewhere may differ.
*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*

Once upon a time.

The end.

End of Project Gutenberg's Old Tales, by Anon
"""


def _src(fmt: str, **kw) -> SourceConfig:
    return src_config(fmt, **kw)


def _read(reader, path: Path, fmt: str, **kw):
    kw.setdefault("pid", 7)
    return read_file(reader, path, fmt, source="books", subset="pd", **kw)


def test_readers_are_registered():
    assert READERS["pg19"] is read_pg19
    assert READERS["gutenberg-txt"] is read_gutenberg_txt


# ---------------------------------------------------------------------------- pure functions
def test_strip_boilerplate_cuts_header_and_footer_and_parses_header():
    body, meta = strip_boilerplate(BOOK)
    assert body == BODY
    assert body in BOOK
    assert meta == {
        "title": "Le Café Histoire véritable", "author": "Jean Dupont", "language": "French", "lang": "fr",
        "ebook_no": 12345, "release_date": "March, 2001", "copyright_notice": False,
        "pg_boilerplate_stripped": True,
    }


@pytest.mark.parametrize("start", [
    "*** START OF THE PROJECT GUTENBERG EBOOK X ***",
    "***START OF THE PROJECT GUTENBERG EBOOK X***",
    "*** START OF THIS PROJECT GUTENBERG EBOOK X ***",
    "*** START OF THE PROJECT GUTENBERG EBOOK 12345 ***",
    "*END*THE SMALL PRINT! FOR PUBLIC DOMAIN EBOOKS*Ver.02/11/02*END*",
])
@pytest.mark.parametrize("end", [
    "*** END OF THE PROJECT GUTENBERG EBOOK X ***",
    "***END OF THE PROJECT GUTENBERG EBOOK X***",
    "*** END OF THIS PROJECT GUTENBERG EBOOK X ***",
    "End of the Project Gutenberg EBook of X, by Y",
    "End of Project Gutenberg's X, by Y",
    "End of Project Gutenberg\u2019s X, by Y",
    "End of The Project Gutenberg Etext of X",
])
def test_strip_boilerplate_marker_variants(start, end):
    text = f"Title: X\nLanguage: English\n\n{start}\n\nFirst line.\n\nLast line.\n\n{end}\n\nLicence text.\n"
    body, meta = strip_boilerplate(text)
    assert body == "First line.\n\nLast line."
    assert meta["pg_boilerplate_stripped"] is True
    assert meta["lang"] == "en"


def test_strip_boilerplate_old_small_print_header():
    body, meta = strip_boilerplate(OLD_BOOK)
    assert body == "Once upon a time.\n\nThe end."
    assert meta["ebook_no"] == 77
    # "copyrighted" inside the small print is licence text, not a notice about this book
    assert meta["copyright_notice"] is False


def test_strip_boilerplate_without_markers_returns_text_unchanged():
    text = "  Just a book.\nNo Project Gutenberg boilerplate here.\n"
    body, meta = strip_boilerplate(text)
    assert body == text.strip()
    assert meta["pg_boilerplate_stripped"] is False
    assert meta["lang"] is None and meta["ebook_no"] is None and meta["copyright_notice"] is False


def test_strip_boilerplate_footer_only():
    body, meta = strip_boilerplate("Body text.\n\n*** END OF THE PROJECT GUTENBERG EBOOK X ***\nlicence")
    assert body == "Body text."
    assert meta["pg_boilerplate_stripped"] is True
    assert meta["title"] is None


@pytest.mark.parametrize(("notice", "expected"), [
    ("** This is a COPYRIGHTED Project Gutenberg eBook, Details Below **", True),
    ("This eBook is copyrighted by the author.", True),
    ("Copyright (C) 2002 David Wyllie.", True),
    ("\u00a9 2002 David Wyllie.", True),
    ("Copyright laws are changing all over the world.", False),
    ("", False),
])
def test_copyright_notice_is_read_from_the_header_only(notice, expected):
    text = f"Title: X\n{notice}\n\n*** START OF THE PROJECT GUTENBERG EBOOK X ***\nBody.\n"
    assert strip_boilerplate(text)[1]["copyright_notice"] is expected
    # the same words in the body do not count
    text = f"Title: X\n\n*** START OF THE PROJECT GUTENBERG EBOOK X ***\nBody.\n{notice}\n"
    assert strip_boilerplate(text)[1]["copyright_notice"] is False


@pytest.mark.parametrize(("line", "number"), [
    ("Release Date: June, 1998 [EBook #1342]", 1342),
    ("Release Date: June, 1998 [eBook #1342]", 1342),
    ("Release Date: August, 1994  [Etext #158]", 158),
    ("Release Date: September 2006 [Ebook #6130]", 6130),
    ("Release date: June 1, 1998 [E-Book #42]", 42),
])
def test_parse_header_ebook_number_variants(line, number):
    meta = parse_header(f"Title: X\n\n{line}\n")
    assert meta["ebook_no"] == number
    assert "#" not in meta["release_date"]


def test_parse_header_title_glued_to_previous_line_and_empty_author():
    meta = parse_header("with this eBook or online at www.gutenberg.orgTitle: The Yellow Wallpaper\n\nAuthor:  \n")
    assert meta["title"] == "The Yellow Wallpaper"
    assert meta["author"] is None


@pytest.mark.parametrize(("name", "code"), [
    ("English", "en"), ("French", "fr"), ("German", "de"), ("Spanish", "es"), ("Italian", "it"),
    ("Portuguese", "pt"), ("Finnish", "fi"), ("Dutch", "nl"), ("english", "en"), ("English, French", "en"),
    ("Latin and Greek", "la"), ("Old English", None), ("Klingon", None), (None, None), ("", None),
])
def test_language_code(name, code):
    assert language_code(name) == code


# ---------------------------------------------------------------------------- gutenberg-txt
def test_gutenberg_txt_utf8_and_latin1_give_the_same_document(tmp_path):
    utf8 = tmp_path / "12345-0.txt"
    utf8.write_bytes(BOOK.encode("utf-8"))
    latin = tmp_path / "12345-8.txt"
    latin.write_bytes(BOOK.replace("\n", "\r\n").encode("latin-1"))
    _, d_utf8, q = _read(read_gutenberg_txt, utf8, "gutenberg-txt")
    _, d_latin, _ = _read(read_gutenberg_txt, latin, "gutenberg-txt")
    assert q.num_rows == 0
    for docs, enc in ((d_utf8, "utf-8"), (d_latin, "latin-1")):
        row = docs.to_pylist()[0]
        assert row["text"] == BODY
        assert row["uid"] == 7 << 32
        assert row["native_id"] == row["url"] == "http://www.gutenberg.org/ebooks/12345"
        assert row["doc_id"] == "books:http://www.gutenberg.org/ebooks/12345"
        assert row["lang"] == "fr"
        assert row["license"] == LICENSE_PUBLIC_DOMAIN
        assert row["nbytes"] == len(BODY.encode("utf-8"))
        meta = json.loads(row["meta"])
        assert meta["encoding"] == enc
        assert meta["title"] == "Le Café Histoire véritable"
        assert meta["ebook_no"] == 12345
        assert meta["pg_boilerplate_stripped"] is True


@pytest.mark.parametrize("suffix", [".gz", ".bz2", ".zst"])
def test_gutenberg_txt_compressed(tmp_path, suffix):
    data = BOOK.encode("latin-1")
    packed = {".gz": gzip.compress, ".bz2": bz2.compress, ".zst": zstandard.ZstdCompressor().compress}[suffix](data)
    path = tmp_path / f"12345-8.txt{suffix}"
    path.write_bytes(packed)
    _, docs, _ = _read(read_gutenberg_txt, path, "gutenberg-txt")
    row = docs.to_pylist()[0]
    assert row["text"] == BODY
    assert json.loads(row["meta"])["encoding"] == "latin-1"


def test_gutenberg_txt_without_header_uses_file_stem_and_bom_is_dropped(tmp_path):
    path = tmp_path / "notes.txt.gz"
    path.write_bytes(gzip.compress(b"\xef\xbb\xbfPlain notes.\n"))
    _, docs, _ = _read(read_gutenberg_txt, path, "gutenberg-txt")
    row = docs.to_pylist()[0]
    assert row["text"] == "Plain notes."
    assert row["native_id"] == "notes"
    assert row["doc_id"] == "books:notes"
    assert row["url"] is None and row["lang"] is None
    assert json.loads(row["meta"])["pg_boilerplate_stripped"] is False


def test_gutenberg_txt_copyrighted_header_sets_license(tmp_path):
    path = tmp_path / "5200.txt"
    path.write_text(HEADER.replace("Title:", "** This is a COPYRIGHTED Project Gutenberg eBook, Details Below **\n\n"
                                   "Title:") + BODY + FOOTER, encoding="utf-8")
    _, docs, _ = _read(read_gutenberg_txt, path, "gutenberg-txt")
    row = docs.to_pylist()[0]
    assert row["license"] == LICENSE_COPYRIGHTED
    assert json.loads(row["meta"])["copyright_notice"] is True


def test_gutenberg_txt_empty_file_is_zero_records(tmp_path):
    for name, data in (("empty.txt", b""), ("empty.txt.gz", gzip.compress(b""))):
        path = tmp_path / name
        path.write_bytes(data)
        batches, _, _ = _read(read_gutenberg_txt, path, "gutenberg-txt")
        assert batches == []


def test_gutenberg_txt_blank_or_boilerplate_only_is_quarantined(tmp_path):
    blank = tmp_path / "blank.txt"
    blank.write_bytes(b"  \r\n\n")
    only = tmp_path / "only.txt"
    only.write_text(HEADER + FOOTER, encoding="utf-8")
    for path, detail in ((blank, "empty or whitespace only"), (only, "only Project Gutenberg boilerplate")):
        batches, docs, quar = _read(read_gutenberg_txt, path, "gutenberg-txt")
        assert [b.records for b in batches] == [1]
        assert docs.num_rows == 0
        q = quar.to_pylist()[0]
        assert (q["reason"], q["field"], q["row"], q["file"]) == ("empty_text", "text", 0, str(path))
        assert detail in q["detail"] and str(path) in q["detail"]
    with pytest.raises(InputError, match="empty_text") as err:
        _read(read_gutenberg_txt, only, "gutenberg-txt", on_error="error")
    assert str(only) in str(err.value)


def test_gutenberg_txt_corrupt_compressed_file(tmp_path):
    path = tmp_path / "12345-8.txt.bz2"
    path.write_bytes(bz2.compress(BOOK.encode("latin-1") * 20)[:200])
    gz = tmp_path / "12345-8.txt.gz"
    gz.write_bytes(b"\x1f\x8b\x08\x00garbage-not-deflate")
    for p in (path, gz):
        batches, docs, quar = _read(read_gutenberg_txt, p, "gutenberg-txt")
        assert sum(b.records for b in batches) == 1 and docs.num_rows == 0
        q = quar.to_pylist()[0]
        assert (q["reason"], q["file"]) == ("truncated_file", str(p))
        with pytest.raises(InputError, match="truncated or corrupt") as err:
            _read(read_gutenberg_txt, p, "gutenberg-txt", on_error="error")
        assert err.value.file == str(p)


# ---------------------------------------------------------------------------- pg19
def _pg19_table(texts, **cols) -> pa.Table:
    n = len(texts)
    data = {
        "short_book_title": cols.get("titles", [f"Book {i}" for i in range(n)]),
        "publication_date": pa.array(cols.get("dates", [1900 + i for i in range(n)]), pa.int32()),
        "url": cols.get("urls", [f"http://www.gutenberg.org/ebooks/{100 + i}" for i in range(n)]),
        "text": cols.get("text_array", pa.array(texts, pa.string())),
    }
    return pa.table(data)


def test_pg19_rows_docs_and_quarantine(tmp_path):
    texts = [BOOK, "An already stripped PG-19 body.\n", None, "", HEADER + FOOTER, OLD_BOOK]
    path = tmp_path / "pg19.parquet"
    pq.write_table(_pg19_table(texts), path)
    batches, docs, quar = _read(read_pg19, path, "pg19", pid=3, batch_rows=4)
    assert [b.records for b in batches] == [4, 2]
    assert docs.column("uid").to_pylist() == [(3 << 32) | i for i in (0, 1, 5)]
    rows = docs.to_pylist()
    assert [r["text"] for r in rows] == [BODY, "An already stripped PG-19 body.", "Once upon a time.\n\nThe end."]
    assert [r["native_id"] for r in rows] == [f"http://www.gutenberg.org/ebooks/{100 + i}" for i in (0, 1, 5)]
    assert rows[0]["url"] == rows[0]["native_id"]
    assert rows[0]["doc_id"] == "books:http://www.gutenberg.org/ebooks/100"
    assert [r["lang"] for r in rows] == ["fr", None, None]
    assert {r["subset"] for r in rows} == {"pd"}
    metas = [json.loads(r["meta"]) for r in rows]
    assert [m["pg_boilerplate_stripped"] for m in metas] == [True, False, True]
    assert metas[0]["short_book_title"] == "Book 0" and metas[0]["publication_date"] == 1900
    assert metas[0]["ebook_no"] == 12345 and metas[0]["author"] == "Jean Dupont"
    assert [(q["row"], q["reason"]) for q in quar.to_pylist()] == [(2, "null_text"), (3, "empty_text"),
                                                                   (4, "empty_text")]


def test_pg19_row_group_partition_counts_records_from_zero(tmp_path):
    path = tmp_path / "pg19.parquet"
    pq.write_table(_pg19_table(["a", "b", None, "d", "e", "f"]), path, row_group_size=2)
    _, docs, quar = _read(read_pg19, path, "pg19", pid=1, row_groups=(1, 3))
    assert docs.column("text").to_pylist() == ["d", "e", "f"]
    assert docs.column("uid").to_pylist() == [(1 << 32) | i for i in (1, 2, 3)]
    # quarantine rows are file rows
    assert [(q["row"], q["reason"]) for q in quar.to_pylist()] == [(2, "null_text")]


def test_pg19_missing_url_falls_back_to_hash_id(tmp_path):
    path = tmp_path / "pg19.parquet"
    pq.write_table(_pg19_table(["Some body."], urls=[None]), path)
    _, docs, _ = _read(read_pg19, path, "pg19")
    row = docs.to_pylist()[0]
    assert row["native_id"] is None
    assert re.fullmatch(r"books:h[0-9a-f]{16}", row["doc_id"])


def test_pg19_json_lines_with_invalid_utf8(tmp_path):
    """pg19 rows may come as JSON lines too; a line with undecodable bytes is one ``invalid_utf8`` record."""
    path = tmp_path / "pg19.jsonl"
    good = json.dumps({"short_book_title": "T", "publication_date": 1900, "url": "u1", "text": BOOK})
    path.write_bytes(good.encode() + b"\n" + b'{"url": "u2", "text": "bad \xff\xfe"}\n')
    _, docs, quar = _read(read_pg19, path, "pg19")
    assert docs.column("text").to_pylist() == [BODY]
    assert docs.column("lang").to_pylist() == ["fr"]
    q = quar.to_pylist()[0]
    assert (q["row"], q["reason"], q["field"]) == (1, "invalid_utf8", "text")


def test_pg19_binary_text_column_is_a_schema_error(tmp_path):
    path = tmp_path / "pg19.parquet"
    pq.write_table(_pg19_table([None], text_array=pa.array([b"ok"], pa.binary())), path)
    with pytest.raises(SchemaError) as err:
        _read(read_pg19, path, "pg19")
    assert err.value.column == "text"


def test_pg19_missing_column_is_a_schema_error(tmp_path):
    path = tmp_path / "pg19.parquet"
    pq.write_table(pa.table({"title": ["x"], "content": ["y"]}), path)
    with pytest.raises(SchemaError) as err:
        _read(read_pg19, path, "pg19")
    msg = str(err.value)
    assert str(path) in msg and "`url`" in msg and "['title', 'content']" in msg


def test_pg19_on_error_raises_with_row(tmp_path):
    path = tmp_path / "pg19.parquet"
    pq.write_table(_pg19_table(["fine", None]), path)
    with pytest.raises(InputError, match="row 1") as err:
        _read(read_pg19, path, "pg19", on_error="error")
    assert err.value.column == "text"


def test_pg19_corrupt_parquet_is_an_input_error(tmp_path):
    path = tmp_path / "pg19.parquet"
    path.write_bytes(b"PAR1" + b"\x00" * 64 + b"PAR1")
    with pytest.raises(InputError, match=re.escape(str(path))):
        _read(read_pg19, path, "pg19", on_error="error")
    # issue 22: with on_error: quarantine the unreadable file is one record, not a run abort
    _, docs, quar = _read(read_pg19, path, "pg19")
    assert docs.num_rows == 0 and quar["reason"].to_pylist() == ["corrupt_file"]
    assert "cannot read Parquet file" in quar["detail"][0].as_py()


# ---------------------------------------------------------------------------- real data
def _provenance_books(real: Path) -> dict[int, tuple[str, str]]:
    """PG id -> (lang, title) from the gutenberg table of PROVENANCE.md."""
    text = (real / "PROVENANCE.md").read_text(encoding="utf-8")
    section = text.split("## gutenberg.parquet", 1)[1].split("\n## ", 1)[0]
    out = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 8 and cells[0].isdigit():
            out[int(cells[0])] = (cells[5], cells[6])
    return out


def _words(title: str) -> list[str]:
    words = re.findall(r"\w+", title.casefold())
    while words and words[0] in {"the", "a", "an"}:
        words = words[1:]
    return words


@pytest.mark.real
def test_pg19_real_books(real_data):
    path = real_data / "gutenberg.parquet"
    native = pq.read_table(path)
    books = _provenance_books(real_data)
    assert len(books) == native.num_rows == 41

    batches, docs, quar = _read(read_pg19, path, "pg19", batch_rows=8)
    assert sum(b.records for b in batches) == 41
    assert quar.num_rows == 0 and docs.num_rows == 41
    by_url = {r["url"]: r for r in native.to_pylist()}
    copyrighted = set()
    for row in docs.to_pylist():
        ebook_url = row["native_id"]
        src_row = by_url[ebook_url]
        original = src_row["text"]
        meta = json.loads(row["meta"])
        # the body is the native text minus boilerplate, and every book here had both header and footer
        assert row["text"] in original
        assert len(row["text"]) > 0.8 * len(original) - 25_000
        assert meta["pg_boilerplate_stripped"] is True
        body = row["text"]
        for marker in ("START OF THIS PROJECT GUTENBERG", "START OF THE PROJECT GUTENBERG",
                       "END OF THIS PROJECT GUTENBERG", "END OF THE PROJECT GUTENBERG",
                       "\nEnd of the Project Gutenberg", "\nEnd of Project Gutenberg",
                       "Project Gutenberg-tm",  # the licence lives in the footer
                       "This eBook is for the use of anyone anywhere"):
            assert marker not in body, (ebook_url, marker)
        # header fields against PROVENANCE.md
        ebook_no = int(row["native_id"].rsplit("/", 1)[1])
        lang, title = books[ebook_no]
        assert meta["ebook_no"] == ebook_no
        assert row["lang"] == lang
        a, b = _words(meta["title"]), _words(title)
        k = min(len(a), len(b), 3)
        assert k > 0 and a[:k] == b[:k], (meta["title"], title)
        assert meta["author"]  or ebook_no == 16328  # Beowulf's header has an empty Author field
        assert meta["release_date"]
        assert meta["short_book_title"] == src_row["short_book_title"]
        assert row["nbytes"] == len(row["text"].encode("utf-8"))
        if meta["copyright_notice"]:
            copyrighted.add(ebook_no)
            assert row["license"] == LICENSE_COPYRIGHTED
        else:
            assert row["license"] == LICENSE_PUBLIC_DOMAIN
    assert copyrighted == {16, 5200}  # Peter Pan and Metamorphosis carry "This is a COPYRIGHTED ... eBook"


@pytest.mark.real
def test_gutenberg_txt_real_book_roundtrip(real_data, tmp_path):
    """A real book written out as a latin-1 ``-8.txt.bz2`` with CRLF reads back to the pg19 body."""
    table = pq.read_table(real_data / "gutenberg.parquet",
                          filters=[("url", "=", "http://www.gutenberg.org/ebooks/800")])
    text = table.column("text")[0].as_py()
    path = tmp_path / "800-8.txt.bz2"
    path.write_bytes(bz2.compress(text.replace("\n", "\r\n").encode("latin-1")))
    _, docs, _ = _read(read_gutenberg_txt, path, "gutenberg-txt")
    row = docs.to_pylist()[0]
    assert row["text"] == strip_boilerplate(text)[0]
    assert row["native_id"] == "http://www.gutenberg.org/ebooks/800"
    assert row["lang"] == "fr"
    assert json.loads(row["meta"])["encoding"] == "latin-1"
