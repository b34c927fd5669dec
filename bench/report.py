"""Render ``docs/BENCHMARKS.md`` from the raw results in ``bench/results/*.json``.

Inputs (each optional; a missing file gives a "not measured" line, never an invented number):

================================ ======================================================================
``pipeline.json``                :func:`bench.pipeline.bench` runs (curate vs datatrove; curate RWKV World)
``scaling.json``, ``memory.json``  ``python -m bench scaling|memory``
``profile.json``                 :func:`bench.pipeline.profile_parts`
``stages.json``                  exit status of each stage bench; their own ``*_bench.json`` files
``decontaminate_bench.json``     ``python -m bench.bench_decontaminate`` (the stage's cost, index memory)
``analysis.md``                  hand-written interpretation of the numbers (kept next to the raw data,
                                 included verbatim so the text and the numbers are versioned together)
================================ ======================================================================

Ratios are the claims; absolute times depend on the machine and its load, which every table states.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TARGET_RATIO = 10.0
TARGET_RWKV = 2.0


def _load(results: Path, name: str) -> Any:
    p = results / name
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError:
        return None


def _f(x: Any, nd: int = 2) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:,.{nd}f}"
    return f"{x:,}" if isinstance(x, int) else str(x)


def _machine(m: dict[str, Any] | None) -> list[str]:
    if not m:
        return ["Machine: not recorded.", ""]
    v = m.get("versions", {})
    return [
        f"- CPU: {m.get('cpu')} — `nproc` = {m.get('nproc')}",
        f"- Python {m.get('python')} on {m.get('platform')}",
        "- versions: " + ", ".join(f"{k} {x}" for k, x in v.items() if x),
        "- `free -h`:", "", "```", m.get("free_h", ""), "```", ""]


def _load_str(r: dict[str, Any]) -> str:
    a, b = r.get("load_before"), r.get("load_after")
    return f"{a[0]:.1f} → {b[0]:.1f}" if a and b else "?"


def _systems(r: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """``(label, result)`` of every run of one comparison: each curate run (``curate 1 (before)`` ... when there
    are several), then datatrove's."""
    runs = r.get("curate_runs") or ([r["curate"]] if "curate" in r else [])
    out = [(f"curate {i + 1} ({c['side']})" if len(runs) > 1 and "side" in c else "curate", c)
           for i, c in enumerate(runs)]
    return out + ([("datatrove", r["datatrove"])] if "datatrove" in r else [])


def _pipeline(p: dict[str, Any] | None) -> list[str]:
    out = ["## Full pipeline: curate vs datatrove", ""]
    if not p:
        return [*out, "Not measured (run `python -m bench pipeline`).", ""]
    out += [
        "Input MB = UTF-8 text of the corpus (`bench/corpus.py`). *MB/s/core (wall)* = input MB / wall seconds / "
        "cores, Ray start-up excluded for curate (shown separately); *MB per CPU-s* = input MB / user+system CPU "
        "seconds summed over every process of the run (psutil), which a busy shared machine disturbs much less "
        "than wall time. Both sides: 2 workers, the same files, the same policies, the same tokenizer file.", "",
        "| corpus | input MB | tokenizer | system | wall s | Ray start s | MB/s/core (wall) | MB per CPU-s | "
        "peak RSS MB (all processes) | load (1 min) |",
        "|---|---:|---|---|---:|---:|---:|---:|---:|---|"]
    for r in p["runs"]:
        for label, s in _systems(r):
            out.append(
                f"| {r['variant']} | {r['input_mb']:.1f} | {r['tokenizer']} | {label} | {s['wall_s']:.1f} | "
                f"{_f(s.get('ray_start_s'), 1)} | {s['mb_s_core']:.3f} | {_f(s.get('mb_per_cpu_s'), 3)} | "
                f"{s['memory']['sum_mb'].get('total', 0):,.0f} | {_load_str(r)} |")
    out += ["", "Ratios. Each cell runs: a calibration (`bench.pipeline.calibrate`: a fixed CPU workload on every "
            "core, the median of 3 repetitions of ~1 s), curate twice, a calibration, datatrove, a calibration, "
            "curate twice again, a calibration. curate's seconds are the median of its runs, half before and half "
            "after datatrove's (a curate run is 10-15x shorter, so one run alone samples the machine's speed over "
            "seconds); *calibrated* divides each run's seconds by the mean of the calibrations around its group "
            "first; *drift* is the slowest calibration of the cell over the fastest. A target is met only when the "
            "wall ratio and the calibrated ratio both meet it.", "",
            "| corpus | input MB | curate s (runs) | datatrove s | calibrations s | drift | curate / datatrove "
            "(wall) | calibrated | curate / datatrove (CPU) | target |",
            "|---|---:|---|---:|---|---:|---:|---:|---:|---|"]
    for r in p["runs"]:
        if "ratio" in r:
            cal = r.get("ratio_calibrated")
            ok = "met" if r["ratio"] >= TARGET_RATIO and (cal is None or cal >= TARGET_RATIO) else "**not met**"
            runs = r.get("curate_runs") or [r["curate"]]
            c_runs = " / ".join(f"{x['wall_s'] - x['ray_start_s'] - x['import_s']:.2f}" for x in runs)
            cals = " → ".join(f"{c['mean_s']:.2f}" for c in r.get("calibration", [])) or "–"
            drift = f"{100 * r['drift']:.0f} %" if "drift" in r else "–"
            d_s = r.get("datatrove_s", r["datatrove"]["wall_s"] - r["datatrove"]["import_s"])
            out.append(f"| {r['variant']} | {r['input_mb']:.1f} | {c_runs} | {d_s:.1f} | {cals} | {drift} | "
                       f"{r['ratio']:.2f}x | {_f(cal)}{'x' if cal else ''} | {_f(r.get('ratio_cpu'))}x | "
                       f">= {TARGET_RATIO:g}x: {ok} |")
    rwkv = [r for r in p["runs"] if r["tokenizer"] == "rwkv-world" and "curate" in r]
    for r in rwkv:
        c = r["curate"]
        ok = "met" if c["mb_s_core"] >= TARGET_RWKV else "**not met**"
        incl = c.get("mb_s_core_incl_ray")
        out += ["", f"curate end to end with RWKV World on the {r['variant']} corpus ({r['input_mb']:.1f} MB): "
                    f"**{c['mb_s_core']:.3f} MB/s/core** wall after Ray start-up ({_f(incl, 3)} including the "
                    f"{c.get('ray_start_s', 0):.1f} s start-up; {c.get('mb_per_cpu_s', 0):.3f} MB per CPU-second over "
                    f"every process); target >= {TARGET_RWKV:g} MB/s/core: {ok}."]
    out += ["", "Per-phase seconds (curate) and per-stage seconds (datatrove):", ""]
    for r in p["runs"]:
        for label, s in _systems(r):
            parts = ", ".join(f"{k} {v:.1f}" for k, v in s["phases_s" if "phases_s" in s else "stages_s"].items())
            out.append(f"- {r['variant']} / {r['tokenizer']} / {label}: {parts}")
    return [*out, ""]


def _stages(results: Path) -> list[str]:
    out = ["## Stages against the raw libraries", "",
           "Each row is an existing stage bench (its own Markdown/JSON in `bench/results/` has the details).", "",
           "| stage | curate | baseline | curate speed / baseline speed | bench |", "|---|---|---|---:|---|"]
    st = _load(results, "stages.json") or {}
    ing = _load(results, "ingest_bench.json")
    if ing:
        pq_rows = [r for r in ing if r["encoding"] == "parquet"] or ing
        cur = sum(r["text_mb"] for r in pq_rows) / sum(r["curate_s"] for r in pq_rows)
        raw = sum(r["text_mb"] for r in pq_rows) / sum(r["pyarrow_s"] for r in pq_rows)
        out.append(f"| ingest (Parquet, native schema → DOC_SCHEMA) | {cur:,.0f} MB/s/core | pyarrow "
                   f"`read_table` {raw:,.0f} MB/s/core | {cur / raw:.2f} | `bench.bench_ingest` |")
    lid = _load(results, "langid_bench.json")
    if lid:
        out.append(f"| langid (`LangIdStage`) | {lid['stage_docs_per_s']:,} docs/CPU-s | fastText `predict` on the "
                   f"same samples {lid['direct_docs_per_s']:,} docs/CPU-s | {1 / (1 + lid['overhead']):.2f} "
                   f"(overhead {100 * lid['overhead']:.1f}%) | `bench.bench_langid` |")
    q = _load(results, "quality_bench.json")
    if q:
        out.append(f"| quality (Gopher + FineWeb + C4) | {q['curate_docs_per_s']:,} docs/CPU-s | datatrove filters "
                   f"{q['datatrove_docs_per_s']:,} docs/CPU-s | {q['speedup']:.1f}x | `bench.bench_quality` |")
    d = _load(results, "dedup_bench.json")
    if d and "signatures" in d:
        s = d["signatures"]
        out.append(f"| MinHash signatures (5-grams, 112 perms) | {s['docs_per_cpu_s'].get('curate', 0):,} docs/CPU-s | "
                   f"datasketch `MinHash.bulk` {s['docs_per_cpu_s'].get('ds_sha1', 0):,} (sha1) / "
                   f"{s['docs_per_cpu_s'].get('ds_xxh32', 0):,} (xxh32) docs/CPU-s | "
                   f"{s['speedup_vs_datasketch_sha1']:.1f}x / {s['speedup_vs_datasketch_xxh32']:.1f}x | "
                   "`bench.bench_dedup` |")
        e = d.get("end_to_end", {})
        if "speedup_vs_datatrove" in e:
            out.append(f"| dedup end to end (signatures → LSH → clusters) | {e['curate']['wall_s']} s | datatrove "
                       f"4-stage MinhashDedup {e['datatrove']['wall_s']} s | {e['speedup_vs_datatrove']:.1f}x | "
                       "`bench.bench_dedup` |")
    dc = _load(results, "decontaminate_bench.json")
    if dc:
        out.append(f"| decontaminate (13-grams, {len(dc['evals'])} eval sets, real mix) | stage "
                   f"{dc['stage_cpu_s']} CPU-s | parts phase without it {dc['parts_cpu_s']['without']} CPU-s | "
                   f"overhead {100 * dc['overhead']:.1f}% (stage alone {100 * dc['stage_share']:.1f}%; target "
                   f"<= {100 * dc['target_overhead']:.0f}%) | `bench.bench_decontaminate` |")
    for name in ("rwkv", "neox"):
        t = _load(results, f"tokenize_{name}_bench.json")
        if t:
            eng = (t.get("engine") or {}).get("engine", "tokenizers" if name == "neox" else "pyrwkv-tokenizer")
            out.append(f"| tokenize + write .bin/.idx ({t['tokenizer']}, {eng}, 1 thread) | {t['curate_mb_s']} MB/s | "
                       f"raw {eng} batch encode {t['raw_mb_s']} MB/s | {t['ratio']:.2f} | `bench.bench_tokenize` |")
            if t.get("speedup_vs_tokenizers"):
                out.append(f"| tokenize + write, {eng} vs `tokenizers` ({t['tokenizer']}, 1 thread) | "
                           f"{t['curate_mb_s']} MB/s | `tokenizers` encode_batch_fast {t['tokenizers_mb_s']} MB/s | "
                           f"{t['speedup_vs_tokenizers']:.1f}x | `bench.bench_tokenize` |")
    failed = {k: v for k, v in st.items() if v.get("rc") != 0}
    out.append("")
    if st:
        out += ["Commands and status:", ""]
        for k, v in st.items():
            out.append(f"- `{v['cmd']}`: exit {v['rc']}, {v['seconds']} s")
    if failed:
        out += ["", "Failed or timed out (their rows above are missing or from an earlier run): "
                + ", ".join(f"{k} ({v['rc']})" for k, v in failed.items())]
    return [*out, ""]


def _decontaminate(d: dict[str, Any] | None) -> list[str]:
    out = ["## Decontamination", ""]
    if not d:
        return [*out, "Not measured (run `python -m bench.bench_decontaminate`).", ""]
    ix = d["index"]
    rows = f"first {d['max_rows']} rows of each file" if d.get("max_rows") else "every row"
    out += [f"`bench.bench_decontaminate`: the real mix ({d['input_mb']} MB of text, {rows}) through the parts phase "
            f"in one process and one thread, with and without `decontaminate:` against {', '.join(d['evals'])} "
            f"(least CPU time of {d['repeats']} interleaved runs; load average {d['load_before'][0]:.1f} before, "
            f"{d['load_after'][0]:.1f} after, on {d['nproc']} cores{' shared with other jobs' if d['load_before'][0] > 1.5 else ''}; "
            f"{d['date']} UTC).", "",
            "| measure | value |", "|---|---:|",
            f"| parts phase without the stage | {d['parts_cpu_s']['without']} CPU-s |",
            f"| parts phase with the stage | {d['parts_cpu_s']['with']} CPU-s |",
            f"| overhead (with / without - 1; target <= {100 * d['target_overhead']:.0f}%) | {100 * d['overhead']:.1f}% |",
            f"| the stage's own `process` time | {d['stage_cpu_s']} CPU-s ({100 * d['stage_share']:.1f}% of the phase; "
            f"{d['stage_mb_per_cpu_s']} MB per CPU-s) |",
            f"| eval items / indexed 13-grams | {ix['items']:,} / {ix['ngrams']:,} |",
            f"| n-grams left out: in > 10 items / without a word | {ix['ngrams_frequent']:,} / "
            f"{ix['ngrams_uninformative']:,} |",
            f"| index arrays (of which the screen bit array) | {ix['index_bytes'] / 1e6:.1f} MB "
            f"({ix['screen_bytes'] / 1e6:.1f} MB) |",
            f"| bytes per million indexed n-grams | {ix['bytes_per_million_ngrams'] / 1e6:.1f} MB |",
            f"| pickled size (what `ray.put` stores once per run) | {ix['pickled_bytes'] / 1e6:.1f} MB |",
            f"| index build on the driver | {ix['build_cpu_s']} CPU-s |", "",
            "The stage's own time is the firmer figure of its cost: the two phase totals come from separate runs, "
            "and on a loaded machine their difference moves by more than the stage takes.", ""]
    if d.get("dropped"):
        out += ["Dropped: " + "; ".join(f"{s}: " + ", ".join(f"{k} {v}" for k, v in r.items())
                                        for s, r in d["dropped"].items()), ""]
    return out


def _scaling(s: dict[str, Any] | None) -> list[str]:
    out = ["## Scaling", ""]
    if not s:
        return [*out, "Not measured (run `python -m bench scaling`).", ""]
    out += ["curate on the mixed corpus, RWKV World tokenizer; `run s` excludes Ray start-up.", "",
            "| input MB | docs | cores | run s | s per MB | MB/s/core | MB per CPU-s | parts s | dedup s | load |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    rows = sorted(s["sizes"], key=lambda r: r["input_mb"]) + [s["workers"]["1"]]
    for r in rows:
        cpu = r["memory"].get("cpu_s")
        out.append(f"| {r['input_mb']:.1f} | {r['docs']:,} | {r['cores']} | {r['run_s']:.1f} | {r['s_per_mb']:.3f} | "
                   f"{r['mb_s_core']:.3f} | {_f(round(r['input_mb'] / cpu, 3) if cpu else None, 3)} | "
                   f"{r['phases_s'].get('parts', 0):.1f} | {r['phases_s'].get('dedup', 0):.1f} | "
                   f"{r['load'][0][0]:.1f} → {r['load'][1][0]:.1f} |")
    one, many = s["workers"]["1"], next(v for k, v in s["workers"].items() if k != "1")
    cpu1, cpun = one["memory"].get("cpu_s"), many["memory"].get("cpu_s")
    out += ["", f"1 → {many['cores']} workers at {one['input_mb']:.0f} MB: wall speed-up **{s['speedup']:.2f}x** "
                f"(2.0 is perfect); CPU seconds {_f(cpu1, 1)} (1 worker) vs {_f(cpun, 1)} ({many['cores']} workers). "
                "Wall speed-up is only meaningful on an otherwise idle machine with more cores than workers: "
                "compare the load columns."]
    return [*out, ""]


def _memory(m: dict[str, Any] | None) -> list[str]:
    out = ["## Memory", ""]
    if not m:
        return [*out, "Not measured (run `python -m bench memory`).", ""]
    out += ["Peak RSS (psutil, sampled every 0.2 s) of the curate run's process tree. *largest* = the largest "
            "single process of that kind; *sum* = all processes of that kind at the same sample (shared pages, "
            "e.g. Ray's object store, are counted once per process that maps them).", "",
            "| input MB | docs | driver MB | largest Ray worker MB | Ray workers sum MB | Ray daemons sum MB | "
            "all processes MB |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in m["rows"]:
        one, tot = r["memory"]["max_one_mb"], r["memory"]["sum_mb"]
        out.append(f"| {r['input_mb']:.1f} | {r['docs']:,} | {one.get('driver', 0):,.0f} | "
                   f"{one.get('ray_worker', 0):,.0f} | {tot.get('ray_worker', 0):,.0f} | "
                   f"{tot.get('ray_system', 0):,.0f} | {tot.get('total', 0):,.0f} |")
    mixes = [r for r in m["rows"] if r.get("mix_task")]
    if mixes:
        out += ["", "The mix step alone (one Ray task; rerun in a fresh process over the finished run's `kept` tables, "
                "peak RSS from `VmHWM` in /proc/self/status):", "",
                "| input MB | kept docs | baseline RSS MB | peak RSS MB | bytes per kept doc | seconds |",
                "|---:|---:|---:|---:|---:|---:|"]
        for r in mixes:
            x = r["mix_task"]
            out.append(f"| {r['input_mb']:.1f} | {x['kept_docs']:,} | {x['baseline_rss_mb']:,.0f} | "
                       f"{x['peak_rss_mb']:,.0f} | {x['bytes_per_kept_doc']:,.0f} | {x['seconds']:.2f} |")
        if len(mixes) > 1 and mixes[-1]["mix_task"]["kept_docs"] > mixes[0]["mix_task"]["kept_docs"]:
            a, b = mixes[0]["mix_task"], mixes[-1]["mix_task"]
            marg = (b["peak_rss_mb"] - a["peak_rss_mb"]) * 1e6 / (b["kept_docs"] - a["kept_docs"])
            out += ["", f"Marginal cost of the mix task between the two sizes: **{marg:,.0f} B per kept document** "
                        "(the fixed part is imports and Arrow/numpy pools)."]
    tasks = [r for r in m["rows"] if r["memory"].get("ray_task_max_mb")]
    if tasks:
        names = sorted({k for r in tasks for k in r["memory"]["ray_task_max_mb"]})
        out += ["", "Largest Ray worker by what it was running (process title) when sampled:", "",
                "| input MB | " + " | ".join(f"`{n}` MB" for n in names) + " |",
                "|---:|" + "---:|" * len(names)]
        for r in tasks:
            t = r["memory"]["ray_task_max_mb"]
            out.append(f"| {r['input_mb']:.1f} | " + " | ".join(f"{t[n]:,.0f}" if n in t else "–" for n in names)
                       + " |")
    g = m.get("bytes_per_doc_growth") or {}
    if g:
        out += ["", "Growth between the smallest and largest run, per added input document: "
                + ", ".join(f"{k} {v:,.0f} B/doc" for k, v in g.items()) + "."]
    return [*out, ""]


def _soak(k: dict[str, Any] | None) -> list[str]:
    out = ["## Soak (issue 10)", ""]
    if not k or not k.get("runs"):
        return [*out, "Not measured (run `python -m bench soak`).", ""]
    out += ["`python -m bench soak --soak-mb N` (`bench/soak.py`): `recipes/demo.yaml`'s policies over N MB of zstd "
            "Parquet made by `curate.demo.generate` (distinct seeds per 8 MB chunk), budget scaled with the corpus, "
            "`curate run --num-cpus 2` in its own session, RSS of every process sampled every second, then "
            "`curate audit --verify`. *Workers first/last third* = peak of the summed Ray worker RSS in the first and "
            "last third of the run (equal means memory did not grow with the input read so far).", "",
            "| input MB (Parquet) | text MB | records | partitions | run s | text MB/s | driver MB | largest worker MB "
            "| workers sum MB | daemons MB | whole tree MB | workers first/last third MB | ledger balanced "
            "| audit | load |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|---|"]
    for r in k["runs"]:
        pk, g, m = r["peak_rss_mb"], r.get("workers_rss_growth") or {}, r.get("machine", {})
        la, lb = m.get("load_avg_before", [0]), m.get("load_avg_after", [0])
        audit = "passed" if r.get("audit_passed") else ("**failed**" if r.get("exit_code") == 0 else
                                                         f"run exit {r.get('exit_code')}")
        out.append(f"| {r['input_mb']:g} | {_f(r.get('text_mb'), 1)} | {r.get('records', 0):,} | "
                   f"{r.get('partitions', 0):,} | {r['wall_s']:.0f} | {_f(r.get('text_mb_per_s'), 3)} | "
                   f"{pk['driver']:,.0f} | {pk['worker_max']:,.0f} | {pk['workers_sum']:,.0f} | "
                   f"{pk['daemons_sum']:,.0f} | {pk['total']:,.0f} | {_f(g.get('first_third_mb'), 0)} / "
                   f"{_f(g.get('last_third_mb'), 0)} | {r.get('ledger_balanced')} | {audit} | "
                   f"{la[0]:.1f} → {lb[0]:.1f} |")
    for r in k["runs"]:
        t = r.get("peak_rss_by_task_mb")
        if t:
            top = sorted(t.items(), key=lambda x: -x[1])[:8]
            anon = r.get("peak_anon_by_task_mb") or {}
            out += ["", f"Largest Ray worker at {r['input_mb']:g} MB by what it was running (process title), peak "
                    "RSS MB (in brackets: without file-backed and shared pages, e.g. the memory-mapped `.tok` "
                    "files a shard writer reads): "
                    + ", ".join(f"`{n}` {v:,.0f}" + (f" ({anon[n]:,.0f})" if n in anon else "") for n, v in top)
                    + "."]
    return [*out, ""]


def _profile(p: dict[str, Any] | None) -> list[str]:
    out = ["## Profile of the parts phase", ""]
    if not p:
        return [*out, "Not measured (run `python -m bench profile`).", ""]
    out += [f"`bench.pipeline.profile_parts`: every partition of the {p['variant']} corpus ({p['input_mb']} MB, "
            f"{p['partitions']} partitions) through one `PartitionProcessor` in one process and one thread, "
            f"{p['tokenizer']} tokenizer: **{p['mb_s_core']} MB per CPU-second** for ingest → license → langid → "
            "quality → tokenize → hash/sign (the Ray-free ceiling of the parts phase on this CPU).", "",
            "| step | CPU s | share |", "|---|---:|---:|"]
    for k, v in p["steps_cpu_s"].items():
        out.append(f"| {k} | {v:.2f} | {100 * p['steps_share'][k]:.1f}% |")
    out += ["", "| source | MB | CPU s | MB per CPU-s |", "|---|---:|---:|---:|"]
    for k, v in p["by_source_cpu_s"].items():
        mb = p["by_source_mb"].get(k, 0)
        out.append(f"| {k} | {mb:.2f} | {v:.2f} | {mb / v if v else 0:.2f} |")
    out += ["", "Top functions by self time (pyinstrument; C code is charged to the Python function that called "
                "it):", ""]
    for r in p["top_self"][:12]:
        out.append(f"- {100 * r['share']:.1f}% `{r['function']}`")
    return [*out, ""]


def _remix(r: dict[str, Any] | None) -> list[str]:
    """``python -m bench remix`` (bench/bench_remix.py): a full run vs a remix of another mixture from it."""
    if not r:
        return []
    f, x = r["full"], r["remix"]
    ok = "meets" if r["ratio_wall"] <= r["target"] else "misses"
    loads = "/".join(f"{r[k][0]:.1f}" for k in ("load_before", "load_between", "load_after") if r.get(k))
    rows = ["| run | wall s | run s (no import, Ray start) | " + " | ".join(
        ("parts", "dedup", "mix", "shards", "documents", "finalize")) + " | tokens |", "|" + "---|" * 10]
    for name, d in (("full run", f), ("remix (`--from`)", x)):
        ph = d.get("phases_s", {})
        rows.append(f"| {name} | {_f(d['wall_s'], 1)} | {_f(d['run_s'], 1)} | " + " | ".join(
            _f(ph.get(k), 1) for k in ("parts", "dedup", "mix", "shards", "documents", "finalize"))
            + f" | {_f(d.get('tokens'))} |")
    reused = x.get("reused", {})
    return ["## Remix vs full run", "",
            f"`python -m bench remix --size-mb {r['size_mb']:g} --cores {r['cores']}` on {r['date']}: the mixed "
            f"corpus ({_f(r['input_mb'])} MB of text), RWKV World; a full run, then another mixture from its "
            f"processed corpus (`curate run --from`, {_f(reused.get('parts'))} partitions and the dedup reused, "
            f"{_f(reused.get('linked'))} files hard-linked, {_f(reused.get('copied'))} copied). Load average "
            f"(1 min) before / between / after: {loads}.", "", *rows, "",
            f"The remix takes **{r['ratio_wall']:.1%}** of the full run's wall time ({r['ratio_run']:.1%} without "
            f"the interpreter and Ray start): it {ok} the target of {r['target']:.0%}"
            + (" (a tiny corpus is dominated by fixed costs; the claim is for the 1 GB corpus)"
               if r["input_mb"] < 500 else "") + ".", ""] + (
        [f"The full run's audit report (`RUN_DIR/report.html`, self-contained) is "
         f"**{f['report_bytes'] / 1e6:.2f} MB**, the remix's {_f(x.get('report_bytes'))} bytes (issue 20: "
         "under 5 MB on the 1 GB bench run).", ""] if f.get("report_bytes") else [])


def _fixed(r: dict[str, Any] | None) -> list[str]:
    """``python -m bench fixed`` (bench/bench_fixed.py): what a small run pays besides its documents."""
    if not r:
        return []
    runs = r["runs"]
    phases = list(dict.fromkeys(k for x in runs for k in x["stats_phases"]))
    rows = ["| run | interpreter imports s | Ray start waited s | run less that wait s | after Ray start s | "
            + " | ".join(phases) + " |", "|" + "---|" * (5 + len(phases))]
    for i, x in enumerate(runs):
        rows.append(f"| {i + 1} | {_f(x['import_s'], 2)} | {_f(x['ray_start_s'], 2)} | {_f(x['run_s'], 2)} | "
                    f"**{_f(x['after_ray_s'], 2)}** | " + " | ".join(_f(x["stats_phases"].get(k), 2) for k in phases)
                    + " |")
    ok = "met" if r["after_ray_median_s"] <= r["target_after_ray_s"] else "**not met**"
    pa_, ry = r.get("parts") or {}, r.get("ray") or {}
    st = pa_.get("stages_s") or {}
    return ["## Fixed costs (demo corpus)", "",
            f"`python -m bench fixed` on {r['date']}: `curate run recipes/demo.yaml` on the demo corpus (4.4 MB, "
            f"3,408 records), {r['cores']} cores, each run a fresh child process. Load average (1 min) before / "
            f"after: {r['load_before'][0]:.1f} / {r['load_after'][0]:.1f}.", "", *rows, "",
            f"Median after Ray start: **{r['after_ray_median_s']:.2f} s**; target <= {r['target_after_ray_s']:g} s: "
            f"{ok}. The phases are `RUN_DIR/stats.json`'s; Ray starts inside the run, in the background while the "
            "driver reads and checks the recipe, as `curate run` starts it: the Ray start column is what the run "
            "waited for it (its `ray_start` phase), the next the rest of the run (with the driver's checks that ran "
            "while Ray started), and *after Ray start* the time from the moment Ray's start returned to the run's "
            "end.", "",
            "What one partition worker pays before its first document (fresh interpreter, no Ray): importing the "
            f"processor {_f(pa_.get('import_processor_s'), 2)} s, the recipe {_f(pa_.get('recipe_s'), 3)} s, the "
            "stage set of each source (models and rule tables: "
            + ", ".join(f"{k} {v:.2f}" for k, v in st.items()) + f" s), the tokenizer {_f(pa_.get('tokenizer_s'), 2)} s.",
            "",
            f"Ray (2 CPUs): `ray.init` {_f(ry.get('ray_init_s'), 2)} s; a wave of 2 tasks on fresh worker processes "
            f"{_f(ry.get('task_wave_fresh_s'), 2)} s; warming 2 workers with the run's modules "
            f"(`curate.raytasks.warm_workers`, what a run waits for before its first partition task) "
            f"{_f(ry.get('warm_workers_s'), 2)} s; the same wave on warm workers {_f(ry.get('task_wave_warm_s'), 3)} "
            "s.", ""]


def _scale(r: dict[str, Any] | None) -> list[str]:
    """``python -m bench scale`` (bench/bench_scale.py): peak RSS of every process kind as documents grow 4x."""
    if not r or not r.get("rows"):
        return []
    rows = r["rows"]
    kinds = sorted({k for x in rows for k in x["peak_mb"]}, key=lambda k: -max(x["peak_mb"].get(k, 0) for x in rows))
    anon = all("peak_anon_mb" in x for x in rows)  # since session 7: anonymous memory (RSS less file/shared pages)

    def cell(x: dict, k: str) -> str:
        return _f(x["peak_mb"].get(k), 0) + (f" ({_f(x['peak_anon_mb'].get(k), 0)})" if anon else "")

    unit = "MB RSS (anon)" if anon else "MB"
    head = ["| process | " + " | ".join(f"{x['docs'] / 1e6:g}M docs {unit}" for x in rows) + " | growth per step |",
            "|" + "---|" * (len(rows) + 2)]
    for k in kinds:
        g = r["growth"].get(k) or []
        ga = (r.get("growth_anon") or {}).get(k) or [] if anon else []
        head.append(f"| `{k}` | " + " | ".join(cell(x, k) for x in rows) + " | "
                    + ", ".join("-" if v is None else f"{v:.2f}x" for v in g)
                    + (" (anon " + ", ".join("-" if v is None else f"{v:.2f}x" for v in ga) + ")" if ga else "")
                    + " |")
    walls = ["| documents | text MB | partitions | wall s | run s (no Ray start) | tokens | load before / after |",
             "|---|---|---|---|---|---|---|"]
    for x in rows:
        walls.append(f"| {x['docs']:,} | {_f(x['text_mb'], 0)} | {x['files']} | {_f(x['wall_s'], 0)} | "
                     f"{_f(x['run_s'], 0)} | {_f(x['tokens'])} | {x['load_before'][0]:.1f} / {x['load_after'][0]:.1f} |")
    met = "met" if r["target_met"] else "**not met**"
    largest = ", ".join(f"`{x['kind']}` {x['mb']:.0f} MB" for x in r["largest_non_actor"])
    return ["## Scale: memory per process as documents grow", "",
            "`python -m bench scale` (issue 16): corpora of tiny documents (3 real sentences each, drawn from the "
            "RefinedWeb and Wikipedia samples; one `parquet` source of 100k-document files, exact + MinHash dedup, "
            "one group), each run in a child process whose whole process tree is sampled for RSS every 0.2 s. A "
            "Ray worker runs many tasks in turn: its peak is charged to the task it was running when sampled; "
            "`idle_worker` is a pooled worker between tasks. In brackets: anonymous memory (RSS less file-backed "
            "and shared pages, such as memory-mapped `.tok` files), where measured.", "",
            *walls, "", *head, "",
            f"Largest process other than the partition tasks, per size: {largest}; growth per 4x documents "
            f"{', '.join(f'{v:.2f}x' for v in r['largest_growth'])} (target <= 1.3x: {met}). Wall time grows "
            f"{', '.join(f'{v:.2f}x' for v in r['wall_ratio'])} per {', '.join(f'{v:g}x' for v in r['doc_ratio'])} "
            "documents.", ""]


def render(results: Path) -> str:
    """The Markdown text of docs/BENCHMARKS.md for the JSON files under ``results``."""
    p = _load(results, "pipeline.json")
    s = _load(results, "scaling.json")
    m = _load(results, "memory.json")
    machine = (p or s or m or {}).get("machine")
    dates = sorted({r["date"] for r in (p or {}).get("runs", [])} | {r["date"] for r in (s or {}).get("sizes", [])}
                   | {r["date"] for r in (m or {}).get("rows", []) if r.get("date")})
    out = ["# Benchmarks", "",
           "Generated by `python -m bench report` from the raw JSON in `bench/results/` (`make bench` runs "
           "`python -m bench all`, which regenerates everything). Absolute times are machine- and load-dependent; "
           "the ratios are the claims.", "",
           f"Measured: {dates[0]} … {dates[-1]} (UTC)." if dates else "Dates: see the JSON files.", "",
           "## Machine", "", *_machine(machine),
           "Commands: `make bench` = `python -m bench all` (= `stages`, `pipeline --size-mb 50 200 --rwkv-mb 500`, "
           "`scaling --sizes 100 250 500`, `memory --memory-sizes 100 500 1000`, `profile`, `report`; the "
           "defaults are in `bench/__main__.py`); each command also runs alone, and several in one call share "
           "curate runs. `python -m bench soak` (not in `all`) is the 1 GB soak of issue 10; `python -m bench remix` (not in `all`; `--remix-mb`, default 1000) a full run against a remix of it. Corpora: "
           "`python -m bench.corpus --variant mixed|prose --size-mb N` (deterministic for `--seed`).", ""]
    analysis = results / "analysis.md"
    if analysis.exists():
        out += [analysis.read_text().strip(), ""]
    out += _pipeline(p)
    out += _stages(results)
    out += _decontaminate(_load(results, "decontaminate_bench.json"))
    out += _scaling(s)
    out += _memory(m)
    out += _soak(_load(results, "soak.json"))
    out += _fixed(_load(results, "fixed.json"))
    out += _remix(_load(results, "remix.json"))
    out += _scale(_load(results, "scale.json"))
    out += _profile(_load(results, "profile.json"))
    return "\n".join(out).rstrip() + "\n"


def write(results: Path, doc: Path) -> None:
    """Write :func:`render` to ``doc`` (atomically)."""
    doc.parent.mkdir(parents=True, exist_ok=True)
    tmp = doc.with_name(doc.name + ".tmp")
    tmp.write_text(render(results))
    tmp.replace(doc)


if __name__ == "__main__":
    import sys

    repo = Path(__file__).resolve().parent.parent
    write(repo / "bench" / "results", repo / "docs" / "BENCHMARKS.md")
    sys.exit(0)
