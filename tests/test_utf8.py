"""curate.utf8: the Unicode class tables and per-document character counts against Python's own definitions."""

from __future__ import annotations

import unicodedata

import numpy as np
import pyarrow as pa
import pytest

from curate import utf8


def test_char_tables_cover_every_classified_code_point():
    """The tables classify only CLASSIFIED; everywhere else must be neither word nor space (for this Python)."""
    word, nospace, space, alnum = utf8.char_tables()
    outside = np.ones(0x110000, bool)
    for lo, hi in utf8.CLASSIFIED:
        outside[lo:hi] = False
    idx = np.flatnonzero(outside)
    cats = {unicodedata.category(chr(int(c)))[0] for c in idx}
    assert cats <= {"C"}, cats  # unassigned (Cn) or private use (Co) only
    assert not any(chr(int(c)).isspace() for c in idx)
    assert not word[idx].any() and not space[idx].any() and not alnum[idx].any()
    for ch in ("a", "Z", "_", "é", "\u0301", "٣", "中", "\U00020000", "\U000E0100"):
        assert word[ord(ch)], ch
    for ch in (" ", "\u00a0", "\u3000", "\u2028", "\x1f"):
        assert space[ord(ch)] and not word[ord(ch)], repr(ch)
    assert nospace[ord("中")] and not nospace[ord("a")]
    assert alnum[ord("é")] and alnum[ord("٣")] and not alnum[ord("_")] and not alnum[ord("\u0301")]


def _python_counts(texts: list[str | None]) -> tuple[list[int], list[int], list[int]]:
    def alnum(c: str) -> bool:
        return unicodedata.category(c)[0] in "LN"

    def word(c: str) -> bool:
        return unicodedata.category(c)[0] in "LMN" or c == "_"

    ts = [t or "" for t in texts]
    return ([sum(map(alnum, t)) for t in ts], [sum(c.isspace() for c in t) for t in ts],
            [sum(map(word, t)) for t in ts])


def test_char_counts_match_python_on_every_script():
    rng = np.random.default_rng(0)
    pool = [chr(c) for c in (*range(0, 0x300), *range(0x370, 0x3000, 7), *range(0x4E00, 0x4F00),
                             *range(0x1F600, 0x1F650), 0x20000, 0xE0100, 0x10FFFD) if not 0xD800 <= c < 0xE000]
    texts: list[str | None] = ["".join(rng.choice(pool, size=int(n))) for n in rng.integers(0, 400, 300)]
    texts += [None, "", " \t\n", "x"]
    alnum, space, word = utf8.char_counts(pa.array(texts, pa.large_string()), [utf8.ALNUM, utf8.SPACE, utf8.WORD])
    a, s, w = _python_counts(texts)
    assert alnum.tolist() == a and space.tolist() == s and word.tolist() == w


def test_char_counts_cross_block_boundaries(monkeypatch):
    monkeypatch.setattr(utf8, "BLOCK_BYTES", 64)  # many blocks, documents longer than a block
    texts = ["ab  cd é" * (i % 13) for i in range(200)]
    (alnum,) = utf8.char_counts(texts, [utf8.ALNUM])
    assert alnum.tolist() == _python_counts(texts)[0]


@pytest.mark.parametrize("arr", [pa.array(["a b", None, "é"]), pa.chunked_array([["a b"], [None, "é"]]),
                                 pa.array(["zz", "a b", None, "é"]).slice(1)])
def test_char_counts_take_any_string_array(arr):
    (space,) = utf8.char_counts(arr, [utf8.SPACE])
    assert space.tolist() == [1, 0, 0]
