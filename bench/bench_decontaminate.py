"""Cost of the decontaminate stage on the real mix, against the parts phase without it, and the index's memory.

Corpus: the six real samples of ``../shared/data/real`` (the-stack, CulturaX, PG-19, Wikipedia, RefinedWeb,
open-web-math; about 80 MB of text) in their native schemas, with the policies of the real-data end-to-end test
(permissive licences and code quality for the-stack, language ID for CulturaX, Gopher for books, FineWeb for
the web), RWKV World tokenizer, exact + MinHash dedup signatures. ``--max-rows N`` keeps the first N rows of
each file (a smaller, still real, mix).

Eval side: all four sets of ``../shared/data/evals`` (GSM8K, MATH, MMLU-STEM, HumanEval test).

Measured, in this process, one thread (CPU seconds, which a shared machine disturbs less than wall time):

- ``parts_cpu_s.without``: every partition through :class:`curate.partition.PartitionProcessor` without a
  ``decontaminate:`` block (ingest → license → langid → quality → tokenize → sign);
- ``parts_cpu_s.with``: the same with the block (the stage after quality, index built beforehand, as the runner
  does on the driver); ``stage_cpu_s``: the stage's own ``process`` time within it;
- ``overhead`` = with / without - 1 (target <= 15%), ``stage_share`` = stage / without;
- the index: build CPU seconds, n-grams, bytes of its arrays, bytes per million n-grams, and the size of its
  pickle (what ``ray.put`` stores once per run).

Each configuration runs ``--repeats`` times, interleaved; the least CPU time counts. Writes
``bench/results/decontaminate_bench.json``::

    python -m bench.bench_decontaminate [--real DIR] [--evals DIR] [--max-rows N] [--repeats 2] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parent.parent
DEFAULT_REAL = Path(os.environ.get("CURATE_REAL_DATA", REPO.parent / "shared" / "data" / "real"))
#: source name -> (file, format, text column, extra policy)
SOURCES: dict[str, tuple[str, str, str, dict[str, Any]]] = {
    "the-stack": ("thestack.parquet", "the-stack-v1", "content", {"license": "permissive", "quality": "code"}),
    "culturax": ("culturax.parquet", "culturax", "text", {"langid": {"drop": ["en"], "min_score": 0.65}}),
    "gutenberg": ("gutenberg.parquet", "pg19", "text",
                  {"license": "public-domain", "quality": {"gopher": {"gopher_word_count": {"min": 50, "max": None}}}}),
    "wikipedia": ("wikipedia.parquet", "wikipedia", "text", {}),
    "refinedweb": ("refinedweb.parquet", "refinedweb", "content", {"quality": "fineweb"}),
    "math": ("openwebmath.parquet", "open-web-math", "text", {}),
}
EVALS = {"gsm8k": ("gsm8k_test.jsonl", ["question", "answer"], "idx"),
         "math": ("math_test.jsonl", ["problem", "solution"], "idx"),
         "mmlu_stem": ("mmlu_stem_test.jsonl", ["question", "choices"], None),
         "humaneval": ("HumanEval.jsonl.gz", ["prompt", "canonical_solution"], "task_id")}


def _recipe(data: Path, evals: Path, *, decontaminate: bool) -> dict[str, Any]:
    r: dict[str, Any] = {
        "name": "bench-decontaminate", "seed": 7, "tokenizer": "rwkv-world", "budget_tokens": 1_000_000,
        "max_doc_tokens": 512,
        "sources": {n: {"format": fmt, "paths": [str(data / f)], **extra} for n, (f, fmt, _, extra) in SOURCES.items()},
        "dedup": {"exact": True, "minhash": {"ngram": 5, "bands": 14, "rows": 8}},
        "mixture": {"code": {"share": 0.15, "sources": {"the-stack": 1}},
                    "multilingual": {"share": 0.15, "sources": {"culturax": 1}},
                    "soup": {"share": 0.70, "sources": {"wikipedia": 3, "gutenberg": 2, "refinedweb": 3, "math": 2}}},
    }
    if decontaminate:
        r["decontaminate"] = {"evals": {n: {"paths": [str(evals / f)], "fields": fl,
                                            **({"id_field": i} if i else {})} for n, (f, fl, i) in EVALS.items()}}
    return r


def _subset(real: Path, out: Path, max_rows: int | None) -> tuple[Path, float]:
    """The real files (first ``max_rows`` rows of each, when given) and their MB of text."""
    import pyarrow.compute as pc

    if max_rows is None:
        mb = sum(pc.sum(pc.binary_length(pq.read_table(real / f, columns=[c])[c])).as_py()
                 for f, _, c, _ in SOURCES.values()) / 1e6
        return real, mb
    out.mkdir(parents=True, exist_ok=True)
    mb = 0.0
    for f, _, c, _ in SOURCES.values():
        t = pq.read_table(real / f).slice(0, max_rows)
        pq.write_table(t, out / f)
        mb += pc.sum(pc.binary_length(t[c])).as_py() / 1e6
    return out, mb


def _parts(recipe_data: dict[str, Any], base: Path, work: Path, index: Any) -> tuple[float, float, dict]:
    """CPU seconds of the whole parts phase, of the decontaminate stage within it, and its drops per source."""
    from curate.ledger import Ledger
    from curate.pipeline import parse_recipe
    from curate.sources import plan_partitions
    from curate.stages.decontaminate import DecontaminateStage
    from curate.partition import PartitionProcessor
    from curate.pipeline import payload_for

    recipe = parse_recipe(recipe_data, base_dir=base)
    parts = plan_partitions(recipe)
    stage_s = [0.0]
    orig = DecontaminateStage.process

    def timed(self, table):
        s = time.process_time()
        try:
            return orig(self, table)
        finally:
            stage_s[0] += time.process_time() - s

    DecontaminateStage.process = timed
    try:
        proc = PartitionProcessor(payload_for(recipe), str(work), num_threads=1, decont_index=index)
        _ = proc.tokenizer  # loaded outside the clock, as an actor does once
        for p in parts:  # models and tables load once per actor: warm every source's stages first
            proc.stages(p.source)
        t0 = time.process_time()
        for p in parts:
            proc.process(p)
        total = time.process_time() - t0
    finally:
        DecontaminateStage.process = orig
    led = Ledger.read_many((work / "work" / "parts").glob("*.ledger.json"))
    drops = {s: dict(c.dropped) for s, c in led.by_source("decontaminate").items() if c.dropped}
    return total, stage_s[0], drops


def run(real: Path, evals: Path, *, max_rows: int | None, repeats: int) -> dict[str, Any]:
    from curate.decont import recipe_index
    from curate.pipeline import parse_recipe

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench_decont_") as tmp:
        t = Path(tmp)
        data, mb = _subset(real, t / "data", max_rows)
        with_r, without_r = (_recipe(data, evals, decontaminate=d) for d in (True, False))
        s = time.process_time()
        index = recipe_index(parse_recipe(with_r, base_dir=t))
        build_s = time.process_time() - s
        pickled = len(pickle.dumps(index, protocol=5))
        best: dict[str, float] = {"with": float("inf"), "without": float("inf")}
        stage = float("inf")
        drops: dict = {}
        for k in range(repeats):
            for name, rd in (("without", without_r), ("with", with_r)):
                work = t / f"w_{name}_{k}"
                total, st, d = _parts(rd, t, work, index if name == "with" else None)
                if total < best[name]:
                    best[name] = total
                    if name == "with":
                        stage, drops = st, d
    st = index.stats
    return {
        "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "load_before": load_before,
        "load_after": os.getloadavg(), "nproc": os.cpu_count(), "input_mb": round(mb, 2), "max_rows": max_rows,
        "repeats": repeats, "evals": list(EVALS),
        "index": {"items": st["items"], "ngrams": st["ngrams"], "ngrams_frequent": st["ngrams_frequent"],
                  "ngrams_uninformative": st["ngrams_uninformative"], "index_bytes": st["index_bytes"],
                  "screen_bytes": st["screen_bytes"], "bytes_per_million_ngrams": st["bytes_per_million_ngrams"],
                  "pickled_bytes": pickled, "build_cpu_s": round(build_s, 3)},
        "parts_cpu_s": {k: round(v, 3) for k, v in best.items()}, "stage_cpu_s": round(stage, 3),
        "overhead": round(best["with"] / best["without"] - 1, 4), "stage_share": round(stage / best["without"], 4),
        "stage_mb_per_cpu_s": round(mb / stage, 2) if stage else None, "target_overhead": 0.15,
        "dropped": drops,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_decontaminate", description=__doc__.split("\n")[0])
    ap.add_argument("--real", type=Path, default=DEFAULT_REAL)
    ap.add_argument("--evals", type=Path, default=None, help="default: <real>/../evals")
    ap.add_argument("--max-rows", type=int, default=None, help="first N rows of each real file (default: all)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = ap.parse_args(argv)
    evals = args.evals or args.real.parent / "evals"
    r = run(args.real, evals, max_rows=args.max_rows, repeats=args.repeats)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "decontaminate_bench.json").write_text(json.dumps(r, indent=2))
    print(json.dumps({k: r[k] for k in ("input_mb", "parts_cpu_s", "stage_cpu_s", "overhead", "index")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
