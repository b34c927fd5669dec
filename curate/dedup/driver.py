"""The distributed dedup's driver (:func:`find_duplicates`): checks the inputs, sizes the buckets from the
Parquet footers, submits the steps' Ray tasks in order and sums their small counters.

The steps (each module's docstring has the files it writes and why):

1. exact shuffle (:mod:`curate.dedup.shuffle`): one keeper per content hash;
2. LSH shuffle (:mod:`curate.dedup.shuffle`): candidate edges per (band, key) group;
3. components and ranking (:mod:`curate.dedup.components`): large-star/small-star rounds over bucketed
   edges, keeper order per component bucket;
4. verify (:mod:`curate.dedup.verify`, with ``verify_jaccard``): true Jaccard per component bucket;
5. finalize (:mod:`curate.dedup.removed`): one removal file per input file, the summary summed from
   per-file partial aggregates.

Bucket counts follow the data: from the footers' row counts (and column sizes) the driver estimates each
shuffle's bytes and takes ``ceil(bytes / bucket_bytes)`` buckets, at least the cluster's CPUs
(:func:`curate.dedup.files.bucket_count`); the component and rank steps size theirs from the edge and
member counts the earlier tasks return. The driver never holds a row of the corpus: it submits tasks and
adds counters (per-file entries, per-round moved-edge counts).

Every output is a pure function of the inputs: the sort keys are total orders, labels are the minimum uid of
a component, and files are named by bucket and file index, so the result is the same for any number of
buckets, workers or task completion order.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from curate.dedup import components, removed, shuffle, verify
from curate.dedup.files import _IS_INT, _PART_COLUMNS, BUCKET_BYTES, _check_columns, _each, bucket_count
from curate.errors import InputError, SchemaError

#: Shuffle bytes (exact plus LSH rows, estimated from the footers) up to which :func:`find_duplicates` runs every
#: step in one Ray task, one bucket after another: the demo corpus's 4.4 MB need 0.15 MB. A task still holds one
#: bucket at a time, and the buckets are those the multi-task path would take on a one-CPU cluster.
ONE_TASK_BYTES = 16 << 20

#: The folders a run replaces (``edges/`` stays afterwards for inspection and the validation sets).
_STEP_DIRS = ("exact", "lsh", "edges", "cc", "near", "verify", "removed")


def _preflight(paths: list[str], cfg: Any, text_lookup: Callable | None) -> list[pq.FileMetaData]:
    """Check every file's schema (Parquet footers only) before any task starts; return the footers."""
    mh = cfg.minhash
    metas = []
    for p in paths:
        if not os.path.isfile(p):
            msg = "dedup file not found; the partition worker did not write it (rerun the partition)"
            raise InputError(msg, file=p)
        meta = pq.read_metadata(p)
        schema = meta.schema.to_arrow_schema()
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
        if mh is not None and mh.verify_jaccard and text_lookup is None and not os.path.isfile(verify._text_path(p)):
            msg = ("dedup.minhash.verify_jaccard needs the texts: write (uid, text) to this file next to "
                   f"{p} (or a `text` column into it), or pass text_lookup to find_duplicates")
            raise InputError(msg, file=verify._text_path(p))
        metas.append(meta)
    return metas


def find_duplicates(
    dedup_files: list[str],
    *,
    cfg: Any,
    priority: dict[str, int],
    out_dir: str,
    num_buckets: int = 0,
    text_lookup: Callable[[list[int]], dict[int, str]] | None = None,
    bucket_bytes: int = BUCKET_BYTES,
    one_task_bytes: int = ONE_TASK_BYTES,
) -> dict[str, Any]:
    """Find exact and near duplicates across partitions with Ray tasks; write ``out_dir/removed/``.

    Ray must already be initialized. ``out_dir`` must be on a filesystem every Ray node can read and write.
    See the package docstrings for the steps and the files they write; read the result with
    :func:`curate.dedup.read_removed`.

    Parameters
    ----------
    dedup_files
        The partitions' dedup files (:func:`curate.dedup.dedup_part_schema`).
    cfg
        The recipe's :class:`curate.recipe.DedupConfig` (``exact``, ``minhash``).
    priority
        Source name -> rank; the lowest rank keeps its copy. Sources missing from the mapping rank after
        all listed ones. Ties are broken by ``doc_id``, then ``uid``.
    out_dir
        Working folder; its step folders are replaced. Afterwards it holds ``removed/`` (one file per input
        file and ``_index.json``) and ``edges/`` (the LSH candidate edges).
    num_buckets
        Buckets of every shuffle, forced (0: from the input size, ``bucket_bytes`` per bucket, at least the
        cluster's CPU count). The verify step takes more when the candidates' text needs them. The result
        does not depend on it.
    text_lookup
        Only with ``cfg.minhash.verify_jaccard``: a picklable callable mapping uids to texts. Without it the
        texts are read, by one fetch task per file and only for candidate documents, from the dedup file's own
        ``text`` column if it has one, else from ``<key>.text.parquet`` (columns ``uid``, ``text``) next to
        ``<key>.<kind>.parquet``.
    bucket_bytes
        Shuffle bytes per reduce task when ``num_buckets`` is 0 (default :data:`curate.dedup.BUCKET_BYTES`).
    one_task_bytes
        Without ``num_buckets``: up to this many estimated shuffle bytes every step runs in one Ray task, bucket
        after bucket (default :data:`ONE_TASK_BYTES`; 0 never). The result is the same either way.

    Returns
    -------
    dict
        ``removed_exact``, ``removed_near``, ``matrix`` (``{removed_source: {kept_source: docs}}``, where the
        kept source is that of ``dup_of``), ``per_source`` (``{source: {docs, bytes, tokens,
        by_reason: {reason: {docs, bytes, tokens}}}}``), ``docs_in`` (``{source: docs}``) and ``buckets`` (every step's
        bucket count: ``exact``, ``lsh``, ``components``, ``rank``, ``verify_buckets``, and the component
        ``rounds``).
    """
    import ray

    if not ray.is_initialized():
        msg = "find_duplicates runs Ray tasks: call ray.init() first"
        raise RuntimeError(msg)
    paths = sorted(str(p) for p in dedup_files)
    if not paths:
        msg = "find_duplicates got no dedup files; the partitions produced no survivors to deduplicate"
        raise InputError(msg, file="<dedup_files>")
    metas = _preflight(paths, cfg, text_lookup)
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    fixed = int(num_buckets) if num_buckets and num_buckets > 0 else 0
    out = str(Path(out_dir).resolve())
    for sub in _STEP_DIRS:
        shutil.rmtree(os.path.join(out, sub), ignore_errors=True)
    (Path(out) / "removed.parquet").unlink(missing_ok=True)  # the single file of earlier versions
    os.makedirs(out, exist_ok=True)
    exact_est = sum(shuffle.exact_bytes(m) for m in metas) if cfg.exact else 0
    lsh_est = sum(shuffle.lsh_bytes(m, cfg.minhash.bands) for m in metas) if cfg.minhash is not None else 0
    est = {"exact": exact_est, "lsh": lsh_est}
    from curate.raytasks import get, remote_task

    if not fixed and exact_est + lsh_est <= one_task_bytes:
        # a small dedup runs its steps in one Ray task: on the demo corpus that is one worker instead of ~16 waves of
        # tasks (0.5 s of task round trips, more while fresh workers start); every step still holds one bucket
        return get(remote_task(_steps_in_one_task).remote(paths, est, cfg, priority, out, bucket_bytes, text_lookup))

    task = remote_task

    # per-file work is a few ms and a Ray task costs tens (timed on 636 small partitions: 60 ms per task vs 8 ms
    # of work), so the per-file waves run in groups, ~4 tasks per CPU
    per = max(1, -(-len(paths) // (4 * cpus)))

    def per_file(fn: Callable, calls: list[tuple]) -> list:
        refs = [task(_each).remote(fn, calls[k: k + per]) for k in range(0, len(calls), per)]
        return [x for r in get(refs) for x in r]

    def wave(fn: Callable, calls: list[tuple]) -> list:
        return get([task(fn).remote(*c) for c in calls])

    return _steps(paths, est, cfg, priority, out, cpus=cpus, fixed=fixed, bucket_bytes=bucket_bytes,
                  text_lookup=text_lookup, wave=wave, per_file=per_file)


def _steps_in_one_task(paths: list[str], est: dict[str, int], cfg: Any, priority: dict[str, int], out: str,
                       bucket_bytes: int, text_lookup: Callable | None) -> dict[str, Any]:
    """Ray task body of a small dedup (:data:`ONE_TASK_BYTES`): every step in this worker, bucket by bucket."""
    return _steps(paths, est, cfg, priority, out, cpus=1, fixed=0, bucket_bytes=bucket_bytes,
                  text_lookup=text_lookup, wave=_each, per_file=_each)


def _steps(paths: list[str], est: dict[str, int], cfg: Any, priority: dict[str, int], out: str, *, cpus: int,
           fixed: int, bucket_bytes: int, text_lookup: Callable | None, wave: Callable,
           per_file: Callable) -> dict[str, Any]:
    """The steps of :func:`find_duplicates` in order: ``wave(fn, calls)`` runs one call per bucket,
    ``per_file(fn, calls)`` one per partition file (Ray tasks, or one after another in one task); ``est``: the
    exact and LSH shuffle bytes from the footers; at least ``cpus`` buckets per step unless ``fixed``."""
    mh = cfg.minhash
    steps: dict[str, Any] = {}
    docs_in: dict[str, int] = {}

    def count(per_file_counts: list[dict[str, int]]) -> None:
        for counts in per_file_counts:
            for s, c in counts.items():
                docs_in[s] = docs_in.get(s, 0) + c

    def buckets(est_bytes: int) -> int:
        return fixed or bucket_count(est_bytes, cpus, bucket_bytes)

    if cfg.exact:
        nb = steps["exact"] = buckets(est["exact"])
        count(per_file(shuffle.exact_map, [(p, i, nb, priority, out) for i, p in enumerate(paths)]))
        wave(shuffle.exact_reduce, [(r, out) for r in range(nb)])
        shutil.rmtree(os.path.join(out, "exact", "map"), ignore_errors=True)
    if mh is not None:
        nb = steps["lsh"] = buckets(est["lsh"])
        count(per_file(shuffle.lsh_map, [(p, i, nb, mh.bands, out, bool(cfg.exact)) for i, p in enumerate(paths)]))
        n_edges = sum(wave(shuffle.lsh_reduce, [(r, out) for r in range(nb)]))
        shutil.rmtree(os.path.join(out, "lsh"), ignore_errors=True)
        info = components.run_components(out, paths, priority, verify=mh.verify_jaccard, min_buckets=cpus,
                                         bucket_bytes=bucket_bytes, n_edges=n_edges, wave=wave,
                                         per_file=per_file, verify_bucket_bytes=verify._VERIFY_BUCKET_BYTES,
                                         fixed=fixed)
        steps.update(info)
        nbv = info["verify_buckets"]
        if mh.verify_jaccard and nbv:
            per_file(verify._verify_fetch, [(i, p, nbv, out, text_lookup) for i, p in enumerate(paths)])
            wave(verify._verify_bucket, [(r, out, mh.threshold, mh.ngram, mh.char_ngram) for r in range(nbv)])
            shutil.rmtree(os.path.join(out, "verify"), ignore_errors=True)
    parts = per_file(removed.finalize_file, [(i, p, out) for i, p in enumerate(paths)])
    removed.write_index(out, parts)
    summary = removed.summarize(parts)
    for sub in ("exact", "near"):  # merged into removed/; edges/ stays for inspection
        shutil.rmtree(os.path.join(out, sub), ignore_errors=True)
    summary["docs_in"] = dict(sorted(docs_in.items()))
    summary["buckets"] = steps
    return summary


def _components(out_dir: str, paths: list[str], priority: dict[str, int], nb: int, verify_: bool) -> int:
    """The component and rank steps in this process (no Ray), on the ``edges/`` of a finished run, with at
    least ``nb`` buckets; returns the verify bucket count (0 without ``verify_``). For tests and inspection."""
    import glob

    n_edges = sum(pq.read_metadata(f).num_rows for f in glob.glob(f"{out_dir}/edges/b*.parquet"))
    for sub in ("cc", "near", "verify"):
        shutil.rmtree(os.path.join(out_dir, sub), ignore_errors=True)
    info = components.run_components(out_dir, paths, priority, verify=verify_, min_buckets=nb,
                                     bucket_bytes=BUCKET_BYTES, n_edges=n_edges, wave=_each, per_file=_each,
                                     verify_bucket_bytes=verify._VERIFY_BUCKET_BYTES)
    return info["verify_buckets"]
