"""The true-Jaccard check of the LSH candidates (``dedup.minhash.verify_jaccard``, the default), in bounded
buckets.

LSH alone lets pairs just under the threshold through (14x8 bands catch a Jaccard 0.7 pair with probability
~0.56) and chains components through intermediate documents, so the keeper is checked against true Jaccard,
and no task holds more than its share of texts. After the rank step (:mod:`curate.dedup.components`) wrote
the ranked members to ``verify/meta/b<r>.parquet`` (``uid, doc_id, source, subset, nbytes, tokens, label,
prio, file``; a component lands whole in bucket ``node_bucket(label, R)``, and ``R`` is large enough that a
bucket holds about :data:`_VERIFY_BUCKET_BYTES` of candidate text) and each file's candidates to
``verify/want/b<r>[i]`` (``uid, label``):

- fetch task ``i`` (:func:`_verify_fetch`) reads file ``i``'s texts once and sends each candidate's text to
  its component's bucket: ``verify/text/f<i>[r]`` (``uid int64, text large_string``);
- verify task ``r`` (:func:`_verify_bucket`) walks each component in rank order and removes a member only as
  a duplicate of a kept member of its component with true Jaccard >= ``threshold`` (the first such, among
  the first :data:`_MAX_VERIFY`), otherwise keeps it. Removals go per originating file to
  ``near/b<r>[i]`` (:func:`curate.dedup.removed.write_near`).

Every removed document is therefore within ``threshold`` of its ``dup_of``.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.dedup.files import node_bucket
from curate.dedup.removed import write_near
from curate.dedup.signatures import jaccard, shingle_sets
from curate.errors import InputError
from curate.shuffle_files import read_split, write_split


def _text_path(dedup_path: str) -> str:
    """Where the texts of a dedup file are: the file itself when it has a ``text`` column, else the sibling
    ``<key>.text.parquet`` of ``<key>.<kind>.parquet`` (``<key>.dedup.parquet``, ``<key>.kept.parquet``)."""
    from curate.layout import text_of

    p = str(dedup_path)
    if os.path.isfile(p) and "text" in pq.read_schema(p).names:
        return p
    return str(text_of(p))


_TEXT_SCHEMA = pa.schema([pa.field("uid", pa.int64()), pa.field("text", pa.large_string())])


def _verify_fetch(i: int, path: str, nb: int, out_dir: str, text_lookup: Callable | None) -> int:
    """Read the texts of file ``i``'s candidate documents once and send them to their component's bucket
    (``verify/text/f<i>[r]``), so each verify task reads only the texts it compares."""
    want = read_split(f"{out_dir}/verify/want", i)
    if want is None or want.num_rows == 0:
        return 0
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
    write_split(texts, node_bucket(label, nb), nb, f"{out_dir}/verify/text", f"f{i:06d}")
    return texts.num_rows


#: Candidate text bytes per verify bucket: a verify task holds its bucket's texts and their shingle sets, so this
#: bounds its memory whatever the corpus size. 16 MB: at 64 MB a verify task's process took about 480 MB over
#: its worker's floor once its bucket was full (``bench scale``: 603 -> 784 -> 959 MB at 1M -> 4M -> 16M tiny
#: documents, the buckets filling up to the cap until 16M); at 16 MB the buckets are full from about 4M documents
#: on, and a task holds a quarter of that.
_VERIFY_BUCKET_BYTES = 16 << 20

#: Kept members of a component a candidate is checked against (the highest-ranked first). A long LSH chain
#: of mutually dissimilar documents would otherwise cost quadratic Jaccard checks; past the cap a member is
#: kept, which can only cost recall, never precision.
_MAX_VERIFY = 64


def _verify_bucket(r: int, out_dir: str, threshold: float, ngram: int, char_ngram: int) -> int:
    """Greedy keepers with a true-Jaccard check for the components of bucket ``r``: in keeper order, a member
    is removed as a duplicate of the first kept document of its component (among the first
    :data:`_MAX_VERIFY`) it reaches ``threshold`` with, otherwise it is kept itself. Writes
    ``near/b<r>[i]`` per originating file; returns the number removed."""
    mp = f"{out_dir}/verify/meta/b{r:05d}.parquet"
    if not os.path.isfile(mp):
        return 0
    meta = pq.read_table(mp)
    texts = read_split(f"{out_dir}/verify/text", r)
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
    return write_near(meta, keeper, out_dir, r)

