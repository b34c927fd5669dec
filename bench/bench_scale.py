"""Scale bench: does any process of a run grow with the corpus? (issue #16)

Builds corpora of many **tiny documents** from the real samples and runs ``curate run`` on each, in a child
process whose whole process tree is sampled for RSS (:class:`bench.pipeline.TreeSampler`). Tiny documents make the
per-document state of every global step (dedup shuffles, connected components, mix, shard writer, driver) as large
as it can be relative to the text, which is what breaks first at EagleX scale (~3e9 documents).

Corpus (``bench/corpus/scale-<n>-s<seed>/``, git-ignored: it holds real text)::

    web/part-NNNNN.parquet   id string, text string   (DOCS_PER_FILE rows per file: partitions follow the files,
                                                       so their size stays the same while their number grows)
    recipe.yaml              one `parquet` source, exact + MinHash dedup, one group, Megatron shards of
                             10M tokens (:data:`SHARDS`);
                             budget_tokens = text bytes / 10 (about 40% of the
                             deduplicated tokens: a real downsample)

Each document is 3 sentences drawn (seeded, with replacement) from the sentences of the real RefinedWeb and
Wikipedia samples (``../shared/data/real``): with tens of thousands of sentences, nearly every document is unique,
while documents that share sentences give the LSH step real candidate pairs. The text is assembled with
``pyarrow.compute`` over whole files (no per-document Python loop), so a 16M-document corpus builds in minutes.

Reported per size (``bench/results/scale.json``): documents, text MB, wall seconds (Ray start excluded and
included), and the peak RSS of every process kind: the driver, each Ray task or actor method by its process title
(``ray::_lsh_reduce``, ``ray::process_partition``, ...), pooled workers between tasks (``idle_worker``), Ray's
daemons and agents (``ray_system``); ``peak_anon_mb`` the same of anonymous memory only (RSS less its file-backed
and shared pages: memory-mapped ``.tok`` files and libraries are page cache, not the process's own). ``growth``
(``growth_anon``) is, per process kind, the ratio of its peak between consecutive sizes (4x documents each): the
#16 target is <= 1.3 for every kind but the partition tasks, whose memory must follow one partition. Caveat of
the method: a Ray worker process runs many tasks in turn, so a peak is attributed to the title the process had
when it was sampled, and a task starts from what the worker's allocators kept of the earlier tasks' memory
(curate's tasks give theirs back when they end, :func:`curate.raytasks.release_memory`; before that an idle
pooled worker held 479 MB of anonymous memory at 1M documents, mostly pyarrow's mimalloc pool).

Run::

    python -m bench scale [--scale-docs 1000000 4000000 16000000] [--cores 2]
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from bench import corpus as bc
from bench import pipeline as bp

#: rows per input file: each file is one partition (< curate.sources.PARQUET_SPLIT_BYTES on disk)
DOCS_PER_FILE = 100_000
SOURCES = (("refinedweb.parquet", "content"), ("wikipedia.parquet", "text"))
#: process titles of Ray's own per-node agents (not curate's tasks): part of Ray's footprint
RAY_OWN = {"DashboardAgent", "RuntimeEnvAgent"}
#: the title of a pooled Ray worker between tasks: what it holds is what the tasks it ran left behind, so it is
#: its own kind (``idle_worker``), not Ray's footprint (until session 7 it was counted in ``ray_system``)
RAY_IDLE = {"IDLE", "idle"}
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
#: the recipe's shards: 10M tokens each, so that even the smallest corpus (1M documents, ~40M tokens selected)
#: fills several. A shard writer's memory follows its shard, whose size the recipe sets; with 50M-token shards the
#: 1M corpus was one partly filled shard, and the writer's growth from 1M to 4M measured the shard filling up
#: (40M -> 50M tokens), not the corpus
SHARDS = {"format": "megatron", "max_tokens": 10_000_000}


def sentences(real: Path = bc.REAL) -> pa.Array:
    """Unique sentences (20-300 characters) of the real RefinedWeb and Wikipedia samples, sorted."""
    out: set[str] = set()
    for name, col in SOURCES:
        p = real / name
        if not p.is_file():
            msg = f"{p} is missing: the scale bench builds its corpus from the real samples in ../shared/data/real"
            raise FileNotFoundError(msg)
        for text in pq.read_table(p, columns=[col]).column(col).to_pylist():
            for s in _SENTENCE.split(text or ""):
                s = " ".join(s.split())
                if 20 <= len(s) <= 300:
                    out.add(s)
    return pa.array(sorted(out), pa.string())


def build(n_docs: int, *, seed: int = 0, root: Path | None = None, tokenizer: str = "rwkv-world",
          real: Path = bc.REAL) -> Path:
    """Write the corpus of ``n_docs`` documents (reused when ``corpus.json`` says it is complete)."""
    root = root or bc.CORPUS_ROOT
    out = root / f"scale-{n_docs}-s{seed}"
    info_p = out / "corpus.json"
    if info_p.is_file() and json.loads(info_p.read_text()).get("docs") == n_docs:
        recipe = yaml.safe_load((out / "recipe.yaml").read_text())
        if recipe.get("shards") != SHARDS:  # a corpus built before the shard size was set: same data, new recipe
            recipe["shards"] = SHARDS
            (out / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
        return out
    shutil.rmtree(out, ignore_errors=True)
    (out / "web").mkdir(parents=True)
    pool = sentences(real)
    rng = np.random.default_rng(seed)
    text_bytes = 0
    for f, start in enumerate(range(0, n_docs, DOCS_PER_FILE)):
        n = min(DOCS_PER_FILE, n_docs - start)
        pick = rng.integers(0, len(pool), size=(3, n))
        parts = [pool.take(pa.array(pick[k])) for k in range(3)]
        text = pc.binary_join_element_wise(*parts, " ")
        ids = pc.binary_join_element_wise(pa.array(["d"] * n),
                                          pc.cast(pa.array(np.arange(start, start + n)), pa.string()), "")
        text_bytes += int(pc.sum(pc.binary_length(text)).as_py())
        pq.write_table(pa.table({"id": ids, "text": text}), out / "web" / f"part-{f:05d}.parquet",
                       row_group_size=50_000)
    recipe = {
        "name": f"scale-{n_docs}", "seed": 1, "output": str(out / "run"), "tokenizer": tokenizer,
        "budget_tokens": max(1, text_bytes // 10), "max_epochs": 1, "tolerance_pp": 0.5,
        "sources": {"web": {"format": "parquet", "paths": [str(out / "web" / "*.parquet")],
                            "text_column": "text", "id_column": "id"}},
        "dedup": {"exact": True, "minhash": {"ngram": 5, "bands": 14, "rows": 8}},
        "mixture": {"all": {"share": 1.0, "sources": {"web": 1}}},
        "shards": SHARDS,
    }
    (out / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    info_p.write_text(json.dumps({"docs": n_docs, "seed": seed, "files": -(-n_docs // DOCS_PER_FILE),
                                  "text_mb": round(text_bytes / 1e6, 1), "sentences": len(pool)}, indent=2))
    return out


def _kinds(mem: dict[str, Any], *, anon: bool = False) -> dict[str, float]:
    """Peak MB of every process kind: the driver, each Ray task/actor title, pooled workers between tasks
    (``idle_worker``), Ray's daemons and agents (``ray_system``, the largest one). ``anon``: of anonymous memory
    only (RSS less file-backed and shared pages)."""
    sfx = "_anon_mb" if anon else "_mb"
    one = mem.get("max_one" + sfx, {})
    out = {"driver": one.get("driver", 0.0), "ray_system": one.get("ray_system", 0.0)}
    for title, mb in mem.get("ray_task_max" + sfx, {}).items():
        if title in RAY_OWN:
            out["ray_system"] = max(out["ray_system"], mb)
        elif title in RAY_IDLE:
            out["idle_worker"] = max(out.get("idle_worker", 0.0), mb)
        else:
            out[title] = mb
    return dict(sorted(out.items()))


def bench_scale(sizes: list[int], *, cores: int = 2, seed: int = 0, root: Path | None = None,
                work: Path | None = None) -> dict[str, Any]:
    """Run curate on each corpus size; return the rows, the per-kind growth between sizes and the verdict."""
    rows = []
    for n in sizes:
        t0 = time.perf_counter()
        corpus = build(n, seed=seed, root=root)
        build_s = time.perf_counter() - t0
        info = json.loads((corpus / "corpus.json").read_text())
        w = (work or bp.WORK) / f"scale-{n}"
        load = os.getloadavg()
        r = bp.run_curate(corpus / "recipe.yaml", cores=cores, work=w, name="scale")
        rows.append({"docs": n, "text_mb": info["text_mb"], "files": info["files"], "build_s": round(build_s, 1),
                     "wall_s": r["wall_s"], "run_s": r["run_s"], "ray_start_s": r["ray_start_s"],
                     "phases_s": r["phases_s"], "tokens": r["tokens"], "shards": r["shards"],
                     "peak_mb": _kinds(r["memory"]), "peak_anon_mb": _kinds(r["memory"], anon=True),
                     "cpu_s": r["memory"]["cpu_s"],
                     "load_before": [round(x, 2) for x in load], "load_after": [round(x, 2) for x in os.getloadavg()]})
        shutil.rmtree(w / "scale_run", ignore_errors=True)
        print(f"[scale] {n:,} docs ({info['text_mb']} MB): {r['wall_s']:.0f} s; "
              + ", ".join(f"{k} {v:.0f}" for k, v in sorted(rows[-1]["peak_mb"].items(), key=lambda kv: -kv[1])[:6])
              + " MB", flush=True)
    return {"machine": bp.machine(), "rows": rows, **summarize(rows)}


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Growth of each process kind's peak between consecutive sizes, and whether #16's targets hold."""
    def growth_of(col: str) -> dict[str, list[float | None]]:
        out: dict[str, list[float | None]] = {}
        for k in sorted({k for r in rows for k in r.get(col, {})}):
            g = []
            for a, b in zip(rows, rows[1:]):
                lo, hi = a.get(col, {}).get(k), b.get(col, {}).get(k)
                g.append(round(hi / lo, 2) if lo and hi else None)
            out[k] = g
        return out

    growth = growth_of("peak_mb")
    kinds = sorted(growth)
    doc_ratio = [round(b["docs"] / a["docs"], 2) for a, b in zip(rows, rows[1:])]
    wall_ratio = [round(b["run_s"] / a["run_s"], 2) for a, b in zip(rows, rows[1:])]
    # the partition tasks (earlier versions: actors) are judged apart: their memory follows one partition
    actors = {k for k in kinds if k.startswith(("process_partition", "PartitionActor"))}
    worst = max(((k, max(x for x in g if x is not None)) for k, g in growth.items()
                 if k not in actors and k != "ray_system" and any(x is not None for x in g)),
                key=lambda kv: kv[1], default=(None, None))
    largest = [max(((k, v) for k, v in r["peak_mb"].items() if k not in actors and k != "ray_system"),
                   key=lambda kv: kv[1]) for r in rows]
    return {"doc_ratio": doc_ratio, "wall_ratio": wall_ratio, "growth": growth,
            "growth_anon": growth_of("peak_anon_mb"),
            "largest_non_actor": [{"kind": k, "mb": v} for k, v in largest],
            "largest_growth": [round(b[1] / a[1], 2) for a, b in zip(largest, largest[1:])],
            "worst_kind": {"kind": worst[0], "growth": worst[1]},
            "target_met": bool(rows) and all(round(b[1] / a[1], 2) <= 1.3 for a, b in zip(largest, largest[1:]))}
