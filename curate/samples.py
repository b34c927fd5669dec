"""Bounded, deterministic views of what the filters kept and dropped: document samples and score histograms.

A data engineer's first question about a filter is *what did it remove?* The parts phase answers it while it
runs, from the rows it already holds (the corpus is never read a second time), and keeps the answer small.

Per partition, next to the other part files (``curate.partition``)::

    work/parts/<key>.samples.parquet
        For every (source, reason) of the per-document stages, the ``SAMPLE_K`` documents whose id hash is
        smallest (a reservoir by hash: deterministic, independent of batch sizes and worker count), and the
        ``POOL_K`` kept documents with the smallest hash, whose final fate (kept, or dropped by dedup or the mix)
        is only known later and is looked up when the samples are merged.
        Columns (``SAMPLE_SCHEMA``): source, subset, stage, reason ("kept" for survivors), doc_id, uid,
        hash (xxh3_64 of doc_id), nbytes, lang, text (the first ``TEXT_CHARS`` characters), scores (JSON object
        of the row's ``q_*`` scores and ``lang_score``).
    work/parts/<key>.stats.json
        ``{"hist": {source: {column: {"buckets": {value: n}, "null": n}}},
           "thresholds": {source: {column: {"min": x, "max": y}}}}``:
        a histogram of every numeric score a stage added (``q_<rule>``, ``lang_score``) over the documents that
        reached that stage. A bucket is the score rounded to two significant digits (formatted ``%.2g``), so
        partitions merge exactly by adding counts, and a histogram holds at most ~180 buckets per decade of the
        score's range whatever the corpus size.

At finalize (``write_run_samples``)::

    RUN_DIR/samples.parquet   SAMPLE_K smallest hashes per (source, reason) over all partitions, dedup and mix
                              reasons resolved; its row count, bytes and k are in its Parquet metadata
    RUN_DIR/scores.json       the merged histograms and thresholds

Both are also computed on the fly from ``work/parts`` while a run is in progress (``load_samples``,
``load_scores``), so a mid-run report shows what is known.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.io_utils import atomic_write_json, atomic_write_parquet, read_json
from curate.layout import RunLayout

#: Documents kept per (source, reason) per partition, and in the merged sample.
SAMPLE_K = 5
#: Kept documents per partition whose later fate (dedup, mix) is resolved at merge time.
POOL_K = 32
#: Characters of text kept per sampled document.
TEXT_CHARS = 400
KEPT = "kept"

SAMPLE_SCHEMA = pa.schema([
    ("source", pa.string()), ("subset", pa.string()), ("stage", pa.string()), ("reason", pa.string()),
    ("doc_id", pa.string()), ("uid", pa.int64()), ("hash", pa.uint64()), ("nbytes", pa.int64()),
    ("lang", pa.string()), ("text", pa.string()), ("scores", pa.string()),
])
_GROUP = ["source", "reason"]


# ---------------------------------------------------------------------------- kernels
def id_hash(doc_id: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """xxh3_64 of the UTF-8 bytes of each id (uint64): the sampling key, stable across runs and machines."""
    import xxhash

    from curate.utf8 import as_string_array, utf8_buffers

    data, offs = utf8_buffers(as_string_array(doc_id))
    mv, o, h = memoryview(data), offs.tolist(), xxhash.xxh3_64_intdigest
    return np.fromiter((h(mv[a:b]) for a, b in zip(o[:-1], o[1:])), dtype=np.uint64, count=len(o) - 1)


def smallest_k(t: pa.Table, k: int, keys: list[str] = _GROUP) -> pa.Table:
    """The ``k`` rows with the smallest ``hash`` per ``keys`` group (ties broken by doc_id, uid), sorted."""
    if t.num_rows == 0:
        return t
    t = t.sort_by([(c, "ascending") for c in (*keys, "hash", "doc_id", "uid")])
    keys_t = t.select(keys)
    # rank within each group: position minus the group's first position (rows are sorted by the keys)
    starts = np.zeros(t.num_rows, dtype=bool)
    for c in keys:
        col = keys_t[c].combine_chunks()
        starts[1:] |= ~pc.equal(col[1:], col[:-1]).fill_null(False).to_numpy(zero_copy_only=False)
    starts[0] = True
    first = np.maximum.accumulate(np.where(starts, np.arange(t.num_rows), 0))
    return t.filter(pa.array(np.arange(t.num_rows) - first < k))


def _scores_json(t: pa.Table) -> pa.Array:
    cols = [c for c in t.column_names if c.startswith("q_") or c == "lang_score"]
    if not cols:
        return pa.array(["{}"] * t.num_rows, pa.string())
    rows = t.select(cols).to_pylist()  # at most k rows per group: bounded
    return pa.array([json.dumps({k: v for k, v in r.items() if v is not None}, sort_keys=True) for r in rows],
                    pa.string())


def sample_rows(t: pa.Table, *, stage: str | None, reason: pa.Array | pa.ChunkedArray | str, k: int) -> pa.Table:
    """``SAMPLE_SCHEMA`` rows for the ``k`` smallest id hashes per (source, reason) of the documents ``t``."""
    n = t.num_rows
    if n == 0:
        return SAMPLE_SCHEMA.empty_table()
    reason_a = pa.array([reason] * n, pa.string()) if isinstance(reason, str) else reason
    key = pa.table({"source": t["source"], "reason": reason_a, "hash": pa.array(id_hash(t["doc_id"])),
                    "doc_id": t["doc_id"], "uid": t["uid"], "row": pa.array(np.arange(n, dtype=np.int64))})
    pick = smallest_k(key, k)
    sel = t.take(pick["row"])

    def col(name: str, typ: pa.DataType) -> pa.Array:
        return sel[name].cast(typ) if name in sel.column_names else pa.nulls(sel.num_rows, typ)

    return pa.table({
        "source": col("source", pa.string()), "subset": col("subset", pa.string()),
        "stage": pa.array([stage] * sel.num_rows, pa.string()), "reason": pick["reason"].cast(pa.string()),
        "doc_id": col("doc_id", pa.string()), "uid": col("uid", pa.int64()), "hash": pick["hash"],
        "nbytes": col("nbytes", pa.int64()), "lang": col("lang", pa.string()),
        "text": pc.utf8_slice_codeunits(sel["text"].cast(pa.large_string()), 0, TEXT_CHARS).cast(pa.string()),
        "scores": _scores_json(sel),
    }, schema=SAMPLE_SCHEMA)


def buckets(values: np.ndarray) -> tuple[dict[str, int], int]:
    """(``{"%.2g" bucket: count}``, nulls) of a score column: two significant digits, mergeable by addition."""
    v = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(v)
    v = v[ok]
    out = np.zeros_like(v)
    nz = v != 0
    if nz.any():
        scale = 10.0 ** (np.floor(np.log10(np.abs(v[nz]))) - 1)
        out[nz] = np.round(v[nz] / scale) * scale
    uniq, counts = np.unique(out, return_counts=True)
    hist: dict[str, int] = {}
    for u, c in zip(uniq.tolist(), counts.tolist()):
        key = f"{u:.2g}"
        hist[key] = hist.get(key, 0) + int(c)
    return hist, int((~ok).sum())


def stage_thresholds(stage: Any) -> dict[str, dict[str, float | None]]:
    """The bounds a stage applies to its score columns: quality rules ``q_<rule>``, langid ``lang_score``."""
    out: dict[str, dict[str, float | None]] = {}
    for r in getattr(stage, "rules", None) or []:
        out[f"q_{r.name}"] = {"min": r.min, "max": r.max}
    if getattr(stage, "name", None) == "langid" and getattr(stage, "min_score", 0.0):
        out["lang_score"] = {"min": float(stage.min_score), "max": None}
    return out


def score_columns(stage: Any, t: pa.Table) -> list[str]:
    """Numeric score columns ``stage`` added to ``t`` (``q_*``, ``lang_score``)."""
    return [c for c in getattr(stage, "added_columns", ()) if c in t.column_names
            and (c.startswith("q_") or c == "lang_score")
            and (pa.types.is_floating(t.schema.field(c).type) or pa.types.is_integer(t.schema.field(c).type))]


# ---------------------------------------------------------------------------- per partition
class PartitionProfile:
    """Collects one partition's samples and score histograms while the worker streams its batches."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._samples: list[pa.Table] = []
        self._hist: dict[str, dict[str, Any]] = {}
        self._thresholds: dict[str, dict[str, float | None]] = {}

    def scored(self, stage: Any, t: pa.Table) -> None:
        """Histogram the scores ``stage`` just added to ``t`` (every document that reached the stage)."""
        self._thresholds.update(stage_thresholds(stage))
        for c in score_columns(stage, t):
            hist, nulls = buckets(t[c].to_numpy(zero_copy_only=False))
            h = self._hist.setdefault(c, {"buckets": {}, "null": 0})
            for key, n in hist.items():
                h["buckets"][key] = h["buckets"].get(key, 0) + n
            h["null"] += nulls

    def dropped(self, stage: str, t: pa.Table, reason: pa.ChunkedArray) -> None:
        self._add(sample_rows(t, stage=stage, reason=reason, k=SAMPLE_K), SAMPLE_K)

    def kept(self, t: pa.Table) -> None:
        self._add(sample_rows(t, stage=None, reason=KEPT, k=POOL_K), POOL_K)

    def _add(self, rows: pa.Table, k: int) -> None:
        if rows.num_rows:
            self._samples.append(rows)
        if len(self._samples) > 64:  # keep the candidates bounded on partitions of many batches
            self._samples = [self.table()]

    def table(self) -> pa.Table:
        if not self._samples:
            return SAMPLE_SCHEMA.empty_table()
        t = pa.concat_tables(self._samples)
        kept = t.filter(pc.equal(t["reason"], KEPT))
        other = t.filter(pc.not_equal(t["reason"], KEPT))
        return pa.concat_tables([smallest_k(other, SAMPLE_K), smallest_k(kept, POOL_K)]).combine_chunks()

    def write(self, samples_path: Path, stats_path: Path) -> None:
        atomic_write_parquet(samples_path, self.table())
        atomic_write_json(stats_path, {"hist": {self.source: self._hist},
                                       "thresholds": {self.source: self._thresholds}})


# ---------------------------------------------------------------------------- merging
def _parts_dir(run_dir: Path) -> Path:
    return RunLayout(run_dir).parts_dir


def merge_scores(paths: list[Path]) -> dict[str, Any]:
    """Sum per-partition histograms (``<key>.stats.json``) into one ``{"hist", "thresholds"}``."""
    hist: dict[str, dict[str, dict[str, Any]]] = {}
    thr: dict[str, dict[str, Any]] = {}
    for p in sorted(paths):
        d = read_json(p)
        for src, cols in d.get("hist", {}).items():
            for c, h in cols.items():
                m = hist.setdefault(src, {}).setdefault(c, {"buckets": {}, "null": 0})
                for key, n in h["buckets"].items():
                    m["buckets"][key] = m["buckets"].get(key, 0) + n
                m["null"] += h.get("null", 0)
        for src, cols in d.get("thresholds", {}).items():
            thr.setdefault(src, {}).update(cols)
    return {"hist": hist, "thresholds": thr}


def load_scores(run_dir: str | Path) -> dict[str, Any]:
    """Merged score histograms: ``RUN_DIR/scores.json`` once written, else merged from ``work/parts``."""
    run_dir = Path(run_dir)
    if RunLayout(run_dir).scores.exists():
        return read_json(RunLayout(run_dir).scores)
    d = _parts_dir(run_dir)
    return merge_scores(list(d.glob("*.stats.json")) if d.is_dir() else [])


def _fates(run_dir: Path, uids: pa.Array) -> tuple[pa.Array, pa.Array]:
    """(stage, reason) after dedup and mix of kept documents ``uids``; null where they are still kept."""
    n = len(uids)
    stage, reason = pa.nulls(n, pa.string()), pa.nulls(n, pa.string())
    dedup_dir, sel_p = RunLayout(run_dir).dedup_dir, RunLayout(run_dir).mix_selected_dir
    if n == 0:
        return stage, reason
    flt = [("uid", "in", uids.to_pylist())]
    if sel_p.exists():
        sel = pq.read_table(sel_p, columns=["uid", "reason"], filters=flt)
        at = pc.index_in(uids, value_set=sel["uid"])
        r = sel["reason"].take(at)
        stage = pc.if_else(pc.is_valid(r), pa.scalar("mix"), stage)
        reason = pc.coalesce(r, reason)
    from curate.dedup import has_removed, read_removed

    if has_removed(dedup_dir):  # dedup comes first: a duplicate never reaches the mix
        rem = read_removed(dedup_dir, columns=["uid", "reason"], uids=uids)
        at = pc.index_in(uids, value_set=rem["uid"])
        r = rem["reason"].take(at)
        stage = pc.if_else(pc.is_valid(r), pa.scalar("dedup"), stage)
        reason = pc.coalesce(r, reason)
    return stage, reason


def merge_samples(run_dir: str | Path, paths: list[Path], *, k: int = SAMPLE_K) -> pa.Table:
    """Global sample: the ``k`` smallest hashes per (source, reason) of the per-partition samples ``paths``.

    Kept pool documents get their final reason (dedup or mix), or stay ``kept``. Reads the sample files in
    groups, reducing as it goes, so the merge holds about ``k`` rows per (source, reason) plus one group.
    """
    run_dir = Path(run_dir)
    acc = SAMPLE_SCHEMA.empty_table()
    paths = sorted(paths)
    for i in range(0, len(paths), 64):
        tabs = [pq.read_table(p, schema=SAMPLE_SCHEMA) for p in paths[i:i + 64]]
        t = pa.concat_tables(tabs).combine_chunks()
        is_kept = pc.equal(t["reason"], KEPT)
        pool = t.filter(is_kept)
        if pool.num_rows:
            st, why = _fates(run_dir, pool["uid"].combine_chunks())
            pool = pool.set_column(pool.schema.get_field_index("stage"), "stage", pc.coalesce(st, pool["stage"]))
            pool = pool.set_column(pool.schema.get_field_index("reason"), "reason",
                                   pc.coalesce(why, pa.scalar(KEPT)))
        acc = smallest_k(pa.concat_tables([acc, t.filter(pc.invert(is_kept)), pool]).combine_chunks(), k)
    return acc.combine_chunks()


def write_run_samples(run_dir: str | Path) -> dict[str, Any]:
    """At finalize: merge the partitions' samples and histograms into ``samples.parquet`` and ``scores.json``."""
    run_dir = Path(run_dir)
    d = _parts_dir(run_dir)
    t = merge_samples(run_dir, list(d.glob("*.samples.parquet")) if d.is_dir() else [])
    info = {"rows": t.num_rows, "k": SAMPLE_K, "pool_k": POOL_K, "text_chars": TEXT_CHARS,
            "groups": len({(r["source"], r["reason"]) for r in t.select(_GROUP).to_pylist()})}
    t = t.replace_schema_metadata({b"curate.samples": json.dumps(info).encode()})
    layout = RunLayout(run_dir)
    atomic_write_parquet(layout.samples, t)
    atomic_write_json(layout.scores, merge_scores(list(d.glob("*.stats.json")) if d.is_dir() else []))
    info["bytes"] = layout.samples.stat().st_size
    return info


def load_samples(run_dir: str | Path) -> pa.Table:
    """The run's sample: ``RUN_DIR/samples.parquet`` once written, else merged now from ``work/parts``."""
    run_dir = Path(run_dir)
    if RunLayout(run_dir).samples.exists():
        return pq.read_table(RunLayout(run_dir).samples)
    d = _parts_dir(run_dir)
    return merge_samples(run_dir, list(d.glob("*.samples.parquet")) if d.is_dir() else [])


def samples_info(run_dir: str | Path) -> dict[str, Any] | None:
    """Size of the merged sample (rows, bytes, k, groups), or None before finalize."""
    p = RunLayout(run_dir).samples
    if not p.exists():
        return None
    md = pq.read_schema(p).metadata or {}
    info = json.loads(md.get(b"curate.samples", b"{}"))
    info["bytes"] = p.stat().st_size
    return info


def select_samples(t: pa.Table, *, source: str | None = None, reason: str | None = None, n: int = 3,
                   kept: bool | None = None) -> pa.Table:
    """Filter a sample table: by source, by reason (exact, or a prefix ending in ``:``), kept only / dropped
    only (``kept`` True / False), at most ``n`` per (source, reason), ordered by source, reason, hash."""
    if source is not None:
        t = t.filter(pc.equal(t["source"], source))
    if reason is not None:
        m = pc.starts_with(t["reason"], reason) if reason.endswith(":") else pc.equal(t["reason"], reason)
        t = t.filter(m)
    if kept is not None:
        m = pc.equal(t["reason"], KEPT)
        t = t.filter(m if kept else pc.invert(m))
    return smallest_k(t, n)
