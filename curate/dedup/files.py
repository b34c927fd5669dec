"""What every distributed dedup step shares: the removal schema, bucket functions and the file helpers.

A shuffle sends each row to a bucket chosen from a 64-bit hash by **range**: bucket ``(h >> 32) * n >> 32``
of ``n`` (:func:`key_bucket`), so buckets are contiguous hash ranges of equal width. Hashes that are not
uniform already (uids: ``pid << 32 | row``) are mixed with ``fmix64`` first (:func:`node_bucket`).
How many buckets a step takes follows its input size (:func:`bucket_count`): about :data:`BUCKET_BYTES`
of shuffle rows per reduce task, never fewer than the cluster's CPUs, so a reduce task's memory is bounded
by the constant, not by the corpus (one group, all rows of one key, is never split: a bucket can exceed
the bound by its largest group).

Every file is written atomically (:func:`curate.io_utils.atomic_write_parquet`: a temporary name, then
rename) and named by bucket and file index, so a rerun overwrites and completion order never matters.

Steps that send rows to many targets write split files (:mod:`curate.shuffle_files`: one data file and one index
per writer). The step docstrings write ``<step>/<writer>[q]`` for target ``q`` of a writer's split file
(``lsh/f<i>[r]``: file ``i``'s rows of LSH bucket ``r``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.dedup.signatures import _U64, _fmix64
from curate.errors import SchemaError

EXACT = "exact_duplicate"
NEAR = "near_duplicate"

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

#: Shuffle rows per reduce task (in-memory Arrow bytes): the bound on a reduce task's input.
BUCKET_BYTES = 64 << 20


def bucket_count(est_bytes: int, min_buckets: int, bucket_bytes: int = BUCKET_BYTES) -> int:
    """Buckets for a step whose shuffle rows take ``est_bytes``: ``ceil(est_bytes / bucket_bytes)``, at least
    ``min_buckets`` (the CPU count, so every CPU has a reduce task) and 1, rounded up to a multiple of
    ``min_buckets``.

    Why the rounding: the reduce tasks of a step run in waves of one task per CPU, so 3 buckets on 2 CPUs take
    two bucket-times with one CPU idle in the second; 4 smaller buckets take 1.5 (measured on the 200 MB mixed
    bench corpus: the third of 3 verify buckets ran 0.5 s alone). It adds fewer than ``min_buckets`` buckets
    and only makes each one smaller, so a task's bound holds."""
    n = max(1, int(min_buckets), -(-int(est_bytes) // max(1, int(bucket_bytes))))
    per = max(1, int(min_buckets))
    return -(-n // per) * per


def key_bucket(h: np.ndarray, n: int) -> np.ndarray:
    """Bucket of each uniform 64-bit hash ``h`` among ``n``: its hash range (``(h >> 32) * n >> 32``)."""
    h = np.asarray(h).astype(np.uint64, copy=False)
    return (((h >> _U64(32)) * _U64(n)) >> _U64(32)).astype(np.int64)


def node_bucket(uid: np.ndarray, n: int) -> np.ndarray:
    """Bucket of each uid (or component label) among ``n``: the hash range of ``fmix64(uid)``."""
    return key_bucket(_fmix64(np.asarray(uid).astype(np.uint64)), n)


def _write_parquet(table: pa.Table, path: str | Path) -> None:
    """Write atomically (``curate.io_utils``: the one temporary name, then rename); Parquet's default snappy."""
    from curate.io_utils import atomic_write_parquet

    atomic_write_parquet(path, table, compression="snappy")


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


def _each(fn: Callable, calls: list[tuple]) -> list:
    """``[fn(*args) for args in calls]`` in one task: one task per group of partition files."""
    return [fn(*c) for c in calls]

