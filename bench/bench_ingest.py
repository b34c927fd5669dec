"""Ingest throughput: curate's source readers against plain pyarrow reads of the same files.

For each real sample in ``../shared/data/real`` that a reader of ours owns (the-stack v1, CulturaX, RefinedWeb,
open-web-math), the native Parquet file is copied ``--scale`` times over (so one read takes long enough to
time) into a temporary folder, once as Parquet (zstd) and once as ``.jsonl.gz``. Then each file is read

- by ``pq.read_table`` / ``pyarrow.json.read_json`` (the floor: decoding only, no normalizing), and
- by ``curate.sources.read_partition`` (decoding, projection, normalizing to ``DOC_SCHEMA``, ids, meta JSON,
  quarantine checks),

all single-threaded (``use_threads=False``; Ray runs one task per core), best of ``--repeat`` runs after a
warm-up. Throughput is MB of document text (UTF-8) per CPU-second, i.e. per core; ``overhead`` is the reader's
CPU time over the floor's CPU time for the same file (CPU time, not wall time, so that other processes on a
shared machine disturb the ratio less; wall seconds are printed too).

Run: ``python -m bench.bench_ingest [--data DIR] [--scale 5] [--repeat 3] [--json out.json]``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.json as pj
import pyarrow.parquet as pq

from curate.recipe import SourceConfig
from curate.sources import read_partition
from curate.sources.base import Partition, ReadContext

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = Path(os.environ.get("CURATE_REAL_DATA", REPO.parent / "shared" / "data" / "real"))
#: sample file -> (format, text column)
SAMPLES = {
    "thestack.parquet": ("the-stack-v1", "content"),
    "culturax.parquet": ("culturax", "text"),
    "refinedweb.parquet": ("refinedweb", "content"),
    "openwebmath.parquet": ("open-web-math", "text"),
}


# ----------------------------------------------------------------------------
def _jsonable(table: pa.Table) -> pa.Table:
    """Timestamps as ISO strings, as a JSON-lines export of the dataset would have them."""
    for i, f in enumerate(table.schema):
        if pa.types.is_timestamp(f.type):
            col = pa.compute.strftime(table.column(i).cast(pa.timestamp("s")), format="%Y-%m-%dT%H:%M:%S")
            table = table.set_column(i, f.name, col)
    return table


def write_copies(src: Path, out: Path, *, scale: int) -> tuple[Path, Path, int]:
    """Write ``scale`` concatenated copies of ``src`` as Parquet and as JSON lines (gzip); return paths, text MB."""
    table = pq.read_table(src)
    big = pa.concat_tables([table] * scale)
    pqp = out / f"{src.stem}.parquet"
    pq.write_table(big, pqp, compression="zstd", row_group_size=4096)
    jp = out / f"{src.stem}.jsonl.gz"
    with gzip.open(jp, "wt", encoding="utf-8", compresslevel=6) as fh:
        for batch in _jsonable(big).to_batches(max_chunksize=4096):
            for row in batch.to_pylist():
                fh.write(json.dumps(row, ensure_ascii=False))
                fh.write("\n")
    return pqp, jp, big.num_rows


def _time(fn: Callable[[], int], *, repeat: int) -> tuple[float, float, int]:
    """Best (wall seconds, CPU seconds) over ``repeat`` runs after one warm-up, and ``fn``'s result."""
    result = fn()
    best_wall = best_cpu = float("inf")
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        result = fn()
        best_wall = min(best_wall, time.perf_counter() - w)
        best_cpu = min(best_cpu, time.process_time() - c)
    return best_wall, best_cpu, result


def _reader(path: Path, fmt: str) -> Callable[[], int]:
    part = Partition(pid=0, source="bench", subset="", format=fmt, path=str(path))
    src = SourceConfig(format=fmt, paths=["bench"])
    ctx = ReadContext(batch_rows=4096)

    def run() -> int:
        return sum(int(pa.compute.sum(b.docs.column("nbytes")).as_py() or 0)
                   for b in read_partition(part, src, ctx))

    return run


def _pq_floor(path: Path, text_col: str) -> Callable[[], int]:
    def run() -> int:
        t = pq.read_table(path, use_threads=False)
        return int(pa.compute.sum(pa.compute.binary_length(t.column(text_col))).as_py())

    return run


def _json_floor(path: Path, text_col: str) -> Callable[[], int]:
    def run() -> int:
        t = pj.read_json(path, read_options=pj.ReadOptions(use_threads=False, block_size=16 << 20))
        return int(pa.compute.sum(pa.compute.binary_length(t.column(text_col))).as_py())

    return run


def bench(data: Path, *, scale: int, repeat: int) -> list[dict]:
    """Run every sample in both encodings; return one result row per (sample, encoding)."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="curate-bench-ingest-") as tmp:
        for name, (fmt, text_col) in SAMPLES.items():
            src = data / name
            if not src.is_file():
                print(f"skip {name}: not found in {data}", file=sys.stderr)
                continue
            pqp, jp, n = write_copies(src, Path(tmp), scale=scale)
            for enc, path, floor in (("parquet", pqp, _pq_floor(pqp, text_col)),
                                     ("jsonl.gz", jp, _json_floor(jp, text_col))):
                fw, fc, fbytes = _time(floor, repeat=repeat)
                rw, rc, rbytes = _time(_reader(path, fmt), repeat=repeat)
                mb = rbytes / 1e6
                rows.append({
                    "sample": name, "format": fmt, "encoding": enc, "rows": n, "file_mb": path.stat().st_size / 1e6,
                    "text_mb": mb, "floor_text_mb": fbytes / 1e6,
                    "pyarrow_s": fw, "pyarrow_mb_s_core": mb / fc if fc else float("nan"),
                    "curate_s": rw, "curate_mb_s_core": mb / rc if rc else float("nan"),
                    "overhead": rc / fc if fc else float("nan"),
                })
    return rows


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: run the benchmark and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with the real samples")
    ap.add_argument("--scale", type=int, default=5, help="copies of each sample per benchmark file")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per measurement (best is kept)")
    ap.add_argument("--json", type=Path, default=None, help="also write the result rows here")
    args = ap.parse_args(argv)
    if not args.data.is_dir():
        print(f"real data not found at {args.data}; pass --data", file=sys.stderr)
        return 2
    rows = bench(args.data, scale=args.scale, repeat=args.repeat)
    head = (f"{'sample':<20} {'enc':<8} {'rows':>7} {'text MB':>8} {'pyarrow s':>9} {'MB/s/core':>9} "
            f"{'curate s':>9} {'MB/s/core':>9} {'overhead':>8}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['sample']:<20} {r['encoding']:<8} {r['rows']:>7} {r['text_mb']:>8.1f} {r['pyarrow_s']:>9.3f} "
              f"{r['pyarrow_mb_s_core']:>9.0f} {r['curate_s']:>9.3f} {r['curate_mb_s_core']:>9.0f} "
              f"{r['overhead']:>7.2f}x")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
