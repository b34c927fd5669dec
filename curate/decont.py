"""Benchmark decontamination: an exact n-gram index of evaluation sets, and the vectorized matcher.

The ``decontaminate`` stage (:mod:`curate.stages.decontaminate`) drops (or annotates) every document that
shares an n-gram of words with an item of an evaluation set named in the recipe. This module holds the parts
that do not depend on the stage contract: reading the eval sets, normalizing text into tokens, the index and
matching a batch of documents against it.

Normalization (both sides, the same code)
-----------------------------------------
1. Unicode NFKC (``pyarrow.compute.utf8_normalize``), applied only to the documents that hold a code point NFKC
   can change (a lookup table over all code points, :func:`nfkc_sensitive`: characters that are not NFKC by
   themselves, combining marks and the Hangul medial/final jamo that compose): ASCII and most text pass untouched,
   which keeps the stage's cost down (NFKC of a whole batch runs at ~60 MB/s, the check at several hundred).
2. Lowercase (``utf8_lower``).
3. Tokens, from the UTF-8 bytes with the Unicode classes of :mod:`curate.utf8` (the word classes the quality
   rules, MinHash and the code rules share): a *word* is a maximal run of letters, marks, digits and ``_``;
   every character of a script written without spaces (Han, Kana, Thai, Lao, Khmer, Myanmar; ``utf8.NOSPACE``)
   is a token of its own, so Chinese or Thai text is matched by *character* n-grams, as
   :mod:`curate.quality.words` counts those scripts per character. Punctuation, symbols and whitespace only
   separate tokens: a copy with other case, punctuation or line breaks matches. Unlike
   :func:`curate.quality.words.tokenize` (a regular expression, 9.7 MB/s on the real RefinedWeb sample), ``3.14``
   is two tokens and a URL several; the byte-level split runs at 38 MB/s, and a decontamination match should
   not depend on whether a copy kept a decimal point.

Hashes: a token is hashed from its bytes (:func:`curate.dedup.signatures._word_hashes`, 64-bit); an n-gram's hash is the
sum of its token hashes times per-position odd constants, through the ``fmix64`` finalizer (the MinHash shingle
hash, :mod:`curate.dedup`), computed for every position of a whole batch at once with numpy. Distinct n-grams
collide with probability ~2^-64: the match is exact in practice, with no bloom-filter false positives.

What is indexed
---------------
An eval *item* is one record (a JSON line, a Parquet/HF row, a text file); its ``fields`` are joined with a
newline (a list field, e.g. MMLU ``choices``, is joined first). Then:

- an item of at least ``ngram`` tokens contributes each of its n-grams;
- an item of ``min_words`` (8) to ``ngram - 1`` tokens contributes its whole token sequence, which a document
  matches only as that exact consecutive sequence (checked for just the positions whose first ``min_words``
  tokens equal some short item's first ``min_words``);
- an item of fewer than ``min_words`` tokens cannot match (counted as ``items_too_short``).

Boilerplate: an n-gram that occurs in more than ``max_items_per_ngram`` (default 10) distinct items of all eval
sets together is dropped from the index (counted as ``ngrams_frequent``). On the four sets in
../shared/data/evals (GSM8K, MATH, MMLU-STEM, HumanEval test; 9,501 items) that is 120 of 855k 13-grams, all from
MATH: the Asymptote plot preamble its figures share and stock sentences ("the sum of an arithmetic series is equal
to the average of the first and last term"); no item loses all of its n-grams to it (the real-data test checks
that every test item still matches its copy). An n-gram without a word of two letters or more (counting runs,
hex digits, plot coordinates; :data:`MIN_WORDY`) is not indexed either (``ngrams_uninformative``).

The index (:class:`DecontIndex`): a sorted ``uint64`` array of n-gram hashes with the ``int32`` item of each
(the first item holding it) and a screen bit array of about 16 bits per key (:class:`KeySet`), the short items by
length, and the item ids and eval names: 14.5 MB per million indexed n-grams (12.4 MB for the 855k 13-grams of the
four sets above; ``bench/bench_decontaminate.py``). It is built once per run on the driver (1.4 CPU-s for those
sets) and sent to every partition worker through the Ray object store (``ray.put``; numpy arrays are read
zero-copy there).

Matching (:func:`match`): per block of ~1 MB of text, every window hash of the batch is screened and looked up with
``numpy.searchsorted`` in the sorted keys; per document the result is the eval set with most distinct matched
n-grams (ties: recipe order), the item of that set with most of them (ties: first item), and the count.
"""

from __future__ import annotations

import functools
import json
import os
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.dedup.signatures import _POS, _fmix64, _per_doc, _word_hashes
from curate.errors import InputError, SchemaError
from curate.utf8 import CLASSIFIED, NOSPACE, WORD, as_string_array, blocks, char_tables, classify_bytes, decode_at, \
    runs, utf8_buffers

if TYPE_CHECKING:
    from curate.recipe import DecontaminateConfig, EvalSetConfig, Recipe

#: The most tokens an n-gram may have (the per-position constants of the shingle hash).
MAX_NGRAM = len(_POS)
#: Suffixes of eval files read as one item per file (the ``text`` source format does the same).
TEXT_SUFFIXES = (".txt", ".text", ".md")
#: A token with this many letters is a word proper (numbers, ``x``, ``a`` are not).
WORDY_LETTERS = 2
#: Words proper an indexed n-gram (or short item) needs: with 0, counting runs ("1 2 3 ... 13"), hex digits and
#: asy coordinates in MATH solutions matched 9 documents of the real the-stack and RefinedWeb samples; with 1, none,
#: and every GSM8K and MATH test item keeps n-grams (1 of 3,018 MMLU-STEM items loses all of its).
MIN_WORDY = 1


# ---------------------------------------------------------------------------- normalization and tokens
@functools.cache
def nfkc_sensitive() -> np.ndarray:
    """Bool table over all code points: a text holding one may tokenize differently after NFKC (built once).

    True for characters that are not NFKC on their own (compatibility forms, ligatures, full-width letters,
    superscript digits), except those whose NFKC form has no word character either (no-break space, ellipsis,
    full-width punctuation: they separate tokens before and after); and for the characters that compose with
    what precedes them (the second character of a two-character canonical decomposition, e.g. a combining acute,
    and the Hangul medial vowels and final consonants U+1161-U+1175, U+11A8-U+11C2). On the real Wikipedia sample
    this leaves 10% of the documents to normalize instead of 75% with a plain "not NFKC" test.
    """
    word = char_tables()[WORD]
    t = np.zeros(0x110000, bool)
    for lo, hi in CLASSIFIED:
        for c in range(lo, hi):
            if 0xD800 <= c < 0xE000:
                continue
            ch = chr(c)
            if not unicodedata.is_normalized("NFKC", ch) and (
                    word[c] or any(word[ord(x)] for x in unicodedata.normalize("NFKC", ch))):
                t[c] = True
            dec = unicodedata.decomposition(ch)
            if dec and not dec.startswith("<"):
                parts = dec.split()
                if len(parts) == 2:
                    t[int(parts[1], 16)] = True
    t[0x1161:0x1176] = True
    t[0x11A8:0x11C3] = True
    return t


def normalize(text: pa.Array | pa.ChunkedArray | list[str]) -> pa.Array:
    """NFKC (only where it can change something, see :func:`nfkc_sensitive`), then lowercase.

    Examples
    --------
    >>> normalize(["The ﬁRST", "Ｆｕｌｌ"]).to_pylist()
    ['the first', 'full']
    """
    arr = as_string_array(text)
    if not pa.types.is_large_string(arr.type):
        arr = arr.cast(pa.large_string())
    data, offs = utf8_buffers(arr)
    mb = np.flatnonzero(data >= 0xC0)
    if len(mb):
        cp, _ = decode_at(data, mb)
        hit = mb[nfkc_sensitive()[cp]]
        if len(hit):
            rows = np.unique(np.searchsorted(offs, hit, side="right") - 1)
            mask = np.zeros(len(arr), bool)
            mask[rows] = True
            fixed = pc.utf8_normalize(arr.take(pa.array(rows)), "NFKC")
            # rebuild in order: untouched rows, then the normalized ones, put back by a permutation
            rest = np.flatnonzero(~mask)
            perm = np.empty(len(arr), np.int64)
            perm[np.concatenate([rest, rows])] = np.arange(len(arr))
            arr = pa.concat_arrays([arr.filter(pa.array(~mask)), fixed.cast(pa.large_string())]).take(pa.array(perm))
    return pc.utf8_lower(arr)


@functools.cache
def _letters() -> np.ndarray:
    """Bool table over all code points: Unicode letters (category L*)."""
    t = np.zeros(0x110000, bool)
    for lo, hi in CLASSIFIED:
        t[lo:hi] = np.fromiter((unicodedata.category(chr(c))[0] == "L" for c in range(lo, hi)), bool, count=hi - lo)
    return t


def tokenize(text: pa.Array | pa.ChunkedArray | list[str], *, wordy: bool = False
             ) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Token hashes of normalized texts: ``(hash uint64, doc int64)``, documents in order, tokens in text order.

    See the module docstring for what a token is. ``text`` must already be :func:`normalize`-d. With
    ``wordy``, a third bool array says which tokens are words proper (:data:`WORDY_LETTERS` letters or more,
    or a character of a script without spaces), the tokens an indexed n-gram needs enough of.
    """
    arr = as_string_array(text)
    hs, ds, ws = [], [], []
    for a, b in blocks(arr):
        h, d, w = _tokenize_block(arr.slice(a, b - a), wordy=wordy)
        hs.append(h)
        ds.append(d + a)
        ws.append(w)
    if not hs:
        hs, ds, ws = [np.zeros(0, np.uint64)], [np.zeros(0, np.int64)], [np.zeros(0, bool)]
    out = np.concatenate(hs), np.concatenate(ds)
    return (*out, np.concatenate(ws)) if wordy else out


def _tokenize_block(arr: pa.Array, *, wordy: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    data, offs = utf8_buffers(arr)
    if len(data) == 0:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64), np.zeros(0, bool)
    isword, mb, cp = classify_bytes(data, WORD)
    ns_start = np.zeros(0, np.int64)
    ns_len = np.zeros(0, np.int64)
    if len(mb):
        ns = char_tables()[NOSPACE][cp]
        if ns.any():
            ns_start = mb[ns]
            lead = data[ns_start]
            ns_len = np.where(lead >= 0xF0, 4, np.where(lead >= 0xE0, 3, 2)).astype(np.int64)
            last = len(data) - 1
            for k in range(4):  # those characters leave the word runs: each is a token of its own
                sel = ns_len > k
                isword[np.minimum(ns_start[sel] + k, last)] = False
    starts, ends = runs(isword, offs)
    lengths = ends - starts
    n_word_runs = len(starts)
    if len(ns_start):
        starts = np.concatenate([starts, ns_start])
        lengths = np.concatenate([lengths, ns_len])
        order = np.argsort(starts, kind="stable")
        starts, lengths = starts[order], lengths[order]
    good = None
    if wordy:
        # letters per token: ASCII letter bytes plus multibyte letters counted at their lead byte
        letter = ((data | np.uint8(0x20)) - np.uint8(97)) < 26
        if len(mb):
            letter[mb] = _letters()[cp]
        c = np.concatenate([[0], np.cumsum(letter, dtype=np.int64)])
        good = (c[starts + lengths] - c[starts]) >= WORDY_LETTERS
        if len(ns_start):
            good |= order >= n_word_runs
    return _word_hashes(data, starts, lengths), _per_doc(starts, offs), good


def window_hashes(tok: np.ndarray, doc: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of every window of ``n`` consecutive tokens inside one document: ``(positions, hashes)``.

    ``positions`` index the first token of each window in ``tok``; windows that would cross a document
    boundary are left out.
    """
    m = len(tok) - n + 1
    if m <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.uint64)
    acc = tok[:m] * _POS[0]
    for j in range(1, n):
        acc += tok[j: j + m] * _POS[j]
    pos = np.flatnonzero(doc[:m] == doc[n - 1: n - 1 + m])
    return pos, _fmix64(acc[pos])


def _member(keys: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Index into ``keys`` (sorted, unique) of each query, -1 where absent."""
    if len(keys) == 0 or len(q) == 0:
        return np.full(len(q), -1, np.int64)
    if len(q) > 4096:
        # sorted queries walk the keys in order: 5x faster than random probes into a table larger than the cache
        o = np.argsort(q)
        i = np.empty(len(q), np.int64)
        i[o] = np.searchsorted(keys, q[o])
    else:
        i = np.searchsorted(keys, q)
    i[i == len(keys)] = 0
    return np.where(keys[i] == q, i, -1)


@dataclass
class KeySet:
    """Sorted unique ``uint64`` keys with a value per key, and a direct-address screen of their top bits.

    ``lookup`` is exact (a binary search in ``keys``); the screen only spares that search for the queries whose
    top ``bits`` bits no key has: a bit array of about 16 bits per key (at least 2^16 bits, at most 2^30), so
    ~94% of the windows of an uncontaminated document are rejected by one load from a table that stays in cache.
    On the real RefinedWeb sample (1.3M windows against 855k keys) the binary search alone took 0.55 s, screen and
    search of the survivors 0.05 s.
    """

    keys: np.ndarray
    values: np.ndarray
    screen: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))
    shift: int = 64

    @classmethod
    def build(cls, keys: np.ndarray, values: np.ndarray) -> KeySet:
        bits = int(min(30, max(16, np.ceil(np.log2(max(len(keys), 1) * 16)))))
        shift = 64 - bits
        flag = np.zeros(1 << bits, bool)
        flag[(keys >> np.uint64(shift)).astype(np.int64)] = True
        return cls(keys=keys, values=values, screen=np.packbits(flag, bitorder="little"), shift=shift)

    def lookup(self, q: np.ndarray) -> np.ndarray:
        """Index into ``keys`` of each query, -1 where absent."""
        out = np.full(len(q), -1, np.int64)
        if len(self.keys) == 0 or len(q) == 0:
            return out
        top = (q >> np.uint64(self.shift)).astype(np.int64)
        maybe = np.flatnonzero((self.screen[top >> 3] >> (top & 7).astype(np.uint8)) & 1)
        out[maybe] = _member(self.keys, q[maybe])
        return out

    @property
    def nbytes(self) -> int:
        return self.keys.nbytes + self.values.nbytes + self.screen.nbytes

    def __len__(self) -> int:
        return len(self.keys)


# ---------------------------------------------------------------------------- reading eval sets
@dataclass
class EvalItems:
    """The items of one eval set: joined field texts and their ids, in file order."""

    name: str
    texts: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


def _item_text(values: list[Any], fields: list[str], *, file: str, line: int | None = None,
               row: int | None = None) -> str:
    parts = []
    for f, v in zip(fields, values, strict=True):
        if v is None:
            msg = f"eval field `{f}` is missing or null; every item needs each of `fields` {fields}"
            raise SchemaError(msg, file=file, line=line, row=row, column=f)
        if isinstance(v, (list, tuple)):
            if any(isinstance(x, (dict, list)) for x in v):
                msg = f"eval field `{f}` is a list of non-strings; expected a string or a list of strings"
                raise SchemaError(msg, file=file, line=line, row=row, column=f)
            parts.append("\n".join("" if x is None else str(x) for x in v))
        elif isinstance(v, dict):
            msg = f"eval field `{f}` is an object; expected a string or a list of strings"
            raise SchemaError(msg, file=file, line=line, row=row, column=f)
        else:
            parts.append(str(v))
    return "\n".join(parts)


def _eval_kind(path: str, fmt: str) -> str:
    from curate.sources.decompress import compression_of, is_parquet

    if path.startswith("hf://"):
        return "hf"
    if fmt != "auto":
        return fmt
    base = path[: -len(os.path.splitext(path)[1])] if compression_of(path) else path
    if base.lower().endswith(TEXT_SUFFIXES):
        return "text"
    if compression_of(path) is None and os.path.getsize(path) >= 4 and is_parquet(path):
        return "parquet"
    return "jsonl"


def _jsonl_items(path: str, cfg: EvalSetConfig, out: EvalItems) -> int:
    from curate.sources.decompress import BrokenStream, iter_lines

    base = os.path.basename(path)
    want = [*cfg.fields, *([cfg.id_field] if cfg.id_field else [])]
    n = 0
    try:
        for first, lines in iter_lines(path):
            for i, line in enumerate(lines):
                if not line or line.isspace():
                    continue
                ln = first + i + 1
                try:
                    obj = json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError) as e:
                    msg = f"not a JSON line ({e}); an eval file holds one JSON object per line"
                    raise InputError(msg, file=path, line=ln) from None
                if not isinstance(obj, dict):
                    msg = f"expected a JSON object, got {type(obj).__name__}"
                    raise InputError(msg, file=path, line=ln)
                for f in want:
                    if f not in obj:
                        msg = f"eval field `{f}` not found; keys of this line: {sorted(obj)}"
                        raise SchemaError(msg, file=path, line=ln, column=f)
                out.texts.append(_item_text([obj[f] for f in cfg.fields], cfg.fields, file=path, line=ln))
                out.ids.append(str(obj[cfg.id_field]) if cfg.id_field else f"{base}:{ln}")
                n += 1
    except BrokenStream as e:
        raise InputError(e.message(), file=path, line=e.line + 1) from None
    except OSError as e:
        msg = f"cannot read eval file ({e})"
        raise InputError(msg, file=path) from None
    return n


def _table_items(tables: Iterator[pa.Table], path: str, cfg: EvalSetConfig, out: EvalItems) -> int:
    base = os.path.basename(path)
    want = [*cfg.fields, *([cfg.id_field] if cfg.id_field else [])]
    row = 0
    for t in tables:
        missing = [f for f in want if f not in t.column_names]
        if missing:
            msg = f"eval field `{missing[0]}` not found; columns: {t.column_names}"
            raise SchemaError(msg, file=path, column=missing[0])
        cols = [t[f].to_pylist() for f in cfg.fields]
        ids = t[cfg.id_field].to_pylist() if cfg.id_field else None
        for k in range(t.num_rows):
            out.texts.append(_item_text([c[k] for c in cols], cfg.fields, file=path, row=row + k))
            out.ids.append(str(ids[k]) if ids is not None else f"{base}:{row + k}")
        row += t.num_rows
    return row


def _parquet_tables(path: str, columns: list[str]) -> Iterator[pa.Table]:
    from curate.sources.rows import open_parquet

    pf = open_parquet(path)
    names = pf.schema_arrow.names
    missing = [c for c in columns if c not in names]
    if missing:
        msg = f"eval field `{missing[0]}` not found; columns: {names}"
        raise SchemaError(msg, file=path, column=missing[0])
    try:
        for rb in pf.iter_batches(batch_size=8192, columns=columns, use_threads=False):
            yield pa.Table.from_batches([rb])
    except (pa.ArrowException, OSError) as e:
        msg = f"cannot read Parquet file ({e})"
        raise InputError(msg, file=path) from None


def _text_item(path: str, out: EvalItems) -> int:
    from curate.sources.decompress import BrokenStream, read_all

    try:
        data = read_all(path)
    except BrokenStream as e:
        raise InputError(e.message(), file=path, line=e.line + 1) from None
    except OSError as e:
        msg = f"cannot read eval file ({e})"
        raise InputError(msg, file=path) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        msg = f"not valid UTF-8 at byte {e.start}"
        raise InputError(msg, file=path, line=data.count(b"\n", 0, e.start) + 1) from None
    if not text.strip():
        return 0
    out.texts.append(text)
    out.ids.append(os.path.basename(path))
    return 1


def read_eval_set(name: str, cfg: EvalSetConfig, files: list[str]) -> EvalItems:
    """Read every item of one eval set from its (already expanded) files.

    Raises
    ------
    InputError
        a file cannot be read (naming the file and line), a line is not a JSON object, or a file holds no
        item (an empty eval set would silently decontaminate nothing).
    SchemaError
        an item lacks a field of ``fields`` (or ``id_field``), or a field holds an object.
    """
    out = EvalItems(name=name, files=list(files))
    for path in files:
        kind = _eval_kind(path, cfg.format)
        if kind != "text" and not cfg.fields:
            msg = f"eval set {name!r}: `fields` must name the text fields of {kind} file"
            raise SchemaError(msg, file=path)
        if kind == "text":
            n = _text_item(path, out)
        elif kind == "jsonl":
            n = _jsonl_items(path, cfg, out)
        elif kind == "parquet":
            n = _table_items(_parquet_tables(path, [*cfg.fields, *([cfg.id_field] if cfg.id_field else [])]),
                             path, cfg, out)
        else:
            from curate.sources import hf

            n = _table_items(hf.iter_tables(path, batch_rows=8192), path, cfg, out)
        if n == 0:
            msg = f"eval set {name!r}: the file holds no items; an empty eval set decontaminates nothing"
            raise InputError(msg, file=path)
    return out


# ---------------------------------------------------------------------------- the index
@dataclass
class DecontIndex:
    """Exact n-gram index of the eval sets (see the module docstring). Picklable; small (eval sets only)."""

    ngram: int
    min_words: int
    evals: list[str]
    item_eval: np.ndarray  # int16 per item: index into evals
    item_ids: list[str]
    ngrams: KeySet  # n-gram hash -> int32 item (the first item holding it)
    short_prefix: KeySet  # hash of the first min_words tokens of each short item
    short: dict[int, KeySet]  # length -> whole-sequence hash -> int32 item
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        """Bytes of the numpy arrays (the index proper; item ids are a few bytes per item on top)."""
        n = self.ngrams.nbytes + self.item_eval.nbytes + self.short_prefix.nbytes
        return n + sum(k.nbytes for k in self.short.values())


def _dedupe_keys(h: np.ndarray, item: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique hashes and the first item holding each."""
    order = np.lexsort((item, h))
    h, item = h[order], item[order]
    first = np.ones(len(h), bool)
    first[1:] = h[1:] != h[:-1]
    return h[first], item[first].astype(np.int32)


def build_index(sets: list[EvalItems], *, ngram: int = 13, min_words: int = 8,
                max_items_per_ngram: int = 10) -> DecontIndex:
    """Build the index from eval items (see the module docstring for what is indexed)."""
    if not 1 <= ngram <= MAX_NGRAM:
        msg = f"`ngram` must be in [1, {MAX_NGRAM}], got {ngram}"
        raise ValueError(msg)
    texts = [t for s in sets for t in s.texts]
    item_eval = np.concatenate([np.full(len(s.texts), i, np.int16) for i, s in enumerate(sets)]) if sets \
        else np.zeros(0, np.int16)
    tok, doc, good = tokenize(normalize(texts), wordy=True)
    counts = np.bincount(doc, minlength=len(texts)) if len(texts) else np.zeros(0, np.int64)
    cum_good = np.concatenate([[0], np.cumsum(good, dtype=np.int64)])
    pos, h = window_hashes(tok, doc, ngram)
    # an n-gram of numbers and single letters only ("1 2 3 ... 13", hex digits) is not evidence of a copy
    informative = (cum_good[pos + ngram] - cum_good[pos]) >= MIN_WORDY
    uninformative = int((~informative).sum())
    pos, h = pos[informative], h[informative]
    item = doc[pos]
    # distinct items per n-gram: boilerplate above the threshold leaves the index
    o = np.lexsort((item, h))
    hs, its = h[o], item[o]
    new_h = np.ones(len(hs), bool)
    new_h[1:] = hs[1:] != hs[:-1]
    new_pair = new_h.copy()
    new_pair[1:] |= its[1:] != its[:-1]
    run = np.cumsum(new_h) - 1  # run index of each row's hash
    n_items = np.bincount(run[new_pair], minlength=int(new_h.sum())) if len(hs) else np.zeros(0, np.int64)
    ok = n_items <= max_items_per_ngram
    frequent = int((~ok).sum())
    keep = ok[run]
    keys, key_item = hs[new_h][ok], its[new_h][ok].astype(np.int32)
    kept_items = np.unique(its[keep])
    # items left with no n-gram (every one of them frequent) cannot match
    long_items = np.flatnonzero(counts >= ngram)
    unmatched = np.setdiff1d(long_items, kept_items)
    # short items: the whole sequence, by length; the prefix of min_words tokens screens document positions
    first_tok = np.concatenate([[0], np.cumsum(counts)[:-1]]) if len(counts) else np.zeros(0, np.int64)
    item_good = cum_good[first_tok + counts] - cum_good[first_tok] if len(counts) else np.zeros(0, np.int64)
    short_items = np.flatnonzero((counts >= min_words) & (counts < ngram) & (item_good >= MIN_WORDY))
    short: dict[int, KeySet] = {}
    prefixes = []
    for L in np.unique(counts[short_items]).tolist():
        its = short_items[counts[short_items] == L]
        acc = np.zeros(len(its), np.uint64)
        for j in range(L):
            acc += tok[first_tok[its] + j] * _POS[j]
            if j == min_words - 1:
                prefixes.append(_fmix64(acc.copy()))
        short[int(L)] = KeySet.build(*_dedupe_keys(_fmix64(acc), its))
    short_prefix = np.unique(np.concatenate(prefixes)) if prefixes else np.zeros(0, np.uint64)
    per_eval = {}
    for i, s in enumerate(sets):
        sel = item_eval == i
        per_eval[s.name] = {"items": int(sel.sum()), "files": s.files,
                            "items_too_short": int(((counts < min_words) & sel).sum()),
                            "items_short": int(sel[short_items].sum()),
                            "items_all_ngrams_frequent": int(sel[unmatched].sum())}
    idx = DecontIndex(ngram=ngram, min_words=min_words, evals=[s.name for s in sets], item_eval=item_eval,
                      item_ids=[i for s in sets for i in s.ids], ngrams=KeySet.build(keys, key_item),
                      short_prefix=KeySet.build(short_prefix, np.zeros(len(short_prefix), np.int32)), short=short)
    idx.stats = {"ngram": ngram, "min_words": min_words, "max_items_per_ngram": max_items_per_ngram,
                 "items": len(texts), "tokens": int(len(tok)), "ngrams": int(len(keys)), "screen_bytes": idx.ngrams.screen.nbytes,
                 "ngrams_frequent": frequent, "ngrams_uninformative": uninformative, "short_items": int(len(short_items)),
                 "index_bytes": idx.nbytes,
                 "bytes_per_million_ngrams": round(idx.nbytes / max(len(keys), 1) * 1e6),
                 "evals": per_eval}
    return idx


def index_from_config(cfg: DecontaminateConfig, resolve: Callable[[str], str],
                      expand: Callable[[str, list[str]], list[str]]) -> DecontIndex:
    """Read the eval sets of a recipe's ``decontaminate:`` block and build the index.

    ``resolve`` maps a recipe path to a file path; ``expand(eval_name, paths)`` expands the globs of one set.
    """
    sets = [read_eval_set(name, ev, expand(name, ev.paths)) for name, ev in cfg.evals.items()]
    return build_index(sets, ngram=cfg.ngram, min_words=cfg.min_words, max_items_per_ngram=cfg.max_items_per_ngram)


def recipe_index(recipe: Recipe) -> DecontIndex:
    """The index of ``recipe.decontaminate`` (which must be set); globs expand as in recipe validation."""
    from curate.recipe import expand_globs

    cfg = recipe.decontaminate
    assert cfg is not None

    def expand(name: str, paths: list[str]) -> list[str]:
        return expand_globs(recipe, "", "", paths, yaml_path=f"decontaminate.evals.{name}.paths")

    return index_from_config(cfg, recipe.resolve_path, expand)


# ---------------------------------------------------------------------------- matching
@dataclass
class Matches:
    """Per document: ``eval`` (index into ``DecontIndex.evals``, -1 none), ``item`` (global item, -1 none) and
    ``ngrams`` (distinct matched n-grams of that eval set; a short item's whole-sequence match counts 1)."""

    eval: np.ndarray
    item: np.ndarray
    ngrams: np.ndarray


def _hits_block(index: DecontIndex, tok: np.ndarray, doc: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(doc, item, hash)`` of every matched window of one block."""
    n, mw = index.ngram, index.min_words
    docs, items, hashes = [], [], []
    pos, h = window_hashes(tok, doc, n)
    at = index.ngrams.lookup(h)
    hit = at >= 0
    if hit.any():
        docs.append(doc[pos[hit]])
        items.append(index.ngrams.values[at[hit]].astype(np.int64))
        hashes.append(h[hit])
    if index.short and len(tok) >= mw:
        ppos, ph = window_hashes(tok, doc, mw)
        cand = ppos[index.short_prefix.lookup(ph) >= 0]
        for L, ks in index.short.items():
            c = cand[(cand + L <= len(tok))]
            if len(c) == 0:
                continue
            c = c[doc[c] == doc[c + L - 1]]
            acc = np.zeros(len(c), np.uint64)
            for j in range(L):
                acc += tok[c + j] * _POS[j]
            hs = _fmix64(acc)
            a = ks.lookup(hs)
            ok = a >= 0
            if ok.any():
                docs.append(doc[c[ok]])
                items.append(ks.values[a[ok]].astype(np.int64))
                hashes.append(hs[ok])
    if not docs:
        z = np.zeros(0, np.int64)
        return z, z, np.zeros(0, np.uint64)
    return np.concatenate(docs), np.concatenate(items), np.concatenate(hashes)


def match(index: DecontIndex, text: pa.Array | pa.ChunkedArray | list[str]) -> Matches:
    """Match every document of a batch against the index (see the module docstring)."""
    arr = as_string_array(text)
    n_docs = len(arr)
    docs, items, hashes = [], [], []
    for a, b in blocks(arr):
        tok, doc, _ = _tokenize_block(normalize(arr.slice(a, b - a)))
        d, i, h = _hits_block(index, tok, doc)
        docs.append(d + a)
        items.append(i)
        hashes.append(h)
    out = Matches(eval=np.full(n_docs, -1, np.int64), item=np.full(n_docs, -1, np.int64),
                  ngrams=np.zeros(n_docs, np.int64))
    if not docs or not sum(len(d) for d in docs):
        return out
    d, it, h = np.concatenate(docs), np.concatenate(items), np.concatenate(hashes)
    ev = index.item_eval[it].astype(np.int64)
    # distinct n-grams per document: one row per (doc, hash); a hash names one item, so one eval set
    o = np.lexsort((h, d))
    d, ev, h, it = d[o], ev[o], h[o], it[o]
    first = np.ones(len(d), bool)
    first[1:] = (d[1:] != d[:-1]) | (h[1:] != h[:-1])
    d, ev, it = d[first], ev[first], it[first]
    # the eval set with most distinct n-grams per document (ties: first in recipe order)
    n_ev, n_it = len(index.evals), len(index.item_ids)
    de, cnt = np.unique(d * n_ev + ev, return_counts=True)
    o = np.lexsort((de % n_ev, -cnt, de // n_ev))
    de, cnt = de[o], cnt[o]
    top = np.ones(len(de), bool)
    top[1:] = de[1:] // n_ev != de[:-1] // n_ev
    out.eval[de[top] // n_ev] = de[top] % n_ev
    out.ngrams[de[top] // n_ev] = cnt[top]
    # the item of that set with most n-grams (ties: first item)
    sel = out.eval[d] == ev
    di, ic = np.unique(d[sel] * n_it + it[sel], return_counts=True)
    o = np.lexsort((di % n_it, -ic, di // n_it))
    di = di[o]
    top = np.ones(len(di), bool)
    top[1:] = di[1:] // n_it != di[:-1] // n_it
    out.item[di[top] // n_it] = di[top] % n_it
    return out
