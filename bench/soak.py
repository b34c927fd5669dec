"""Soak run (issue 10): the demo recipe over a large generated corpus, with the memory of every process sampled.

What it does:

1. *Corpus.* :func:`curate.demo.generate` is called ``ceil(input_mb / mb_per_chunk)`` times with seeds
   ``seed, seed+1, ...`` into ``bench/corpus/soak-<N>mb-s<seed>/c<k>/`` (git-ignored), in ``--workers`` processes.
   Distinct seeds give distinct documents (each chunk still plants its own duplicates, junk and foreign
   pages), so the run does real work at every size. ``input_mb`` counts the **input files' bytes on disk**
   (zstd Parquet); the text they hold is ~2.4x larger (``text_mb`` in the results, from the ledger). A corpus
   that is already there with the same parameters is reused.
2. *Run.* ``recipes/demo.yaml``'s policies, pointed at those files, with ``budget_tokens`` scaled with the
   corpus (``--tokens-per-scale`` per unit of demo scale, ~80% of what the filters leave of the scarcest
   source) and shards of ``--shard-tokens``. ``curate run --num-cpus <workers>`` runs as a child process in its
   own session with a private ``RAY_TMPDIR``, so the Ray it starts is its own and dies with it.
3. *Memory.* Every ``--sample-s`` seconds (default 1) the child's process tree is read with psutil and each
   process's RSS is put in one class: ``driver`` (the ``curate run`` process), ``workers`` (Ray worker and
   actor processes, ``ray::*``) or ``daemons`` (raylet, GCS, agents). Peaks are kept per class (largest single
   process and largest sum), plus the whole time series (for the bounded-memory check: the workers' RSS in the
   last third of the run against the first third).
4. *Audit.* :func:`curate.audit.audit` with ``verify=True`` (sha256 of every shard) on the finished run.

Results are merged into ``bench/results/soak.json`` (one entry per input size; a rerun at the same size
replaces its entry). Exit code 0 when the run finished, the audit passed and the ledger balanced.

Run::

    python -m bench.soak [--input-mb 420] [--workers 2] [--mb-per-chunk 8] [--keep-run] [--out FILE]

Results: ``bench/results/soak.json``, rendered in docs/BENCHMARKS.md ("Soak"). On the 2-core development
machine at 1024 MB of Parquet (2.6 GB of text, 2.14M records, 1,536 partitions) the corpus took 13 minutes to
generate and the run 13 minutes; the audit (``--verify``) passed and the ledger balanced. The workers' RSS
stayed flat (~1.3 GB for both actors) through the parts phase; the global steps, whose memory is per
document, raised the largest worker to 1.7 GB RSS (a shard writer, 0.76 GB without its memory-mapped ``.tok``
pages) and the mix task to 1.2 GB.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import yaml

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "bench" / "corpus"
RESULTS = REPO / "bench" / "results" / "soak.json"
#: Parquet bytes curate.demo.generate writes per unit of ``scale`` (measured: 3.27 MB at scale 2, seed 5).
MB_PER_SCALE = 1.63
SOURCES = ("the-stack", "culturax", "gutenberg", "wikipedia", "refinedweb", "math")


# ---------------------------------------------------------------------------- corpus
def _generate_chunk(args: tuple[str, int, float]) -> int:
    from curate.demo import generate

    out, seed, scale = args
    generate(out, seed=seed, scale=scale)
    return seed


def build_corpus(input_mb: float, *, seed: int, workers: int, mb_per_chunk: float) -> tuple[Path, dict]:
    """Generate (or reuse) the soak corpus; return its folder and its ``corpus.json`` facts."""
    chunks = max(1, math.ceil(input_mb / mb_per_chunk))
    scale = mb_per_chunk / MB_PER_SCALE
    root = CORPUS / f"soak-{input_mb:g}mb-s{seed}"
    facts_path = root / "corpus.json"
    params = {"chunks": chunks, "scale_per_chunk": scale, "seed": seed}
    if facts_path.is_file():
        facts = json.loads(facts_path.read_text())
        if facts.get("params") == params:
            return root, facts
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    t0 = time.time()
    jobs = [(str(root / f"c{k:04d}"), seed + k, scale) for k in range(chunks)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for done, _ in enumerate(pool.map(_generate_chunk, jobs), 1):
            print(f"\rgenerating: {done}/{chunks} chunks", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    files = sorted(root.glob("c*/*/*.parquet"))
    facts = {"params": params, "files": len(files), "bytes": sum(f.stat().st_size for f in files),
             "total_scale": chunks * scale, "generate_s": round(time.time() - t0, 1)}
    facts_path.write_text(json.dumps(facts, indent=1))
    return root, facts


def write_recipe(root: Path, facts: dict, *, tokens_per_scale: int, shard_tokens: int) -> Path:
    """The demo recipe over the soak corpus, its budget scaled with the corpus."""
    d = yaml.safe_load((REPO / "recipes" / "demo.yaml").read_text())
    for name, s in d["sources"].items():
        s["paths"] = [str(root / "c*" / name / "*.parquet")]
    d["name"] = "soak"
    d["budget_tokens"] = int(tokens_per_scale * facts["total_scale"])
    d["shards"] = {"format": "megatron", "max_tokens": shard_tokens}
    d.pop("output", None)
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    return path


# ---------------------------------------------------------------------------- memory sampling
class RssSampler(threading.Thread):
    """Sample the RSS of a process tree every ``period`` seconds, by class (driver, workers, daemons)."""

    def __init__(self, root_pid: int, *, period: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.root_pid, self.period = root_pid, period
        self.stop = threading.Event()
        self.series: list[list[float]] = []  # [t, driver, workers_sum, daemons_sum, n_workers]
        self.peak = {"driver": 0, "worker_max": 0, "workers_sum": 0, "daemons_sum": 0, "total": 0}
        self.by_task: dict[str, int] = {}  # Ray worker process title (what it runs) -> peak RSS
        self.by_task_anon: dict[str, int] = {}  # the same, RSS minus file-backed and shared pages
        self.t0 = time.time()

    def sample(self) -> None:
        try:
            root = psutil.Process(self.root_pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return
        driver = workers = daemons = worker_max = n_workers = 0
        for p in procs:
            try:
                mi = p.memory_info()
                rss = mi.rss
                title = (p.cmdline() or [""])[0]
            except psutil.Error:
                continue
            if p.pid == self.root_pid:
                driver = rss
            elif title.startswith("ray::"):
                workers += rss
                worker_max = max(worker_max, rss)
                n_workers += 1
                task = title[5:].split()[0] if title[5:].strip() else "?"
                self.by_task[task] = max(self.by_task.get(task, 0), rss)
                # without file-backed pages (memory-mapped .tok files, shared libraries): what the OOM killer sees
                anon = rss - getattr(mi, "shared", 0)
                self.by_task_anon[task] = max(self.by_task_anon.get(task, 0), anon)
            else:
                daemons += rss
        pk = self.peak
        pk["driver"] = max(pk["driver"], driver)
        pk["worker_max"] = max(pk["worker_max"], worker_max)
        pk["workers_sum"] = max(pk["workers_sum"], workers)
        pk["daemons_sum"] = max(pk["daemons_sum"], daemons)
        pk["total"] = max(pk["total"], driver + workers + daemons)
        self.series.append([round(time.time() - self.t0, 1), driver, workers, daemons, n_workers])

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(self.period)


def growth(series: list[list[float]]) -> dict[str, Any]:
    """Peak workers' RSS in the first and last third of the samples (equal means memory did not grow)."""
    busy = [s for s in series if s[4] > 0]
    if len(busy) < 6:
        return {"first_third_mb": None, "last_third_mb": None}
    k = len(busy) // 3
    return {"first_third_mb": round(max(s[2] for s in busy[:k]) / 2**20, 1),
            "last_third_mb": round(max(s[2] for s in busy[-k:]) / 2**20, 1)}


# ---------------------------------------------------------------------------- the run
def soak(input_mb: float, *, workers: int = 2, seed: int = 0, mb_per_chunk: float = 8.0,
         tokens_per_scale: int = 200_000, shard_tokens: int = 5_000_000, sample_s: float = 1.0,
         keep_run: bool = False, timeout_s: float = 6 * 3600) -> dict[str, Any]:
    """Generate the corpus, run ``curate run`` on it with memory sampling, audit it; return the results."""
    from curate import audit as audit_mod
    from curate.ledger import Ledger

    root, facts = build_corpus(input_mb, seed=seed, workers=workers, mb_per_chunk=mb_per_chunk)
    recipe = write_recipe(root, facts, tokens_per_scale=tokens_per_scale, shard_tokens=shard_tokens)
    run_dir = CORPUS / "_soak_runs" / root.name
    shutil.rmtree(run_dir, ignore_errors=True)
    ray_tmp = Path(tempfile.mkdtemp(prefix="crsoak", dir="/tmp"))
    env = dict(os.environ, RAY_TMPDIR=str(ray_tmp), HF_HUB_OFFLINE="1", RAY_USAGE_STATS_ENABLED="0")
    env.pop("RAY_ADDRESS", None)
    log = run_dir.parent / f"{root.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    t0 = time.time()
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "curate.cli", "run", str(recipe), "--out", str(run_dir),
                                 "--num-cpus", str(workers), "--quiet", "--no-audit"], env=env, cwd=REPO,
                                start_new_session=True, stdout=fh, stderr=subprocess.STDOUT)
    sampler = RssSampler(proc.pid, period=sample_s)
    sampler.start()
    try:
        rc = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        rc = None
    finally:
        sampler.stop.set()
        sampler.join()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # nothing of the run may outlive it
        proc.wait()
        shutil.rmtree(ray_tmp, ignore_errors=True)
    wall = time.time() - t0
    mb = 2**20
    result: dict[str, Any] = {
        "input_mb": input_mb, "input_files": facts["files"], "input_bytes": facts["bytes"],
        "generate_s": facts["generate_s"], "workers": workers, "exit_code": rc, "wall_s": round(wall, 1),
        "peak_rss_mb": {k: round(v / mb, 1) for k, v in sampler.peak.items()},
        "peak_rss_by_task_mb": {k: round(v / mb, 1) for k, v in sorted(sampler.by_task.items())},
        "peak_anon_by_task_mb": {k: round(v / mb, 1) for k, v in sorted(sampler.by_task_anon.items())},
        "workers_rss_growth": growth(sampler.series), "samples": len(sampler.series),
        "machine": {"cpus": os.cpu_count(), "load_avg_before": [round(x, 2) for x in load_before],
                    "load_avg_after": [round(x, 2) for x in os.getloadavg()], "python": platform.python_version()},
        "log": str(log),
    }
    if rc == 0:
        led = Ledger.read(run_dir / "ledger.json")
        ingest = led.by_source("ingest")
        text_bytes = sum(c.bytes_in for c in ingest.values())
        manifest = json.loads((run_dir / "manifest.json").read_text())
        audit = audit_mod.audit(run_dir, verify=True)
        result.update({
            "text_mb": round(text_bytes / mb, 1), "records": sum(c.docs_in for c in ingest.values()),
            "partitions": len(json.loads((run_dir / "work" / "partitions.json").read_text())),
            "tokens_written": manifest["tokens"], "shards": len(manifest["shards"]),
            "budget_tokens": int(tokens_per_scale * facts["total_scale"]),
            "ledger_balanced": not led.conservation_violations(),
            "audit_passed": audit_mod.exit_code(audit) == 0 and not audit["violations"],
            "audit_violations": [v.get("message", str(v)) for v in audit["violations"]][:10],
            "input_mb_per_s": round(facts["bytes"] / mb / wall, 3), "text_mb_per_s": round(text_bytes / mb / wall, 3),
        })
    else:
        result["log_tail"] = log.read_text(errors="replace")[-3000:]
    result["rss_series"] = {"columns": ["t_s", "driver", "workers_sum", "daemons_sum", "n_workers"],
                            "every": max(1, len(sampler.series) // 300),
                            "rows": sampler.series[:: max(1, len(sampler.series) // 300)]}
    if not keep_run:
        shutil.rmtree(run_dir, ignore_errors=True)
    return result


def save(result: dict[str, Any], out: Path) -> None:
    """Merge ``result`` into ``out`` (one entry per input size)."""
    data = json.loads(out.read_text()) if out.is_file() else {"runs": []}
    data["runs"] = [r for r in data["runs"] if r.get("input_mb") != result["input_mb"]] + [result]
    data["runs"].sort(key=lambda r: r["input_mb"])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    ap.add_argument("--input-mb", type=float, default=420.0,
                    help="input files' bytes on disk (default 420: ~1.1 GB of text)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mb-per-chunk", type=float, default=8.0, help="Parquet MB per generator call")
    ap.add_argument("--tokens-per-scale", type=int, default=200_000)
    ap.add_argument("--shard-tokens", type=int, default=5_000_000)
    ap.add_argument("--sample-s", type=float, default=1.0)
    ap.add_argument("--keep-run", action="store_true", help="keep the run directory under bench/corpus/_soak_runs")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    result = soak(args.input_mb, workers=args.workers, seed=args.seed, mb_per_chunk=args.mb_per_chunk,
                  tokens_per_scale=args.tokens_per_scale, shard_tokens=args.shard_tokens, sample_s=args.sample_s,
                  keep_run=args.keep_run)
    save(result, args.out)
    brief = {k: v for k, v in result.items() if k not in ("rss_series", "log_tail")}
    print(json.dumps(brief, indent=1))
    ok = result["exit_code"] == 0 and result.get("audit_passed") and result.get("ledger_balanced")
    if not ok and "log_tail" in result:
        print(result["log_tail"], file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
