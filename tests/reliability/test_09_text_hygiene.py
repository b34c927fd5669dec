"""Issue 22, item 9: one text-hygiene policy in every reader (docs/recipes.md, "Text hygiene").

A leading BOM is removed (a JSON-lines file's first record parses), CRLF and CR become LF, NUL is dropped, in
JSON lines, Parquet and one-document files alike; a Gutenberg ``-0.txt`` with a stray byte keeps its text with
U+FFFD and is counted, instead of being kept whole as Latin-1 mojibake. Each fix is a ledger counter.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from curate.sources import read_partition
from curate.sources.base import ReadContext
from curate.sources.assemble import clean_text
from tests.sources import partition, src_config

BOOK = ("The Project Gutenberg eBook of Tiny Book\n\nTitle: Tiny Book\nAuthor: Someone\nLanguage: English\n\n"
        "*** START OF THE PROJECT GUTENBERG EBOOK TINY BOOK ***\n\n{body}\n\n"
        "*** END OF THE PROJECT GUTENBERG EBOOK TINY BOOK ***\n")


def _read(path: Path, fmt: str, **kw) -> tuple[list[str], list[str], Counter, list[dict]]:
    batches = list(read_partition(partition(path, fmt), src_config(fmt, **kw), ReadContext()))
    texts = [t for b in batches for t in b.docs["text"].to_pylist()]
    reasons = [r for b in batches for r in b.quarantine["reason"].to_pylist()]
    counters: Counter = Counter()
    for b in batches:
        counters.update(b.counters)
    metas = [json.loads(m) for b in batches for m in b.docs["meta"].to_pylist() if m]
    return texts, reasons, counters, metas


def test_jsonl_leading_bom_does_not_lose_the_first_record_22(tmp_path) -> None:
    p = tmp_path / "a.jsonl"
    p.write_bytes(b"\xef\xbb\xbf" + b'{"text": "first"}\n{"text": "second"}\n')
    texts, reasons, _, _ = _read(p, "jsonl", text_column="text")
    assert texts == ["first", "second"] and reasons == []


def test_crlf_cr_nul_and_bom_in_every_reader_22(tmp_path) -> None:
    dirty = "\ufeffline one\r\nline two\rline\x00 three"
    clean = "line one\nline two\nline three"
    (tmp_path / "a.jsonl").write_text(json.dumps({"text": dirty}) + "\n", encoding="utf-8")
    pq.write_table(pa.table({"text": [dirty, "plain"]}), tmp_path / "a.parquet")
    (tmp_path / "a.txt").write_bytes(dirty.encode())
    for name, fmt, kw in (("a.jsonl", "jsonl", {"text_column": "text"}),
                          ("a.parquet", "parquet", {"text_column": "text"}), ("a.txt", "text", {})):
        texts, reasons, counters, _ = _read(tmp_path / name, fmt, **kw)
        assert texts[0] == clean and reasons == [], name
        assert counters == {"text_bom_stripped": 1, "text_newlines_normalized": 1, "text_nul_dropped": 1}, name


def test_a_text_of_only_nul_is_empty_text_22(tmp_path) -> None:
    (tmp_path / "a.jsonl").write_text(json.dumps({"text": "\x00\x00"}) + "\n")
    texts, reasons, _, _ = _read(tmp_path / "a.jsonl", "jsonl", text_column="text")
    assert texts == [] and reasons == ["empty_text"]


def test_gutenberg_utf8_book_with_a_stray_byte_is_flagged_not_latin1_22(tmp_path) -> None:
    body = "Caf\u00e9 and na\u00efve words, " * 40
    raw = BOOK.format(body=body).encode("utf-8")
    cut = raw.index(b"na")
    (tmp_path / "1234-0.txt").write_bytes(raw[:cut] + b"\xff" + raw[cut:])
    texts, reasons, counters, metas = _read(tmp_path / "1234-0.txt", "gutenberg-txt")
    assert reasons == [] and len(texts) == 1
    assert "Caf\u00e9" in texts[0] and "\u00c3" not in texts[0], "no Latin-1 mojibake of the UTF-8 text"
    assert texts[0].count("\ufffd") == 1
    assert counters["text_invalid_utf8_replaced"] == 1 and counters["text_invalid_utf8_sequences"] == 1
    assert metas[0]["encoding"] == "utf-8 (1 invalid sequence(s) replaced by U+FFFD)"
    # a "-8.txt" book is ISO-8859-1 by its name: decoded as such, not flagged
    (tmp_path / "1234-8.txt").write_bytes(BOOK.format(body="Caf\u00e9 " * 40).encode("latin-1"))
    texts, _, counters, metas = _read(tmp_path / "1234-8.txt", "gutenberg-txt")
    assert "Caf\u00e9" in texts[0] and metas[0]["encoding"] == "latin-1"
    assert "text_invalid_utf8_replaced" not in counters


def test_clean_text_is_vectorized_and_leaves_clean_texts_alone_22() -> None:
    arr = pa.array(["a\r\nb", None, "clean", "\ufeffx\ufeff"], pa.large_string())
    out, counts = clean_text(arr)
    assert out.to_pylist() == ["a\nb", None, "clean", "x\ufeff"], "only a leading BOM is removed"
    assert counts == {"text_bom_stripped": 1, "text_newlines_normalized": 1}
    same, none = clean_text(pa.array(["x", "y"], pa.large_string()))
    assert same.to_pylist() == ["x", "y"] and none == {}
