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

**Split files** (:func:`write_split` / :func:`read_split`): a step that sends each writer's rows to ``n`` targets
(buckets, or partition files) writes **one data file and one index per writer**, as Spark's sort-based shuffle
does, not one file per (writer, target)::

    <step_dir>/<writer>.split   the targets' rows, target after target: an Arrow IPC stream each (lz4)
    <step_dir>/<writer>.idx     (n + 1) little-endian int64 byte offsets into .split: target q is [o[q], o[q+1])

A reader of target ``q`` reads 16 bytes of every writer's index and the byte range they name: ``P`` writers and
``R`` targets give ``2 P`` files instead of ``P x R`` (at EagleX size ~1.3 x 10^5 instead of ~9 x 10^8 for the LSH
shuffle, each ~1 KB: a parallel filesystem's metadata server creates 10^4-10^5 files a second). The reads stay
``P x R`` small ranges. The index is written after its data file, so an index on disk always has its data;
writers are read in name order, which is the order the per-target folders of earlier versions gave, so a step's
rows, and the run's outputs, are the same. The step docstrings write ``<step>/<writer>[q]`` for target ``q`` of a
writer's split file (``lsh/f<i>[r]``: file ``i``'s rows of LSH bucket ``r``).
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.dedup.signatures import _U64, _fmix64
from curate.errors import InputError, SchemaError

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


_SPLIT_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4")


def write_split(table: pa.Table, part: np.ndarray, nparts: int, step_dir: str, writer: str) -> None:
    """Write the rows of ``table`` with ``part == q`` as target ``q`` of writer ``writer`` in ``step_dir`` (the
    module docstring's split files; nothing when ``table`` is empty). Rows keep their order within a target."""
    if table.num_rows == 0:
        return
    from curate.io_utils import _atomic

    order = np.argsort(part, kind="stable")
    bounds = np.searchsorted(part[order], np.arange(nparts + 1))
    offsets = np.zeros(nparts + 1, np.int64)
    with _atomic(f"{step_dir}/{writer}.split") as tmp, open(tmp, "wb") as f:
        for q in range(nparts):
            if bounds[q + 1] > bounds[q]:
                sink = pa.BufferOutputStream()
                with pa.ipc.new_stream(sink, table.schema, options=_SPLIT_OPTIONS) as w:
                    w.write_table(table.take(order[bounds[q]: bounds[q + 1]]))
                f.write(sink.getvalue())
            offsets[q + 1] = f.tell()
    with _atomic(f"{step_dir}/{writer}.idx") as tmp, open(tmp, "wb") as f:
        f.write(offsets.astype("<i8").tobytes())


def split_writers(step_dir: str) -> list[str]:
    """The writers of ``step_dir`` with an index on disk, in name order."""
    return sorted(os.path.basename(p)[:-4] for p in glob.glob(f"{step_dir}/*.idx"))


def read_split(step_dir: str, q: int, columns: list[str] | None = None,
               writers: list[str] | None = None) -> pa.Table | None:
    """Target ``q``'s rows from every writer of ``step_dir`` (or ``writers``), in writer order, concatenated;
    None when none has a row for it. ``columns``: only these."""
    parts = [t for w in (split_writers(step_dir) if writers is None else writers)
             if (t := read_split_one(step_dir, w, q, columns)) is not None]
    return pa.concat_tables(parts) if parts else None


def read_split_one(step_dir: str, writer: str, q: int, columns: list[str] | None = None) -> pa.Table | None:
    """Target ``q``'s rows of one writer (None when it has none)."""
    with open(f"{step_dir}/{writer}.idx", "rb") as f:
        raw = os.pread(f.fileno(), 16, 8 * q)
    if len(raw) < 16:  # q beyond the writer's targets
        return None
    a, b = (int(x) for x in np.frombuffer(raw, "<i8"))
    if b <= a:
        return None
    with open(f"{step_dir}/{writer}.split", "rb") as f:
        data = os.pread(f.fileno(), b - a, a)
    if len(data) != b - a:
        msg = f"split file is shorter than its index says ({len(data)} of {b - a} bytes at {a}); rerun the dedup"
        raise InputError(msg, file=f"{step_dir}/{writer}.split")
    t = pa.ipc.open_stream(pa.py_buffer(data)).read_all()
    return t.select(columns) if columns is not None else t


def _each(fn: Callable, calls: list[tuple]) -> list:
    """``[fn(*args) for args in calls]`` in one task: one task per group of partition files."""
    return [fn(*c) for c in calls]

