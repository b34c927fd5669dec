"""The exact-hash and LSH shuffles: per-file map tasks send rows to buckets by hash range, one reduce task
per bucket groups them.

With ``R`` buckets (:func:`curate.dedup.files.bucket_count`: about ``BUCKET_BYTES`` of rows per bucket, from
the row counts in the Parquet footers, :func:`exact_bytes` / :func:`lsh_bytes`) and ``P`` input files,
under ``out_dir`` (``<step>/<writer>[q]``: target ``q`` of a writer's split file, one data file and one index per
writer, :func:`curate.shuffle_files.write_split`; ``2 P`` files a shuffle, not ``P x R``):

- ``exact/map/f<i>[r]`` (:func:`exact_map`): file ``i``'s rows ``uid, doc_id, source, subset,
  nbytes, tokens, content_hash, prio int32, file int32`` go to bucket ``key_bucket(content_hash, R)``.
- ``exact/removed/b<r>[i]`` (:func:`exact_reduce`, :data:`~curate.dedup.files.REMOVED_SCHEMA`):
  reduce task ``r`` sorts its bucket by (content_hash, priority, doc_id, uid); the first row of each hash
  group is kept, the others are removed, written per originating file so that the LSH map and the final
  per-file removal files read only their own file's removals.
- ``lsh/f<i>[r]`` (:func:`lsh_map`): the band keys of file ``i``'s exact survivors, exploded to
  ``band int16, key uint64, uid int64, file int32`` rows, go to bucket ``key_bucket(key, R)``. Band keys
  are seeded by the band index, so one key range mixes all bands evenly.
- ``edges/b<r>.parquet`` (:func:`lsh_reduce`): reduce task ``r`` groups rows by (band, key) and emits one
  edge ``src`` (member) -> ``dst`` (smallest uid of the group), with ``src_file, dst_file``: linear in
  the group size, not quadratic. Sorted by (src, dst), unique. ``edges/`` stays after the run (the
  validation sets read it, :mod:`curate.validation`).

A reduce task holds one bucket: about ``BUCKET_BYTES`` plus at most one group (all copies of one text,
all documents with one band key), whatever the corpus size. The exact reduce holds less: the bucket's hashes
(8 bytes a row), one map file at a time, and only the rows whose hash occurs twice.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.dedup.files import (
    _IS_INT,
    _IS_STR,
    _META_COLUMNS,
    _PART_COLUMNS,
    EXACT,
    REMOVED_SCHEMA,
    _check_columns,
    _priorities,
    _sorted,
    _write_parquet,
    key_bucket,
)
from curate.errors import SchemaError
from curate.shuffle_files import read_split, read_split_one, split_writers, write_split

#: In-memory bytes of one LSH shuffle row (band int16 + key uint64 + uid int64 + file int32).
LSH_ROW_BYTES = 2 + 8 + 8 + 4

#: Bytes an exact shuffle row adds to its columns in the file (prio int32 + file int32).
_EXACT_EXTRA = 8


def exact_bytes(meta: pq.FileMetaData) -> int:
    """In-memory bytes of a file's exact shuffle rows, from its footer: the uncompressed size of the columns
    the map reads, plus the two columns it adds."""
    cols = {*_META_COLUMNS, "content_hash"}
    size = 0
    for g in range(meta.num_row_groups):
        rg = meta.row_group(g)
        for c in range(rg.num_columns):
            col = rg.column(c)
            if col.path_in_schema in cols:
                size += col.total_uncompressed_size
    return size + _EXACT_EXTRA * meta.num_rows


def lsh_bytes(meta: pq.FileMetaData, bands: int) -> int:
    """In-memory bytes of a file's LSH shuffle rows, from its footer's row count (one row per band)."""
    return meta.num_rows * bands * LSH_ROW_BYTES


def exact_map(path: str, i: int, nb: int, priority: dict[str, int], out_dir: str) -> dict[str, Any]:
    """Send file ``i``'s rows to their exact buckets; return its documents per source."""
    _check_columns(path, pq.read_schema(path), {**_PART_COLUMNS, "content_hash": _IS_INT})
    t = pq.read_table(path, columns=[*_META_COLUMNS, "content_hash"])
    t = t.append_column("prio", _priorities(t.column("source"), priority))
    t = t.append_column("file", pa.array(np.full(t.num_rows, i, np.int32)))
    h = np.asarray(t.column("content_hash").combine_chunks().cast(pa.uint64()))
    write_split(t, key_bucket(h, nb), nb, f"{out_dir}/exact/map", f"f{i:06d}")
    counts = pc.value_counts(t.column("source")).to_pylist()
    return {c["values"]: c["counts"] for c in counts}


def exact_reduce(r: int, out_dir: str) -> int:
    """Keep the first of each content-hash group of bucket ``r``; write the others' removals per file.

    In two passes over the bucket's map files, so the task never holds the bucket's rows whole: the first reads
    only their ``content_hash`` (8 bytes a row) and finds the hashes that occur more than once; the second reads
    one map file at a time and keeps only the rows of those hashes (the only rows a removal or its keeper can
    be). Those are sorted by (content_hash, priority, doc_id, uid), a total order, so the removals are the ones
    a sort of the whole bucket gives, in the same order. Memory: the bucket's hashes, one map file, and the
    duplicated rows (at most the bucket, when every row has a copy).
    """
    step = f"{out_dir}/exact/map"
    writers = split_writers(step)
    hashes = [h for w in writers if (h := read_split_one(step, w, r, ["content_hash"])) is not None]
    if not hashes:
        return 0
    dup = _repeated(np.concatenate([_hashes(h) for h in hashes]))
    del hashes
    if len(dup) == 0:
        return 0
    parts = []
    for w in writers:
        t = read_split_one(step, w, r)
        if t is None:
            continue
        parts.append(t.filter(pa.array(np.isin(_hashes(t), dup, assume_unique=False))))
        del t
    t = _sorted(pa.concat_tables(parts), ["content_hash", "prio", "doc_id", "uid"])
    del parts
    h = _hashes(t)
    first = np.ones(len(h), bool)
    first[1:] = h[1:] != h[:-1]
    keeper = np.maximum.accumulate(np.where(first, np.arange(len(h)), 0))
    rm = np.flatnonzero(~first)
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
    files_of = np.asarray(t.column("file").combine_chunks())[rm].astype(np.int64)
    nfiles = int(files_of.max()) + 1
    write_split(removed, files_of, nfiles, f"{out_dir}/exact/removed", f"b{r:05d}")
    return len(rm)


def _hashes(t: pa.Table) -> np.ndarray:
    """The ``content_hash`` column of ``t`` as uint64."""
    return np.asarray(t.column("content_hash").combine_chunks().cast(pa.uint64()))


def _repeated(h: np.ndarray) -> np.ndarray:
    """The sorted distinct values that occur more than once in ``h``."""
    h = np.sort(h)
    twice = h[1:][h[1:] == h[:-1]]
    return twice[np.r_[True, twice[1:] != twice[:-1]]] if len(twice) else twice


def lsh_map(path: str, i: int, nb: int, bands: int, out_dir: str, after_exact: bool) -> dict[str, int]:
    """Send the band keys of file ``i``'s exact survivors to their LSH buckets; without the exact step,
    return its documents per source."""
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
        gone = read_split(f"{out_dir}/exact/removed", i, ["uid"])
        if gone is not None and gone.num_rows:
            keep = ~np.isin(uid, np.asarray(gone.column("uid").combine_chunks()))
            uid, keys = uid[keep], keys[keep]
    key = keys.ravel()
    band = np.tile(np.arange(bands, dtype=np.int16), len(uid))
    uid_rep = np.repeat(uid, bands)
    live = key != 0
    key, band, uid_rep = key[live], band[live], uid_rep[live]
    rows = pa.table({"band": band, "key": key, "uid": uid_rep, "file": np.full(len(key), i, np.int32)})
    write_split(rows, key_bucket(key, nb), nb, f"{out_dir}/lsh", f"f{i:06d}")
    return docs_in


def lsh_reduce(r: int, out_dir: str) -> int:
    """Edges member -> smallest uid of each (band, key) group of bucket ``r``; returns the edge count."""
    t = read_split(f"{out_dir}/lsh", r)
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
