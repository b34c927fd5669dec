"""Decompression of JSON-lines streams (curate/sources/decompress.py): empty, truncated, corrupt and
multi-member/multi-frame streams, read through the readers as a user's file is."""

from __future__ import annotations

import pytest

from curate.errors import InputError
from tests.sources import JSONL, read, reasons, write_bytes, write_lines


def test_empty_compressed_stream_and_blank_lines_are_zero_records(tmp_path):
    p = write_bytes(tmp_path / "a.jsonl.gz", b"\n  \n\n")
    assert read(p, "culturax")[2] == 0


def _lines(n: int) -> list[dict]:
    return [{"id": i, "text": f"document number {i} " + "x" * (i % 97)} for i in range(n)]


@pytest.mark.parametrize(("suffix", "name"), [(".gz", "gzip"), (".zst", "zstd"), (".bz2", "bz2")])
def test_truncated_stream_keeps_lines_before_the_break(tmp_path, suffix, name):
    rows = _lines(5000)
    p = write_lines(tmp_path / f"a.jsonl{suffix}", rows)
    raw = p.read_bytes()
    p.write_bytes(raw[: len(raw) * 2 // 3])
    docs, q, records = read(p, "jsonl", batch_rows=500, **JSONL)
    n = docs.num_rows
    assert 0 < n < 5000
    assert docs.column("text").to_pylist() == [r["text"] for r in rows[:n]]
    assert reasons(q) == ["truncated_file"]
    assert q.column("row").to_pylist() == [n]
    assert f"truncated or corrupt {name} stream at line {n + 1}" in q.column("detail")[0].as_py()
    assert records == n + 1
    with pytest.raises(InputError, match=rf"a\.jsonl{suffix}, line {n + 1}: truncated or corrupt {name} stream "
                                         rf"at line {n + 1}"):
        read(p, "jsonl", on_error="error", **JSONL)


def test_corrupt_gzip_member_is_reported_like_a_truncation(tmp_path):
    p = write_lines(tmp_path / "a.jsonl.gz", _lines(3000))
    raw = bytearray(p.read_bytes())
    for i in range(len(raw) // 2, len(raw) // 2 + 64):
        raw[i] ^= 0xFF
    p.write_bytes(bytes(raw))
    docs, q, records = read(p, "jsonl", **JSONL)
    assert reasons(q) == ["truncated_file"]
    assert "corrupt data" in q.column("detail")[0].as_py()
    assert records == docs.num_rows + 1


def test_multi_member_gzip_and_multi_frame_zstd_are_read_whole(tmp_path):
    import gzip

    import zstandard

    a, b = b'{"id": 1, "text": "a"}\n', b'{"id": 2, "text": "b"}\n'
    (tmp_path / "m.jsonl.gz").write_bytes(gzip.compress(a) + gzip.compress(b))
    c = zstandard.ZstdCompressor()
    (tmp_path / "m.jsonl.zst").write_bytes(c.compress(a) + c.compress(b))
    for name in ("m.jsonl.gz", "m.jsonl.zst"):
        docs, _, _ = read(tmp_path / name, "jsonl", **JSONL)
        assert docs.column("text").to_pylist() == ["a", "b"]
