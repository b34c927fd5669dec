"""``python -m bench all|pipeline|stages|memory|scaling|profile|scale|report|smoke``: the benchmark suite.

Every command writes raw JSON to ``bench/results/`` (or ``--results``), and ``report`` (run at the end of
every command except ``smoke``'s own temporary run) renders ``docs/BENCHMARKS.md`` from those files:

=========== =====================================================================================================
command     what it measures (defaults fit ``make bench`` in < 30 min on a 2-core machine)
=========== =====================================================================================================
pipeline    curate vs datatrove end to end, GPT-NeoX tokenizer on both sides, mixed and prose corpora
            (``--size-mb``, default 50 and 200); curate alone with RWKV World on the mixed corpus (``--rwkv-mb``,
            default 500).  ``pipeline.json``
stages      the existing stage benches (ingest, langid, quality, dedup, decontaminate, tokenize) at small settings, each in a
            subprocess with a time limit; their own JSON files plus ``stages.json`` (status, seconds)
scaling     curate (RWKV World) at ``--sizes`` (default 100, 250, 500 MB, 2 cores) and at the smallest size
            with 1 core: seconds per MB and 1 vs 2 worker speed-up.  ``scaling.json``
memory      peak RSS of the driver, Ray workers and Ray daemons at ``--memory-sizes`` (default 100, 500,
            1000 MB); runs already made in the same invocation are reused.  ``memory.json``
profile     pyinstrument over one partition of the parts phase (the slowest) in process.  ``profile.json``
soak        the demo recipe over a generated corpus of ``--soak-mb`` MB of Parquet input (default 420, ~1.1 GB of
            text), 2 workers, every process's RSS sampled, audited with ``--verify``; not part of ``all`` (about
            an hour on a 2-core machine, most of it generating the corpus; see ``bench/soak.py``).  ``soak.json``
fixed       the fixed costs of a small run on the demo corpus: ``curate run`` 3 times (Ray start apart, every
            phase), a partition worker's imports and model loads, Ray's worker warming and task fan-out, cold
            and warm.  ``fixed.json``
scale       peak RSS of every process kind (driver, each Ray task and actor method) and wall time at
            ``--scale-docs`` tiny documents (default 1M, 4M, 16M; 3 real sentences each, ``bench/bench_scale.py``):
            issue #16's growth target; not part of ``all`` (about an hour).  ``scale.json``
report      docs/BENCHMARKS.md from the JSON files
smoke       the whole harness at ~2 MB in a temporary folder (the test suite runs this)
all         stages, pipeline, scaling, memory, profile, fixed, report
=========== =====================================================================================================
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import pipeline as bp

REPO = Path(__file__).resolve().parent.parent
#: What ``make bench`` (``python -m bench all``) measures; sized to finish in < 30 min on the 2-core machine.
DEFAULTS: dict[str, Any] = {"size_mb": [50, 200], "rwkv_mb": 500, "remix_mb": 1000, "sizes": [100, 250, 500], "memory_sizes": [100, 500, 1000]}
RESULTS = REPO / "bench" / "results"
DOC = REPO / "docs" / "BENCHMARKS.md"

# (name, argv after `python -m`, time limit s, stdout file or None)
STAGE_BENCHES: list[tuple[str, list[str], int, str | None]] = [
    ("ingest", ["bench.bench_ingest", "--scale", "2", "--repeat", "2", "--json", "{out}/ingest_bench.json"], 300,
     None),
    ("langid", ["bench.bench_langid", "--repeats", "3", "--out", "{out}"], 300, None),
    ("quality", ["bench.bench_quality", "--docs", "300", "--repeats", "2", "--out", "{out}"], 400, None),
    ("dedup", ["bench.bench_dedup", "--docs", "5000", "--partitions", "4", "--datasketch-docs", "500",
               "--repeats", "2", "--out", "{out}"], 500, None),
    ("decontaminate", ["bench.bench_decontaminate", "--repeats", "2", "--out", "{out}"], 600, None),
    ("tokenize_rwkv", ["bench.bench_tokenize", "--tokenizer", "rwkv-world", "--threads", "1", "--repeats", "2",
                       "--limit-mb", "20"], 300, "tokenize_rwkv_bench.json"),
    ("tokenize_neox", ["bench.bench_tokenize", "--tokenizer", str(bp.NEOX), "--threads", "1", "--repeats", "2",
                       "--limit-mb", "5"], 300, "tokenize_neox_bench.json"),
]


def _load_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def _save(results: Path, name: str, data: Any) -> None:
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{name}.json").write_text(json.dumps(data, indent=2))


def cmd_stages(results: Path, *, only: list[str] | None = None) -> dict[str, Any]:
    """Run the stage benches (subprocesses, time-limited); record exit status and seconds of each."""
    status: dict[str, Any] = {}
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for name, argv, limit, stdout_file in STAGE_BENCHES:
        if only and name not in only:
            continue
        args = [a.replace("{out}", str(results)) for a in argv]
        t0 = time.perf_counter()
        try:
            p = subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=env, capture_output=True, text=True,
                               timeout=limit, check=False)
            rc, out, err = p.returncode, p.stdout, p.stderr
        except subprocess.TimeoutExpired as e:
            rc, out, err = "timeout", (e.stdout or b"").decode(errors="replace"), f"over {limit} s"
        secs = round(time.perf_counter() - t0, 1)
        if stdout_file and rc == 0:
            (results / stdout_file).write_text(out)
        status[name] = {"cmd": "python -m " + " ".join(args), "rc": rc, "seconds": secs,
                        "stderr_tail": (err or "")[-1500:] if rc != 0 else ""}
        print(f"[stages] {name}: rc={rc} {secs}s", flush=True)
    old = json.loads((results / "stages.json").read_text()) if (results / "stages.json").exists() else {}
    old.update(status)
    _save(results, "stages", old)
    return status


def cmd_pipeline(results: Path, runs: CurateRuns, *, size_mb: list[float], rwkv_mb: float, cores: int,
                 root: Path | None = None) -> list[dict[str, Any]]:
    """curate vs datatrove on the mixed and prose corpora at each of ``size_mb`` (NeoX both sides), then curate
    with RWKV World on the mixed corpus at ``rwkv_mb`` (shared with ``scaling``/``memory`` when the size
    matches)."""
    out = []
    for mb in size_mb:
        for variant in ("mixed", "prose"):
            print(f"[pipeline] {variant} {mb} MB curate vs datatrove", flush=True)
            out.append(bp.bench(variant, mb, cores=cores, tokenizer=bp.NEOX, root=root))
    out.append(runs.get("mixed", rwkv_mb, cores))
    _save(results, "pipeline", {"machine": bp.machine(), "runs": out})
    return out


class CurateRuns:
    """curate-only runs with the RWKV World tokenizer keyed by (variant, size, cores): ``pipeline``'s RWKV row,
    ``scaling`` and ``memory`` share them (RWKV World, because with it curate's own costs are what is measured;
    with GPT-NeoX the shared tokenizer is most of the time, see the pipeline rows)."""

    def __init__(self, root: Path | None = None) -> None:
        self.cache: dict[tuple[str, float, int], dict[str, Any]] = {}
        self.root = root

    def get(self, variant: str, size_mb: float, cores: int) -> dict[str, Any]:
        key = (variant, float(size_mb), cores)
        if key not in self.cache:
            print(f"[curate] {variant} {size_mb} MB rwkv-world, {cores} core(s)", flush=True)
            self.cache[key] = bp.bench(variant, size_mb, cores=cores, tokenizer="rwkv-world", systems=("curate",),
                                       root=self.root, mix_memory=True)
        return self.cache[key]


def _series_row(r: dict[str, Any]) -> dict[str, Any]:
    c = r["curate"]
    return {"variant": r["variant"], "size_mb": r["size_mb"], "input_mb": r["input_mb"], "cores": r["cores"],
            "docs": r["corpus"]["docs"], "wall_s": c["wall_s"], "ray_start_s": c["ray_start_s"],
            "run_s": c["run_s"], "s_per_mb": round(c["run_s"] / r["input_mb"], 3), "mb_s_core": c["mb_s_core"],
            "phases_s": c["phases_s"], "memory": c["memory"], "mix_task": c.get("mix_task"), "load": [r["load_before"], r["load_after"]],
            "date": r["date"]}


def cmd_scaling(results: Path, runs: CurateRuns, *, sizes: list[float], cores: int) -> dict[str, Any]:
    """Seconds per MB at ``sizes`` (``cores`` cores) and 1 vs ``cores`` cores at the smallest size."""
    series = [_series_row(runs.get("mixed", s, cores)) for s in sizes]
    mid = sorted(sizes)[0]
    one = _series_row(runs.get("mixed", mid, 1))
    many = next(x for x in series if x["size_mb"] == mid)
    out = {"machine": bp.machine(), "sizes": series, "workers": {"1": one, str(cores): many},
           "speedup": round(one["run_s"] / many["run_s"], 2)}
    _save(results, "scaling", out)
    return out


def cmd_memory(results: Path, runs: CurateRuns, *, sizes: list[float], cores: int,
               append: bool = False) -> dict[str, Any]:
    """Peak RSS per process kind at ``sizes``; the growth per document between the smallest and largest.

    With ``append``, the rows of the existing ``memory.json`` at other sizes are kept (each row carries its
    own date and load), so a large size can be added without rerunning the others."""
    rows = [_series_row(runs.get("mixed", s, cores)) for s in sizes]
    old = _load_json(results / "memory.json") if append else None
    if old:
        rows += [r for r in old.get("rows", []) if float(r["size_mb"]) not in {float(s) for s in sizes}]
    rows.sort(key=lambda r: r["size_mb"])
    lo, hi = rows[0], rows[-1]
    grow = {}
    if len(rows) > 1 and hi["docs"] > lo["docs"]:
        for k in ("driver", "ray_worker", "total"):
            a, b = lo["memory"]["max_one_mb" if k != "total" else "sum_mb"].get(k, 0), \
                hi["memory"]["max_one_mb" if k != "total" else "sum_mb"].get(k, 0)
            grow[k] = round((b - a) * 1e6 / (hi["docs"] - lo["docs"]), 1)
    out = {"machine": bp.machine(), "rows": rows, "bytes_per_doc_growth": grow}
    _save(results, "memory", out)
    return out


def cmd_profile(results: Path, *, size_mb: float = 100, root: Path | None = None) -> dict[str, Any]:
    """Profile the parts phase (ingest → ... → sign) on the largest partition of each source, in process."""
    out = bp.profile_parts("mixed", size_mb, tokenizer="rwkv-world", root=root)
    _save(results, "profile", out)
    return out


def cmd_report(results: Path, doc: Path) -> None:
    from bench import report

    report.write(results, doc)
    print(f"[report] {doc}", flush=True)


def cmd_smoke(results: Path | None = None, *, size_mb: float = 1) -> dict[str, Any]:
    """The harness end to end at ~``size_mb`` MB in a temporary folder: corpus, both systems, report."""
    with tempfile.TemporaryDirectory(prefix="bench_smoke_") as tmp:
        t = Path(tmp)
        res = results or t / "results"
        # one curate run, no calibrations: the bracketed order is bench.pipeline.compare's, tested on its own
        r = bp.bench("mixed", size_mb, cores=2, tokenizer=bp.NEOX, root=t / "corpus", work=t / "work",
                     bracket=False)
        _save(res, "pipeline", {"machine": bp.machine(), "runs": [r]})
        cmd_report(res, t / "BENCHMARKS.md")
        text = (t / "BENCHMARKS.md").read_text()
        return {"run": r, "report_chars": len(text), "report": text}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    ap.add_argument("command", nargs="+", choices=["all", "pipeline", "stages", "memory", "scaling", "profile",
                                                   "soak", "remix", "fixed", "scale", "report", "smoke"],
                    help="one or more commands; scaling and memory share curate runs when given together")
    ap.add_argument("--size-mb", type=float, nargs="+", default=DEFAULTS["size_mb"],
                    help="pipeline: curate vs datatrove corpus sizes (MB of text)")
    ap.add_argument("--remix-mb", type=float, default=DEFAULTS["remix_mb"],
                    help="remix: corpus size of the full run and its remix (MB of text)")
    ap.add_argument("--rwkv-mb", type=float, default=DEFAULTS["rwkv_mb"],
                    help="curate end to end with RWKV World: corpus size (MB of text)")
    ap.add_argument("--sizes", type=float, nargs="+", default=DEFAULTS["sizes"], help="scaling sizes (MB)")
    ap.add_argument("--append", action="store_true",
                    help="memory: keep the existing memory.json rows at other sizes (add e.g. a 4 GB row)")
    ap.add_argument("--memory-sizes", type=float, nargs="+", default=DEFAULTS["memory_sizes"],
                    help="memory sizes (MB)")
    ap.add_argument("--scale-docs", type=int, nargs="+", default=[1_000_000, 4_000_000, 16_000_000],
                    help="scale: corpus sizes in documents (tiny documents of 3 real sentences)")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--soak-mb", type=float, default=420, help="soak: Parquet MB of generated input")
    ap.add_argument("--only", nargs="*", help="stages: run only these benches")
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--doc", type=Path, default=DOC)
    args = ap.parse_args(argv)
    res = args.results
    t0 = time.perf_counter()
    cmds = set(args.command)
    if "all" in cmds:
        cmds |= {"stages", "pipeline", "scaling", "memory", "profile", "fixed"}
    if "smoke" in cmds:
        out = cmd_smoke()
        r = out["run"]
        print(json.dumps({"input_mb": r["input_mb"], "curate_mb_s_core": r["curate"]["mb_s_core"],
                          "datatrove_mb_s_core": r["datatrove"]["mb_s_core"], "ratio": r.get("ratio"),
                          "report_chars": out["report_chars"]}, indent=2))
        return 0
    runs = CurateRuns()
    if "stages" in cmds:
        cmd_stages(res, only=args.only)
    if "pipeline" in cmds:
        cmd_pipeline(res, runs, size_mb=args.size_mb, rwkv_mb=args.rwkv_mb, cores=args.cores)
    if "scaling" in cmds:
        cmd_scaling(res, runs, sizes=args.sizes, cores=args.cores)
    if "memory" in cmds:
        cmd_memory(res, runs, sizes=args.memory_sizes, cores=args.cores, append=args.append)
    if "profile" in cmds:
        cmd_profile(res)
    if "remix" in cmds:
        from bench.bench_remix import bench_remix

        r = bench_remix(args.remix_mb, cores=args.cores)
        _save(res, "remix", r)
        print(f"[remix] {args.remix_mb} MB: full {r['full']['wall_s']:.1f} s, remix {r['remix']['wall_s']:.1f} s "
              f"({r['ratio_wall']:.1%} of the full run; load {r['load_before'][0]:.1f})", flush=True)
    if "fixed" in cmds:
        from bench.bench_fixed import bench_fixed

        r = bench_fixed(cores=args.cores)
        _save(res, "fixed", r)
        print(f"[fixed] demo corpus: {r['after_ray_median_s']:.1f} s after Ray start (median of "
              f"{len(r['runs'])}; load {r['load_before'][0]:.1f})", flush=True)
    if "scale" in cmds:
        from bench.bench_scale import bench_scale

        r = bench_scale(args.scale_docs, cores=args.cores)
        _save(res, "scale", r)
        print(f"[scale] largest process but the partition tasks grows {r['largest_growth']} per "
              f"{r['doc_ratio']}x documents (target <= 1.3: {'met' if r['target_met'] else 'NOT met'}); "
              f"wall {r['wall_ratio']}", flush=True)
    if "soak" in cmds:
        from bench import soak

        r = soak.soak(args.soak_mb, workers=args.cores)
        soak.save(r, res / "soak.json")
        print(f"[soak] {args.soak_mb} MB: exit {r['exit_code']}, audit passed {r.get('audit_passed')}", flush=True)
    cmd_report(res, args.doc)
    print(f"[bench] {' '.join(args.command)} done in {time.perf_counter() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
