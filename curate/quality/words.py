"""Language-aware word splitting for the quality heuristics, vectorized over a whole batch of texts.

The Gopher, C4 and FineWeb rules are stated in *words*. Their reference implementation (datatrove) splits words
with spaCy's English tokenizer, which turns a Chinese, Japanese or Thai sentence (no spaces between words) into
one giant "word": such a document then fails the word-count and mean-word-length rules although it is ordinary
prose. curate splits all texts of a batch with one regular expression instead (Rust ``regex`` through polars,
no per-document Python loop) and treats scripts without spaces per character:

=============== ============================================================= ===========================
token kind      what it matches                                                counts as
=============== ============================================================= ===========================
``WORD``        a run of letters/digits/marks; ``.``, ``,``, ``:``, ``_``,     1 word
                ``/`` between two such characters stay inside (``3.14``,
                ``1,000``, ``9/11``), dotted abbreviations keep their final
                period (``U.S.``); URLs are one token; an English clitic
                (``'s``, ``'t``, ``'ll``, ...) is a word of its own
``CJK``         one Han, Hiragana or Katakana character (plus combining marks) ``1 / 1.5`` word
``SEA``         one Thai, Lao, Khmer or Myanmar character (plus marks)        ``1 / 3.0`` word
``SYMBOL``      one punctuation or ASCII symbol character, ``..``+ or ``--``+    1 token, not a word
=============== ============================================================= ===========================

Why these weights: Chinese and Japanese words average about 1.5 characters, so ``chars / 1.5`` estimates the
word count a segmenter would give without shipping one (jieba, MeCab and pythainlp need large dictionaries);
Thai-script words average roughly 3 base letters (an estimate; vowel and tone marks are folded into the
preceding letter here). For the *mean word length* a character of these scripts adds a pseudo-word of
``NOSPACE_WORD_LENGTH`` (4.5) characters, inside Gopher's 3..10 window: word length has no meaning without a
segmenter, so these characters neither pass nor fail that rule on their own, and a mostly-Chinese page with a
few Latin words is measured on a sensible mix instead of on its three English acronyms.

``SYMBOL`` tokens follow datatrove's ``PUNCTUATION_SET`` (Unicode ``P*`` categories plus ``$+<=>^`|~`` and a
few box/arrow symbols); like spaCy's tokens they count in the denominators of ratio rules (hash-to-word ratio,
alphabetic-word ratio, newline-to-word ratio) but not as words for the word-count and word-length rules.
These choices follow spaCy's English tokenizer where it matters for the counts: ``don't`` gives two words of
five characters in all (``don``/``'t`` here, ``do``/``n't`` in spaCy), ``9/11`` and ``U.S.`` one word each.

Scripts written with spaces (Latin, Cyrillic, Greek, Hangul, Arabic, Hebrew, Devanagari, ...) use ``WORD``.

The flat token table (:class:`Tokens`) keeps, for every token of every document in order, the row index
(``doc``), its length in characters, kind, whether it has an alphabetic character (``str.isalpha`` on some
character, i.e. Unicode ``L*``) and a 64-bit hash (polars' string hash) used for stop words and n-gram repetition.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import polars as pl
import pyarrow as pa

# ---------------------------------------------------------------------------- character classes
#: Scripts written without spaces between words, split per character.
CJK_CLASS = r"\p{Han}\p{Hiragana}\p{Katakana}\x{30FC}\x{3005}"  # + prolonged sound mark, iteration mark
SEA_CLASS = r"\p{Thai}\p{Lao}\p{Khmer}\p{Myanmar}"
NOSPACE_CLASS = CJK_CLASS + SEA_CLASS

#: Punctuation and symbols that make a token a "symbol" (datatrove ``PUNCTUATION_SET``: Unicode P* plus these).
_EXTRA_SYMBOLS = "$+<=>^`|~\u2501\u25ba\uff5e\u00b4\u2236"
PUNCT_CLASS = r"\p{P}\x{00}-\x{08}\x{0E}-\x{1F}\x{7F}-\x{84}\x{86}-\x{9F}" + "".join("\\" + c if c in "^~" else c
                                                                                     for c in _EXTRA_SYMBOLS)

_WORD_CHAR = rf"[^\s{PUNCT_CLASS}{NOSPACE_CLASS}]"
TOKEN_PATTERN = (
    r"(?:https?://|www\.)[^\s<>\"]+"  # a URL is one token (spaCy's URL_MATCH does the same)
    rf"|[{CJK_CLASS}]\p{{M}}*"
    rf"|[{SEA_CLASS}]\p{{M}}*"
    # English clitics: don't -> don 't (spaCy: do n't, same counts). ASCII \b: a Unicode \b would keep Rust's
    # regex off its fast DFA on non-ASCII text (4-5x slower on the real Wikipedia sample)
    r"|(?i:['’](?:s|m|d|t|ll|re|ve))(?-u:\b)"
    rf"|{_WORD_CHAR}+(?:\.{_WORD_CHAR}+)+\.?"  # e.g. U.S. a.m. 3.14: one token with its final period
    rf"|{_WORD_CHAR}+(?:[.,:_/]{_WORD_CHAR}+)*"  # 1,000 9/11 and/or snake_case
    r"|\.{2,}|-{2,}"  # ... and -- are single tokens
    rf"|[{PUNCT_CLASS}]"
)

WORD, CJK, SEA, SYMBOL = 0, 1, 2, 3
#: Characters per word for the no-space scripts (see the module docstring).
CHARS_PER_WORD = {CJK: 1.5, SEA: 3.0}
#: Length in characters given to the pseudo-words of no-space scripts in the mean word length.
NOSPACE_WORD_LENGTH = 4.5
#: Seed of polars' string hash: fixed so token hashes (and stop-word look-ups) agree across batches and workers.
HASH_SEED = 0x5EED


@dataclass
class Tokens:
    """Flat token table of a batch: one entry per token, documents in row order, tokens in text order.

    Attributes
    ----------
    doc : numpy.ndarray
        int64 row index of each token (non-decreasing).
    length : numpy.ndarray
        int64 length in characters.
    kind : numpy.ndarray
        int8 token kind (``WORD``, ``CJK``, ``SEA``, ``SYMBOL``).
    alpha : numpy.ndarray
        bool, the token has an alphabetic character.
    hash : numpy.ndarray
        uint64 hash of the token text (:data:`HASH_SEED`).
    n_docs : int
        number of documents in the batch (documents without tokens have no entries).
    """

    doc: np.ndarray
    length: np.ndarray
    kind: np.ndarray
    alpha: np.ndarray
    hash: np.ndarray
    n_docs: int

    @property
    def weight(self) -> np.ndarray:
        """Word weight of each token: 1, or ``1 / CHARS_PER_WORD`` for no-space scripts."""
        w = np.ones(len(self.kind), dtype=np.float64)
        for k, cpw in CHARS_PER_WORD.items():
            w[self.kind == k] = 1.0 / cpw
        return w

    def per_doc(self, values: np.ndarray | None = None) -> np.ndarray:
        """Sum ``values`` (default: 1 per token) per document; float64 array of length ``n_docs``."""
        return np.bincount(self.doc, weights=values, minlength=self.n_docs).astype(np.float64)


@lru_cache(maxsize=1)
def _bmp_tables() -> tuple[np.ndarray, np.ndarray]:
    """Token kind and "is a letter" of every Basic Multilingual Plane code point, by the same regex classes.

    Tokens are classified by their first character (a token's kind is fixed by it: see ``TOKEN_PATTERN``), read
    straight from the UTF-8 bytes, so classifying millions of tokens is a few numpy look-ups. Built once per
    process (~65k one-character strings).
    """
    cps = np.r_[np.arange(0, 0xD800), np.arange(0xE000, 0x10000)]
    chars = pl.Series("c", [chr(c) for c in cps], dtype=pl.String)
    kind = np.full(0x10000, WORD, dtype=np.int8)
    letter = np.zeros(0x10000, dtype=bool)
    kind[cps[chars.str.contains(rf"^[{CJK_CLASS}]").to_numpy()]] = CJK
    kind[cps[chars.str.contains(rf"^[{SEA_CLASS}]").to_numpy()]] = SEA
    kind[cps[chars.str.contains(rf"^[{PUNCT_CLASS}]").to_numpy()]] = SYMBOL
    letter[cps[chars.str.contains(r"^\p{L}").to_numpy()]] = True
    return kind, letter


def _first_code_points(arr: pa.LargeStringArray) -> np.ndarray:
    """Code point of the first character of every (non-empty) string, decoded from the UTF-8 buffer."""
    off = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset:arr.offset + len(arr) + 1]
    data = np.frombuffer(arr.buffers()[2], dtype=np.uint8)
    if len(data) == 0:
        return np.zeros(len(arr), dtype=np.int64)
    start = np.minimum(off[:-1], len(data) - 1)  # an empty last string starts at the buffer's end (unused)
    cp = data[start].astype(np.int64)
    multi = np.flatnonzero(cp >= 0x80)  # only tokens that start with a multi-byte character (few in most text)
    if len(multi):
        s = start[multi]
        last = len(data) - 1

        def byte(k: int) -> np.ndarray:  # k-th byte of those strings (clipped at the buffer end; unused there)
            return data[np.minimum(s + k, last)].astype(np.int64) & 0x3F

        b0, b1, b2, b3 = cp[multi], byte(1), byte(2), byte(3)
        cp[multi] = np.where(b0 < 0xE0, ((b0 & 0x1F) << 6) | b1, np.where(
            b0 < 0xF0, ((b0 & 0x0F) << 12) | (b1 << 6) | b2, ((b0 & 0x07) << 18) | (b1 << 12) | (b2 << 6) | b3))
    return cp


def tokenize(texts: pa.Array | pa.ChunkedArray | list[str]) -> Tokens:
    """Split every text of a batch into tokens (see the module docstring for the rules).

    Parameters
    ----------
    texts : pyarrow.Array, pyarrow.ChunkedArray or list of str
        the documents; nulls are treated as empty texts.

    Returns
    -------
    Tokens
        the flat token table.
    """
    if isinstance(texts, list):
        s = pl.Series("t", texts, dtype=pl.String)
    else:
        s = pl.Series("t", pa.chunked_array([texts]) if isinstance(texts, pa.Array) else texts)
    s = s.cast(pl.String).fill_null("")
    lists = s.str.extract_all(TOKEN_PATTERN)
    counts = lists.list.len().fill_null(0).to_numpy().astype(np.int64)
    flat = lists.explode(empty_as_null=False, keep_nulls=False)
    n = len(flat)
    doc = np.repeat(np.arange(len(s), dtype=np.int64), counts)
    assert len(doc) == n, "token count mismatch after explode"
    if n == 0:
        return Tokens(doc, np.zeros(0, np.int64), np.zeros(0, np.int8), np.zeros(0, bool), np.zeros(0, np.uint64),
                      len(s))
    arr = flat.to_arrow()
    arr = (arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr).cast(pa.large_string())
    cp = _first_code_points(arr)
    kind_table, letter_table = _bmp_tables()
    bmp = cp < 0x10000
    cpb = np.where(bmp, cp, 0)
    kind = kind_table[cpb]
    alpha = letter_table[cpb] & bmp
    # the rare tokens starting outside the BMP (CJK extension B, emoji, ...) are classified by regex
    slow = np.flatnonzero(~bmp)
    if len(slow):
        sub = flat.gather(slow)
        k = np.full(len(slow), WORD, dtype=np.int8)
        k[sub.str.contains(rf"^[{CJK_CLASS}]").to_numpy()] = CJK
        k[sub.str.contains(rf"^[{SEA_CLASS}]").to_numpy()] = SEA
        k[sub.str.contains(rf"^[{PUNCT_CLASS}]").to_numpy()] = SYMBOL
        kind[slow] = k
        alpha[slow] = sub.str.contains(r"\p{L}").to_numpy()
    # clitics ('s, 't, 'll) start with an apostrophe but are words
    multi = np.flatnonzero((kind == SYMBOL) & (flat.str.len_chars().to_numpy() > 1))
    if len(multi):
        kind[multi[flat.gather(multi).str.contains(r"^['’]\p{L}").to_numpy()]] = WORD
    # a word token may hold a letter after its first character ("3rd", "1990s", "'s")
    check = np.flatnonzero(~alpha & (kind == WORD))
    if len(check):
        alpha[check] = flat.gather(check).str.contains(r"\p{L}").to_numpy()
    return Tokens(
        doc=doc,
        length=flat.str.len_chars().to_numpy().astype(np.int64),
        kind=kind,
        alpha=alpha,
        hash=flat.hash(HASH_SEED).to_numpy(),
        n_docs=len(s),
    )


def hash_words(words: list[str]) -> np.ndarray:
    """Hash words exactly as :func:`tokenize` hashes tokens (uint64), for look-ups such as stop words."""
    return pl.Series("w", words, dtype=pl.String).hash(HASH_SEED).to_numpy()


@lru_cache(maxsize=4096)
def _split_cached(text: str) -> tuple[str, ...]:
    return tuple(pl.Series([text]).str.extract_all(TOKEN_PATTERN).to_list()[0])


def split_words(text: str) -> list[str]:
    """Tokens of one text, in order (a convenience for tests and debugging; the stage uses :func:`tokenize`).

    Examples
    --------
    >>> split_words("Hello, world! 3.14")
    ['Hello', ',', 'world', '!', '3.14']
    >>> split_words("今天天气")
    ['今', '天', '天', '气']
    """
    return list(_split_cached(text))


@lru_cache(maxsize=4096)
def _kinds_cached(text: str) -> tuple[int, ...]:
    return tuple(tokenize([text]).kind.tolist())


def token_kinds(text: str) -> list[int]:
    """Kinds (``WORD``, ``CJK``, ``SEA``, ``SYMBOL``) of the tokens of one text, aligned with :func:`split_words`."""
    return list(_kinds_cached(text))


def char_kind(ch: str) -> int:
    """Kind of a token starting with character ``ch``."""
    cp = ord(ch)
    if cp < 0x10000:
        return int(_bmp_tables()[0][cp])
    s = pl.Series([ch])
    for kind, cls in ((CJK, CJK_CLASS), (SEA, SEA_CLASS), (SYMBOL, PUNCT_CLASS)):
        if s.str.contains(rf"^[{cls}]")[0]:
            return kind
    return WORD
