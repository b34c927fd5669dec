"""Deduplication: exact content hashes, MinHash-LSH near duplicates, and the distributed dedup on Ray.

Two halves:

1. **Kernels** (pure numpy/pyarrow, no Ray), run by each partition's worker over the documents that
   survived the filters: :func:`normalize_for_exact` + :func:`content_hash` (exact duplicates),
   :func:`shingle_hashes` -> :func:`minhash_signatures` -> :func:`band_keys` (near duplicates).
   :func:`dedup_columns` bundles them for the runner.
2. **Distributed dedup** (:func:`find_duplicates`): Ray tasks shuffle hashes by value into buckets, group
   them, union the candidate pairs into components and pick one keeper per group. The driver only
   submits tasks and sums small per-task counters; no array that grows with the corpus lives in it.

Input, one Parquet file per partition (``<work>/parts/<key>.dedup.parquet``, :func:`dedup_part_schema`)::

    uid int64, doc_id string, source string, subset string, nbytes int64, tokens int64,
    content_hash uint64, band_keys fixed_size_list<uint64>[bands]   (band_keys only with minhash)

Output, ``<out_dir>/removed.parquet`` (:data:`REMOVED_SCHEMA`), sorted by ``uid``::

    uid, doc_id, source, subset, reason ("exact_duplicate" | "near_duplicate"), dup_of (keeper uid),
    dup_of_source, nbytes, tokens

Shingles
--------
Text is lowercased (``utf8_lower``) and split into words: maximal runs of Unicode letters, marks, digits
and ``_`` (categories L*, M*, N*), everything else separates. The split runs on the UTF-8 bytes in
numpy (:mod:`curate.utf8`): multibyte code points are decoded vectorized and classified with lookup
tables over all code points. On 42 MB of RefinedWeb text (6.5M words) this takes 0.73 CPU-seconds against 2.28 for
``pyarrow.compute.split_pattern_regex`` with the same Unicode classes, which alone cost more than the
112 permutations (0.63 s). Work proceeds in blocks of ~1 MB of text so every temporary stays in cache.
A shingle is ``ngram`` (default 5) consecutive words. A document whose word characters are at least 30%
from scripts written without spaces (Han, Hiragana, Katakana, Thai, Lao, Khmer, Myanmar) is shingled
by ``char_ngram`` consecutive word characters instead. A document with at least one but fewer than
``ngram`` tokens is one shingle (all of it); a document without any word character has no shingle.

Hashes: words are hashed from their UTF-8 bytes by a vectorized 64-bit mixer (8-byte blocks chained
through the MurmurHash3 ``fmix64`` finalizer, seeded by the length; words over 64 bytes use xxh3); a
shingle's hash is the sum of its word hashes times per-position odd constants (mod 2^64), passed through
``fmix64``. This replaces xxh3 of each shingle string, which needs one Python call per shingle: 0.12 us
for the call alone, before building the string, against 0.24 us per shingle for this whole module from
text to signature (1.56 CPU-seconds for the 6.5M shingles above). Distinct shingles collide with
probability ~2^-64.

MinHash: ``num_perm`` affine permutations of the top 32 bits of the shingle hash, ``h_i(x) = a_i*x + b_i
mod 2^32`` with ``a_i`` odd (a bijection on 32 bits), the same scheme as datasketch's default
``affine32``; the shingle hash is already avalanche-mixed, which is what makes the cheap affine map
adequate (the estimator's error is checked against the binomial bound in the tests). Parameters come
from a SplitMix64 sequence seeded by ``seed`` (stable across library versions, so signatures written by
one run stay comparable with the next). Signatures are ``uint32``; an empty document's signature is all
``0xFFFFFFFF`` (:data:`EMPTY_SIGNATURE`).

Band keys: each band's ``rows`` values, seeded by the band index, are chained through ``fmix64`` into a
64-bit key. Key 0 is reserved for "no key" (an empty document); a computed 0 becomes 1. Documents
without shingles therefore never become near-duplicate candidates (exact dedup still groups them).

Distributed dedup
-----------------
With ``R`` buckets and ``P`` partition files, under ``out_dir`` (a filesystem every Ray node sees):

- ``exact/map/b<r>/f<i>.parquet``: the map step for file ``i`` sends its rows to bucket ``content_hash % R``
  (the per-file steps run in groups of files, about four tasks per CPU: a Ray task costs more than a small
  file's work).
- ``exact/removed/f<i>/b<r>.parquet``: reduce task ``r`` sorts its bucket by
  (content_hash, priority, doc_id, uid); the first row of each hash group is kept, the others are
  removed, written per originating file so the LSH step reads only its own file's removals.
- ``lsh/b<r>/f<i>.parquet``: LSH map task ``i`` explodes the band keys of its exact survivors to
  (band, key, uid) rows and sends them to bucket ``key % R``.
- ``edges/b<r>.parquet``: reduce task ``r`` groups rows by (band, key) and emits one edge
  member -> smallest uid of the group (linear in the group size, not quadratic).
- ``near/removed.parquet``: one task unions all edges (:func:`connected_components`), reads the
  metadata of the component members only, and ranks each component's members by (priority, doc_id,
  uid); the first keeps. At very large scale this single task is the step to distribute further (e.g. a
  distributed union-find by rounds of min-label propagation over bucketed edges); its memory grows with
  the number of *candidate* documents, not the corpus.
- With ``verify_jaccard`` (the default) the keeper is checked against true Jaccard instead, and no task
  holds more than its share of texts: the components task writes the ranked members to
  ``verify/meta/b<r>.parquet`` (bucket ``label % R``) and each file's candidate uids to
  ``verify/want/f<i>.parquet``; fetch task ``i`` reads file ``i``'s texts once and sends each candidate's
  text to its component's bucket (``verify/text/b<r>/f<i>.parquet``); verify task ``r`` then walks each
  component in rank order and removes a member only as a duplicate of a kept member of its component
  with true Jaccard >= ``threshold`` (the first such), otherwise keeps it (``near/b<r>.parquet``). Every
  removed document is therefore within ``threshold`` of its ``dup_of``: LSH alone lets pairs just under
  the threshold through (14x8 bands catch a Jaccard 0.7 pair with probability ~0.56) and chains
  components through intermediate documents.
- ``removed.parquet``: a final task merges and sorts the removals and computes the summary; the
  shuffle folders are deleted once consumed, ``edges/`` stays for inspection.

``dup_of`` is the keeper of the document's own group: for an exact duplicate, the identical document
that was kept in the exact step, which the near step may in turn have removed (follow ``dup_of`` at most
twice to reach a kept document). ``dup_of_source`` is that keeper's source.

Every output is a pure function of the inputs: the sort keys are total orders, labels are the minimum
uid of a component, and files are named by bucket and file index, so the result is the same for any
number of buckets, workers or task completion order. Files are written under a temporary name (``curate.io_utils.temp_path``) and renamed.
"""

from __future__ import annotations

import glob
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash

from curate.errors import InputError, SchemaError
from curate.utf8 import NOSPACE, SPACE, WORD
from curate.utf8 import as_string_array as _as_string_array
from curate.utf8 import blocks as _blocks
from curate.utf8 import char_tables as _char_tables
from curate.utf8 import classify_bytes as _classify_bytes
from curate.utf8 import decode_at as _decode_at
from curate.utf8 import runs as _runs
from curate.utf8 import utf8_buffers as _utf8_buffers

# ---------------------------------------------------------------------------- constants
EXACT = "exact_duplicate"
NEAR = "near_duplicate"

#: Signature row of a document without shingles.
EMPTY_SIGNATURE = np.uint32(0xFFFFFFFF)

#: Share of word characters from scripts without spaces above which a document is shingled by characters.
CHAR_MODE_SHARE = 0.3

#: Shingles processed per MinHash block: 112 x 4096 x 4 B = 1.8 MB stays in L2/L3 (measured 1.0 ns per
#: permutation and shingle, vs 3.5 ns with 64k-shingle blocks).
_BLOCK = 4096

REMOVED_SCHEMA = pa.schema(
    [
        pa.field("uid", pa.int64(), nullable=False),
        pa.field("doc_id", pa.string()),
        pa.field("source", pa.string()),
        pa.field("subset", pa.string()),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("dup_of", pa.int64(), nullable=False),
        pa.field("dup_of_source", pa.string()),
        pa.field("nbytes", pa.int64()),
        pa.field("tokens", pa.int64()),
    ]
)

_META_COLUMNS = ("uid", "doc_id", "source", "subset", "nbytes", "tokens")

_U64 = np.uint64
_FM1 = _U64(0xFF51AFD7ED558CCD)
_FM2 = _U64(0xC4CEB9FE1A85EC53)
_S33 = _U64(33)
_CHAIN = _U64(0x9E3779B97F4A7C15)  # odd multiplier of the chained mixers (2^64 / golden ratio)
_CHAR_SALT = _U64(0xD6E8FEB86659FD93)


def _splitmix64(seed: int, n: int) -> np.ndarray:
    """``n`` values of the SplitMix64 sequence from ``seed``: constants that no library upgrade can change
    (numpy's ``Generator`` streams are not guaranteed stable across versions)."""
    with np.errstate(over="ignore"):
        x = _U64(seed & 0xFFFFFFFFFFFFFFFF) + np.arange(1, n + 1, dtype=np.uint64) * _CHAIN
        x = (x ^ (x >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> _U64(27))) * _U64(0x94D049BB133111EB)
        return x ^ (x >> _U64(31))


# per-position multipliers of the shingle sum (odd, fixed forever: changing them changes every key)
_POS = _splitmix64(0x5EED, 64) | _U64(1)


def dedup_part_schema(bands: int | None) -> pa.Schema:
    """Schema of a partition's ``<key>.dedup.parquet`` file (``band_keys`` only when ``bands`` is given)."""
    fields = [
        pa.field("uid", pa.int64(), nullable=False),
        pa.field("doc_id", pa.string()),
        pa.field("source", pa.string()),
        pa.field("subset", pa.string()),
        pa.field("nbytes", pa.int64()),
        pa.field("tokens", pa.int64()),
        pa.field("content_hash", pa.uint64()),
    ]
    if bands:
        fields.append(pa.field("band_keys", pa.list_(pa.uint64(), bands)))
    return pa.schema(fields)


# ---------------------------------------------------------------------------- small helpers
def _fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finalizer (a bijection with full avalanche), on a fresh uint64 array."""
    h = h ^ (h >> _S33)
    h *= _FM1
    h ^= h >> _S33
    h *= _FM2
    h ^= h >> _S33
    return h


#: words longer than this many bytes are hashed one by one with xxh3 (rare: URLs, base64 runs)
_LONG_WORD = 64


def _per_doc(pos: np.ndarray, offs: np.ndarray) -> np.ndarray:
    """Document index of each sorted byte position."""
    counts = np.diff(np.searchsorted(pos, offs))
    return np.repeat(np.arange(len(offs) - 1, dtype=np.int64), counts)


# ---------------------------------------------------------------------------- exact
def normalize_for_exact(text: pa.Array | pa.ChunkedArray | Sequence[str]) -> pa.Array:
    r"""Normalize text for exact dedup: lowercase, collapse whitespace runs to one space, strip.

    Lowercasing is ``pyarrow.compute.utf8_lower``; whitespace is what ``str.isspace`` accepts (ASCII
    whitespace, U+001C-U+001F, NEL, no-break and ideographic spaces, ...), so the result equals
    ``" ".join(utf8_lower(t).split())``. Punctuation and everything else is kept: "exact" stays exact up
    to case and layout. The collapse runs on the UTF-8 bytes in numpy: ``replace_substring_regex`` took
    1.94 CPU-seconds on 42 MB of web text (one regex match per space), this takes 0.48.

    Parameters
    ----------
    text
        Document texts (null counts as the empty string).

    Returns
    -------
    pa.Array
        Normalized texts (``large_string``), same length and order.

    Examples
    --------
    >>> normalize_for_exact(["  Hello\n\tWORLD\u00a0 "]).to_pylist()
    ['hello world']
    """
    arr = _as_string_array(text)
    parts = [_normalize_block(arr.slice(a, b - a)) for a, b in _blocks(arr)]
    return pa.concat_arrays(parts) if parts else pa.array([], pa.large_string())


def _normalize_block(arr: pa.Array) -> pa.Array:
    n = len(arr)
    data, offs = _utf8_buffers(pc.utf8_lower(arr))
    if len(data) == 0:
        return pa.array([""] * n, pa.large_string())
    isws, _, _ = _classify_bytes(data, SPACE)
    run_start, run_end = _runs(isws, offs)
    keep = ~isws
    bound = np.zeros(len(data) + 1, bool)
    bound[offs] = True
    # a run at a document's start or end is dropped, any other run becomes one space
    inner = run_start[~bound[run_start] & ~bound[run_end]]
    keep[inner] = True
    out = data.copy()
    out[inner] = 0x20
    kept = np.flatnonzero(keep)
    new_offs = np.searchsorted(kept, offs).astype(np.int64)
    return pa.LargeStringArray.from_buffers(n, pa.py_buffer(new_offs), pa.py_buffer(out[kept]))


def content_hash(text: pa.Array | pa.ChunkedArray | Sequence[str]) -> np.ndarray:
    """xxh3_64 of the UTF-8 bytes of :func:`normalize_for_exact` of each text.

    Returns
    -------
    np.ndarray
        ``uint64`` array, one hash per document.
    """
    data, offs = _utf8_buffers(normalize_for_exact(text))
    mv = memoryview(data)
    o = offs.tolist()
    h = xxhash.xxh3_64_intdigest
    return np.fromiter((h(mv[a:b]) for a, b in zip(o[:-1], o[1:])), dtype=np.uint64, count=len(o) - 1)


# ---------------------------------------------------------------------------- tokenization
def _word_hashes(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """64-bit hash of each byte range ``data[s:s+l]``: 8-byte little-endian blocks chained through fmix64.

    Ranges longer than ``_LONG_WORD`` bytes are hashed with xxh3 instead (one Python call each).
    """
    m = len(starts)
    if m == 0:
        return np.zeros(0, np.uint64)
    pad = np.concatenate([data, np.zeros(8, np.uint8)])
    rows = np.lib.stride_tricks.as_strided(pad, shape=(len(data) + 1, 8), strides=(1, 1))
    all_ones = _U64(0xFFFFFFFFFFFFFFFF)
    # block 0 of every word, without fancy indexing (most words fit in 8 bytes)
    blk = np.ascontiguousarray(rows[starts]).view("<u8").ravel()
    blk &= all_ones >> (64 - 8 * np.minimum(lengths, 8)).astype(np.uint64)
    h = _fmix64(lengths.astype(np.uint64) * _CHAIN + blk)
    sel = np.flatnonzero((lengths > 8) & (lengths <= _LONG_WORD))
    for j in range(1, _LONG_WORD // 8):
        if j > 1:
            sel = sel[lengths[sel] > 8 * j]
        if len(sel) == 0:
            break
        blk = np.ascontiguousarray(rows[starts[sel] + 8 * j]).view("<u8").ravel()
        blk &= all_ones >> (64 - 8 * np.minimum(lengths[sel] - 8 * j, 8)).astype(np.uint64)
        h[sel] = _fmix64(h[sel] * _CHAIN + blk)
    long_ = np.flatnonzero(lengths > _LONG_WORD)
    if len(long_):
        mv = memoryview(data)
        x = xxhash.xxh3_64_intdigest
        spans = zip(starts[long_].tolist(), lengths[long_].tolist())
        h[long_] = _fmix64(np.fromiter((x(mv[s: s + n]) for s, n in spans), dtype=np.uint64, count=len(long_)))
    return h


def _tokenize(arr: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split lowercased documents into tokens.

    Returns ``(word_hash, word_doc, char_hash, char_doc, char_mode)``: hashes of the words of word-mode
    documents and their document index (non-decreasing), hashes of the word characters of char-mode
    documents and their document index, and the boolean char-mode flag per document.
    """
    n = len(arr)
    data, offs = _utf8_buffers(pc.utf8_lower(arr))
    char_mode = np.zeros(n, bool)
    char_hash, char_doc = np.zeros(0, np.uint64), np.zeros(0, np.int64)
    if len(data) == 0:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64), char_hash, char_doc, char_mode
    isword, mb, cp = _classify_bytes(data, WORD)
    if len(mb):
        nospace_lut = _char_tables()[NOSPACE]
        ns = nospace_lut[cp]
        if ns.any():
            lens = np.diff(offs)
            n_nospace = np.bincount(np.searchsorted(offs, mb[ns], side="right") - 1, minlength=n)
            cand = n_nospace > 0
            # word characters of the candidate documents: ASCII word bytes + multibyte word characters
            sub = data[np.repeat(cand, lens)]
            sub_offs = np.concatenate([[0], np.cumsum(lens[cand])])
            lead = np.flatnonzero((sub & 0xC0) != 0x80)
            scp, _ = _decode_at(sub, lead)
            sword = _char_tables()[WORD][scp]
            n_word = np.zeros(n, np.int64)
            n_word[cand] = np.diff(np.searchsorted(lead[sword], sub_offs))
            char_mode = cand & (n_nospace >= CHAR_MODE_SHARE * n_word)
            if char_mode.any():
                cm_sub = char_mode[cand]
                sdoc = _per_doc(lead, sub_offs)
                take = sword & cm_sub[sdoc]
                char_hash = _fmix64(scp[take].astype(np.uint64) + _CHAR_SALT)
                char_doc = np.flatnonzero(cand)[sdoc[take]]
                isword &= ~np.repeat(char_mode, lens)  # char-mode documents leave the word stream
    starts, ends = _runs(isword, offs)
    word_hash = _word_hashes(data, starts, ends - starts)
    return word_hash, _per_doc(starts, offs), char_hash, char_doc.astype(np.int64), char_mode


def _shingle_stream(tok: np.ndarray, doc: np.ndarray, n_docs: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Shingle hashes of one token stream: ``(per-document shingle counts, hashes in document order)``."""
    counts = np.bincount(doc, minlength=n_docs) if len(doc) else np.zeros(n_docs, np.int64)
    k = np.where(counts >= n, counts - n + 1, np.minimum(counts, 1))
    out = np.zeros(int(k.sum()), np.uint64)
    if len(out) == 0:
        return k, out
    first_tok = np.cumsum(counts) - counts
    first_out = np.cumsum(k) - k
    t = len(tok)
    if t >= n:
        m = t - n + 1
        acc = tok[:m] * _POS[0]
        for j in range(1, n):
            acc += tok[j: j + m] * _POS[j]
        pos_doc = doc[:m]
        valid = pos_doc == doc[n - 1: n - 1 + m]
        vi = np.flatnonzero(valid)
        vd = pos_doc[vi]
        out[first_out[vd] + (vi - first_tok[vd])] = acc[vi]
    short = np.flatnonzero((counts > 0) & (counts < n))
    if len(short):
        st, cn = first_tok[short], counts[short]
        acc = np.zeros(len(short), np.uint64)
        for j in range(n - 1):
            sel = cn > j
            acc[sel] += tok[st[sel] + j] * _POS[j]
        out[first_out[short]] = acc ^ (cn.astype(np.uint64) * _CHAIN)
    return k, _fmix64(out)


def _check_ngrams(ngram: int, char_ngram: int) -> None:
    if not (1 <= ngram <= len(_POS) and 1 <= char_ngram <= len(_POS)):
        msg = f"`ngram` and `char_ngram` must be in [1, {len(_POS)}], got ngram={ngram}, char_ngram={char_ngram}"
        raise ValueError(msg)


def shingle_hashes(
    text: pa.Array | pa.ChunkedArray | Sequence[str], *, ngram: int = 5, char_ngram: int = 5
) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hashes of every document's shingles, in CSR layout.

    See the module docstring for what a word, a shingle and a char-mode document are.

    Parameters
    ----------
    text
        Document texts.
    ngram
        Words per shingle.
    char_ngram
        Characters per shingle in documents of scripts written without spaces.

    Returns
    -------
    values, offsets
        ``uint64`` hashes (in document order, position order within a document, repeats kept) and
        ``int64`` offsets of length ``n + 1``: document ``d`` owns ``values[offsets[d]:offsets[d+1]]``.
    """
    _check_ngrams(ngram, char_ngram)
    arr = _as_string_array(text)
    vals, offs, base = [], [np.zeros(1, np.int64)], 0
    for a, b in _blocks(arr):
        v, o = _shingle_block(arr.slice(a, b - a), ngram, char_ngram)
        vals.append(v)
        offs.append(o[1:] + base)
        base += len(v)
    return (np.concatenate(vals) if vals else np.zeros(0, np.uint64)), np.concatenate(offs)


def _shingle_block(arr: pa.Array, ngram: int, char_ngram: int) -> tuple[np.ndarray, np.ndarray]:
    n = len(arr)
    wh, wd, ch, cd, _ = _tokenize(arr)
    kw, vw = _shingle_stream(wh, wd, n, ngram)
    kc, vc = _shingle_stream(ch, cd, n, char_ngram)
    k = kw + kc
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(k, out=offsets[1:])
    if len(vc) == 0:
        return vw, offsets
    values = np.empty(int(offsets[-1]), np.uint64)
    for kk, vv in ((kw, vw), (kc, vc)):
        docs = np.flatnonzero(kk)
        if len(docs):
            # documents own disjoint streams: scatter each stream's runs to their document's slot
            dst = np.repeat(offsets[docs] - (np.cumsum(kk[docs]) - kk[docs]), kk[docs]) + np.arange(len(vv))
            values[dst] = vv
    return values, offsets


def shingle_sets(
    text: pa.Array | pa.ChunkedArray | Sequence[str], *, ngram: int = 5, char_ngram: int = 5
) -> list[np.ndarray]:
    """Sorted unique shingle hashes per document (the sets whose Jaccard MinHash estimates).

    A sort and an adjacent-duplicate mask per document: 4x faster than ``np.unique``, whose hash-based
    path for integers was most of the dedup verify step."""
    values, offsets = shingle_hashes(text, ngram=ngram, char_ngram=char_ngram)
    out = []
    for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist()):
        s = np.sort(values[a:b])
        if len(s) > 1:
            keep = np.empty(len(s), bool)
            keep[0] = True
            np.not_equal(s[1:], s[:-1], out=keep[1:])
            s = s[keep]
        out.append(s)
    return out


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Jaccard similarity of two sorted unique hash arrays (0.0 when both are empty).

    The smaller set is looked up in the larger by binary search (no merge sort as in ``np.intersect1d``)."""
    if a.size > b.size:
        a, b = b, a
    if a.size == 0:
        return 0.0
    i = np.searchsorted(b, a)
    i[i == b.size] = 0
    inter = int(np.count_nonzero(b[i] == a))
    union = a.size + b.size - inter
    return inter / union if union else 0.0


# ---------------------------------------------------------------------------- minhash
def _permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Affine parameters ``(a odd, b)`` of ``num_perm`` permutations of uint32, from SplitMix64(``seed``)."""
    r = _splitmix64(seed, 2 * num_perm) >> _U64(32)
    return (r[:num_perm] | _U64(1)).astype(np.uint32), r[num_perm:].astype(np.uint32)


def signatures_from_shingles(values: np.ndarray, offsets: np.ndarray, *, num_perm: int = 112,
                             seed: int = 1) -> np.ndarray:
    """MinHash signatures of documents given as CSR shingle hashes (see :func:`shingle_hashes`).

    Returns
    -------
    np.ndarray
        ``(n, num_perm)`` ``uint32``; rows of documents without shingles are :data:`EMPTY_SIGNATURE`.
    """
    n = len(offsets) - 1
    a, b = _permutations(num_perm, seed)
    out = np.full((num_perm, n), EMPTY_SIGNATURE, np.uint32)
    total = int(offsets[-1]) if n else 0
    if total:
        x = (values >> _U64(32)).astype(np.uint32)
        ne = np.flatnonzero(offsets[1:] > offsets[:-1])
        d_start, d_end = offsets[ne], offsets[ne + 1]
        buf = np.empty((num_perm, _BLOCK), np.uint32)
        a_col, b_col = a[:, None], b[:, None]
        for s in range(0, total, _BLOCK):
            e = min(s + _BLOCK, total)
            w = e - s
            blk = buf[:, :w]
            np.multiply(a_col, x[None, s:e], out=blk)
            np.add(blk, b_col, out=blk)
            lo = np.searchsorted(d_end, s, side="right")
            hi = np.searchsorted(d_start, e, side="left")
            bounds = np.maximum(d_start[lo:hi], s) - s
            red = np.minimum.reduceat(blk, bounds, axis=1)
            cols = ne[lo:hi]
            # only the first and last document of a block can span blocks
            out[:, cols] = np.minimum(out[:, cols], red) if (d_start[lo] < s or d_end[hi - 1] > e) else red
    return np.ascontiguousarray(out.T)


def minhash_signatures(
    text: pa.Array | pa.ChunkedArray | Sequence[str],
    *,
    ngram: int = 5,
    num_perm: int = 112,
    seed: int = 1,
    char_ngram: int = 5,
) -> np.ndarray:
    """MinHash signatures of documents.

    Parameters
    ----------
    text
        Document texts.
    ngram
        Words per shingle (5, as FineWeb and datatrove).
    num_perm
        Number of permutations (``bands * rows``; 14 x 8 = 112 by default).
    seed
        Seed of the permutation parameters; every worker of a run must use the same.
    char_ngram
        Characters per shingle for documents in scripts without spaces.

    Returns
    -------
    np.ndarray
        ``(n, num_perm)`` ``uint32``. Two documents agree in each position with probability equal to the
        Jaccard similarity of their shingle sets. Empty documents get :data:`EMPTY_SIGNATURE` rows.

    Examples
    --------
    >>> sig = minhash_signatures(["the quick brown fox jumps over the lazy dog"] * 2, num_perm=16)
    >>> sig.shape, bool((sig[0] == sig[1]).all())
    ((2, 16), True)
    """
    _check_ngrams(ngram, char_ngram)
    arr = _as_string_array(text)
    out = np.empty((len(arr), num_perm), np.uint32)
    for a, b in _blocks(arr):
        values, offsets = _shingle_block(arr.slice(a, b - a), ngram, char_ngram)
        out[a:b] = signatures_from_shingles(values, offsets, num_perm=num_perm, seed=seed)
    return out


def band_keys(signatures: np.ndarray, *, bands: int, rows: int) -> np.ndarray:
    """Hash each band of ``rows`` signature values (and the band index) to a 64-bit LSH key.

    Returns
    -------
    np.ndarray
        ``(n, bands)`` ``uint64``. Two documents share key ``b`` iff (up to 2^-64) their signatures agree
        on all rows of band ``b``. Bands of an empty document are 0, a key never produced otherwise.
    """
    sig = np.asarray(signatures)
    if sig.ndim != 2 or sig.shape[1] != bands * rows:
        msg = f"signatures must have shape (n, bands*rows) = (n, {bands * rows}), got {sig.shape}"
        raise ValueError(msg)
    n = sig.shape[0]
    s3 = sig.reshape(n, bands, rows)
    h = np.broadcast_to(_fmix64(np.arange(1, bands + 1, dtype=np.uint64) * _CHAR_SALT), (n, bands)).copy()
    for r in range(rows):
        h = _fmix64(h * _CHAIN + s3[:, :, r].astype(np.uint64))
    h[h == 0] = 1
    h[(s3 == EMPTY_SIGNATURE).all(axis=2)] = 0
    return h


def dedup_columns(text: pa.Array | pa.ChunkedArray | Sequence[str], *, minhash: Any = None) -> dict[str, pa.Array]:
    """The hash columns of a ``.dedup.parquet`` file for a batch of texts.

    Parameters
    ----------
    text
        Document texts.
    minhash
        A :class:`curate.recipe.MinHashConfig`, or None for exact dedup only.

    Returns
    -------
    dict
        ``content_hash`` (uint64) and, with ``minhash``, ``band_keys`` (fixed_size_list<uint64>[bands]).
    """
    arr = _as_string_array(text)
    cols: dict[str, pa.Array] = {"content_hash": pa.array(content_hash(arr), pa.uint64())}
    if minhash is not None:
        sig = minhash_signatures(arr, ngram=minhash.ngram, num_perm=minhash.bands * minhash.rows,
                                 seed=minhash.seed, char_ngram=minhash.char_ngram)
        keys = band_keys(sig, bands=minhash.bands, rows=minhash.rows)
        cols["band_keys"] = pa.FixedSizeListArray.from_arrays(pa.array(keys.ravel(), pa.uint64()), minhash.bands)
    return cols


# ---------------------------------------------------------------------------- components
def connected_components(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Connected components of an undirected graph given as edge arrays, vectorized.

    Each round hooks the larger root of every edge whose endpoints have different roots under the
    smaller one (``np.minimum.at``), then jumps pointers until every node points at a root. Parents
    only decrease, so there are no cycles, and the root of a component ends as its smallest node.

    Returns
    -------
    nodes, labels
        Sorted unique node ids and, per node, the smallest node id of its component.
    """
    src = np.asarray(src)
    dst = np.asarray(dst)
    nodes, inv = np.unique(np.concatenate([src, dst]), return_inverse=True)
    u, v = inv[: len(src)], inv[len(src):]
    parent = np.arange(len(nodes))
    while True:
        pu, pv = parent[u], parent[v]
        diff = pu != pv
        if not diff.any():
            break
        u, v, pu, pv = u[diff], v[diff], pu[diff], pv[diff]
        np.minimum.at(parent, np.maximum(pu, pv), np.minimum(pu, pv))
        while True:
            pp = parent[parent]
            if np.array_equal(pp, parent):
                break
            parent = pp
    return nodes, nodes[parent]


# ---------------------------------------------------------------------------- file helpers
def _write_parquet(table: pa.Table, path: str | Path) -> None:
    """Write atomically (``curate.io_utils``: the one temporary name, then rename); Parquet's default snappy."""
    from curate.io_utils import atomic_write_parquet

    atomic_write_parquet(path, table, compression="snappy")


def _read_many(pattern: str, columns: list[str] | None = None) -> pa.Table | None:
    files = sorted(glob.glob(pattern))
    if not files:
        return None
    return pa.concat_tables([pq.read_table(f, columns=columns) for f in files])


def _check_columns(path: str, table_schema: pa.Schema, needed: dict[str, Callable[[pa.DataType], bool]]) -> None:
    for col, ok in needed.items():
        if col not in table_schema.names:
            msg = (f"missing column `{col}` (has {table_schema.names}); the dedup file must have "
                   f"{list(needed)} (see curate.dedup.dedup_part_schema)")
            raise SchemaError(msg, file=path, column=col)
        typ = table_schema.field(col).type
        if not ok(typ):
            msg = f"column `{col}` has type {typ}; see curate.dedup.dedup_part_schema for the expected type"
            raise SchemaError(msg, file=path, column=col)


_IS_INT = pa.types.is_integer
_IS_STR = lambda t: pa.types.is_string(t) or pa.types.is_large_string(t)  # noqa: E731
_PART_COLUMNS = {"uid": _IS_INT, "doc_id": _IS_STR, "source": _IS_STR, "subset": _IS_STR, "nbytes": _IS_INT,
                 "tokens": _IS_INT}


def _priorities(source: pa.ChunkedArray | pa.Array, priority: dict[str, int]) -> pa.Array:
    """Priority per row (lower keeps); sources missing from ``priority`` rank after every listed one."""
    enc = pc.dictionary_encode(source)
    if isinstance(enc, pa.ChunkedArray):
        enc = enc.combine_chunks()
    last = max(priority.values(), default=-1) + 1
    vals = np.array([priority.get(s, last) for s in enc.dictionary.to_pylist()], dtype=np.int32)
    return pa.array(vals[np.asarray(enc.indices.fill_null(0))] if len(vals) else np.zeros(len(source), np.int32))


def _sorted(table: pa.Table, keys: list[str]) -> pa.Table:
    return table.take(pc.sort_indices(table, sort_keys=[(k, "ascending") for k in keys]))


def _split_write(table: pa.Table, part: np.ndarray, nparts: int, path_of: Callable[[int], str]) -> None:
    """Write the rows of ``table`` with ``part == p`` to ``path_of(p)``, for each non-empty part."""
    order = np.argsort(part, kind="stable")
    bounds = np.searchsorted(part[order], np.arange(nparts + 1))
    for p in range(nparts):
        if bounds[p + 1] > bounds[p]:
            _write_parquet(table.take(order[bounds[p]: bounds[p + 1]]), path_of(p))


# ---------------------------------------------------------------------------- Ray tasks (plain functions)
def _each(fn: Callable, calls: list[tuple]) -> list:
    """``[fn(*args) for args in calls]`` in one task: one task per group of partition files."""
    return [fn(*c) for c in calls]


def _exact_map(path: str, i: int, nb: int, priority: dict[str, int], out_dir: str) -> dict[str, Any]:
    _check_columns(path, pq.read_schema(path), {**_PART_COLUMNS, "content_hash": _IS_INT})
    t = pq.read_table(path, columns=[*_META_COLUMNS, "content_hash"])
    t = t.append_column("prio", _priorities(t.column("source"), priority))
    t = t.append_column("file", pa.array(np.full(t.num_rows, i, np.int32)))
    h = np.asarray(t.column("content_hash").combine_chunks().cast(pa.uint64()))
    _split_write(t, (h % _U64(nb)).astype(np.int64), nb, lambda r: f"{out_dir}/exact/map/b{r:05d}/f{i:06d}.parquet")
    counts = pc.value_counts(t.column("source")).to_pylist()
    return {c["values"]: c["counts"] for c in counts}


def _exact_reduce(r: int, out_dir: str) -> int:
    t = _read_many(f"{out_dir}/exact/map/b{r:05d}/*.parquet")
    if t is None or t.num_rows == 0:
        return 0
    t = _sorted(t, ["content_hash", "prio", "doc_id", "uid"])
    h = np.asarray(t.column("content_hash").combine_chunks().cast(pa.uint64()))
    first = np.ones(len(h), bool)
    first[1:] = h[1:] != h[:-1]
    keeper = np.maximum.accumulate(np.where(first, np.arange(len(h)), 0))
    rm = np.flatnonzero(~first)
    if len(rm) == 0:
        return 0
    kp = pa.array(keeper[rm])
    removed = pa.table(
        {
            **{c: t.column(c).take(pa.array(rm)) for c in ("uid", "doc_id", "source", "subset")},
            "reason": pa.array([EXACT] * len(rm), pa.string()),
            "dup_of": t.column("uid").take(kp),
            "dup_of_source": t.column("source").take(kp),
            **{c: t.column(c).take(pa.array(rm)) for c in ("nbytes", "tokens")},
        }
    ).cast(REMOVED_SCHEMA)
    files = np.asarray(t.column("file").combine_chunks())[rm].astype(np.int64)
    nfiles = int(files.max()) + 1
    _split_write(removed, files, nfiles, lambda f: f"{out_dir}/exact/removed/f{f:06d}/b{r:05d}.parquet")
    return len(rm)


def _lsh_map(path: str, i: int, nb: int, bands: int, out_dir: str, after_exact: bool) -> dict[str, int]:
    schema = pq.read_schema(path)
    _check_columns(path, schema, {"uid": _IS_INT, "source": _IS_STR, "band_keys": pa.types.is_fixed_size_list})
    bk_type = schema.field("band_keys").type
    if bk_type.list_size != bands:
        msg = (f"`band_keys` has {bk_type.list_size} bands but dedup.minhash.bands is {bands}; recompute the "
               "dedup files with the recipe's minhash settings (rerun the partition workers)")
        raise SchemaError(msg, file=path, column="band_keys")
    t = pq.read_table(path, columns=["uid", "band_keys"] if after_exact else ["uid", "source", "band_keys"])
    docs_in = {} if after_exact else {c["values"]: c["counts"]
                                      for c in pc.value_counts(t.column("source")).to_pylist()}
    uid = np.asarray(t.column("uid").combine_chunks().cast(pa.int64()))
    keys = np.asarray(pc.list_flatten(t.column("band_keys").combine_chunks()).cast(pa.uint64())).reshape(-1, bands)
    if after_exact:
        gone = _read_many(f"{out_dir}/exact/removed/f{i:06d}/*.parquet", columns=["uid"])
        if gone is not None and gone.num_rows:
            keep = ~np.isin(uid, np.asarray(gone.column("uid").combine_chunks()))
            uid, keys = uid[keep], keys[keep]
    key = keys.ravel()
    band = np.tile(np.arange(bands, dtype=np.int16), len(uid))
    uid_rep = np.repeat(uid, bands)
    live = key != 0
    key, band, uid_rep = key[live], band[live], uid_rep[live]
    rows = pa.table({"band": band, "key": key, "uid": uid_rep, "file": np.full(len(key), i, np.int32)})
    _split_write(rows, (key % _U64(nb)).astype(np.int64), nb, lambda r: f"{out_dir}/lsh/b{r:05d}/f{i:06d}.parquet")
    return docs_in


def _lsh_reduce(r: int, out_dir: str) -> int:
    t = _read_many(f"{out_dir}/lsh/b{r:05d}/*.parquet")
    if t is None or t.num_rows == 0:
        return 0
    band = np.asarray(t.column("band").combine_chunks())
    key = np.asarray(t.column("key").combine_chunks())
    uid = np.asarray(t.column("uid").combine_chunks())
    fil = np.asarray(t.column("file").combine_chunks())
    o = np.lexsort((uid, key, band))
    band, key, uid, fil = band[o], key[o], uid[o], fil[o]
    first = np.ones(len(uid), bool)
    first[1:] = (band[1:] != band[:-1]) | (key[1:] != key[:-1])
    head = np.maximum.accumulate(np.where(first, np.arange(len(uid)), 0))
    m = np.flatnonzero(~first)
    src, dst, sf, df = uid[m], uid[head[m]], fil[m], fil[head[m]]
    if len(src) == 0:
        return 0
    o = np.lexsort((dst, src))
    src, dst, sf, df = src[o], dst[o], sf[o], df[o]
    keep = np.ones(len(src), bool)
    keep[1:] = (src[1:] != src[:-1]) | (dst[1:] != dst[:-1])
    edges = pa.table({"src": src[keep], "dst": dst[keep], "src_file": sf[keep], "dst_file": df[keep]})
    _write_parquet(edges, f"{out_dir}/edges/b{r:05d}.parquet")
    return int(keep.sum())


def _text_path(dedup_path: str) -> str:
    """Where the texts of a dedup file are: the file itself when it has a ``text`` column, else the sibling
    ``<key>.text.parquet`` of ``<key>.<kind>.parquet`` (``<key>.dedup.parquet``, ``<key>.kept.parquet``)."""
    from curate.layout import text_of

    p = str(dedup_path)
    if os.path.isfile(p) and "text" in pq.read_schema(p).names:
        return p
    return str(text_of(p))


def _components(out_dir: str, paths: list[str], priority: dict[str, int], nb: int, verify: bool) -> int:
    """Union the LSH edges into components and order each component's members by keeper rank.

    Without ``verify`` the first member of a component keeps and the others are written to
    ``near/removed.parquet``. With ``verify`` the ranked members are handed to the verify shuffle instead:
    ``verify/meta/b<r>.parquet`` (bucket ``label % nb``) and ``verify/want/f<i>.parquet`` (the candidate
    uids held by file ``i``, with their label). Returns the number of verify buckets (0 without ``verify``):
    at least ``nb``, and more when the candidates' text exceeds ``nb`` x :data:`_VERIFY_BUCKET_BYTES`."""
    e = _read_many(f"{out_dir}/edges/*.parquet")
    if e is None or e.num_rows == 0:
        _write_parquet(REMOVED_SCHEMA.empty_table(), f"{out_dir}/near/removed.parquet")
        return 0
    src = np.asarray(e.column("src").combine_chunks())
    dst = np.asarray(e.column("dst").combine_chunks())
    nodes, labels = connected_components(src, dst)
    # which file holds each node
    all_uid = np.concatenate([src, dst])
    all_file = np.concatenate([np.asarray(e.column("src_file").combine_chunks()),
                               np.asarray(e.column("dst_file").combine_chunks())])
    _, first_idx = np.unique(all_uid, return_index=True)
    node_file = all_file[first_idx]
    metas = []
    for f in np.unique(node_file).tolist():
        t = pq.read_table(paths[f], columns=list(_META_COLUMNS))
        t = t.filter(pc.is_in(t.column("uid"), pa.array(nodes[node_file == f])))
        metas.append(t.cast(pa.schema([REMOVED_SCHEMA.field(c) if c != "uid" else pa.field("uid", pa.int64())
                                       for c in _META_COLUMNS])))
    meta = pa.concat_tables(metas)
    mu = np.asarray(meta.column("uid").combine_chunks())
    meta = meta.append_column("label", pa.array(labels[np.searchsorted(nodes, mu)]))
    meta = meta.append_column("prio", _priorities(meta.column("source"), priority))
    meta = _sorted(meta, ["label", "prio", "doc_id", "uid"])
    lab = np.asarray(meta.column("label").combine_chunks())
    if verify:
        uids = np.asarray(meta.column("uid").combine_chunks())
        files = node_file[np.searchsorted(nodes, uids)].astype(np.int32)
        meta = meta.append_column("file", pa.array(files))
        # _split_write is stable: every bucket keeps the keeper order of its components
        # enough buckets that no verify task holds more than ~_VERIFY_BUCKET_BYTES of candidate text
        text_bytes = int(pc.sum(meta.column("nbytes")).as_py() or 0)
        nbv = max(nb, -(-text_bytes // _VERIFY_BUCKET_BYTES))
        _split_write(meta, (lab % nbv).astype(np.int64), nbv, lambda r: f"{out_dir}/verify/meta/b{r:05d}.parquet")
        want = pa.table({"uid": uids, "label": lab})
        _split_write(want, files.astype(np.int64), len(paths), lambda f: f"{out_dir}/verify/want/f{f:06d}.parquet")
        return nbv
    n = len(lab)
    first = np.ones(n, bool)
    first[1:] = lab[1:] != lab[:-1]
    keeper = np.maximum.accumulate(np.where(first, np.arange(n), 0))
    _write_parquet(_near_removed(meta, keeper), f"{out_dir}/near/removed.parquet")
    return 0


def _near_removed(meta: pa.Table, keeper: np.ndarray) -> pa.Table:
    """Removal rows for the members of ``meta`` whose ``keeper`` index is not their own."""
    rm = np.flatnonzero(keeper != np.arange(len(keeper)))
    kp = pa.array(keeper[rm], pa.int64())
    rmi = pa.array(rm, pa.int64())
    return pa.table(
        {
            **{c: meta.column(c).take(rmi) for c in ("uid", "doc_id", "source", "subset")},
            "reason": pa.array([NEAR] * len(rm), pa.string()),
            "dup_of": meta.column("uid").take(kp),
            "dup_of_source": meta.column("source").take(kp),
            **{c: meta.column(c).take(rmi) for c in ("nbytes", "tokens")},
        }
    ).cast(REMOVED_SCHEMA)


_TEXT_SCHEMA = pa.schema([pa.field("uid", pa.int64()), pa.field("text", pa.large_string())])


def _verify_fetch(i: int, path: str, nb: int, out_dir: str, text_lookup: Callable | None) -> int:
    """Read the texts of file ``i``'s candidate documents once and send them to their component's bucket
    (``verify/text/b<r>/f<i>.parquet``), so each verify task reads only the texts it compares."""
    wp = f"{out_dir}/verify/want/f{i:06d}.parquet"
    if not os.path.isfile(wp):
        return 0
    want = pq.read_table(wp)
    uids = np.asarray(want.column("uid").combine_chunks())
    if text_lookup is not None:
        got = text_lookup([int(u) for u in uids])
        missing = [int(u) for u in uids if int(u) not in got]
        if missing:
            msg = f"text_lookup returned no text for {len(missing)} uid(s), e.g. {missing[:5]}"
            raise InputError(msg, file="<text_lookup>")
        texts = pa.table({"uid": uids, "text": pa.array([got[int(u)] for u in uids], pa.large_string())})
    else:
        tp = _text_path(path)
        if not os.path.isfile(tp):
            msg = ("dedup.minhash.verify_jaccard needs the texts: write (uid, text) to this file next to "
                   f"{path} (or a `text` column into it), or pass text_lookup to find_duplicates")
            raise InputError(msg, file=tp)
        t = pq.read_table(tp, columns=["uid", "text"])
        t = t.filter(pc.is_in(t.column("uid"), pa.array(uids)))
        have = np.asarray(t.column("uid").combine_chunks().cast(pa.int64()))
        missing = np.setdiff1d(uids, have)
        if len(missing):
            msg = f"no text for {len(missing)} uid(s), e.g. {missing[:5].tolist()}; rewrite the text file"
            raise InputError(msg, file=tp, column="uid")
        texts = pa.table({"uid": have, "text": t.column("text").cast(pa.large_string())})
    order = np.searchsorted(uids, np.asarray(texts.column("uid")), sorter=np.argsort(uids))
    label = np.asarray(want.column("label").combine_chunks())[np.argsort(uids)[order]]
    _split_write(texts, (label % nb).astype(np.int64), nb,
                 lambda r: f"{out_dir}/verify/text/b{r:05d}/f{i:06d}.parquet")
    return texts.num_rows


#: Candidate text bytes per verify bucket: a verify task holds its bucket's texts and their shingle sets
#: (~2-3x the text), so this bounds its memory whatever the corpus size.
_VERIFY_BUCKET_BYTES = 64 << 20

#: Kept members of a component a candidate is checked against (the highest-ranked first). A long LSH chain
#: of mutually dissimilar documents would otherwise cost quadratic Jaccard checks; past the cap a member is
#: kept, which can only cost recall, never precision.
_MAX_VERIFY = 64


def _verify_bucket(r: int, out_dir: str, threshold: float, ngram: int, char_ngram: int) -> int:
    """Greedy keepers with a true-Jaccard check for the components of bucket ``r``: in keeper order, a member
    is removed as a duplicate of the first kept document of its component (among the first
    :data:`_MAX_VERIFY`) it reaches ``threshold`` with, otherwise it is kept itself. Writes
    ``near/b<r>.parquet``; returns the number removed."""
    mp = f"{out_dir}/verify/meta/b{r:05d}.parquet"
    if not os.path.isfile(mp):
        return 0
    meta = pq.read_table(mp)
    texts = _read_many(f"{out_dir}/verify/text/b{r:05d}/*.parquet")
    if texts is None:
        msg = f"verify bucket {r} has candidates but no texts; the fetch tasks did not run (rerun the dedup)"
        raise InputError(msg, file=f"{out_dir}/verify/text/b{r:05d}")
    uids = np.asarray(meta.column("uid").combine_chunks())
    tu = np.asarray(texts.column("uid").combine_chunks())
    pos = np.argsort(tu)
    at = pos[np.searchsorted(tu, uids, sorter=pos)]
    sets = shingle_sets(texts.column("text").combine_chunks().take(pa.array(at)), ngram=ngram,
                        char_ngram=char_ngram)
    lab = np.asarray(meta.column("label").combine_chunks())
    n = len(uids)
    keeper = np.arange(n)
    kept: list[int] = []
    for j in range(n):
        if j == 0 or lab[j] != lab[j - 1]:
            kept = [j]
            continue
        for k in kept[:_MAX_VERIFY]:
            if jaccard(sets[j], sets[k]) >= threshold:
                keeper[j] = k
                break
        else:
            kept.append(j)
    _write_parquet(_near_removed(meta, keeper), f"{out_dir}/near/b{r:05d}.parquet")
    return int((keeper != np.arange(n)).sum())


def _finalize(out_dir: str) -> dict[str, Any]:
    parts = [p for p in (_read_many(f"{out_dir}/exact/removed/*/*.parquet"), _read_many(f"{out_dir}/near/*.parquet"))
             if p is not None]
    t = pa.concat_tables([p.cast(REMOVED_SCHEMA) for p in parts]) if parts else REMOVED_SCHEMA.empty_table()
    t = _sorted(t, ["uid"])
    _write_parquet(t, f"{out_dir}/removed.parquet")
    summary: dict[str, Any] = {"removed_exact": 0, "removed_near": 0, "matrix": {}, "per_source": {}}
    if t.num_rows == 0:
        return summary
    for row in t.group_by(["source", "dup_of_source"]).aggregate([("uid", "count")]).to_pylist():
        summary["matrix"].setdefault(row["source"], {})[row["dup_of_source"]] = row["uid_count"]
    agg = t.group_by(["source", "reason"]).aggregate([("uid", "count"), ("nbytes", "sum"), ("tokens", "sum")])
    for row in sorted(agg.to_pylist(), key=lambda r: (r["source"], r["reason"])):
        ps = summary["per_source"].setdefault(row["source"], {"docs": 0, "bytes": 0, "tokens": 0, "by_reason": {}})
        docs, nb, tk = row["uid_count"], row["nbytes_sum"] or 0, row["tokens_sum"] or 0
        ps["docs"] += docs
        ps["bytes"] += nb
        ps["tokens"] += tk
        ps["by_reason"][row["reason"]] = {"docs": docs, "bytes": nb, "tokens": tk}
        summary["removed_exact" if row["reason"] == EXACT else "removed_near"] += docs
    summary["matrix"] = {k: dict(sorted(v.items())) for k, v in sorted(summary["matrix"].items())}
    return summary


# ---------------------------------------------------------------------------- driver
def _preflight(paths: list[str], cfg: Any, text_lookup: Callable | None) -> None:
    """Check every file's schema (Parquet footers only) before any task starts."""
    mh = cfg.minhash
    for p in paths:
        if not os.path.isfile(p):
            msg = "dedup file not found; the partition worker did not write it (rerun the partition)"
            raise InputError(msg, file=p)
        schema = pq.read_schema(p)
        needed = dict(_PART_COLUMNS)
        if cfg.exact:
            needed["content_hash"] = _IS_INT
        if mh is not None:
            needed["band_keys"] = pa.types.is_fixed_size_list
        _check_columns(p, schema, needed)
        if mh is not None and schema.field("band_keys").type.list_size != mh.bands:
            msg = (f"`band_keys` has {schema.field('band_keys').type.list_size} bands but dedup.minhash.bands is "
                   f"{mh.bands}; recompute the dedup files with the recipe's minhash settings (rerun the partitions)")
            raise SchemaError(msg, file=p, column="band_keys")
        if mh is not None and mh.verify_jaccard and text_lookup is None and not os.path.isfile(_text_path(p)):
            msg = ("dedup.minhash.verify_jaccard needs the texts: write (uid, text) to this file next to "
                   f"{p} (or a `text` column into it), or pass text_lookup to find_duplicates")
            raise InputError(msg, file=_text_path(p))


def find_duplicates(
    dedup_files: list[str],
    *,
    cfg: Any,
    priority: dict[str, int],
    out_dir: str,
    num_buckets: int = 0,
    text_lookup: Callable[[list[int]], dict[int, str]] | None = None,
) -> dict[str, Any]:
    """Find exact and near duplicates across partitions with Ray tasks; write ``out_dir/removed.parquet``.

    Ray must already be initialized. ``out_dir`` must be on a filesystem every Ray node can read and write.
    See the module docstring for the stages and the files they write.

    Parameters
    ----------
    dedup_files
        The partitions' ``.dedup.parquet`` files (:func:`dedup_part_schema`).
    cfg
        The recipe's :class:`curate.recipe.DedupConfig` (``exact``, ``minhash``).
    priority
        Source name -> rank; the lowest rank keeps its copy. Sources missing from the mapping rank after
        all listed ones. Ties are broken by ``doc_id``, then ``uid``.
    out_dir
        Working folder; its ``exact/``, ``lsh/``, ``edges/`` and ``near/`` subfolders are replaced. Afterwards it
        holds ``removed.parquet`` and ``edges/`` (the LSH candidate edges, for inspection).
    num_buckets
        Shuffle buckets ``R`` (0: the cluster's CPU count). The result does not depend on it.
    text_lookup
        Only with ``cfg.minhash.verify_jaccard``: a picklable callable mapping uids to texts. Without it the
        texts are read, by one fetch task per file and only for candidate documents, from the dedup file's own
        ``text`` column if it has one, else from ``<key>.text.parquet`` (columns ``uid``, ``text``) next to
        ``<key>.<kind>.parquet``.

    Returns
    -------
    dict
        ``removed_exact``, ``removed_near``, ``matrix`` (``{removed_source: {kept_source: docs}}``, where the
        kept source is that of ``dup_of``), ``per_source`` (``{source: {docs, bytes, tokens,
        by_reason: {reason: {docs, bytes, tokens}}}}``), ``docs_in`` (``{source: docs}``) and ``buckets``.
    """
    import ray

    if not ray.is_initialized():
        msg = "find_duplicates runs Ray tasks: call ray.init() first"
        raise RuntimeError(msg)
    paths = sorted(str(p) for p in dedup_files)
    if not paths:
        msg = "find_duplicates got no dedup files; the partitions produced no survivors to deduplicate"
        raise InputError(msg, file="<dedup_files>")
    _preflight(paths, cfg, text_lookup)
    nb = int(num_buckets) if num_buckets and num_buckets > 0 else max(1, int(ray.cluster_resources().get("CPU", 1)))
    out = str(Path(out_dir).resolve())
    for sub in ("exact", "lsh", "edges", "near", "verify"):
        shutil.rmtree(os.path.join(out, sub), ignore_errors=True)
    os.makedirs(out, exist_ok=True)
    from curate.raytasks import get, remote_task

    task = remote_task
    mh = cfg.minhash

    docs_in: dict[str, int] = {}

    def count(per_file: list[dict[str, int]]) -> None:
        for counts in per_file:
            for s, c in counts.items():
                docs_in[s] = docs_in.get(s, 0) + c

    # per-file work is a few ms and a Ray task costs tens (timed on 636 small partitions: 60 ms per task vs 8 ms
    # of work), so the per-file waves run in groups, ~4 tasks per CPU
    per = max(1, -(-len(paths) // (4 * max(1, int(ray.cluster_resources().get("CPU", 1))))))

    def per_file(fn: Callable, calls: list[tuple]) -> list:
        refs = [task(_each).remote(fn, calls[k: k + per]) for k in range(0, len(calls), per)]
        return [x for r in get(refs) for x in r]

    if cfg.exact:
        count(per_file(_exact_map, [(p, i, nb, priority, out) for i, p in enumerate(paths)]))
        get([task(_exact_reduce).remote(r, out) for r in range(nb)])
        shutil.rmtree(os.path.join(out, "exact", "map"), ignore_errors=True)
    if mh is not None:
        count(per_file(_lsh_map, [(p, i, nb, mh.bands, out, bool(cfg.exact)) for i, p in enumerate(paths)]))
        get([task(_lsh_reduce).remote(r, out) for r in range(nb)])
        shutil.rmtree(os.path.join(out, "lsh"), ignore_errors=True)
        nbv = get(task(_components).remote(out, paths, priority, nb, mh.verify_jaccard))
        if mh.verify_jaccard and nbv:
            per_file(_verify_fetch, [(i, p, nbv, out, text_lookup) for i, p in enumerate(paths)])
            get([task(_verify_bucket).remote(r, out, mh.threshold, mh.ngram, mh.char_ngram)
                     for r in range(nbv)])
            shutil.rmtree(os.path.join(out, "verify"), ignore_errors=True)
    summary = get(task(_finalize).remote(out))
    for sub in ("exact", "near"):  # merged into removed.parquet; edges/ stays for inspection
        shutil.rmtree(os.path.join(out, sub), ignore_errors=True)
    summary["docs_in"] = dict(sorted(docs_in.items()))
    summary["buckets"] = nb
    return summary
