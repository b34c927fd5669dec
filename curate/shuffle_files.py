"""Split files: what a step that sends each writer's rows to many targets writes (the dedup shuffles, the
order files' scatter).

A step that sends each writer's rows to ``n`` targets (buckets, partition files, batches) writes **one data file
and one index per writer**, as Spark's sort-based shuffle does, not one file per (writer, target)::

    <step_dir>/<writer>.split   the targets' rows, target after target: an Arrow IPC stream each (lz4)
    <step_dir>/<writer>.idx     (n + 1) little-endian int64 byte offsets into .split: target q is [o[q], o[q+1])

A reader of target ``q`` reads 16 bytes of every writer's index and the byte range they name: ``P`` writers and
``R`` targets give ``2 P`` files instead of ``P x R`` (at EagleX size ~1.3 x 10^5 instead of ~9 x 10^8 for the LSH
shuffle, each ~1 KB: a parallel filesystem's metadata server creates 10^4-10^5 files a second). The reads stay
``P x R`` small ranges. The index is written after its data file, so an index on disk always has its data;
writers are read in name order, which is the order the per-target folders of earlier versions gave, so a step's
rows, and the run's outputs, are the same.

Used by :mod:`curate.dedup` (every shuffle step) and :mod:`curate.mix.interleave` (an order file's leaf rows).
"""

from __future__ import annotations

import glob
import os

import numpy as np
import pyarrow as pa

from curate.errors import InputError
from curate.io_utils import _atomic

_SPLIT_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4")


def write_split(table: pa.Table, part: np.ndarray, nparts: int, step_dir: str, writer: str) -> None:
    """Write the rows of ``table`` with ``part == q`` as target ``q`` of writer ``writer`` in ``step_dir`` (the
    module docstring's split files; nothing when ``table`` is empty). Rows keep their order within a target."""
    if table.num_rows == 0:
        return
    order = np.argsort(part, kind="stable")
    bounds = np.searchsorted(part[order], np.arange(nparts + 1))
    size = np.zeros(nparts, np.int64)  # bytes of each target's stream (0: empty)
    with _atomic(f"{step_dir}/{writer}.split") as tmp, open(tmp, "wb") as f:
        for q in np.flatnonzero(bounds[1:] > bounds[:-1]).tolist():  # the non-empty targets only
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, table.schema, options=_SPLIT_OPTIONS) as w:
                w.write_table(table.take(order[bounds[q]: bounds[q + 1]]))
            size[q] = f.write(sink.getvalue())
    offsets = np.concatenate([[0], np.cumsum(size)])
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
        msg = f"split file is shorter than its index says ({len(data)} of {b - a} bytes at {a}); the step that wrote it did not finish: rerun `curate run`, which redoes it"
        raise InputError(msg, file=f"{step_dir}/{writer}.split")
    t = pa.ipc.open_stream(pa.py_buffer(data)).read_all()
    return t.select(columns) if columns is not None else t
