"""``curate run``: the one execution path, on Ray.

Phases (each resumable; a file's presence means it is complete, see ``curate.io_utils``)::

    parts      Ray tasks, one per partition, one per CPU in flight (models loaded once per worker process, which
               keeps its processor): ingest → license → langid → quality → decontaminate → tokenize
                                                                      work/parts/<key>.{docs,kept,tok,ledger,done}
    dedup      Ray tasks: exact + MinHash LSH across all sources      work/dedup/removed/f<i>.parquet
    mix        Ray tasks per partition and per (cell, hash range): token-exact selection; one for the interleave
                                                                      work/mix/{plan.json, shard_NNNNN.order.parquet}
    shards     Ray tasks, one per shard: each shards.format + lineage shards/<name>_NNNNN.{bin,idx,lineage.parquet,json}
                                                                      and shards/{olmo,datatrove,mds}/...
               with `validation:`, one task per member: validation/<member>_00000.{bin,idx,lineage.parquet,json}
    documents  Ray tasks, one per partition: final status per record documents/<key>.parquet
    finalize   driver: ledger.json (conservation checked), manifest.json, LICENSES.md, audit, the trainer
               configs (megatron_data_args.{txt,json}, olmo_mixture.yaml, mds_streams.yaml, shards/mds/index.json)

The driver only schedules work and merges small JSON files; it never holds documents or tokens.

Run directory safety (see ``curate.lock`` and the README's run-directory section):

- **lock**: the whole run holds ``RUN_DIR/.lock`` (``curate.lock.RunLock``); a second run on the directory is
  refused naming the owner, a dead owner's lock is taken over. ``--force`` cleaning and stale-temp cleanup
  happen only under it.
- **input identity**: each partition's done marker records its input (path, row-group range, and the file's
  size, mtime and xxh64 of its first and last 64 KiB, or an ``hf://`` dataset's revision). A resume compares
  them with the inputs now: a partition whose file changed (or whose number now names another file) is
  reprocessed, a partition that no longer exists is deleted, and in both cases everything downstream of the
  partitions (dedup, mix, shards, documents, ledger, manifest) is deleted and redone, so the result is byte for
  byte that of a fresh run on the new inputs. More generally, downstream outputs never survive while a
  partition still has to be processed.
- **repair**: a resume checks each finished shard's files against its ``.json`` marker (sizes; sha256 too with
  ``verify``) and rewrites a missing or damaged shard.
- **--force** deletes only a curate run's own files (``run.json`` must be there; see :func:`clean_run_dir`).
- **remix** (``reuse_from``, ``curate run --from OLD_RUN``): before the partitions phase, OLD_RUN's finished
  partitions and dedup are hard-linked in (``curate.remix``); everything above then applies unchanged.

Determinism: every output depends only on its inputs (partition contents, the recipe, the seed), never on
which worker ran it or in which order, so 1 or N workers give byte-identical shards, lineage and ledger.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from curate import __version__
from curate.errors import CurateError, LedgerError, ResumeError
from curate.io_utils import atomic_write_json, atomic_write_parquet, file_identity, read_json, sha256_file
from curate.layout import RunLayout
from curate.lock import LOCK_NAME, RunLock
from curate.ledger import Ledger
from curate.recipe import Recipe
from curate.sources.base import Partition
from curate.samples import write_run_samples
from curate.timings import PhaseTimer, stage_rows, write_stage_rows
from curate.pipeline import payload_for
from curate.raytasks import (PARTS_TASK_OPTIONS, RayStart, init_ray, remote_task, shutdown_ray, start_in_flight,
                             wait_warm, warm_this_node)
from curate.raytasks import get as _ray_get
from curate.partition import part_paths

log = logging.getLogger(__name__)

#: the top-level files curate itself writes; :func:`run_files` adds those of the registered shard formats and the
#: validation sets
RUN_FILES = ("run.json", "recipe.json", "ledger.json", "manifest.json", "LICENSES.md", "licenses.json", "audit.json",
             # the report's data and the report (curate.timings, curate.samples, curate.report)
             "stats.json", "samples.parquet", "scores.json", "report.html")


def run_files() -> tuple[str, ...]:
    """Every top-level file a run may write: :data:`RUN_FILES`, the trainer configs of every registered shard
    format (``run_files=`` of ``curate.shard_formats.register``, a plugin's too: those outside ``shards/``) and
    the validation sets' trainer files (``curate.validation.RUN_FILES``)."""
    from curate.shard_formats import WRITERS
    from curate.validation import RUN_FILES as VALIDATION_FILES

    formats = [f for cls in WRITERS.values() for f in cls.info.run_files if not f.startswith("shards/")]
    return tuple(dict.fromkeys((*RUN_FILES, *formats, *VALIDATION_FILES)))


@dataclass
class RunResult:
    run_dir: Path
    manifest: dict[str, Any]
    ledger: Ledger
    seconds: float
    #: the audit of the finished run, as the final report drew it (None when the report could not be drawn)
    audit: dict[str, Any] | None = None


# ---------------------------------------------------------------------------- run directory
def prepare_run_dir(recipe: Recipe, run_dir: Path, *, force: bool) -> bool:
    """Create or reuse ``run_dir``. Returns True when resuming. Refuses a foreign recipe unless ``force``."""
    layout = RunLayout(run_dir)
    run_json = layout.run_json
    fp = recipe.fingerprint()
    if run_json.exists():
        prev = read_json(run_json)
        if prev.get("fingerprint") == fp and not force:
            return True
        if not force:
            msg = (f"{run_dir} holds a run of a different recipe (fingerprint {prev.get('fingerprint', '?')[:12]}, "
                   f"this recipe {fp[:12]}); resuming would mix two recipes. Use another --out, or --force to "
                   "delete that run's outputs and start over")
            raise ResumeError(msg)
        clean_run_dir(run_dir)
    elif run_dir.exists() and any(p.name != LOCK_NAME for p in run_dir.iterdir()):
        # --force deletes a curate run's outputs, never a folder that holds no curate run (`--out ~ --force`)
        msg = (f"{run_dir} exists, is not empty and holds no curate run (no run.json); "
               f"{'--force deletes only the files of a curate run, so it refuses here too; ' if force else ''}"
               "choose an empty or new --out")
        raise ResumeError(msg)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_json, {"fingerprint": fp, "name": recipe.name, "curate_version": __version__,
                                 "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    atomic_write_json(layout.recipe_json, payload_for(recipe))
    return False


#: Names of the files curate writes in ``documents/`` and ``quarantine/`` (one per partition).
PART_TABLE = re.compile(r"p\d{6}\.parquet")


def shard_file_pattern(shard_name: str | None) -> re.Pattern:
    """Paths under ``shards/`` of the files of a run whose ``shards.name`` is ``shard_name`` (any name when None).

    A shard's lineage and ``.json`` marker, each registered format's files of a shard (``files=`` of
    ``curate.shard_formats.register``, e.g. ``olmo/<name>.npy``; a plugin's too) and the formats' run files
    under ``shards/`` (``mds/index.json``), as POSIX paths relative to ``shards/``.
    """
    from curate.shard_formats import WRITERS

    prefix = re.escape(shard_name) if shard_name else r"[^/]+"
    name = rf"{prefix}_\d{{5}}"
    alts = {rf"{name}\.(?:lineage\.parquet|json)"}
    for cls in WRITERS.values():
        alts.update(re.escape(t).replace(re.escape("{name}"), name) for t in cls.info.files)
        alts.update(re.escape(f.removeprefix("shards/")) for f in cls.info.run_files if f.startswith("shards/"))
    return re.compile("|".join(sorted(alts)))


def _previous_shard_name(run_dir: Path) -> str | None:
    try:
        return read_json(RunLayout(run_dir).recipe_json)["recipe"]["shards"]["name"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _matching(folder: Path, pattern: re.Pattern) -> list[Path]:
    """The files under ``folder`` whose path relative to it matches ``pattern``; symlinked folders not entered."""
    if not folder.is_dir() or folder.is_symlink():
        return []
    out = []
    for d, _dirs, names in os.walk(folder):  # followlinks=False: a symlinked folder is listed, never entered
        rel = Path(d).relative_to(folder)
        out += [Path(d) / n for n in names if pattern.fullmatch((rel / n).as_posix())]
    return out


def _remove_matching(folder: Path, pattern: re.Pattern, *, first: str | None = None) -> None:
    """Delete the files under ``folder`` whose path relative to it matches ``pattern``, those ending in ``first``
    first; then each folder that this left empty, ``folder`` too. Symlinked folders are not entered."""
    files = _matching(folder, pattern)
    files.sort(key=lambda f: (not (first and f.name.endswith(first)), f.as_posix()))
    for f in files:
        f.unlink()
    parents = {p for f in files for p in f.parents if p != folder and folder in p.parents}
    for d in sorted(parents, key=lambda p: len(p.parts), reverse=True):  # deepest first
        if not any(d.iterdir()):
            d.rmdir()
    if folder.is_dir() and not folder.is_symlink() and not any(folder.iterdir()):
        folder.rmdir()


def clean_run_dir(run_dir: Path) -> None:
    """Delete what a curate run wrote in ``run_dir``, identified by name, and nothing else (never outside it).

    Only a curate run directory (one with ``run.json``) is cleaned: first the temporary files
    (:func:`remove_stale_temps`), then ``work/`` (curate's scratch) whole; under ``shards/`` the files of every
    registered format named like the previous run's shards (:func:`shard_file_pattern` of its ``shards.name``,
    by ``recipe.json``: ``mix_00000.bin``, ``olmo/mix_00000.npy``, ...); in ``documents/`` and ``quarantine/``
    the ``pNNNNNN.parquet`` tables; the top-level files of :func:`run_files`; ``reports/`` when empty. A folder
    this leaves empty is removed (``shards/olmo/``); anything else, e.g. a user's ``documents/thesis.txt``, stays.
    """
    run_dir = run_dir.resolve()
    layout = RunLayout(run_dir)
    if not layout.run_json.is_file():
        msg = f"{run_dir} holds no curate run (no run.json): refusing to delete anything in it"
        raise ResumeError(msg)
    remove_stale_temps(run_dir)
    work = layout.work
    if work.is_dir() and not work.is_symlink():
        shutil.rmtree(work)
    _remove_matching(layout.shards_dir, shard_file_pattern(_previous_shard_name(run_dir)), first=".json")
    for d in (layout.documents_dir, layout.quarantine_dir):
        _remove_matching(d, PART_TABLE)
    _remove_matching(layout.validation_dir, _validation_files(), first=".json")
    _remove_matching(layout.reports_dir, re.compile(r"(?!)"))
    # run.json last: until it goes, a killed clean can be redone
    for name in run_files():
        if name != "run.json" and (run_dir / name).is_file():
            (run_dir / name).unlink()
    layout.run_json.unlink()


def _validation_files() -> re.Pattern:
    from curate.validation import FILE_PATTERN

    return FILE_PATTERN


def remove_stale_temps(run_dir: Path) -> int:
    """Delete the temporary files a killed run left in ``run_dir``; return how many.

    Every write goes to its temporary name (:func:`curate.io_utils.temp_path`, ``.<name>.<pid>.tmp``) and is
    renamed into place, so a process killed in between leaves its temporary file behind. Nothing reads one (a
    file counts only under its final name), but it would stay in ``shards/`` for good. Only one run uses a run
    directory at a time (the caller holds the run lock, see ``curate.lock``), so at start-up every ``*.tmp`` in
    curate's folders is stale (older curates' ``x.bin.tmp`` too). At the top level only the temporary names of
    :func:`run_files` are touched (and an older curate's ``<name>.tmp``).
    """
    run_dir = run_dir.resolve()
    layout = RunLayout(run_dir)
    stale = []
    for p in (layout.work, layout.shards_dir, layout.documents_dir, layout.quarantine_dir, layout.reports_dir,
              layout.validation_dir):
        if p.is_dir() and not p.is_symlink():
            stale += [f for f in p.rglob("*.tmp") if f.is_file()]
    stale += [f for name in run_files() for f in (*run_dir.glob(f".{name}.*.tmp"), run_dir / f"{name}.tmp")
              if f.is_file()]
    for f in stale:
        f.unlink()
    return len(stale)


# ---------------------------------------------------------------------------- input identity and invalidation
def notice(msg: str) -> None:
    """A one-line note on stderr about something a resume did on its own (shown even with ``--quiet``)."""
    print(f"curate run: note: {msg}", file=sys.stderr, flush=True)


def input_records(parts: list[Partition]) -> dict[str, dict]:
    """What each partition's done marker records about its input, by partition key (one stat and hash per file)."""
    from curate.recipe import HF_PREFIX

    from curate.sources import hf

    cache: dict[str, dict] = {}  # by file, or by dataset for the shards of an hf:// dataset
    out = {}
    for p in parts:
        is_hf = p.path.startswith(HF_PREFIX)
        key = hf.parse(p.path).base if is_hf else p.path
        if key not in cache:
            cache[key] = hf.revision(key) if is_hf else file_identity(p.path)
        out[p.key] = {"path": p.path, "row_groups": list(p.row_groups) if p.row_groups else None, **cache[key]}
    return out


def _why_changed(old: dict | None, new: dict) -> str:
    if not old:
        return "its marker records no input identity (an older curate wrote it)"
    if old.get("path") != new["path"] or old.get("row_groups") != new["row_groups"]:
        return f"it now reads {new['path']} (was {old.get('path')}): the set of input files changed"
    diff = [f"{k} {old.get(k)} -> {new[k]}" for k in ("size", "mtime_ns", "xxh64", "revision")
            if k in new and old.get(k) != new[k]]
    return f"{new['path']} changed since it was processed ({', '.join(diff)})"


def remove_downstream(run_dir: Path) -> bool:
    """Delete every output that depends on all partitions: dedup, mix, shards, documents and the summaries.

    The summaries go first (the run stops looking complete), then the done markers of the global steps, then
    their other files, so a kill in between leaves a state a resume handles the same way. Returns whether
    anything was there.
    """
    found = False
    layout = RunLayout(run_dir)
    for f in layout.summary_files:
        if f.is_file():
            f.unlink()
            found = True
    for marker in (layout.mix_plan, layout.dedup_done):
        if marker.is_file():
            marker.unlink()
            found = True
    for d in (layout.mix_dir, layout.dedup_dir):
        if d.is_dir():
            shutil.rmtree(d)
            found = True
    for folder, pattern in ((layout.shards_dir, shard_file_pattern(_previous_shard_name(run_dir))),
                            (layout.documents_dir, PART_TABLE), (layout.validation_dir, _validation_files())):
        found = found or bool(_matching(folder, pattern))
        _remove_matching(folder, pattern, first=".json")
    return found


def invalidate_changed_inputs(run_dir: Path, parts: list[Partition], inputs: dict[str, dict]) -> list[str]:
    """Forget the partitions whose input changed since they were processed; return one note per partition.

    A finished partition's marker must record the same input (path, row-group range, identity) as
    ``inputs``; work files of a partition key the plan no longer has are orphans. Either way the partition's
    files (``work/parts/<key>.*``, ``quarantine/<key>.parquet``, ``documents/<key>.parquet``) are deleted, and
    with them everything downstream (see :func:`remove_downstream`), since dedup and the mix read all
    partitions. Then, whenever a partition is still to be processed, downstream outputs are deleted too: they
    can only be left over from before an invalidation that a kill interrupted.
    """
    layout = RunLayout(run_dir)
    base = layout.parts_dir
    keys = {p.key for p in parts}
    notes, stale = [], []
    for p in parts:
        done = part_paths(run_dir, p)["done"]
        if not done.is_file():
            continue
        try:
            old = read_json(done).get("input")
        except ValueError:
            old = None
        new = json.loads(json.dumps(inputs[p.key]))
        if old != new:
            stale.append(p.key)
            notes.append(f"partition {p.key} is processed again: {_why_changed(old, new)}")
    orphans = sorted({f.name.split(".", 1)[0] for f in base.glob("p*.*")} - keys) if base.is_dir() else []
    if orphans:
        notes.append(f"{len(orphans)} partition(s) no longer in the plan (the set of input files changed): "
                     f"{', '.join(orphans[:5])}{' ...' if len(orphans) > 5 else ''} deleted")
    pending = any(not part_paths(run_dir, p)["done"].is_file() for p in parts)
    if stale or orphans or pending:
        if remove_downstream(run_dir) and not (stale or orphans):
            notes.append("outputs left from before an interrupted invalidation were deleted")
    for k in (*stale, *orphans):
        files = layout.part(k)
        if files.done.is_file():
            files.done.unlink()  # the marker first: a kill after this leaves a partition that is simply not done
        for f in base.glob(f"{k}.*"):
            f.unlink()
        for f in (files.quarantine, files.documents):
            if f.is_file():
                f.unlink()
    return notes


# ---------------------------------------------------------------------------- Ray
#: what the driver imports after the parts phase (dedup, mix, the report): loaded while Ray starts by
#: :func:`preload_driver_modules`. Not altair: the report's charts are kept templates (curate.chart_templates),
#: and altair is imported only to build one that is missing
LATE_MODULES = ("curate.dedup", "curate.mix", "curate.shards", "curate.shard_formats", "curate.report", "curate.audit",
                # ray.shutdown() imports it: 0.16 of its 0.37 s at the end of `curate run` (measured, cProfile)
                "ray.dag.compiled_dag_node")


def preload_driver_modules() -> None:
    """Import what the driver needs after the parts phase (dedup, mix, the report) in a background thread.

    Begun once the driver's own checks are done, while it waits for Ray's start: there the CPUs have room (Ray's
    processes start one after another), whereas during the parts phase these imports took about 0.9 CPU-s from
    the partition tasks (the driver's CPU in that phase 0.73-0.92 s before, 0.05 s after; 50 MB mixed corpus).
    After the parts phase they would sit on the critical path. An import error here is ignored: the real import
    raises it again where the module is used.
    """
    import threading

    def load() -> None:
        import importlib

        try:
            for name in LATE_MODULES:
                importlib.import_module(name)
        except Exception:  # noqa: BLE001, S110 - re-raised by the import that needs the module
            pass

    threading.Thread(target=load, name="curate-preload", daemon=True).start()


def _cpus(ray) -> int:
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def _ray_is_up() -> bool:
    import ray

    return ray.is_initialized()


# ---------------------------------------------------------------------------- phases
def decont_index(recipe: Recipe, run_dir: Path, parts: list[Partition]):
    """Build the eval-set index on the driver when the recipe decontaminates and a partition is left to do.

    Small (eval sets only: 12.4 MB for GSM8K + MATH + MMLU-STEM + HumanEval); its statistics go to
    ``work/decontaminate/index.json`` for the audit. Bad eval files fail here, before any partition task starts.
    """
    if recipe.decontaminate is None or all(part_paths(run_dir, p)["done"].exists() for p in parts):
        return None
    from curate.decont import recipe_index

    t0 = time.time()
    index = recipe_index(recipe)
    atomic_write_json(RunLayout(run_dir).decont_index,
                      {**index.stats, "build_s": round(time.time() - t0, 3)})
    return index


def tokenizer_decisions(recipe: Recipe) -> list[dict[str, Any]]:
    """Load the recipe's tokenizer in the driver, which runs its identity gate once for the run, and return the
    gate's decisions for the partition tasks (``curate.tokenizer_gate.adopt``: a worker then does not probe the
    same file again, 0.36 s per worker on GPT-NeoX). A tokenizer error is raised here, before any task starts."""
    from curate.tokenizer_gate import decisions
    from curate.tokenizers import load_tokenizer

    load_tokenizer(recipe.tokenizer, base_dir=recipe.base_dir)
    return decisions()


def run_parts(ray, recipe: Recipe, run_dir: Path, parts: list[Partition], progress,
              inputs: dict[str, dict] | None = None, decont=None,
              gate: list[dict[str, Any]] | None = None) -> float | None:
    """Process every unfinished partition; return the CPU seconds the workers reported (None: none ran).

    ``gate``: :func:`tokenizer_decisions` (the driver's, made while Ray started); None: every worker probes.
    """
    todo = [p for p in parts if not part_paths(run_dir, p)["done"].exists()]
    total_bytes = sum(p.nbytes for p in parts)
    done_bytes = sum(p.nbytes for p in parts if p not in todo)
    task = progress.add_task("parts", total=len(parts), completed=len(parts) - len(todo), unit="docs")
    if not todo:
        return None
    payload = payload_for(recipe)
    from curate.partition import process_partition

    fn = remote_task(process_partition, **PARTS_TASK_OPTIONS)
    wait_warm()
    n = min(len(todo), _cpus(ray))
    decont_refs = [ray.put(decont)] if decont is not None else []  # once per run, shared by every worker
    pending: dict[Any, Partition] = {}  # object ref → partition
    queue = list(todo)
    t0 = time.time()
    docs = 0
    cpu = 0.0
    # largest first keeps the tail short; the output does not depend on this order. At most one task per CPU is
    # in flight, so a finished one hands its CPU (and its warm worker, with the processor) to the next partition
    queue.sort(key=lambda p: -p.nbytes)
    try:
        while queue or pending:
            while queue and len(pending) < n:
                part = queue.pop(0)
                pending[fn.remote(payload, str(run_dir), decont_refs, part, (inputs or {}).get(part.key),
                                  gate)] = part
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                part = pending.pop(ref)
                summary = _ray_get(ref)
                docs += summary["records"]
                cpu += summary.get("cpu_s", 0.0)
                done_bytes += part.nbytes
                dt = max(time.time() - t0, 1e-6)
                progress.update(task, advance=1,
                                description=f"parts  {docs / dt:,.0f} docs/s  {done_bytes / dt / 1e6:,.1f} MB/s "
                                            f"({done_bytes / max(total_bytes, 1):.0%} of input)")
    finally:
        # also on failure: a run that raises must not leave partitions running on the cluster's CPUs
        for ref in pending:
            try:
                ray.cancel(ref)
            except Exception:  # noqa: BLE001, S110 - already finished or its node gone: nothing to stop
                pass
    return round(cpu, 3)


def run_dedup(ray, recipe: Recipe, run_dir: Path, parts: list[Partition], progress) -> None:
    layout = RunLayout(run_dir)
    out, done = layout.dedup_dir, layout.dedup_done
    task = progress.add_task("dedup", total=1)
    if recipe.dedup is None or done.exists():
        progress.update(task, completed=1)
        return
    from curate.dedup import find_duplicates

    files = [str(part_paths(run_dir, p)["kept"]) for p in parts]
    priority = {s: i for i, s in enumerate(recipe.dedup.keep_priority)}
    for s in recipe.sources:
        priority.setdefault(s, len(priority))
    summary = find_duplicates(files, cfg=recipe.dedup, priority=priority, out_dir=str(out))
    atomic_write_json(done, summary)
    progress.update(task, completed=1)


def run_mix(ray, recipe: Recipe, run_dir: Path, parts: list[Partition], progress) -> dict:
    plan_path = RunLayout(run_dir).mix_plan
    task = progress.add_task("mix", total=1)
    if not plan_path.exists():
        from curate.mix.task import mix

        wait_warm()  # a remix starts here: its first tasks take the workers warmed at Ray's start
        # the driver schedules the mix's bounded Ray tasks (curate.mix.task) and holds their summaries only
        mix(payload_for(recipe), str(run_dir), [p.pid for p in parts])
    progress.update(task, completed=1)
    return read_json(plan_path)


def shard_damage(run_dir: Path, entry: dict, *, verify: bool = False, shard_dir: Path | None = None) -> str | None:
    """What is wrong with a finished shard's files against its ``.json`` marker, or None when nothing is.

    Checks that every file of every format (``curate.shard_formats.shard_formats``) and the ``.lineage.parquet``
    exist with the sizes the marker records and, with ``verify``, that each format's files have its sha256
    (reads the whole shard). ``shard_dir``: the folder of the files (default ``run_dir/shards``).
    """
    from curate.shard_formats import shard_formats

    d = RunLayout(run_dir).shards_dir if shard_dir is None else Path(shard_dir)
    files = [(x["path"], x.get("bytes"), x.get("sha256")) for f in shard_formats(entry).values() for x in f["files"]]
    for rel, want, _ in [*files, (entry["lineage"], entry.get("lineage_bytes"), None)]:
        f = d / rel
        if not f.is_file():
            return f"{rel} is missing"
        if want is not None and f.stat().st_size != want:
            return f"{rel} is {f.stat().st_size:,} bytes, its marker says {want:,}"
    if verify:
        for rel, _, digest in files:
            if digest is not None and sha256_file(d / rel) != digest:
                return f"{rel} does not have the sha256 its marker records"
    return None


def run_shards(ray, recipe: Recipe, run_dir: Path, plan: dict, progress, *, verify: bool = False) -> list[dict]:
    from curate.mix.writer import shard_json_path, write_shard

    n = plan["n_shards"]
    task = progress.add_task("shards", total=n)
    remote = remote_task(write_shard)
    refs = []
    for i in range(n):
        marker = shard_json_path(run_dir, recipe, i)
        if marker.exists():
            damage = shard_damage(run_dir, read_json(marker), verify=verify)
            if damage is None:
                progress.update(task, advance=1)
                continue
            notice(f"shard {marker.stem} is rewritten: {damage}")
            for f in RunLayout(run_dir).summary_files[:2]:  # the run is no longer complete until the shard is back
                f.unlink(missing_ok=True)
            marker.unlink()
        refs.append(remote.remote(payload_for(recipe), str(run_dir), i))
    t0, toks = time.time(), 0
    while refs:
        ready, refs = ray.wait(refs, num_returns=1)
        info = _ray_get(ready[0])
        toks += info["tokens"]
        progress.update(task, advance=1, description=f"shards {toks / max(time.time() - t0, 1e-6):,.0f} tok/s")
    return [read_json(shard_json_path(run_dir, recipe, i)) for i in range(n)]


def run_documents(ray, recipe: Recipe, run_dir: Path, parts: list[Partition], progress) -> None:
    from curate.mix.documents import write_documents

    task = progress.add_task("documents", total=len(parts))
    remote = remote_task(write_documents)
    refs = []
    layout = RunLayout(run_dir)
    for p in parts:
        if layout.part(p.key).documents.exists():
            progress.update(task, advance=1)
            continue
        refs.append(remote.remote(str(run_dir), p.key, p.pid))
    while refs:
        ready, refs = ray.wait(refs, num_returns=1)
        _ray_get(ready[0])
        progress.update(task, advance=1)


def write_validation(run_dir: str | Path, recipe, out_dir: str | Path, *, ray=None, verify: bool = False,
                     progress=None) -> list[dict]:
    """Write the validation sets of ``run_dir``'s mix (``recipe``'s members) into ``out_dir``; return their entries.

    The entry point for a sweep: the carve depends on the members, the seed, the validation settings and the
    processed corpus, never on the weights, so several mixtures of one processed corpus share one set, written
    once into a shared folder. One Ray task per member (``ray``: the initialized ``ray`` module; a local Ray is
    started when None); a set whose ``.json`` entry and files (sizes, sha256 with ``verify``) are already
    there is kept, so a killed run resumes. Also writes ``components.parquet``.
    """
    from curate.validation import COMPONENTS, file_stem, member_settings, write_member_set

    if ray is None:
        ray = init_ray(None)
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    layout = RunLayout(run_dir)
    plan = read_json(layout.mix_plan)
    members = list((plan.get("validation") or {}).get("members") or {})
    if set(members) != set(member_settings(recipe)):
        msg = (f"{run_dir}'s mix carved validation sets for {sorted(members)}, the recipe asks for "
               f"{sorted(member_settings(recipe))}: rerun the mix with this recipe first")
        raise CurateError(msg)
    if not members:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    task = progress.add_task("validation", total=len(members)) if progress is not None else None
    remote = remote_task(write_member_set)
    refs = []
    for m in members:
        marker = out_dir / f"{file_stem(m)}.json"
        if marker.is_file():
            damage = shard_damage(run_dir, read_json(marker), verify=verify, shard_dir=out_dir)
            if damage is None:
                if task is not None:
                    progress.update(task, advance=1)
                continue
            notice(f"validation set {marker.stem} is rewritten: {damage}")
            if out_dir.resolve() == layout.validation_dir.resolve():  # the run is not complete until the set is back
                for f in layout.summary_files[:2]:
                    f.unlink(missing_ok=True)
            marker.unlink()
        refs.append(remote.remote(str(run_dir), m, str(out_dir)))
    while refs:
        ready, refs = ray.wait(refs, num_returns=1)
        _ray_get(ready[0])
        if task is not None:
            progress.update(task, advance=1)
    comp = layout.mix_validation_components
    if not (out_dir / COMPONENTS).is_file():
        atomic_write_parquet(out_dir / COMPONENTS, pq.read_table(comp))
    return [read_json(out_dir / f"{file_stem(m)}.json") for m in members]


# ---------------------------------------------------------------------------- finalize
def collect_ledger(run_dir: Path, parts: list[Partition]) -> Ledger:
    led = Ledger.read_many(part_paths(run_dir, p)["ledger"] for p in parts)
    for extra in ("dedup", "mix"):
        p = RunLayout(run_dir).step_ledger(extra)
        if p.exists():
            led.merge(Ledger.read(p))
    return led


def trusted_file_hashes(run_dir: Path, parts: list[Partition], shards: list[dict]) -> dict[str, dict]:
    """``{relpath: {"bytes", "sha256"}}`` of every file the audit trusts besides ``.bin``/``.idx``.

    Each shard's lineage, each partition's ``documents/`` and ``quarantine/`` table, and ``ledger.json``, so
    ``curate audit --verify`` can tell a forged or damaged one from the written one. Hashed by the driver in
    streaming 4 MiB reads (sha256 runs at about 1-2 GB/s a core; these tables hold no text).
    """
    layout = RunLayout(run_dir)
    files = [layout.shard_file(s["lineage"]) for s in shards]
    for p in parts:
        files += [layout.part(p.key).documents, layout.part(p.key).quarantine]
    files.append(layout.ledger)
    return {layout.rel(f): {"bytes": f.stat().st_size, "sha256": sha256_file(f)} for f in files if f.is_file()}
def _engines_used(run_dir: Path, parts: list[Partition], decided: dict | None) -> dict:
    """The encoder the gate chose (``decided``, from the mix plan) and how many partitions each library encoded."""
    used: dict[str, int] = {}
    for p in parts:
        eng = read_json(part_paths(run_dir, p)["done"]).get("tokenizer_engine", "unrecorded")
        used[eng] = used.get(eng, 0) + 1
    return {**(decided or {}), "partitions": dict(sorted(used.items()))}


def _stage_cpu(run_dir: Path, parts: list[Partition]) -> dict[str, float]:
    """CPU seconds per per-partition step, summed over the partitions' ``.done`` summaries."""
    out: dict[str, float] = {}
    for p in parts:
        for k, v in (read_json(part_paths(run_dir, p)["done"]).get("stage_cpu_s") or {}).items():
            out[k] = out.get(k, 0.0) + float(v)
    return out


def finalize(recipe: Recipe, run_dir: Path, parts: list[Partition], plan: dict, shards: list[dict],
             validation: list[dict] | None = None) -> tuple[dict, Ledger]:
    from curate.license_report import write_licenses_report
    from curate.shard_formats import write_run_files
    from curate.shards import rwkv_magic_prime

    led = collect_ledger(run_dir, parts)
    violations = led.conservation_violations()
    if violations:
        msg = "ledger conservation broken:\n  " + "\n  ".join(v["message"] for v in violations)
        raise LedgerError(msg)
    layout = RunLayout(run_dir)
    led.write(layout.ledger)
    total = sum(s["tokens"] for s in shards)
    manifest = {
        "name": recipe.name, "fingerprint": recipe.fingerprint(), "curate_version": __version__,
        "tokenizer": plan["tokenizer"], "vocab_size": plan["vocab_size"], "eos_id": plan["eos_id"],
        "dtype": plan["dtype"], "format": recipe.shards.format, "formats": list(recipe.shards.formats),
        "tokens": total,
        "sequences": sum(s["sequences"] for s in shards), "shards": shards,
        "mix": plan["members"], "rescaled": plan.get("rescaled"),
        "tokenizer_engine": _engines_used(run_dir, parts, plan.get("tokenizer_engine")),
    }
    if recipe.shards.ctx_len:
        try:
            manifest["rwkv"] = {"ctx_len": recipe.shards.ctx_len,
                                "magic_prime": rwkv_magic_prime(total, recipe.shards.ctx_len)}
        except ValueError as e:
            manifest["rwkv"] = {"ctx_len": recipe.shards.ctx_len, "magic_prime": None, "error": str(e)}
    manifest["files"] = trusted_file_hashes(run_dir, parts, shards)
    if validation:  # the held-out sets (curate.validation): their entries, and every file's size and sha256
        from curate.validation import trusted_files

        manifest["validation"] = {"sets": validation, "members": plan["validation"]["members"]}
        manifest["files"].update({r: {"bytes": (layout.root / r).stat().st_size,
                                      "sha256": sha256_file(layout.root / r)}
                                  for r in trusted_files(run_dir, validation)})
    # MDS's index.json and the trainers' blend configs come from the manifest, before it is written (its presence
    # marks the run complete)
    write_run_files(run_dir, manifest)
    atomic_write_json(layout.manifest, manifest)
    rows = []
    for s in shards:
        for r in s["by_license"]:
            rows.append(r)
    write_licenses_report(run_dir, pa.Table.from_pylist(rows, schema=pa.schema(
        [("source", pa.string()), ("subset", pa.string()), ("group", pa.string()), ("license", pa.string()),
         ("tokens", pa.int64())])), recipe)
    return manifest, led


# ---------------------------------------------------------------------------- entry point
def run(recipe: Recipe, *, out: str | None = None, ray_address: str | None = None, force: bool = False,
        num_cpus: int | None = None, quiet: bool = False, verify: bool = False,
        reuse_from: str | os.PathLike | None = None) -> RunResult:
    """Run ``recipe`` end to end on Ray and return the run's manifest and ledger.

    ``reuse_from``: a remix, taking that run's processed partitions and dedup (``curate.remix``); refused with
    a ``RemixError`` naming each processing key that differs.

    Rerunning into the same directory resumes: finished partitions and shards are skipped, unless a
    partition's input changed (it is redone, and everything after it) or a shard's files do not match its
    marker (it is rewritten; ``verify`` also compares sha256). The whole run holds the run-directory lock.
    """
    from curate.sources import plan_partitions

    from curate.pipeline import import_plugins, validate

    t0 = time.time()
    import_plugins(recipe)
    validate(recipe)  # the stages of every source build (once more, cheaply), whoever parsed the recipe
    run_dir = recipe.output_dir(out)
    parts = plan_partitions(recipe)  # validates globs again: a path emptied since `plan` is an error here
    inputs = input_records(parts)  # before the lock and before reading: a file changed later is noticed next time
    remix = None
    if reuse_from is not None:
        from curate.remix import check_remix

        remix = (Path(reuse_from), check_remix(recipe, Path(reuse_from), run_dir, parts, inputs))
    with RunLock(run_dir) as lock:
        if lock.took_over:
            notice(lock.took_over)
        return _run_locked(recipe, run_dir, parts, inputs, ray_address=ray_address, force=force,
                           num_cpus=num_cpus, quiet=quiet, verify=verify, t0=t0, remix=remix)


def _run_locked(recipe: Recipe, run_dir: Path, parts: list[Partition], inputs: dict[str, dict], *,
                ray_address: str | None, force: bool, num_cpus: int | None, quiet: bool, verify: bool,
                t0: float, remix: tuple[Path, dict] | None = None) -> RunResult:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    _last_report[str(run_dir)] = time.monotonic()  # the first mid-run report waits REPORT_REFRESH_S from here
    prepare_run_dir(recipe, run_dir, force=force)
    # Ray starts in the background (curate.raytasks.RayStart) while the driver links, checks and indexes; `curate
    # run` began it before it even read the recipe. The start brings up a worker process per CPU and a spare,
    # warm with the modules of the steps after the parts phase; the parts phase warms more at its tail (run_parts)
    starting = start_in_flight()  # `curate run` began it before reading the recipe (and ends it on an error)
    if starting is not None and starting.done() and _ray_is_up():
        starting = None  # an earlier run's start in this process (a sweep): Ray is simply up
    own = None
    if starting is None and not _ray_is_up():
        starting = own = RayStart(ray_address, num_cpus=num_cpus)
    elif starting is None:  # a caller's Ray (a test session, a notebook, a sweep): warm workers for the steps after
        import ray as ray_mod  # the parts phase, as RayStart warms them after a start of its own

        warm_this_node(ray_mod)
    try:
        remove_stale_temps(run_dir)
        from curate.remix import link_processed, record_run

        reused = link_processed(recipe, remix[0], run_dir, parts, inputs, remix[1]) if remix else None
        record_run(run_dir, recipe, reused)
        for note in invalidate_changed_inputs(run_dir, parts, inputs):
            notice(note)
        atomic_write_json(RunLayout(run_dir).partitions_json, [p.__dict__ for p in parts])
        decont = decont_index(recipe, run_dir, parts)
        gate = tokenizer_decisions(recipe)  # the tokenizer's identity gate, while Ray starts
    except BaseException:
        if own is not None:  # not left half started: Ray's agents would outlive this process by a minute
            shutdown_ray()
        raise
    timer = PhaseTimer(run_dir)
    preload_driver_modules()  # while Ray starts: see there
    with timer.phase("ray_start"):  # what is left of the start; 0 s when Ray was already up (a test session)
        ray = starting.result() if starting is not None else init_ray(ray_address, num_cpus=num_cpus)
    wait_warm()
    columns = [TextColumn("{task.description:<60}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, disable=quiet, transient=False) as progress:
        with timer.phase("parts") as ph:
            ph["worker_cpu_s"] = run_parts(ray, recipe, run_dir, parts, progress, inputs, decont, gate)
        refresh_report(run_dir, "parts")
        try:
            with timer.phase("dedup"):
                run_dedup(ray, recipe, run_dir, parts, progress)
            refresh_report(run_dir, "dedup")
            with timer.phase("mix"):
                plan = run_mix(ray, recipe, run_dir, parts, progress)
        except CurateError:
            # keep what the filters recorded, so `curate audit` can say where a source went missing
            collect_ledger(run_dir, parts).write(RunLayout(run_dir).ledger)
            refresh_report(run_dir, "failed", final=True)
            raise
        with timer.phase("shards"):
            shards = run_shards(ray, recipe, run_dir, plan, progress, verify=verify)

            validation = write_validation(run_dir, recipe, RunLayout(run_dir).validation_dir, ray=ray, verify=verify,
                                          progress=progress)
        refresh_report(run_dir, "shards")
        with timer.phase("documents"):
            run_documents(ray, recipe, run_dir, parts, progress)
    with timer.phase("finalize"):
        manifest, led = finalize(recipe, run_dir, parts, plan, shards, validation)
        write_run_samples(run_dir)
    write_stage_rows(run_dir, stage_rows(led, _stage_cpu(run_dir, parts)))
    with timer.phase("report"):
        result = refresh_report(run_dir, "finalize", final=True)
    return RunResult(run_dir=run_dir, manifest=manifest, ledger=led, seconds=time.time() - t0, audit=result)


#: a mid-run refresh of report.html is skipped when the last one is more recent than this (seconds): on a
#: long run every phase's end still refreshes the page, on a short one only the final report is drawn
#: (drawing it costs 3-5 s, most of a small run's time)
REPORT_REFRESH_S = 30.0
_last_report: dict[str, float] = {}


def refresh_report(run_dir: Path, phase: str, *, final: bool = False) -> dict[str, Any] | None:
    """Rewrite ``RUN_DIR/report.html`` from the audit of the run so far; a report failure never fails the run.

    A mid-run refresh happens when the previous one (or the start of this process's run) is at least
    :data:`REPORT_REFRESH_S` old; ``final`` (the end of the run, or its failure) always draws. Returns the audit
    the page was drawn from (``curate run`` prints that one instead of auditing again), None when not drawn.
    """
    key = str(run_dir)
    now = time.monotonic()
    if not final and now - _last_report.setdefault(key, now) < REPORT_REFRESH_S:
        return None
    try:
        from curate.report import run_report

        return run_report(run_dir)
    except Exception as e:  # noqa: BLE001 - the report is a view; the run's outputs do not depend on it
        log.warning("curate run: report.html not refreshed after phase %s: %s: %s", phase, type(e).__name__, e)
        return None
    finally:
        _last_report[key] = time.monotonic()


from curate.pipeline import load_run_recipe  # noqa: E402 - re-exported: the run's recipe, as its workers see it


__all__ = ["RunResult", "clean_run_dir", "init_ray", "input_records", "invalidate_changed_inputs", "load_run_recipe",
           "prepare_run_dir", "remove_downstream", "remove_stale_temps", "run", "run_files", "shard_damage", "shutdown_ray"]
