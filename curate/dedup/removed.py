"""The dedup result: one removal file per input file, written by bounded tasks, and the reader its consumers
call (:func:`read_removed`).

``<out_dir>/removed/f<i>.parquet`` (:data:`~curate.dedup.files.REMOVED_SCHEMA`), sorted by ``uid``, one per
dedup input file ``i`` (in sorted path order, empty when none of its documents is removed)::

    uid, doc_id, source, subset, reason ("exact_duplicate" | "near_duplicate"), dup_of (keeper uid),
    dup_of_source, nbytes, tokens

``<out_dir>/removed/_index.json``: ``{"files": [{"file": "f<i>.parquet", "input": <dedup file name>, "rows",
"uid_min", "uid_max"}]}``, written by the driver last, so the removals of a uid window (a partition:
``pid << 32 .. (pid + 1) << 32``) are read from the files whose range meets it, never from all of them.
Arrow's dataset reader skips ``_``-prefixed files, so ``pyarrow.parquet.read_table`` of the folder also
reads every removal.

:func:`finalize_file` (one task per input file) merges file ``i``'s exact removals
(``exact/removed/b<r>[i]``) and near removals (``near/b<r>[i]``, :func:`write_near`) and
returns the small partial aggregates the driver sums into the summary (``matrix``, ``per_source``): no
task holds more than one file's removals.

``dup_of`` is the keeper of the document's own group: for an exact duplicate, the identical document that
was kept in the exact step, which the near step may in turn have removed (follow ``dup_of`` at most twice
to reach a kept document). ``dup_of_source`` is that keeper's source.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.dedup.files import EXACT, NEAR, REMOVED_SCHEMA, _sorted, _write_parquet
from curate.shuffle_files import read_split, write_split

INDEX = "_index.json"


def removed_dir(out_dir: str | Path) -> Path:
    """The removal files' folder of a dedup ``out_dir``."""
    return Path(out_dir) / "removed"


def near_removed(meta: pa.Table, keeper: np.ndarray) -> pa.Table:
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


def write_near(meta: pa.Table, keeper: np.ndarray, out_dir: str, q: int) -> int:
    """Write the near removals of bucket ``q`` (``meta`` ranked, with its ``file`` column) per originating
    file to ``near/b<q>[i]``; return their count."""
    rm = np.flatnonzero(keeper != np.arange(len(keeper)))
    if len(rm) == 0:
        return 0
    files = np.asarray(meta.column("file").combine_chunks()).astype(np.int64)[rm]
    write_split(near_removed(meta, keeper), files, int(files.max()) + 1, f"{out_dir}/near", f"b{q:05d}")
    return len(rm)


def finalize_file(i: int, path: str, out_dir: str) -> dict[str, Any]:
    """Merge file ``i``'s removals into ``removed/f<i>.parquet`` (sorted by uid); return its index entry and
    its partial aggregates: ``matrix`` rows ``[source, dup_of_source, docs]`` and ``per_source`` rows
    ``[source, reason, docs, bytes, tokens]``."""
    parts = [t for t in (read_split(f"{out_dir}/exact/removed", i), read_split(f"{out_dir}/near", i))
             if t is not None]
    t = pa.concat_tables([p.cast(REMOVED_SCHEMA) for p in parts]) if parts else REMOVED_SCHEMA.empty_table()
    t = _sorted(t, ["uid"])
    name = f"f{i:06d}.parquet"
    _write_parquet(t, removed_dir(out_dir) / name)
    entry: dict[str, Any] = {"file": name, "input": os.path.basename(path), "rows": t.num_rows,
                             "uid_min": None, "uid_max": None}
    out: dict[str, Any] = {"entry": entry, "matrix": [], "per_source": []}
    if t.num_rows == 0:
        return out
    entry["uid_min"], entry["uid_max"] = t.column("uid")[0].as_py(), t.column("uid")[-1].as_py()
    out["matrix"] = [[r["source"], r["dup_of_source"], r["uid_count"]]
                     for r in t.group_by(["source", "dup_of_source"]).aggregate([("uid", "count")]).to_pylist()]
    agg = t.group_by(["source", "reason"]).aggregate([("uid", "count"), ("nbytes", "sum"), ("tokens", "sum")])
    out["per_source"] = [[r["source"], r["reason"], r["uid_count"], r["nbytes_sum"] or 0, r["tokens_sum"] or 0]
                         for r in agg.to_pylist()]
    return out


def summarize(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The dedup summary from the per-file partial aggregates of :func:`finalize_file` (sums, sorted keys)."""
    matrix: dict[tuple, int] = {}
    per: dict[tuple, list[int]] = {}
    for p in parts:
        for s, d, n in p["matrix"]:
            matrix[(s, d)] = matrix.get((s, d), 0) + n
        for s, r, n, b, t in p["per_source"]:
            acc = per.setdefault((s, r), [0, 0, 0])
            acc[0] += n
            acc[1] += b
            acc[2] += t
    summary: dict[str, Any] = {"removed_exact": 0, "removed_near": 0, "matrix": {}, "per_source": {}}
    for (s, d), n in matrix.items():
        summary["matrix"].setdefault(s, {})[d] = n
    for (s, r), (docs, nb, tk) in sorted(per.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        ps = summary["per_source"].setdefault(s, {"docs": 0, "bytes": 0, "tokens": 0, "by_reason": {}})
        ps["docs"] += docs
        ps["bytes"] += nb
        ps["tokens"] += tk
        ps["by_reason"][r] = {"docs": docs, "bytes": nb, "tokens": tk}
        summary["removed_exact" if r == EXACT else "removed_near"] += docs
    summary["matrix"] = {k: dict(sorted(v.items())) for k, v in sorted(summary["matrix"].items())}
    return summary


def write_index(out_dir: str, parts: list[dict[str, Any]]) -> None:
    from curate.io_utils import atomic_write_json

    atomic_write_json(removed_dir(out_dir) / INDEX, {"files": [p["entry"] for p in parts]})


def _dedup_dir(where: str | Path) -> Path:
    p = Path(where)
    if (p / "removed" / INDEX).is_file() or not (p / "work").is_dir():
        return p
    from curate.layout import RunLayout

    return RunLayout(p).dedup_dir


def has_removed(where: str | Path) -> bool:
    """Whether ``where`` (a run directory or a dedup ``out_dir``) holds a finished dedup's removals."""
    return (removed_dir(_dedup_dir(where)) / INDEX).is_file()


def read_removed(where: str | Path, *, pids: list[int] | None = None, columns: list[str] | None = None,
                 uids: pa.Array | list[int] | None = None) -> pa.Table:
    """The removals of a finished dedup, sorted by uid.

    Parameters
    ----------
    where
        A run directory (its ``work/dedup``) or a dedup ``out_dir``.
    pids
        Only the uids of these partitions (``pid << 32 <= uid < (pid + 1) << 32``); only the files whose
        uid range meets one of the windows are opened.
    columns
        Columns to read (default all of :data:`~curate.dedup.files.REMOVED_SCHEMA`).
    uids
        Only these uids.

    Returns
    -------
    pa.Table
        Empty (with the requested columns) when nothing is removed. Raises ``FileNotFoundError`` naming the
        folder when the dedup has not finished (check :func:`has_removed`).
    """
    d = removed_dir(_dedup_dir(where))
    idx_p = d / INDEX
    if not idx_p.is_file():
        msg = f"{idx_p}: no dedup result here (the dedup step has not finished; rerun the run to complete it)"
        raise FileNotFoundError(msg)
    cols = list(columns) if columns is not None else REMOVED_SCHEMA.names
    if "uid" not in cols:
        cols_read = ["uid", *cols]
    else:
        cols_read = cols
    entries = [e for e in json.loads(idx_p.read_text())["files"] if e["rows"]]
    filters = None
    if pids is not None:
        wins = [(int(p) << 32, (int(p) + 1) << 32) for p in sorted(set(pids))]
        entries = [e for e in entries if any(e["uid_min"] < hi and e["uid_max"] >= lo for lo, hi in wins)]
        filters = [[("uid", ">=", lo), ("uid", "<", hi)] for lo, hi in wins]
    tables = []
    for e in entries:
        t = pq.read_table(d / e["file"], columns=cols_read, filters=filters)
        if uids is not None:
            t = t.filter(pc.is_in(t.column("uid"), value_set=pa.array(uids, pa.int64())))
        tables.append(t)
    empty = REMOVED_SCHEMA.empty_table().select(cols_read)
    t = pa.concat_tables(tables) if tables else empty
    return _sorted(t, ["uid"]).select(cols)
