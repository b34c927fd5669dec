"""``python -m bench fixed``: the fixed costs of a small run, each one measured (issue 17).

What a small run pays besides its documents, on the demo corpus (``curate.demo``, 4.4 MB, 3,408 records):

- ``run``: ``curate run recipes/demo.yaml`` end to end in a child process (``bench.pipeline.run_curate``),
  ``--repeats`` times; per run the interpreter's imports, Ray's own start-up (reported apart: the target is
  what follows it) and every phase of ``RUN_DIR/stats.json`` (parts, dedup, mix, shards, documents, finalize,
  report). Ray starts inside the run, in the background while the driver reads and checks the recipe, as
  ``curate run`` starts it (``ray_in_run``); ``ray_start_s`` is what the run waited for it, ``run_s`` the rest of
  the run's wall time (with the driver's checks that ran while Ray started) and ``after_ray_s`` the time from the
  moment Ray's start returned to the run's end; target <= 5 s.
- ``parts``: in a child process without Ray, what one partition worker pays before its first document: importing
  the per-partition processor, and each source's stage set (the models: fastText lid.176, the quality rules) and
  the tokenizer loading, timed one by one.
- ``ray``: in a child process, ``ray.init`` (2 CPUs), one wave of 2 tasks on fresh worker processes, warming 2
  workers with the modules of a run's tasks (``curate.raytasks.warm_workers`` and ``wait_warm``: what a run waits
  for before its first partition task) and the same wave on the warm workers.

Writes ``bench/results/fixed.json``; ``bench/report.py`` renders it. The machine must be otherwise idle.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import pipeline as bp

REPO = Path(__file__).resolve().parent.parent
TARGET_AFTER_RAY_S = 5.0


def demo_recipe(tmp: Path) -> Path:
    """The demo corpus generated under ``tmp`` and recipes/demo.yaml pointed at it."""
    from curate.demo import generate

    generate(tmp / "demo_data")
    text = (REPO / "recipes" / "demo.yaml").read_text()
    rec = tmp / "recipes" / "demo.yaml"
    rec.parent.mkdir(parents=True, exist_ok=True)
    rec.write_text(text)  # same relative paths: ../demo_data and ../runs/demo under tmp
    return rec


def _parts_child(recipe: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    import curate.partition as w
    from curate.pipeline import load_recipe, payload_for

    out: dict[str, Any] = {"import_processor_s": round(time.perf_counter() - t0, 3)}
    rec = load_recipe(recipe)
    proc = w.PartitionProcessor(payload_for(rec), tempfile.mkdtemp(), num_threads=1)
    t = time.perf_counter()
    _ = proc.recipe
    out["recipe_s"] = round(time.perf_counter() - t, 3)
    out["stages_s"] = {}
    for src in rec.sources:
        t = time.perf_counter()
        proc.stages(src)
        out["stages_s"][src] = round(time.perf_counter() - t, 3)
    t = time.perf_counter()
    _ = proc.tokenizer
    out["tokenizer_s"] = round(time.perf_counter() - t, 3)
    return out


def _ray_child() -> dict[str, Any]:
    import ray

    from curate import runner

    out: dict[str, Any] = {}
    t = time.perf_counter()
    runner.init_ray(None, num_cpus=2)
    out["ray_init_s"] = round(time.perf_counter() - t, 3)

    from curate.raytasks import wait_warm, warm_workers

    def wave(fn: Any) -> float:
        t = time.perf_counter()
        ray.get([ray.remote(num_cpus=1)(fn).remote() for _ in range(2)])
        return round(time.perf_counter() - t, 3)

    out["task_wave_fresh_s"] = wave(_dedup_import)
    t = time.perf_counter()
    warm_workers(2)
    wait_warm(timeout=120)
    out["warm_workers_s"] = round(time.perf_counter() - t, 3)
    out["task_wave_warm_s"] = wave(_dedup_import)
    ray.shutdown()
    return out


def _dedup_import() -> int:
    import curate.dedup  # noqa: F401 - the first module a global step imports

    return os.getpid()


def _child(kind: str, arg: str | None) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter (no import is warm), return its JSON."""
    code = ("import json,sys; from bench import bench_fixed as b; "
            f"print(json.dumps(b._{kind}_child({'sys.argv[1]' if arg else ''})))")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.run([sys.executable, "-c", code, *([arg] if arg else [])], capture_output=True, text=True,
                       env=env, check=True, cwd=REPO)
    return json.loads(p.stdout.strip().splitlines()[-1])


def bench_fixed(*, repeats: int = 3, cores: int = 2) -> dict[str, Any]:
    out: dict[str, Any] = {"machine": bp.machine(), "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                           "cores": cores, "load_before": os.getloadavg(), "target_after_ray_s": TARGET_AFTER_RAY_S}
    with tempfile.TemporaryDirectory() as tmp:
        rec = demo_recipe(Path(tmp))
        runs = []
        for i in range(repeats):
            # Ray starts inside the run, in the background while the driver reads and checks, as `curate run` does
            r = bp.run_curate(rec, cores=cores, work=Path(tmp) / "work", name=f"demo{i}", ray_in_run=True)
            stats = json.loads((Path(tmp) / "work" / f"demo{i}_run" / "stats.json").read_text())
            r["stats_phases"] = {k: v["wall_s"] for k, v in stats["phases"].items()}
            # from the moment Ray's start returned to the run's end (the driver's checks overlap the start)
            r["after_ray_s"] = r["after_ray_s"] if r.get("after_ray_s") is not None else r["run_s"]
            runs.append({k: r[k] for k in ("wall_s", "import_s", "ray_start_s", "run_s", "after_ray_s",
                                           "stats_phases", "tokens")})
        out["runs"] = runs
        out["after_ray_median_s"] = statistics.median(r["after_ray_s"] for r in runs)
        out["parts"] = _child("parts", str(rec))
    out["ray"] = _child("ray", None)
    out["load_after"] = os.getloadavg()
    return out
