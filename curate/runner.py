"""``curate run``: the one execution path, on Ray.

Phases (each resumable; a file's presence means it is complete, see ``curate.io_utils``)::

    parts      Ray actor pool (one actor per CPU, models loaded once per actor): each partition goes
               ingest → license → langid → quality → tokenize        work/parts/<key>.{docs,kept,tok,ledger,done}
    dedup      Ray tasks: exact + MinHash LSH across all sources      work/dedup/removed.parquet
    mix        one Ray task: token-proportional selection and interleaving over the small ``kept`` tables
                                                                      work/mix/{plan.json, shard_NNNNN.order.parquet}
    shards     Ray tasks, one per shard: .bin/.idx + lineage         shards/<name>_NNNNN.{bin,idx,lineage.parquet,json}
    documents  Ray tasks, one per partition: final status per record documents/<key>.parquet
    finalize   driver: ledger.json (conservation checked), manifest.json, LICENSES.md, audit

The driver only schedules work and merges small JSON files; it never holds documents or tokens.
Determinism: every output depends only on its inputs (partition contents, the recipe, the seed), never on
which worker ran it or in which order, so 1 or N workers give byte-identical shards, lineage and ledger.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from curate import __version__
from curate.errors import CurateError, LedgerError, ResumeError
from curate.io_utils import atomic_write_json, read_json
from curate.ledger import Ledger
from curate.recipe import Recipe
from curate.sources.base import Partition
from curate.samples import write_run_samples
from curate.timings import PhaseTimer
from curate.worker import PartitionProcessor, part_paths, payload_for, recipe_from_payload

log = logging.getLogger(__name__)

RUN_SUBDIRS = ("work", "shards", "documents", "quarantine", "reports")
RUN_FILES = ("run.json", "recipe.json", "ledger.json", "manifest.json", "LICENSES.md", "licenses.json", "audit.json",
             "stats.json", "samples.parquet", "scores.json", "report.html")


@dataclass
class RunResult:
    run_dir: Path
    manifest: dict[str, Any]
    ledger: Ledger
    seconds: float


# ---------------------------------------------------------------------------- run directory
def prepare_run_dir(recipe: Recipe, run_dir: Path, *, force: bool) -> bool:
    """Create or reuse ``run_dir``. Returns True when resuming. Refuses a foreign recipe unless ``force``."""
    run_json = run_dir / "run.json"
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
    elif run_dir.exists() and any(run_dir.iterdir()):
        if not force:
            msg = (f"{run_dir} exists, is not empty and is not a curate run directory (no run.json); "
                   "choose an empty or new --out")
            raise ResumeError(msg)
        # --force on a foreign folder still deletes only what curate writes
        clean_run_dir(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_json, {"fingerprint": fp, "name": recipe.name, "curate_version": __version__,
                                 "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    atomic_write_json(run_dir / "recipe.json", payload_for(recipe))
    return False


def clean_run_dir(run_dir: Path) -> None:
    """Delete what a curate run writes, and nothing else (never outside ``run_dir``)."""
    run_dir = run_dir.resolve()
    for d in RUN_SUBDIRS:
        p = (run_dir / d).resolve()
        if p.parent == run_dir and p.is_dir():
            shutil.rmtree(p)
    for f in RUN_FILES:
        p = run_dir / f
        if p.is_file():
            p.unlink()


def remove_stale_temps(run_dir: Path) -> int:
    """Delete the temporary files a killed run left in ``run_dir``; return how many.

    Every write goes to a temporary name (``*.tmp``) and is renamed into place, so a process killed in between
    leaves its temporary file behind. Nothing reads one (a file counts only under its final name), but it would
    stay in ``shards/`` for good. Only one run uses a run directory at a time, so at start-up every temporary
    file in curate's folders is stale. At the top level only curate's own names are touched.
    """
    run_dir = run_dir.resolve()
    stale = []
    for d in RUN_SUBDIRS:
        p = run_dir / d
        if p.is_dir() and not p.is_symlink():
            stale += [f for f in p.rglob("*.tmp") if f.is_file()]
    stale += [f for name in RUN_FILES for f in (*run_dir.glob(f".{name}.*.tmp"), run_dir / f"{name}.tmp")
              if f.is_file()]
    for f in stale:
        f.unlink()
    return len(stale)


# ---------------------------------------------------------------------------- Ray
def init_ray(ray_address: str | None, *, num_cpus: int | None = None):
    import ray

    if ray.is_initialized():
        return ray
    env_vars = {"TOKENIZERS_PARALLELISM": "false"}
    # workers see the same Hugging Face settings as the driver (offline mode, a local mirror of Hub datasets)
    for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HOME", "CURATE_HF_MIRROR", "CURATE_FILTERS"):
        if k in os.environ:
            env_vars[k] = os.environ[k]
    env = {"env_vars": env_vars}
    if ray_address:
        ray.init(address=ray_address, runtime_env=env, log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, runtime_env=env,
                 log_to_driver=False)
    return ray


def _unwrap(e: Exception) -> Exception:
    """Return the CurateError inside a Ray task error, so users see our message, not a remote traceback."""
    cause = getattr(e, "cause", None)
    while cause is not None and not isinstance(cause, CurateError) and getattr(cause, "cause", None) is not None:
        cause = cause.cause
    return cause if isinstance(cause, CurateError) else e


def _ray_get(ray, refs):
    try:
        return ray.get(refs)
    except Exception as e:  # noqa: BLE001 - re-raised with the user-facing cause
        inner = _unwrap(e)
        if inner is not e:
            raise inner from None
        raise


def _cpus(ray) -> int:
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


# ---------------------------------------------------------------------------- phases
def run_parts(ray, recipe: Recipe, run_dir: Path, parts: list[Partition], progress) -> float | None:
    """Process every unfinished partition; return the CPU seconds the workers reported (None: none ran)."""
    todo = [p for p in parts if not part_paths(run_dir, p)["done"].exists()]
    total_bytes = sum(p.nbytes for p in parts)
    done_bytes = sum(p.nbytes for p in parts if p not in todo)
    task = progress.add_task("parts", total=len(parts), completed=len(parts) - len(todo), unit="docs")
    if not todo:
        return None
    payload = payload_for(recipe)

    @ray.remote(num_cpus=1, max_restarts=-1, max_task_retries=-1)
    class PartitionActor:
        def __init__(self, payload: dict, run_dir: str) -> None:
            self.proc = PartitionProcessor(payload, run_dir, num_threads=1)

        def process(self, part: Partition) -> dict:
            return self.proc.process(part)

    n = min(len(todo), _cpus(ray))
    actors = [PartitionActor.remote(payload, str(run_dir)) for _ in range(n)]
    pending: dict[Any, tuple[Partition, Any]] = {}  # object ref → (partition, actor)
    queue = list(todo)
    t0 = time.time()
    docs = 0
    cpu = 0.0
    # largest first keeps the tail short; the output does not depend on this order
    queue.sort(key=lambda p: -p.nbytes)
    free = list(actors)
    try:
        while queue or pending:
            while queue and free:
                a = free.pop()
                part = queue.pop(0)
                pending[a.process.remote(part)] = (part, a)
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                part, a = pending.pop(ref)
                summary = _ray_get(ray, ref)
                if queue:
                    free.append(a)
                else:
                    # No work left for it: release its CPU now. An actor restarting after its node was lost needs a
                    # free CPU to be placed; an idle actor holding the last one would leave the run hanging.
                    ray.kill(a)
                docs += summary["records"]
                cpu += summary.get("cpu_s", 0.0)
                done_bytes += part.nbytes
                dt = max(time.time() - t0, 1e-6)
                progress.update(task, advance=1,
                                description=f"parts  {docs / dt:,.0f} docs/s  {done_bytes / dt / 1e6:,.1f} MB/s "
                                            f"({done_bytes / max(total_bytes, 1):.0%} of input)")
    finally:
        # also on failure: a run that raises must not leave actors holding the cluster's CPUs
        for a in actors:
            ray.kill(a)
    return round(cpu, 3)


def run_dedup(ray, recipe: Recipe, run_dir: Path, parts: list[Partition], progress) -> None:
    out = run_dir / "work" / "dedup"
    done = out / "done.json"
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
    plan_path = run_dir / "work" / "mix" / "plan.json"
    task = progress.add_task("mix", total=1)
    if not plan_path.exists():
        from curate.mix_task import mix

        remote = ray.remote(num_cpus=1, max_retries=3)(mix)
        _ray_get(ray, remote.remote(payload_for(recipe), str(run_dir), [p.pid for p in parts]))
    progress.update(task, completed=1)
    return read_json(plan_path)


def run_shards(ray, recipe: Recipe, run_dir: Path, plan: dict, progress) -> list[dict]:
    from curate.mix_task import shard_json_path, write_shard

    n = plan["n_shards"]
    task = progress.add_task("shards", total=n)
    remote = ray.remote(num_cpus=1, max_retries=3)(write_shard)
    refs = []
    for i in range(n):
        if shard_json_path(run_dir, recipe, i).exists():
            progress.update(task, advance=1)
            continue
        refs.append(remote.remote(payload_for(recipe), str(run_dir), i))
    t0, toks = time.time(), 0
    while refs:
        ready, refs = ray.wait(refs, num_returns=1)
        info = _ray_get(ray, ready[0])
        toks += info["tokens"]
        progress.update(task, advance=1, description=f"shards {toks / max(time.time() - t0, 1e-6):,.0f} tok/s")
    return [read_json(shard_json_path(run_dir, recipe, i)) for i in range(n)]


def run_documents(ray, recipe: Recipe, run_dir: Path, parts: list[Partition], progress) -> None:
    from curate.mix_task import write_documents

    task = progress.add_task("documents", total=len(parts))
    remote = ray.remote(num_cpus=1, max_retries=3)(write_documents)
    refs = []
    for p in parts:
        if (run_dir / "documents" / f"{p.key}.parquet").exists():
            progress.update(task, advance=1)
            continue
        refs.append(remote.remote(str(run_dir), p.key, p.pid))
    while refs:
        ready, refs = ray.wait(refs, num_returns=1)
        _ray_get(ray, ready[0])
        progress.update(task, advance=1)


# ---------------------------------------------------------------------------- finalize
def collect_ledger(run_dir: Path, parts: list[Partition]) -> Ledger:
    led = Ledger.read_many(part_paths(run_dir, p)["ledger"] for p in parts)
    for extra in ("dedup", "mix"):
        p = run_dir / "work" / extra / "ledger.json"
        if p.exists():
            led.merge(Ledger.read(p))
    return led


def finalize(recipe: Recipe, run_dir: Path, parts: list[Partition], plan: dict, shards: list[dict]) -> tuple[dict, Ledger]:
    from curate.shards import rwkv_magic_prime
    from curate.licenses import write_licenses_report

    led = collect_ledger(run_dir, parts)
    violations = led.conservation_violations()
    if violations:
        msg = "ledger conservation broken:\n  " + "\n  ".join(v["message"] for v in violations)
        raise LedgerError(msg)
    led.write(run_dir / "ledger.json")
    total = sum(s["tokens"] for s in shards)
    manifest = {
        "name": recipe.name, "fingerprint": recipe.fingerprint(), "curate_version": __version__,
        "tokenizer": plan["tokenizer"], "vocab_size": plan["vocab_size"], "eos_id": plan["eos_id"],
        "dtype": plan["dtype"], "format": recipe.shards.format, "tokens": total,
        "sequences": sum(s["sequences"] for s in shards), "shards": shards,
        "mix": plan["members"], "rescaled": plan.get("rescaled"),
    }
    if recipe.shards.ctx_len:
        try:
            manifest["rwkv"] = {"ctx_len": recipe.shards.ctx_len,
                                "magic_prime": rwkv_magic_prime(total, recipe.shards.ctx_len)}
        except ValueError as e:
            manifest["rwkv"] = {"ctx_len": recipe.shards.ctx_len, "magic_prime": None, "error": str(e)}
    atomic_write_json(run_dir / "manifest.json", manifest)
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
        num_cpus: int | None = None, quiet: bool = False) -> RunResult:
    """Run ``recipe`` end to end on Ray and return the run's manifest and ledger.

    Rerunning into the same directory resumes: finished partitions and shards are skipped.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from curate.sources import plan_partitions

    from curate.worker import import_plugins

    t0 = time.time()
    import_plugins(recipe)
    run_dir = recipe.output_dir(out)
    parts = plan_partitions(recipe)  # validates globs again: a path emptied since `plan` is an error here
    prepare_run_dir(recipe, run_dir, force=force)
    remove_stale_temps(run_dir)
    atomic_write_json(run_dir / "work" / "partitions.json", [p.__dict__ for p in parts])
    ray = init_ray(ray_address, num_cpus=num_cpus)
    columns = [TextColumn("{task.description:<60}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    timer = PhaseTimer(run_dir)
    with Progress(*columns, disable=quiet, transient=False) as progress:
        with timer.phase("parts") as ph:
            ph["worker_cpu_s"] = run_parts(ray, recipe, run_dir, parts, progress)
        refresh_report(run_dir, "parts")
        try:
            with timer.phase("dedup"):
                run_dedup(ray, recipe, run_dir, parts, progress)
            refresh_report(run_dir, "dedup")
            with timer.phase("mix"):
                plan = run_mix(ray, recipe, run_dir, parts, progress)
        except CurateError:
            # keep what the filters recorded, so `curate audit` can say where a source went missing
            collect_ledger(run_dir, parts).write(run_dir / "ledger.json")
            refresh_report(run_dir, "failed")
            raise
        with timer.phase("shards"):
            shards = run_shards(ray, recipe, run_dir, plan, progress)
        refresh_report(run_dir, "shards")
        with timer.phase("documents"):
            run_documents(ray, recipe, run_dir, parts, progress)
    with timer.phase("finalize"):
        manifest, led = finalize(recipe, run_dir, parts, plan, shards)
        write_run_samples(run_dir)
    refresh_report(run_dir, "finalize")
    return RunResult(run_dir=run_dir, manifest=manifest, ledger=led, seconds=time.time() - t0)


def refresh_report(run_dir: Path, phase: str) -> None:
    """Rewrite ``RUN_DIR/report.html`` from the audit of the run so far; a report failure never fails the run."""
    try:
        from curate.report import write_run_report

        write_run_report(run_dir)
    except Exception as e:  # noqa: BLE001 - the report is a view; the run's outputs do not depend on it
        log.warning("curate run: report.html not refreshed after phase %s: %s: %s", phase, type(e).__name__, e)


def load_run_recipe(run_dir: Path) -> Recipe:
    return recipe_from_payload(read_json(run_dir / "recipe.json"))


__all__ = ["RunResult", "clean_run_dir", "load_run_recipe", "prepare_run_dir", "remove_stale_temps", "run"]
