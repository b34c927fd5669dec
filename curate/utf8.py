"""Vectorized UTF-8 helpers: Unicode character classes per byte, runs, and per-document character counts.

Text is handled as the UTF-8 bytes of an Arrow string array (zero-copy ``numpy`` views of its buffers):
multibyte code points are decoded vectorized at their lead bytes and classified with lookup tables over
all code points (:func:`char_tables`). This is what MinHash shingling (words), exact dedup (whitespace
collapse) and the code quality rules (letters/digits, whitespace) share; it replaces regular-expression
passes over the whole text (on RefinedWeb, ``replace_substring_regex`` with one Unicode class runs at
22 MB/s per core; :func:`char_counts` counts two classes at 60 MB/s).

Classes (the ``table`` argument, indices into :func:`char_tables`):

- :data:`WORD`: Unicode letters, marks and numbers (categories L*, M*, N*) and ``_``;
- :data:`NOSPACE`: word characters of scripts written without spaces (Han, Kana, Thai, ...);
- :data:`SPACE`: what ``str.isspace`` accepts;
- :data:`ALNUM`: letters and numbers (L*, N*), what RE2's ``[\\p{L}\\p{N}]`` matches.
"""

from __future__ import annotations

import functools
import operator
import unicodedata
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

WORD, NOSPACE, SPACE, ALNUM = 0, 1, 2, 3


def as_string_array(text: pa.Array | pa.ChunkedArray | Sequence[str]) -> pa.Array:
    """One contiguous string/large_string array with nulls as empty strings."""
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks() if text.num_chunks != 1 else text.chunk(0)
    elif not isinstance(text, pa.Array):
        text = pa.array(list(text), type=pa.large_string())
    if not (pa.types.is_string(text.type) or pa.types.is_large_string(text.type)):
        if pa.types.is_string_view(text.type) or pa.types.is_null(text.type):
            text = text.cast(pa.large_string())
        else:
            msg = f"text must be a string array, got {text.type}; pass the `text` column of the documents"
            raise TypeError(msg)
    if text.null_count:
        text = pc.fill_null(text, "")
    return text


def utf8_buffers(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(data bytes, int64 offsets of length n+1 starting at 0) of a string array, zero-copy for the data."""
    n = len(arr)
    bufs = arr.buffers()
    odt = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    if bufs[1] is None or n == 0:
        return np.zeros(0, np.uint8), np.zeros(n + 1, np.int64)
    offs = np.frombuffer(bufs[1], odt, count=arr.offset + n + 1)[arr.offset:].astype(np.int64)
    data = np.frombuffer(bufs[2], np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
    data = data[offs[0]: offs[-1]]
    return data, offs - offs[0]


#: Text bytes per processing block: every temporary of the tokenizer then stays in cache (measured ~30%
#: faster than whole 40 MB batches, whose fresh temporaries are page-faulted in on every numpy op), and the
#: working set is bounded (~30 MB peak RSS growth, measured by bench/bench_dedup.py).
BLOCK_BYTES = 1 << 20


def blocks(arr: pa.Array) -> list[tuple[int, int]]:
    """``(start, end)`` document ranges of about ``BLOCK_BYTES`` text each (a longer document is alone)."""
    n = len(arr)
    if n == 0:
        return []
    _, offs = utf8_buffers(arr)
    cuts = np.searchsorted(offs, np.arange(BLOCK_BYTES, int(offs[-1]), BLOCK_BYTES), side="right") - 1
    b = np.unique(np.concatenate([[0], cuts, [n]]))
    return list(zip(b[:-1].tolist(), b[1:].tolist()))


NOSPACE_RANGES = (
    (0x0E00, 0x0EFF),  # Thai, Lao
    (0x1000, 0x109F),  # Myanmar
    (0x1780, 0x17FF),  # Khmer
    (0x19E0, 0x19FF),  # Khmer symbols
    (0x2E80, 0x2FDF),  # CJK radicals
    (0x3005, 0x3007),  # CJK iteration marks, ideographic zero
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x31F0, 0x31FF),  # Katakana extension
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0xFF66, 0xFF9F),  # halfwidth Katakana
    (0x20000, 0x3134F),  # CJK extensions B-G
)


#: Code point ranges that hold every letter, mark, number and space character: planes 0-3 and the plane-14
#: variation selectors. Planes 4-13 are unassigned and planes 15-16 private use in every Unicode version
#: Python ships (tests/test_dedup.py checks it against the full range for the running interpreter).
CLASSIFIED = ((0, 0x40000), (0xE0000, 0xE0200))


@functools.cache
def char_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(is_word, is_nospace, is_space, is_alnum) lookup tables over all code points, indexed by the
    :data:`WORD`, :data:`NOSPACE`, :data:`SPACE` and :data:`ALNUM` constants (built once per process, ~0.1 s).

    Built from ``unicodedata`` over :data:`CLASSIFIED` only, one category letter per code point joined
    into one ASCII string and compared in numpy: classifying all 1.1M code points one by one took 0.7 s per
    process, which a profile over a few partitions blamed on exact dedup."""
    word = np.zeros(0x110000, bool)
    space = np.zeros(0x110000, bool)
    alnum = np.zeros(0x110000, bool)
    first = operator.itemgetter(0)
    for lo, hi in CLASSIFIED:
        chars = list(map(chr, range(lo, hi)))
        cat = np.frombuffer("".join(map(first, map(unicodedata.category, chars))).encode("ascii"), np.uint8)
        word[lo:hi] = (cat == ord("L")) | (cat == ord("M")) | (cat == ord("N"))
        alnum[lo:hi] = (cat == ord("L")) | (cat == ord("N"))
        space[lo:hi] = np.frombuffer(bytes(map(str.isspace, chars)), bool)
    word[ord("_")] = True
    nospace = np.zeros(0x110000, bool)
    for a, b in NOSPACE_RANGES:
        nospace[a: b + 1] = True
    return word, nospace & word, space, alnum


def decode_at(data: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Code point and byte length of the UTF-8 characters starting at ``pos`` (lead-byte positions)."""
    last = len(data) - 1
    b0 = data[pos].astype(np.int32)
    b1 = data[np.minimum(pos + 1, last)].astype(np.int32) & 0x3F
    b2 = data[np.minimum(pos + 2, last)].astype(np.int32) & 0x3F
    b3 = data[np.minimum(pos + 3, last)].astype(np.int32) & 0x3F
    n = np.where(b0 < 0x80, 1, np.where(b0 < 0xE0, 2, np.where(b0 < 0xF0, 3, 4)))
    cp = np.select(
        [n == 1, n == 2, n == 3],
        [b0, ((b0 & 0x1F) << 6) | b1, ((b0 & 0x0F) << 12) | (b1 << 6) | b2],
        ((b0 & 0x07) << 18) | (b1 << 12) | (b2 << 6) | b3,
    )
    np.clip(cp, 0, 0x10FFFF, out=cp)
    return cp, n


def _ascii_class(data: np.ndarray, table: int) -> np.ndarray:
    """ASCII part of a byte class (non-ASCII bytes are False); comparisons beat a 256-entry LUT gather 5x."""
    if table in (WORD, ALNUM):  # a-z, 0-9, A-Z, and _ for words
        x = (data - np.uint8(97)) < 26
        x |= (data - np.uint8(48)) < 10
        x |= (data - np.uint8(65)) < 26
        if table == WORD:
            x |= data == 95
        return x
    if table != SPACE:
        return np.zeros(len(data), bool)
    x = (data - np.uint8(9)) < 5  # \t \n \v \f \r
    x |= (data - np.uint8(28)) < 5  # \x1c-\x1f and space
    return x


def classify_bytes(data: np.ndarray, table: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-byte class (every byte of a character gets its character's class from ``char_tables()[table]``).

    Returns ``(byte_class, multibyte_lead_positions, their code points)``.
    """
    cls = _ascii_class(data, table)
    mb = np.flatnonzero(data >= 0xC0)
    if len(mb) == 0:
        return cls, mb, np.zeros(0, np.int32)
    cp, n = decode_at(data, mb)
    c = char_tables()[table][cp]
    last = len(data) - 1
    for k in range(4):
        sel = n > k
        cls[np.minimum(mb[sel] + k, last)] = c[sel]
    return cls, mb, cp


def runs(flag: np.ndarray, offs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end byte positions of the maximal runs of ``flag``; a document boundary ends a run."""
    change = np.flatnonzero(flag[1:] != flag[:-1]) + 1
    head = [0] if flag[0] else []
    tail = [len(flag)] if flag[-1] else []
    if head or tail:
        change = np.concatenate([head, change, tail]).astype(np.int64)
    starts, ends = change[0::2], change[1::2]  # runs alternate: start, end, start, ...
    inner = offs[1:-1]
    inner = inner[(inner > 0) & (inner < len(flag))]
    split = inner[flag[inner - 1] & flag[inner]]  # a run crossing a document boundary is cut there
    if len(split):
        starts = np.insert(starts, np.searchsorted(starts, split), split)
        ends = np.insert(ends, np.searchsorted(ends, split), split)
    return starts, ends


def char_counts(text: pa.Array | pa.ChunkedArray | Sequence[str], tables: Sequence[int]) -> list[np.ndarray]:
    """Number of characters (code points) of each document in each class of ``tables``.

    Parameters
    ----------
    text
        Document texts (null counts as the empty string).
    tables
        Class indices (:data:`WORD`, :data:`SPACE`, :data:`ALNUM`, ...).

    Returns
    -------
    list of np.ndarray
        One ``int64`` array of per-document counts per entry of ``tables``.

    Examples
    --------
    >>> [c.tolist() for c in char_counts(["a1 \u00e9\u4e2d_!", " "], [ALNUM, SPACE])]
    [[4, 0], [1, 1]]
    """
    arr = as_string_array(text)
    out = [np.zeros(len(arr), np.int64) for _ in tables]
    for a, b in blocks(arr):
        data, offs = utf8_buffers(arr.slice(a, b - a))
        if len(data) == 0:
            continue
        mb = np.flatnonzero(data >= 0xC0)
        cp = decode_at(data, mb)[0] if len(mb) else None
        for j, t in enumerate(tables):
            cls = _ascii_class(data, t)  # ASCII bytes; every non-ASCII byte is False here
            if cp is not None:
                cls[mb] = char_tables()[t][cp]  # one count per multibyte character, at its lead byte
            c = np.concatenate([[0], np.cumsum(cls, dtype=np.int64)])
            out[j][a:b] = c[offs[1:]] - c[offs[:-1]]
    return out
