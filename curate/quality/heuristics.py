"""Vectorized quality scorers: Gopher quality and repetition, C4, FineWeb and code heuristics.

Each *family* is a function ``f(batch: DocBatch, options: dict) -> dict[rule_name, numpy array]`` returning
one score per document for each of its rules; ``filters/quality/*.yaml`` choose the rules, their order and
thresholds (``min``: fail when the score is below; ``max``: fail when above; a NaN score means "not
applicable" and never fails). Nothing here loops over documents in Python: texts are split into flat
line/paragraph/token arrays for the whole batch (pyarrow.compute with RE2, polars with Rust ``regex``), scored
element-wise and summed back per document with ``numpy.bincount`` on the row index. The n-gram repetition
rules hash tokens once (polars) and build n-gram hashes with a rolling 64-bit mix in numpy, so a 1 MB book
costs the same per character as a tweet; duplicates are found with polars' hash-based ``is_first_distinct``
(no sort, no quadratic step).

Definitions follow datatrove 0.10.1 (``datatrove/pipeline/filters/``) so that ``bench/bench_quality.py`` can
compare decisions; where curate differs the family's docstring says how and why. Documents are whole
``str`` texts: lengths are in characters (code points), as in Python.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from curate.quality import words as W
from curate.utf8 import ALNUM, SPACE, char_counts

# ---------------------------------------------------------------------------- shared constants
#: Python's ``str.isspace`` characters as an RE2 class body (RE2's ``\s`` is ASCII only).
WS = r"\t\n\x0b\x0c\r \x1c-\x1f\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}"
#: Horizontal whitespace (no line breaks), for line-anchored patterns.
HWS = r"\t \x{a0}\x{1680}\x{2000}-\x{200a}\x{202f}\x{205f}\x{3000}"
#: ``str.splitlines`` line boundaries.
LINE_BREAK = r"\r\n|[\n\r\x0b\x0c\x1c-\x1e\x{85}\x{2028}\x{2029}]"
#: the line breaks other than ``\n``: a text without any is split on ``\n`` alone
OTHER_BREAK = r"[\r\x0b\x0c\x1c-\x1e\x{85}\x{2028}\x{2029}]"
#: Unicode Sentence_Terminal characters: the set datatrove's ``TERMINAL_PUNCTUATION`` (FineWeb) uses.
TERMINAL_PUNCT_CLASS = (
    r"\x{21}\x{2E}\x{3F}\x{589}\x{61D}-\x{61F}\x{6D4}\x{700}-\x{702}\x{7F9}\x{837}\x{839}\x{83D}-\x{83E}"
    r"\x{964}-\x{965}\x{104A}-\x{104B}\x{1362}\x{1367}-\x{1368}\x{166E}\x{1735}-\x{1736}\x{17D4}-\x{17D6}"
    r"\x{17D9}-\x{17DA}\x{1803}\x{1809}\x{1944}-\x{1945}\x{1AA8}-\x{1AAB}\x{1B5A}-\x{1B5B}\x{1B5E}-\x{1B5F}"
    r"\x{1B7D}-\x{1B7E}\x{1C3B}-\x{1C3C}\x{1C7E}-\x{1C7F}\x{203C}-\x{203D}\x{2047}-\x{2049}\x{2E2E}\x{2E3C}"
    r"\x{2E53}-\x{2E54}\x{3002}\x{A4FF}\x{A60E}-\x{A60F}\x{A6F3}\x{A6F7}\x{A876}-\x{A877}\x{A8CE}-\x{A8CF}"
    r"\x{A92F}\x{A9C8}-\x{A9C9}\x{AA5D}-\x{AA5F}\x{AAF0}-\x{AAF1}\x{ABEB}\x{FE52}\x{FE56}-\x{FE57}\x{FF01}"
    r"\x{FF0E}\x{FF1F}\x{FF61}\x{10A56}-\x{10A57}\x{10F55}-\x{10F59}\x{10F86}-\x{10F89}\x{11047}-\x{11048}"
    r"\x{110BE}-\x{110C1}\x{11141}-\x{11143}\x{111C5}-\x{111C6}\x{111CD}\x{111DE}-\x{111DF}\x{11238}-\x{11239}"
    r"\x{1123B}-\x{1123C}\x{112A9}\x{1144B}-\x{1144C}\x{115C2}-\x{115C3}\x{115C9}-\x{115D7}\x{11641}-\x{11642}"
    r"\x{1173C}-\x{1173E}\x{11944}\x{11946}\x{11A42}-\x{11A43}\x{11A9B}-\x{11A9C}\x{11C41}-\x{11C42}"
    r"\x{11EF7}-\x{11EF8}\x{11F43}-\x{11F44}\x{16A6E}-\x{16A6F}\x{16AF5}\x{16B37}-\x{16B38}\x{16B44}\x{16E98}"
    r"\x{1BC9F}\x{1DA88}"
)

_K1 = np.uint64(0x9E3779B97F4A7C15)
_K2 = np.uint64(0xBF58476D1CE4E5B9)
_K3 = np.uint64(0x94D049BB133111EB)


def _mix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Order-dependent 64-bit combination of two uint64 arrays (splitmix64 finalizer; wraps on overflow)."""
    with np.errstate(over="ignore"):
        x = (a * _K1) ^ (b.astype(np.uint64) + _K2)
        x ^= x >> np.uint64(30)
        x *= _K2
        x ^= x >> np.uint64(27)
        x *= _K3
        x ^= x >> np.uint64(31)
    return x


def _ratio(num: np.ndarray, den: np.ndarray, *, empty: float = 0.0) -> np.ndarray:
    """``num / den`` with ``empty`` where ``den == 0``."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(num.shape, empty, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _ratio_inf(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den``; 0 where ``num == 0``, infinite where only ``den`` is 0 (a ``#`` in a text without words)."""
    out = _ratio(num, den, empty=np.inf)
    out[np.asarray(num) == 0] = 0.0
    return out


def _np(a: pa.Array | pa.ChunkedArray, dtype: Any = np.int64) -> np.ndarray:
    return np.asarray(a.to_numpy(zero_copy_only=False), dtype=dtype)


def _split_lines(text: pa.Array, *, regex: bool) -> tuple[np.ndarray, pa.Array]:
    """Row index and text of each ``str.splitlines`` line: on every :data:`LINE_BREAK` (``regex``), or on
    ``\\n`` only (for texts that have no other break). ``str.splitlines`` drops the empty piece after a final
    line break and returns ``[]`` for ``""``; so does this."""
    if regex:
        lists = pc.split_pattern_regex(text, LINE_BREAK)
        ends = _np(pc.match_substring_regex(text, f"(?:{LINE_BREAK})$|^$"), bool)
    else:
        lists = pc.split_pattern(text, "\n")
        ends = _np(pc.or_(pc.ends_with(text, "\n"), pc.equal(pc.binary_length(text), 0)), bool)
    doc, flat = _flat_strings(lists)
    offsets = _np(lists.offsets)
    drop = np.zeros(len(flat), dtype=bool)
    drop[offsets[1:][ends] - 1] = True
    if drop.any():
        keep = ~drop
        doc, flat = doc[keep], flat.filter(pa.array(keep))
    return doc, flat


def _flat_strings(lists: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """Row index and flat values of a list array (nulls become empty lists)."""
    return _np(pc.list_parent_indices(lists)), pc.list_flatten(lists)


def _group(keys: np.ndarray, ids: np.ndarray, n_ids: int) -> tuple[np.ndarray, np.ndarray]:
    """Group equal ``keys``: returns ``ids`` sorted by (key, id) and a mask of each group's first element.

    The id is packed into the low bits of the key and one ``np.sort`` of uint64 does the grouping (faster than
    an argsort or a hash table here). That leaves ``64 - bits(n_ids)`` bits of the hash to tell groups apart:
    about 40 bits for 10 million elements, i.e. a handful of accidental merges in a batch, each of which can
    only mark one element as a repeat of another.
    """
    bits = max(1, int(n_ids).bit_length())
    low = np.uint64((1 << bits) - 1)
    packed = (keys & ~low) | ids.astype(np.uint64)
    packed.sort()
    hi = packed & ~low
    start = np.empty(len(packed), dtype=bool)
    start[:1] = True
    np.not_equal(hi[1:], hi[:-1], out=start[1:])
    return (packed & low).astype(np.int64), start


def _first_occurrence(doc: np.ndarray, values: pa.Array) -> np.ndarray:
    """Bool array: ``values[i]`` is the first occurrence of its value within its document ``doc[i]``."""
    if len(doc) == 0:
        return np.zeros(0, dtype=bool)
    h = pl.Series(values).hash(W.HASH_SEED).to_numpy()
    ids, start = _group(_mix(h, doc.astype(np.uint64)), np.arange(len(doc)), len(doc))
    first = np.zeros(len(doc), dtype=bool)
    first[ids[start]] = True
    return first


@dataclass
class Lines:
    """Flat lines of a batch: row index, text and length (characters) of every line."""

    doc: np.ndarray
    text: pa.Array
    length: np.ndarray


class DocBatch:
    """One batch of documents and the split views the rules share (computed once, on first use).

    Parameters
    ----------
    texts : pyarrow.Array or ChunkedArray
        document texts; nulls are read as empty texts.
    lang : pyarrow.Array, optional
        language label per document (``lang`` column), used by the stop-word rule.
    meta : pyarrow.Array, optional
        JSON object per document (``meta`` column), used by the code rules (``path``, ``is_vendor``, ...).
    """

    def __init__(self, texts: pa.Array | pa.ChunkedArray, *, lang: pa.Array | pa.ChunkedArray | None = None,
                 meta: pa.Array | pa.ChunkedArray | None = None) -> None:
        t = texts.combine_chunks() if isinstance(texts, pa.ChunkedArray) else texts
        self.text = pc.fill_null(t.cast(pa.large_string()), "")
        self.n = len(self.text)
        self.lang = lang
        self.meta = meta

    # ------------------------------------------------------------------ per-document counts
    @cached_property
    def text_len(self) -> np.ndarray:
        """Length of each text in characters."""
        return _np(pc.utf8_length(self.text))

    @cached_property
    def n_newlines(self) -> np.ndarray:
        """Number of ``\\n`` characters per text."""
        return _np(pc.count_substring(self.text, "\n"))

    @cached_property
    def tokens(self) -> W.Tokens:
        """Flat token table (see :mod:`curate.quality.words`)."""
        return W.tokenize(self.text)

    # ------------------------------------------------------------------ line views
    @cached_property
    def splitlines(self) -> Lines:
        """Lines as ``str.splitlines`` gives them (no trailing empty line after a final line break).

        Most documents break lines with ``\\n`` alone: those are split on it (a byte search), and only the
        documents with another break (``\\r``, form feed, U+2028, ...) go through the regular expression
        (the-stack 9.5 MB: 0.128 s all by the expression; culturax, refinedweb and wikipedia, with no other break,
        0.018-0.047 s against 0.011-0.024 s).
        """
        other = _np(pc.match_substring_regex(self.text, OTHER_BREAK), bool)
        doc, flat = _split_lines(self.text, regex=False)
        if other.any():  # their lines from the expression, merged back in document order
            keep = ~other[doc]
            rdoc, rflat = _split_lines(self.text.filter(pa.array(other)), regex=True)
            doc = np.concatenate([doc[keep], np.flatnonzero(other)[rdoc]])
            order = np.argsort(doc, kind="stable")
            doc, flat = doc[order], pa.concat_arrays([flat.filter(pa.array(keep)), rflat]).take(pa.array(order))
        return Lines(doc, flat, _np(pc.utf8_length(flat)))

    @cached_property
    def nl_lines(self) -> Lines:
        """Lines split on ``\\n`` only (``str.split("\\n")``), as FineWeb does."""
        doc, flat = _flat_strings(pc.split_pattern(self.text, "\n"))
        return Lines(doc, flat, _np(pc.utf8_length(flat)))

    @cached_property
    def n_splitlines(self) -> np.ndarray:
        """Number of ``str.splitlines`` lines per text."""
        return np.bincount(self.splitlines.doc, minlength=self.n).astype(np.int64)

    def per_doc(self, doc: np.ndarray, values: np.ndarray | None = None) -> np.ndarray:
        """Sum ``values`` (default 1) per document given each element's row index ``doc``."""
        return np.bincount(doc, weights=values, minlength=self.n).astype(np.float64)

    def max_per_doc(self, doc: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Maximum of ``values`` per document (0 for documents without elements); ``doc`` must be sorted."""
        out = np.zeros(self.n, dtype=np.float64)
        if len(doc):
            starts = np.flatnonzero(np.r_[True, doc[1:] != doc[:-1]])
            out[doc[starts]] = np.maximum.reduceat(values.astype(np.float64), starts)
        return out

    def meta_field(self, *paths: str) -> pl.Series:
        """String value of the first JSON path of ``meta`` that is present (``$.path``), null when absent."""
        if self.meta is None:
            return pl.Series([None] * self.n, dtype=pl.String)
        m = pl.Series(pa.chunked_array([self.meta]) if isinstance(self.meta, pa.Array) else self.meta).cast(pl.String)
        out = pl.Series([None] * self.n, dtype=pl.String)
        for p in paths:
            out = out.fill_null(m.str.json_path_match(p))
        return out


# ---------------------------------------------------------------------------- Gopher quality
GOPHER_QUALITY_RULES = (
    "gopher_word_count", "gopher_mean_word_length", "gopher_hash_word_ratio", "gopher_ellipsis_word_ratio",
    "gopher_bullet_lines_ratio", "gopher_ellipsis_lines_ratio", "gopher_alpha_words_ratio", "gopher_stop_words",
)


#: ISO 639-3 codes (GlotLID labels such as ``eng_Latn``) of the languages with stop-word lists -> ISO 639-1.
ISO639_3 = {
    "eng": "en", "deu": "de", "fra": "fr", "spa": "es", "ita": "it", "por": "pt", "nld": "nl", "swe": "sv",
    "dan": "da", "nob": "no", "nno": "no", "nor": "no", "fin": "fi", "pol": "pl", "ces": "cs", "rus": "ru",
    "ukr": "uk", "bul": "bg", "ell": "el", "tur": "tr", "ind": "id", "vie": "vi", "heb": "he", "arb": "ar",
    "ara": "ar", "pes": "fa", "fas": "fa", "kor": "ko", "cmn": "zh", "zho": "zh", "jpn": "ja", "tha": "th",
}


def normalize_lang(lang: pa.Array | pa.ChunkedArray | None, n: int) -> list[str | None]:
    """Lower-case ISO 639-1 codes without region/script (``en-US``, ``eng_Latn`` -> ``en``; ``zh_Hans`` -> ``zh``)."""
    if lang is None:
        return [None] * n
    s = pl.Series(pa.chunked_array([lang]) if isinstance(lang, pa.Array) else lang).cast(pl.String)
    base = s.str.to_lowercase().str.replace(r"[-_].*$", "")
    return base.replace(ISO639_3).replace("", None).to_list()


def stop_word_counts(b: DocBatch, stop_words: dict[str, list[str]]) -> np.ndarray:
    """Distinct stop words found per document, for the list of its language (float; NaN = no list for it).

    Spaced-script stop words are matched as whole tokens (case-sensitive, like datatrove); a stop word of a
    script without spaces that spans several characters (Thai ``และ``) is matched as a substring. A document
    whose ``lang`` is null is scored with the list that matches best (so English, German, ... prose passes
    without a language label); a document whose language has no list gets NaN and the rule does not apply.
    """
    langs = list(stop_words)
    vocab: list[str] = sorted({w for ws in stop_words.values() for w in ws if not _is_substring_word(w)})
    col = {w: i for i, w in enumerate(vocab)}
    counts = np.zeros((b.n, len(langs)), dtype=np.float64)
    if vocab:
        vh = W.hash_words(vocab)
        order = np.argsort(vh)
        sh = vh[order]
        tok = b.tokens
        pos = np.clip(np.searchsorted(sh, tok.hash), 0, len(sh) - 1)
        hit = sh[pos] == tok.hash
        wid = order[pos[hit]]
        key = np.unique(tok.doc[hit] * len(vocab) + wid)
        present = np.zeros((b.n, len(vocab)), dtype=np.float64)
        present[key // len(vocab), key % len(vocab)] = 1.0
        member = np.zeros((len(vocab), len(langs)), dtype=np.float64)
        for j, lg in enumerate(langs):
            for w in stop_words[lg]:
                if w in col:
                    member[col[w], j] = 1.0
        counts += present @ member
    substring_words = [(j, w) for j, lg in enumerate(langs) for w in stop_words[lg] if _is_substring_word(w)]
    if substring_words:
        # only documents with characters of a no-space script can contain such a word
        rows = np.flatnonzero(b.tokens.per_doc((b.tokens.kind == W.CJK) | (b.tokens.kind == W.SEA)) > 0)
        sub = b.text.take(pa.array(rows))
        for j, w in substring_words:
            counts[rows, j] += _np(pc.match_substring(sub, w), np.float64)
    doc_lang = pl.Series("lang", normalize_lang(b.lang, b.n), dtype=pl.String)
    # -1: no language given (best list), -2: a language without a list (not applicable), else the list's column
    col_of = doc_lang.replace_strict({lg: j for j, lg in enumerate(langs)}, default=-2,
                                     return_dtype=pl.Int64).to_numpy().copy()
    col_of[doc_lang.is_null().to_numpy()] = -1
    best = counts.max(axis=1) if langs else np.zeros(b.n)
    own = counts[np.arange(b.n), np.clip(col_of, 0, None)] if langs else np.zeros(b.n)
    return np.where(col_of == -1, best, np.where(col_of >= 0, own, np.nan))


def _is_substring_word(word: str) -> bool:
    """A stop word written in a script without spaces that the tokenizer splits into several tokens."""
    return len(W.split_words(word)) > 1 and all(k in (W.CJK, W.SEA) for k in W.token_kinds(word))


def check_stop_word(word: str) -> str | None:
    """Why ``word`` cannot be a stop word (it would never match), or None when it can."""
    toks = W.split_words(word)
    if toks == [word] or _is_substring_word(word):
        return None
    return f"{word!r} is split into {toks} by curate's tokenizer, so it can never match a single word"


#: Hangul syllables without a final consonant (2 jamo; the others have 3): every 28th from U+AC00.
_HANGUL_OPEN = "".join(chr(c) for c in range(0xAC00, 0xD7A4, 28))


def _hangul_extra_letters(b: DocBatch) -> np.ndarray:
    """Per document: jamo beyond one per Hangul syllable (1 or 2 each), added to the word length sum."""
    extra = np.zeros(b.n)
    rows = np.flatnonzero(_np(pc.match_substring_regex(b.text, "[\uac00-\ud7a3]"), bool))
    if len(rows):
        sub = b.text.take(pa.array(rows))
        syll = _np(pc.utf8_length(pc.replace_substring_regex(sub, "[^\uac00-\ud7a3]+", "")), np.float64)
        open_ = _np(pc.utf8_length(pc.replace_substring_regex(sub, f"[^{_HANGUL_OPEN}]+", "")), np.float64)
        extra[rows] = 2 * syll - open_
    return extra


def gopher_quality(b: DocBatch, opts: dict[str, Any]) -> dict[str, np.ndarray]:
    """Gopher quality scores (Rae et al. 2021, App. A.1.1), counted as datatrove's ``GopherQualityFilter`` does.

    - ``gopher_word_count``: words, i.e. tokens that are not pure punctuation (no-space scripts weighted, see
      :mod:`curate.quality.words`).
    - ``gopher_mean_word_length``: their mean length in characters (NaN without words). A Hangul syllable
      block counts as its 2 or 3 letters (jamo, its canonical decomposition): Korean words average about 3
      syllables, which would put ordinary Korean prose under the 3-character floor (measured: 9 of 87
      well-formed Korean Wikipedia articles of the real sample at 2.8-3.0).
    - ``gopher_hash_word_ratio`` / ``gopher_ellipsis_word_ratio``: ``#`` and ``...``/``…`` occurrences per word.
    - ``gopher_bullet_lines_ratio``: lines whose first non-space character is ``•`` or ``-``;
      ``gopher_ellipsis_lines_ratio``: lines ending (before trailing spaces) in ``...`` or ``…``; both over
      ``str.splitlines()`` lines.
    - ``gopher_alpha_words_ratio``: words with an alphabetic character over words.
    - ``gopher_stop_words``: distinct stop words of the document's language (:func:`stop_word_counts`).

    The paper divides by *words*. datatrove divides the three ratios by all spaCy tokens, punctuation tokens
    included (``len(words)``), which makes every comma count as a non-alphabetic word: with that reading the
    0.8 alphabetic-word floor drops 66 of the first 400 articles of the real Wikipedia sample (323 English,
    76 German, 1 Bulgarian; measured with datatrove 0.10.1). ``count_punctuation_as_words: true`` reproduces
    datatrove; the default follows the paper.
    """
    tok = b.tokens
    wgt = tok.weight
    word = tok.kind != W.SYMBOL
    n_words = tok.per_doc(wgt * word)
    n_tok = tok.per_doc(wgt) if opts["count_punctuation_as_words"] else n_words
    wlen = np.where(tok.kind == W.WORD, tok.length, W.NOSPACE_WORD_LENGTH) * wgt * word
    wlen_sum = tok.per_doc(wlen) + _hangul_extra_letters(b)
    hashes = _np(pc.count_substring(b.text, "#"), np.float64)
    ellipses = _np(pc.count_substring(b.text, "..."), np.float64) + _np(pc.count_substring(b.text, "…"), np.float64)
    bullets = _np(pc.count_substring_regex(b.text, f"(?m)^[{HWS}\\x0b\\x0c\\r]*[•\\-]"), np.float64)
    ell_lines = _np(pc.count_substring_regex(b.text, f"(?m)(?:\\.\\.\\.|…)[{HWS}\\x0b\\x0c\\r]*$"), np.float64)
    return {
        "gopher_word_count": n_words,
        "gopher_mean_word_length": _ratio(wlen_sum, n_words, empty=np.nan),
        "gopher_hash_word_ratio": _ratio_inf(hashes, n_tok),
        "gopher_ellipsis_word_ratio": _ratio_inf(ellipses, n_tok),
        "gopher_bullet_lines_ratio": _ratio(bullets, b.n_splitlines),
        "gopher_ellipsis_lines_ratio": _ratio(ell_lines, b.n_splitlines),
        "gopher_alpha_words_ratio": _ratio(tok.per_doc(wgt * tok.alpha), n_tok, empty=np.nan),
        "gopher_stop_words": stop_word_counts(b, opts["stop_words"]),
    }


# ---------------------------------------------------------------------------- Gopher repetition
TOP_NGRAMS = (2, 3, 4)
DUP_NGRAMS = (5, 6, 7, 8, 9, 10)
GOPHER_REPETITION_RULES = (
    "gopher_dup_para_frac", "gopher_dup_para_char_frac", "gopher_dup_line_frac", "gopher_dup_line_char_frac",
    *(f"gopher_top_{n}gram_char_frac" for n in TOP_NGRAMS),
    *(f"gopher_dup_{n}gram_char_frac" for n in DUP_NGRAMS),
)


def _dup_fractions(b: DocBatch, doc: np.ndarray, values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(duplicate element fraction, duplicate element characters / text length) per document."""
    first = _first_occurrence(doc, values)
    dup = ~first
    dup_chars = b.per_doc(doc, _np(pc.utf8_length(values), np.float64) * dup)
    return _ratio(b.per_doc(doc, dup), b.per_doc(doc)), _ratio(dup_chars, b.text_len)


def gopher_repetition(b: DocBatch, opts: dict[str, Any]) -> dict[str, np.ndarray]:
    """Gopher repetition scores (Rae et al. 2021, App. A.1.1, Table A1), as datatrove's ``GopherRepetitionFilter``.

    - paragraphs are ``text.strip()`` split on ``\\n{2,}``, lines are ``text`` split on ``\\n+``; a duplicate
      is an element equal to an earlier one of the same document (the first occurrence is not counted); the
      ``*_char_frac`` scores divide duplicate characters by the length of the whole text.
    - ``gopher_top_{n}gram_char_frac`` (n = 2, 3, 4): characters of the most frequent token n-gram (its
      ``" ".join`` length, earliest n-gram on ties) times its count, over the text length.
    - ``gopher_dup_{n}gram_char_frac`` (n = 5..10): characters (tokens joined without spaces) covered by
      n-grams that occurred earlier in the document, over the text length. Overlapping duplicate n-grams
      count each token once (the paper does not count characters of overlapping duplicate n-grams twice);
      datatrove instead skips n tokens after each duplicate, which can count up to n-1 fewer tokens at the
      end of a repeated span. ``dup_ngram_counting: greedy`` does datatrove's scan (:func:`_greedy_picks`).

    Tokens are :mod:`curate.quality.words` tokens (punctuation included, like spaCy's tokens in datatrove).
    """
    out: dict[str, np.ndarray] = {}
    paras = pc.split_pattern_regex(pc.utf8_trim_whitespace(b.text), r"\n{2,}")
    out["gopher_dup_para_frac"], out["gopher_dup_para_char_frac"] = _dup_fractions(b, *_flat_strings(paras))
    lines = pc.split_pattern_regex(b.text, r"\n+")
    out["gopher_dup_line_frac"], out["gopher_dup_line_char_frac"] = _dup_fractions(b, *_flat_strings(lines))
    out.update(_ngram_scores(b, greedy=opts["dup_ngram_counting"] == "greedy"))
    return out


def _ngram_scale(b: DocBatch) -> np.ndarray:
    """Characters per word of each document's n-grams: 1 token per word, or ``CHARS_PER_WORD`` of the no-space
    script (Han/Kana 1.5, Thai-like 3.0) when that script holds at least half of the document's words."""
    tok = b.tokens
    wgt = tok.weight
    words = tok.per_doc(wgt * (tok.kind != W.SYMBOL))
    scale = np.ones(b.n)
    for kind, cpw in W.CHARS_PER_WORD.items():
        share = _ratio(tok.per_doc(wgt * (tok.kind == kind)), words)
        scale[share >= 0.5] = cpw
    return scale


def _ngram_scores(b: DocBatch, *, greedy: bool = False) -> dict[str, np.ndarray]:
    """Top and duplicate n-gram character fractions for all documents of the batch at once.

    Tokens of Chinese, Japanese and Thai-like scripts are single characters, so for a document mostly in such a
    script an "n-gram" is ``ceil(n * chars_per_word)`` tokens (a 5-gram of words is 8 Chinese characters):
    without that, every 5-character phrase that recurs in a Chinese article (a name, a term) would count as a
    repeated 5-word passage, and ordinary Chinese Wikipedia articles fail ``gopher_dup_5gram_char_frac``.

    An n-gram that occurs twice has a repeated (n-1)-gram prefix, so only positions whose (n-1)-gram repeats
    are carried to n: the work shrinks quickly with n on ordinary text. For each n the candidate n-grams are
    grouped with one sort (:func:`_group`); the n-gram hash includes the row index so documents never share
    a group.
    """
    tok = b.tokens
    nt = len(tok.doc)
    scale = _ngram_scale(b)
    scales = np.unique(scale)
    need_top = {int(np.ceil(n * sc)): n for n in TOP_NGRAMS for sc in scales}
    need_dup = {int(np.ceil(n * sc)): n for n in DUP_NGRAMS for sc in scales}
    top_at: dict[int, np.ndarray] = {}
    dup_at: dict[int, np.ndarray] = {}
    if nt >= 2:
        _ngram_loop(b, max(max(need_top), max(need_dup)), set(need_top), set(need_dup), top_at, dup_at,
                    greedy=greedy)
    out = {}
    for rule_ns, prefix, at in ((TOP_NGRAMS, "gopher_top_", top_at), (DUP_NGRAMS, "gopher_dup_", dup_at)):
        for n in rule_ns:
            score = np.zeros(b.n)
            for sc in scales:
                rows = scale == sc
                m = int(np.ceil(n * sc))
                if m in at:
                    score[rows] = at[m][rows]
            out[f"{prefix}{n}gram_char_frac"] = score
    return out


def _ngram_loop(b: DocBatch, max_n: int, top_ns: set[int], dup_ns: set[int], top_at: dict[int, np.ndarray],
                dup_at: dict[int, np.ndarray], *, greedy: bool) -> None:
    tok = b.tokens
    nt = len(tok.doc)
    doc = tok.doc
    cs_len = np.r_[0, np.cumsum(tok.length)]
    nospace = (tok.kind == W.CJK) | (tok.kind == W.SEA)
    # adjacent no-space tokens are not separated by a space in the text: do not add one to the n-gram length
    cs_joined = np.r_[0, np.cumsum(nospace[:-1] & nospace[1:])]
    doc_first = np.searchsorted(doc, np.arange(b.n))  # first token of each document
    doc_ntok = np.bincount(doc, minlength=b.n)
    cand = np.arange(nt)  # positions whose (n-1)-gram repeats (all positions for n = 1)
    g = _mix(tok.hash, doc.astype(np.uint64))  # hash of the (n-1)-gram at each candidate, document mixed in
    for n in range(2, max_n + 1):
        end = cand + n - 1
        ok = end < nt
        ok[ok] &= doc[end[ok]] == doc[cand[ok]]
        cand, g = cand[ok], g[ok]
        if len(cand) == 0:
            top_at.update({m: _top_single(b, m, doc_first, doc_ntok, cs_len, cs_joined) for m in top_ns if m >= n})
            break
        g = _mix(g, tok.hash[cand + n - 1])
        ids, start = _group(g, cand, nt)
        gstart = np.flatnonzero(start)
        gcount = np.diff(np.r_[gstart, len(ids)])
        if n in top_ns:
            # per document: the most frequent n-gram, the earliest-starting one on ties (Counter.most_common)
            first_pos = ids[gstart]
            best = np.full(b.n, -1, dtype=np.int64)
            low = np.int64((1 << 40) - 1)  # positions < 2**40; count in the high bits, earliest wins ties
            np.maximum.at(best, doc[first_pos], (gcount.astype(np.int64) << np.int64(40)) | (low - first_pos))
            has = best >= 0
            count = np.where(has, best >> np.int64(40), 0)
            pos = np.where(has, low - (best & low), 0)
            top_at[n] = _top_fraction(b, n, count, pos, doc_first, doc_ntok, cs_len, cs_joined)
        if n in dup_ns:
            dpos = ids[~start]  # n-grams that occurred earlier in their document
            frac = np.zeros(b.n)
            if len(dpos) and greedy:
                p = _greedy_picks(np.sort(dpos), doc, n)
                frac = _ratio(b.per_doc(doc[p], cs_len[p + n] - cs_len[p]), b.text_len)
            elif len(dpos):
                cover = np.cumsum(np.bincount(dpos, minlength=nt + 1) - np.bincount(dpos + n, minlength=nt + 1))
                frac = _ratio(tok.per_doc(tok.length * (cover[:nt] > 0)), b.text_len)
            dup_at[n] = frac
        # carry the positions whose n-gram repeats
        repeated = np.zeros(nt, dtype=bool)
        repeated[ids[np.repeat(gcount, gcount) >= 2]] = True
        keep = repeated[cand]
        cand, g = cand[keep], g[keep]


def _greedy_picks(d: np.ndarray, doc: np.ndarray, n: int) -> np.ndarray:
    """datatrove's scan over sorted duplicate positions ``d``: take one, skip the next ``n - 1`` tokens, repeat.

    The picks of a document are the path first duplicate -> first duplicate at least ``n`` further -> ...; all
    paths are enumerated at once by pointer doubling: after round ``k`` the set holds the first ``2**k`` nodes of
    every path, so the rounds are ``log2`` of the longest path, each a numpy gather. datatrove also leaves the
    n-grams of skipped positions out of its "seen" set (an n-gram whose only earlier occurrence was skipped is
    new to it); that rarer case is not reproduced.
    """
    m = len(d)
    dd = doc[d]
    nxt = np.searchsorted(d, d + n)
    ok = nxt < m
    ok[ok] &= dd[nxt[ok]] == dd[ok]
    jump = np.append(np.where(ok, nxt, m), m)  # index m ends a path
    nodes = np.flatnonzero(np.r_[True, dd[1:] != dd[:-1]])  # the first duplicate of each document
    while True:
        step = jump[nodes]
        step = step[step < m]
        if len(step) == 0:
            break
        nodes = np.union1d(nodes, step)
        jump = jump[jump]
    return d[nodes]


def _top_fraction(b: DocBatch, n: int, count: np.ndarray, pos: np.ndarray, doc_first: np.ndarray,
                  doc_ntok: np.ndarray, cs_len: np.ndarray, cs_joined: np.ndarray) -> np.ndarray:
    """Characters of the top n-gram times its count over the text length (``count``/``pos`` per document)."""
    count, pos = count.copy(), pos.copy()
    # a document whose n-grams all occur once has its first n-gram as the "top" one (datatrove does the same)
    single = (count <= 1) & (doc_ntok >= n)
    count[single] = 1
    pos[single] = doc_first[single]
    sel = np.flatnonzero(count > 0)
    p = pos[sel]
    length = cs_len[p + n] - cs_len[p] + (n - 1) - (cs_joined[p + n - 1] - cs_joined[p])
    top = np.zeros(b.n)
    top[sel] = length * count[sel]
    return _ratio(top, b.text_len)


def _top_single(b: DocBatch, n: int, doc_first: np.ndarray, doc_ntok: np.ndarray, cs_len: np.ndarray,
                cs_joined: np.ndarray) -> np.ndarray:
    zeros = np.zeros(b.n, dtype=np.int64)
    return _top_fraction(b, n, zeros, zeros, doc_first, doc_ntok, cs_len, cs_joined)


# ---------------------------------------------------------------------------- C4
C4_RULES = ("c4_lorem_ipsum", "c4_curly_bracket", "c4_num_sentences", "c4_terminal_punct_frac")
C4_CITATION = r"\[\p{Nd}*\]|\[edit\]|\[citation needed\]"
C4_POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")
#: A sentence boundary inside a line, approximating spaCy's sentencizer on spaCy tokens (datatrove counts C4
#: sentences with it): ``!``/``?``, or a ``.`` that spaCy splits off a token without inner periods (after a
#: lower-case letter, two capitals, a closing quote/bracket or ``%``; not ``U.S.`` or ``p.m.``), then closing
#: punctuation, whitespace and a non-punctuation character.
C4_SENTENCE_BOUNDARY = (
    r"(?:(?:^|[" + WS + r"])[^" + WS + r".]*(?:[\p{Ll}%)\]\"'”’]|\p{Lu}\p{Lu})\.|[!?])"
    r"[!?\p{Pe}\p{Pf}\"']*[" + WS + r"]+[^" + WS + r"\p{P}]"
)
#: Abbreviations spaCy keeps whole ("Dr."), so a period after them ends no sentence: subtracted.
C4_ABBREVIATION = (
    r"(?:^|[" + WS + r"])(?:Mr|Mrs|Ms|Dr|Prof|St|Jr|Sr|Mt|vs|etc|Inc|Ltd|Co|Corp|No|Fig|Jan|Feb|Mar|Apr|Jun|Jul|Aug"
    r"|Sep|Sept|Oct|Nov|Dec)\.[\p{Pe}\p{Pf}\"']*[" + WS + r"]+[^" + WS + r"\p{P}]"
)


def c4(b: DocBatch, opts: dict[str, Any]) -> dict[str, np.ndarray]:
    """C4 page rules (Raffel et al. 2020, Sec. 2.2) as datatrove's ``C4QualityFilter`` applies them.

    Every ``str.splitlines()`` line is stripped; a line is *kept* when no whitespace word is longer than
    ``max_word_length``, it ends (after removing ``[1]``/``[edit]``/``[citation needed]`` when
    ``remove_citations``) in ``. ? ! " '`` but not ``...`` (``filter_no_terminal_punct``), has at least
    ``min_words_per_line`` whitespace words, does not mention "javascript" (``filter_javascript``) and has none
    of the cookie/terms-of-use phrases (``filter_policy``). A page fails when a line that passed the first
    three checks contains "lorem ipsum" (``c4_lorem_ipsum``) or, unless it is a javascript line, a ``{``
    (``c4_curly_bracket``), or when its kept lines hold fewer than 5 sentences (``c4_num_sentences``).
    ``c4_terminal_punct_frac`` (share of non-empty lines ending in terminal punctuation) is a score only.

    curate never rewrites the text (datatrove's filter keeps only the kept lines): the score records what C4
    would do. Sentences are counted with :data:`C4_SENTENCE_BOUNDARY` instead of spaCy.
    """
    lines = b.splitlines
    s = pc.utf8_trim_whitespace(lines.text)
    slen = _np(pc.utf8_length(s))
    nonempty = slen > 0
    nwords = _np(pc.count_substring_regex(s, f"[^{WS}]+"))
    too_long = np.zeros(len(slen), dtype=bool)
    mwl = opts["max_word_length"]
    if mwl is not None and mwl >= 0:
        maybe = np.flatnonzero(slen > mwl)
        if len(maybe):
            parts = pc.utf8_split_whitespace(s.take(pa.array(maybe)))
            pdoc, pflat = _flat_strings(parts)
            longest = np.zeros(len(maybe))
            np.maximum.at(longest, pdoc, _np(pc.utf8_length(pflat), np.float64))
            too_long[maybe] = longest > mwl
    cit = pc.replace_substring_regex(s, C4_CITATION, "") if opts["remove_citations"] else s
    term = _np(pc.match_substring_regex(cit, r"[.?!\"']$"), bool) & ~_np(pc.ends_with(cit, "..."), bool)
    cand = ~too_long & (nwords >= opts["min_words_per_line"])
    if opts["filter_no_terminal_punct"]:
        cand &= term
    ci = np.flatnonzero(cand)
    ctext = cit.take(pa.array(ci))
    low = pc.utf8_lower(ctext)

    def has(arr: pa.Array, sub: str) -> np.ndarray:
        return _np(pc.match_substring(arr, sub), bool)

    zeros = np.zeros(len(ci), dtype=bool)
    lorem = has(low, "lorem ipsum") if opts["filter_lorem_ipsum"] else zeros
    js = has(low, "javascript") if opts["filter_javascript"] else zeros
    curly = (has(ctext, "{") & ~js) if opts["filter_curly_bracket"] else zeros
    policy = zeros.copy()
    if opts["filter_policy"]:
        for p in C4_POLICY:
            policy |= has(low, p)
    kept = ~js & ~curly & ~policy & ~lorem
    sentences = 1 + _np(pc.count_substring_regex(ctext, C4_SENTENCE_BOUNDARY)) - _np(
        pc.count_substring_regex(ctext, C4_ABBREVIATION))
    cdoc = lines.doc[ci]
    return {
        "c4_lorem_ipsum": b.per_doc(cdoc, lorem),
        "c4_curly_bracket": b.per_doc(cdoc, curly),
        "c4_num_sentences": b.per_doc(cdoc, sentences * kept),
        "c4_terminal_punct_frac": _ratio(b.per_doc(lines.doc, term & nonempty), b.per_doc(lines.doc, nonempty),
                                         empty=np.nan),
    }


# ---------------------------------------------------------------------------- FineWeb
FINEWEB_RULES = ("fineweb_line_punct_ratio", "fineweb_short_line_ratio", "fineweb_char_dup_ratio",
                 "fineweb_new_line_ratio")


def fineweb(b: DocBatch, opts: dict[str, Any]) -> dict[str, np.ndarray]:
    """FineWeb rules (Penedo et al. 2024, Sec. 3.3) as datatrove's ``FineWebQualityFilter``.

    Lines are ``text.split("\\n")`` without the blank ones. ``fineweb_line_punct_ratio``: lines ending (no
    stripping) in a Unicode sentence terminal; ``fineweb_short_line_ratio``: lines of at most
    ``short_line_length`` characters; ``fineweb_char_dup_ratio``: characters of lines equal to an earlier line
    over the characters of the text without ``\\n``; ``fineweb_new_line_ratio``: ``\\n`` count over tokens
    (punctuation tokens included, as datatrove's ``len(words)``). A document without a non-blank line scores 0
    on the first rule and fails it (datatrove: "empty"). With ``line_punct_exclude_zero`` a ratio of exactly 0
    is NaN (not applicable), as datatrove's option of that name.

    Hard-wrapped text (``unwrap_hard_wraps``, a curate addition): FineWeb's line rules read a line as a block
    of extracted web text. Plain-text books are wrapped at ~70 characters, so most "lines" end mid-sentence
    and 10 of the 41 real Project Gutenberg books fail ``fineweb_line_punct_ratio`` (Emma 0.094, Pride and
    Prejudice 0.097). A document is taken as hard-wrapped when it has at least 10 non-blank lines, at least 3
    blank-line-separated paragraphs, and 30% or more of its lines continue on a next line that starts with a
    lower-case letter; its line rules then count paragraphs (internal newlines read as spaces) instead of lines.
    On the real samples this flags 38 of 41 books, 3 of 1,528 Wikipedia articles and none of 2,036 web pages.
    """
    lines = b.nl_lines
    nonempty = _np(pc.utf8_length(pc.utf8_trim_whitespace(lines.text))) > 0
    feats = _fineweb_lines(b, lines.doc[nonempty], lines.text.filter(pa.array(nonempty)), lines.length[nonempty],
                           opts)
    if opts["unwrap_hard_wraps"]:
        rows = np.flatnonzero(_hard_wrapped(b, lines, nonempty))
        if len(rows):
            paras = pc.split_pattern_regex(b.text.take(pa.array(rows)), r"\n(?:[ \t\r]*\n)+")
            pdoc, flat = _flat_strings(paras)
            flat = pc.utf8_trim_whitespace(pc.replace_substring_regex(flat, r"[ \t\r]*\n[ \t\r]*", " "))
            keep = _np(pc.utf8_length(flat)) > 0
            flat = flat.filter(pa.array(keep))
            pf = _fineweb_lines(b, rows[pdoc[keep]], flat, _np(pc.utf8_length(flat)), opts)
            for k in feats:
                feats[k][rows] = pf[k][rows]
    n = feats["n"]
    punct = _ratio(feats["term"], n)
    if opts["line_punct_exclude_zero"]:
        punct[punct == 0] = np.nan
    tok = b.tokens
    return {
        "fineweb_line_punct_ratio": punct,
        "fineweb_short_line_ratio": _ratio(feats["short"], n),
        "fineweb_char_dup_ratio": _ratio(feats["dup_chars"], b.text_len - b.n_newlines),
        "fineweb_new_line_ratio": _ratio_inf(b.n_newlines, tok.per_doc(tok.weight)),
    }


def _fineweb_lines(b: DocBatch, d: np.ndarray, t: pa.Array, ln: np.ndarray, opts: dict[str, Any]
                   ) -> dict[str, np.ndarray]:
    """Per-document line counts of FineWeb's rules over non-blank line units (row ``d``, text ``t``, length)."""
    term = _np(pc.match_substring_regex(t, f"[{TERMINAL_PUNCT_CLASS}]$"), bool)
    dup = ~_first_occurrence(d, t)
    return {
        "n": b.per_doc(d),
        "term": b.per_doc(d, term),
        "short": b.per_doc(d, ln <= opts["short_line_length"]),
        "dup_chars": b.per_doc(d, ln * dup),
    }


def _hard_wrapped(b: DocBatch, lines: Lines, nonempty: np.ndarray) -> np.ndarray:
    """Bool per document: hard-wrapped prose (see :func:`fineweb`)."""
    lower = _np(pc.match_substring_regex(lines.text, r"^[ \t]*\p{Ll}"), bool)
    same = lines.doc[1:] == lines.doc[:-1]
    cont = nonempty[:-1] & nonempty[1:] & lower[1:] & same
    n_cont = b.per_doc(lines.doc[:-1], cont)
    n_lines = b.per_doc(lines.doc, nonempty)
    seps = _np(pc.count_substring_regex(b.text, r"\n[ \t\r]*\n"), np.float64)
    return (n_lines >= 10) & (seps >= 2) & (_ratio(n_cont, n_lines) >= 0.3)


# ---------------------------------------------------------------------------- code
CODE_RULES = ("code_vendor", "code_autogenerated", "code_avg_line_length", "code_max_line_length",
              "code_alnum_frac", "code_minified", "code_numeric_frac")
#: A number literal: hex (``0x1F``), or decimal with optional fraction and exponent.
CODE_NUMBER = r"\b(?:0[xX][0-9a-fA-F]+|[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)[uUlLfF]*\b"


def code(b: DocBatch, opts: dict[str, Any]) -> dict[str, np.ndarray]:
    """Source-code rules (Codex, Chen et al. 2021, Sec. 3.1; StarCoder, Li et al. 2023, Sec. 3).

    - ``code_avg_line_length`` / ``code_max_line_length``: mean and max of ``len(line)`` over
      ``content.splitlines()`` (the-stack's ``avg_line_length``/``max_line_length`` columns).
    - ``code_alnum_frac``: share of characters that are letters or digits (the-stack's ``alphanum_fraction``).
    - ``code_autogenerated``: 1 when one of ``autogen_markers`` occurs (case-insensitive) in the first
      ``autogen_lines`` lines, or ``meta.is_generated`` is true (the-stack v2).
    - ``code_minified``: share of characters on lines longer than ``minified_line_length`` that are less than
      ``minified_max_space_frac`` whitespace (minified JS/CSS, inline data blobs; prose lines of Markdown are
      long too, but about 15% spaces).
    - ``code_numeric_frac``: share of non-whitespace characters inside number literals (data tables, hex dumps).
    - ``code_vendor``: 1 when ``meta.path`` matches ``vendor_pattern`` or ``meta.is_vendor`` is true.
    """
    lines = b.splitlines
    nl = b.n_splitlines
    total = b.per_doc(lines.doc, lines.length)
    long = np.flatnonzero(lines.length > opts["minified_line_length"])
    long_text = lines.text.take(pa.array(long))
    no_space = pc.replace_substring_regex(long_text, f"[{WS}]+", "")
    blanks = _np(pc.utf8_length(long_text)) - _np(pc.utf8_length(no_space))
    dense = blanks < opts["minified_max_space_frac"] * lines.length[long]
    long_chars = b.per_doc(lines.doc[long], lines.length[long] * dense)
    # letters/digits and whitespace by the vectorized byte classifier (curate.utf8): the three Unicode-class
    # regex passes it replaces were most of this family's time on the-stack
    alnum, space = (c.astype(np.float64) for c in char_counts(b.text, (ALNUM, SPACE)))
    nonspace = b.text_len - space
    # number literals hold no whitespace: their characters are what removing them takes away
    no_numbers = _np(pc.utf8_length(pc.replace_substring_regex(b.text, CODE_NUMBER, "")))
    numeric = (b.text_len - no_numbers).astype(np.float64)
    head = pc.utf8_lower(pc.extract_regex(pc.utf8_slice_codeunits(b.text, 0, 8 * 1024),
                                          r"^(?P<h>(?:[^\n]*\n){0,%d}[^\n]*)" % (opts["autogen_lines"] - 1)).field(
        "h"))
    marker = "|".join(_re2_escape(m.lower()) for m in opts["autogen_markers"])
    autogen = _np(pc.fill_null(pc.match_substring_regex(head, marker), False), bool) if marker else np.zeros(b.n, bool)
    autogen |= (b.meta_field("$.is_generated").to_numpy() == "true")
    path = b.meta_field("$.path", "$.max_stars_repo_path")
    vendor = (path.str.contains(opts["vendor_pattern"]).fill_null(False).to_numpy() if opts["vendor_pattern"]
              else np.zeros(b.n, dtype=bool))
    vendor |= (b.meta_field("$.is_vendor").to_numpy() == "true")
    return {
        "code_vendor": vendor.astype(np.float64),
        "code_autogenerated": autogen.astype(np.float64),
        "code_avg_line_length": _ratio(total, nl),
        "code_max_line_length": b.max_per_doc(lines.doc, lines.length),
        "code_alnum_frac": _ratio(alnum, b.text_len),
        "code_minified": _ratio(long_chars, b.text_len),
        "code_numeric_frac": _ratio(numeric, nonspace),
    }


def _re2_escape(s: str) -> str:
    return "".join("\\" + c if not c.isalnum() and c != " " else c for c in s)


# ---------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class Family:
    """A scorer family: the function, the rules it scores, the options it reads and their defaults."""

    score: Callable[[DocBatch, dict[str, Any]], dict[str, np.ndarray]]
    rules: tuple[str, ...]
    options: dict[str, Any]
    #: rules whose score is a count (written as int64); the others are float64
    int_rules: tuple[str, ...] = ()


FAMILIES: dict[str, Family] = {
    "gopher_quality": Family(gopher_quality, GOPHER_QUALITY_RULES,
                             {"stop_words": {}, "count_punctuation_as_words": False}),
    "gopher_repetition": Family(gopher_repetition, GOPHER_REPETITION_RULES, {"dup_ngram_counting": "union"}),
    "c4": Family(c4, C4_RULES, {
        "remove_citations": True, "filter_no_terminal_punct": True, "min_words_per_line": 3,
        "max_word_length": 1000, "filter_lorem_ipsum": True, "filter_javascript": True,
        "filter_curly_bracket": True, "filter_policy": True,
    }, int_rules=("c4_lorem_ipsum", "c4_curly_bracket", "c4_num_sentences")),
    "fineweb": Family(fineweb, FINEWEB_RULES,
                      {"short_line_length": 30, "line_punct_exclude_zero": False, "unwrap_hard_wraps": True}),
    "code": Family(code, CODE_RULES, {
        "autogen_lines": 5, "autogen_markers": [], "minified_line_length": 300, "minified_max_space_frac": 0.05,
        "vendor_pattern": "",
    }, int_rules=("code_vendor", "code_autogenerated", "code_max_line_length")),
}

#: rule name -> family name
RULE_FAMILY: dict[str, str] = {r: f for f, fam in FAMILIES.items() for r in fam.rules}
