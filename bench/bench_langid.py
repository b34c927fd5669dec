"""Throughput of the langid stage against calling fastText directly on the same samples (one core).

Corpus: every text document of ``../shared/data/real`` (culturax, wikipedia, refinedweb, gutenberg: about 5,600
documents, from 40-character sentences to 2.1 MB books). Both sides see identical input:

- ``direct``: the samples are made beforehand with :func:`curate.lid_model.sample_text` and converted to fresh
  Python strings outside the clock; the clock covers only ``model.predict(samples, k=1)``.
- ``stage``: ``LangIdStage.process(batch)`` on the Arrow batch, i.e. sampling, newline replacement, the same
  ``predict`` call, label mapping and the drop-reason policy (``keep: [en, de]``, ``min_score: 0.5``).

The overhead is ``stage_seconds / direct_seconds - 1`` (target <= 15%). Each side runs ``--repeats`` times,
interleaved, and the run with the least CPU time counts (single-threaded, so CPU seconds are core-seconds and
a shared machine disturbs them less than wall time). Also reported once: ``predict`` on whole documents
(newlines replaced, no sampling), to show what the bounded sample saves on books.

Writes ``bench/results/langid_bench.{json,md}``::

    python -m bench.bench_langid [--real DIR] [--batch-rows 1024] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate import lid_model as lid
from curate.stages.langid import LangIdStage

REPO = Path(__file__).resolve().parent.parent
DEFAULT_REAL = Path(os.environ.get("CURATE_REAL_DATA", REPO.parent / "shared" / "data" / "real"))
SOURCES = {"culturax.parquet": "text", "wikipedia.parquet": "text", "refinedweb.parquet": "content",
           "gutenberg.parquet": "text"}


def corpus(real: Path) -> pa.Table:
    cols = [pq.read_table(real / f, columns=[c]).column(c).cast(pa.large_string()) for f, c in SOURCES.items()]
    return pa.table({"text": pa.chunked_array([ch for col in cols for ch in col.chunks])}).combine_chunks()


def batches(t: pa.Table, rows: int) -> list[pa.Table]:
    return [t.slice(i, rows).combine_chunks() for i in range(0, t.num_rows, rows)]


def best_of(repeats: int, *fns) -> list[float]:
    """Least CPU seconds of ``repeats`` interleaved runs of each function; each returns its own measured time.

    Everything here runs on one thread, so CPU seconds (``process_time``) are core-seconds: docs / CPU s is
    docs/s per core, and other processes on a shared machine inflate it far less than wall time.
    """
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            best[i] = min(best[i], fn())
    return best


def timed(fn) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--real", type=Path, default=DEFAULT_REAL)
    ap.add_argument("--batch-rows", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--sample-chars", type=int, default=lid.DEFAULT_SAMPLE_CHARS)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = ap.parse_args(argv)
    if not (args.real / "culturax.parquet").is_file():
        msg = f"real data not found at {args.real}; pass --real or set CURATE_REAL_DATA"
        raise SystemExit(msg)

    table = corpus(args.real)
    parts = batches(table, args.batch_rows)
    n = table.num_rows
    model = lid.load_model()
    stage = LangIdStage(sample_chars=args.sample_chars, keep=["en", "de"], min_score=0.5)
    stage.setup()
    sampled = [lid.sample_text(b.column("text"), sample_chars=args.sample_chars) for b in parts]

    def direct() -> float:
        # Fresh str objects per run, made off the clock: CPython caches a str's UTF-8 form on first use
        # (PyUnicode_AsUTF8AndSize, which fastText's binding calls), so reusing one list would let later runs
        # skip the encoding that every real batch pays.
        samples = [s.to_pylist() for s in sampled]
        return timed(lambda: [model.predict(s, k=1) for s in samples])

    def through_stage() -> float:
        return timed(lambda: [stage.process(b) for b in parts])

    def sampling_only() -> float:
        return timed(lambda: [lid.sample_text(b.column("text"), sample_chars=args.sample_chars).to_pylist()
                              for b in parts])

    def whole_documents() -> float:
        texts = [pc.replace_substring(b.column("text"), "\n", " ").to_pylist() for b in parts]
        return timed(lambda: [model.predict(w, k=1) for w in texts])

    direct(), through_stage()  # warm caches
    t_direct, t_stage, t_sample = best_of(args.repeats, direct, through_stage, sampling_only)
    (t_whole,) = best_of(1, whole_documents)

    chars = pc.sum(pc.utf8_length(table.column("text"))).as_py()
    sample_chars_total = sum(pc.sum(pc.utf8_length(s)).as_py() or 0 for s in sampled)
    res = {
        "documents": n, "batches": len(parts), "batch_rows": args.batch_rows, "repeats": args.repeats,
        "corpus_chars": chars, "sampled_chars": sample_chars_total, "sample_chars": args.sample_chars,
        "direct_cpu_seconds": round(t_direct, 4), "stage_cpu_seconds": round(t_stage, 4),
        "sampling_cpu_seconds": round(t_sample, 4), "whole_documents_cpu_seconds": round(t_whole, 4),
        "direct_docs_per_s": round(n / t_direct), "stage_docs_per_s": round(n / t_stage),
        "overhead": round(t_stage / t_direct - 1, 4),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "processor": platform.machine(),
                    "load_average_1min": round(os.getloadavg()[0], 2)},
    }
    print(json.dumps(res, indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    md = "\n".join([
        "# Language ID throughput (one core, lid.176.ftz)", "",
        f"{n} real documents ({chars:,} characters; {sample_chars_total:,} after sampling to <= "
        f"{args.sample_chars} characters), batches of {args.batch_rows} rows, least CPU time of {args.repeats} "
        f"interleaved runs (1-minute load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs). "
        "Generated by `python -m bench.bench_langid`.", "",
        "| path | CPU seconds | docs/s per core |", "|---|---:|---:|",
        f"| fastText `predict` on pre-made samples (direct) | {t_direct:.3f} | {n / t_direct:,.0f} |",
        f"| `LangIdStage.process` (sampling + predict + policy) | {t_stage:.3f} | {n / t_stage:,.0f} |",
        f"| sampling alone (`sample_text` + `to_pylist`) | {t_sample:.3f} | {n / t_sample:,.0f} |",
        f"| `predict` on whole documents (no sampling) | {t_whole:.3f} | {n / t_whole:,.0f} |", "",
        f"Stage overhead over direct predict: {100 * res['overhead']:.1f}% (target <= 15%).", "",
    ])
    for name, text in (("langid_bench.json", json.dumps(res, indent=2) + "\n"), ("langid_bench.md", md)):
        tmp = args.out / (name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(args.out / name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
