"""Tokenize-and-shard throughput: curate's path against the bare tokenizer library.

Measures, on the same texts and the same batches:

(a) ``raw``: the library's own batch encoder (``pyrwkv_tokenizer.WorldTokenizer.encode_batch`` for rwkv-world;
    for a Hugging Face file the engine curate's identity gate picked: ``fastokens`` ``encode_batch_flat``, or
    ``tokenizers.Tokenizer.encode_batch_fast`` with ``encode_special_tokens`` on as curate sets it, so both
    paths produce the same ids), results left as the library returns them. When the fast engine is used,
    ``tokenizers_mb_s`` and ``speedup_vs_tokenizers`` compare with the library it replaces;
(b) ``curate``: :meth:`curate.tokenizers.Tokenizer.encode_batch` (lists -> flat uint32 arrays) plus
    :class:`curate.shards.IndexedDatasetWriter` (EOS insertion, id range check, streaming .bin write, .idx,
    sha256, atomic rename).

``ratio`` = curate MB/s / raw MB/s: the share of the library's speed that survives curate's bookkeeping.
MB are UTF-8 text bytes / 1e6. Each timing is the best of ``repeats`` runs, after a warm-up that loads the
vocab and starts the thread pool. Run on the real samples with::

    python -m bench.bench_tokenize [--tokenizer rwkv-world | PATH.json] [--threads N] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from curate.shards import IndexedDatasetWriter
from curate.tokenizers import RWKV_WORLD, default_num_threads, load_tokenizer, rwkv_vocab_path

REPO = Path(__file__).resolve().parent.parent
REAL = Path(os.environ.get("CURATE_REAL_DATA", REPO.parent / "shared" / "data" / "real"))


def _batches(texts: Sequence[str], batch_docs: int) -> list[list[str]]:
    return [list(texts[i:i + batch_docs]) for i in range(0, len(texts), batch_docs)]


def _raw_encoder(tokenizer_spec: Any, base_dir: Path | None, *, reference: bool = False) -> Callable[[list[str]], Any]:
    """The bare library call of the engine curate picked (``reference``: always ``tokenizers``)."""
    tok = load_tokenizer(tokenizer_spec, base_dir=base_dir)  # resolves the same file curate uses
    if tok.kind == RWKV_WORLD:
        from pyrwkv_tokenizer import WorldTokenizer

        enc = WorldTokenizer(str(rwkv_vocab_path()))
        return enc.encode_batch
    if tok.fast and not reference:
        from curate.tokenizer_gate import load_fast

        fast_enc = load_fast(tok.path)  # the flat-buffer batch call, results left as bytes
        return lambda batch: fast_enc.encode_batch_flat(batch, split_special_tokens=True)
    from tokenizers import Tokenizer as HfTok

    hf = HfTok.from_file(str(tok.path))
    # Same ids as curate: literal special-token strings are text (measured 2-3x faster on this NeoX file).
    hf.encode_special_tokens = True
    fast = getattr(hf, "encode_batch_fast", None) or hf.encode_batch
    return lambda batch: fast(batch, add_special_tokens=False)


def _best(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    best, best_out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t0
        if dt < best:
            best, best_out = dt, out
    return best, best_out


def run(texts: list[str], *, tokenizer_spec: Any = RWKV_WORLD, out_dir: str | os.PathLike,
        num_threads: int | None = None, batch_docs: int = 1024, repeats: int = 3,
        base_dir: Path | None = None) -> dict[str, Any]:
    """Measure raw library vs curate encode+shard throughput on ``texts``.

    Parameters
    ----------
    texts : list of str
        Documents to encode.
    tokenizer_spec : str, HfTokenizer or dict
        As the recipe's ``tokenizer`` (``"rwkv-world"`` or ``{"hf": path}``).
    out_dir : path
        Folder for the benchmark shard (``bench_tokenize.bin``/``.idx``), overwritten.
    num_threads : int, optional
        Encoder threads; default :func:`curate.tokenizers.default_num_threads`.
    batch_docs : int
        Documents per encode call, for both paths (a stage sees Arrow batches, not the whole corpus).
    repeats : int
        Timed runs per path; the best is reported.

    Returns
    -------
    dict
        ``mb``, ``docs``, ``tokens``, ``raw_s``, ``raw_mb_s``, ``curate_s``, ``curate_mb_s`` (of which
        ``curate_encode_s`` and ``curate_write_s``), ``ratio`` and the shard's ``finalize()`` stats.
    """
    threads = num_threads or default_num_threads()
    os.environ.setdefault("RAYON_NUM_THREADS", str(threads))  # both libraries size their pool from it
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    mb = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    batches = _batches(texts, batch_docs)

    raw = _raw_encoder(tokenizer_spec, base_dir)
    tok = load_tokenizer(tokenizer_spec, base_dir=base_dir)
    raw(texts[:64])  # warm-up: pools started, vocab loaded
    tok.encode_batch(texts[:64], num_threads=threads)

    def raw_path() -> None:
        for b in batches:
            raw(b)  # each batch's lists are dropped, as curate drops them after copying to arrays

    raw_s, _ = _best(raw_path, repeats)
    ref_s = None
    if tok.fast:  # the speed-up over the library the fast engine replaces, same batches
        ref = _raw_encoder(tokenizer_spec, base_dir, reference=True)
        ref(texts[:64])
        ref_s, _ = _best(lambda: [ref(b) for b in batches], 1)

    def curate_path() -> dict[str, Any]:
        w = IndexedDatasetWriter(out / "bench_tokenize", vocab_size=tok.vocab_size)
        enc_s = 0.0
        for b in batches:
            t0 = time.perf_counter()
            ids, lengths = tok.encode_batch(b, num_threads=threads)
            t1 = time.perf_counter()
            enc_s += t1 - t0
            w.add_batch(ids, lengths, eos_id=tok.eos_id)
        stats = w.finalize()
        stats["encode_s"] = enc_s
        return stats

    curate_s, stats = _best(curate_path, repeats)
    enc_s = stats.pop("encode_s")
    return {
        "tokenizer": tok.name, "engine": tok.engine.as_dict(), "docs": len(texts), "mb": round(mb, 3), "tokens": stats["tokens"],
        "num_threads": threads, "batch_docs": batch_docs, "repeats": repeats,
        "raw_s": round(raw_s, 3), "raw_mb_s": round(mb / raw_s, 2),
        "curate_s": round(curate_s, 3), "curate_mb_s": round(mb / curate_s, 2),
        "curate_encode_s": round(enc_s, 3), "curate_write_s": round(curate_s - enc_s, 3),
        "ratio": round(raw_s / curate_s, 3), "shard": stats,
        "tokenizers_mb_s": round(mb / ref_s, 2) if ref_s else None,
        "speedup_vs_tokenizers": round(ref_s / curate_s, 2) if ref_s else None,
    }


def real_texts(real: Path = REAL, *, limit_mb: float | None = None) -> list[str]:
    """Every ``text``/``content`` value of the real samples' parquet files, in file order."""
    import pyarrow.parquet as pq

    if not real.is_dir():
        msg = f"real data not found at {real}; set CURATE_REAL_DATA to the folder of the sample parquet files"
        raise SystemExit(msg)
    texts: list[str] = []
    size = 0
    for f in sorted(real.rglob("*.parquet")):
        names = pq.read_schema(f).names
        for col in ("text", "content"):
            if col in names:
                for v in pq.read_table(f, columns=[col])[col].to_pylist():
                    if v is None:
                        continue
                    texts.append(v)
                    size += len(v.encode("utf-8"))
                    if limit_mb is not None and size >= limit_mb * 1e6:
                        return texts
    return texts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_tokenize", description=__doc__.split("\n")[0])
    ap.add_argument("--tokenizer", default=RWKV_WORLD, help="'rwkv-world' or a Hugging Face tokenizer.json")
    ap.add_argument("--real", type=Path, default=REAL, help="folder of the real sample parquet files")
    ap.add_argument("--out", type=Path, default=None, help="folder for the benchmark shard (default: a temp dir)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--batch-docs", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--limit-mb", type=float, default=None, help="use only the first N MB of text")
    args = ap.parse_args(argv)
    spec: Any = args.tokenizer if args.tokenizer == RWKV_WORLD else {"hf": str(Path(args.tokenizer).resolve())}
    texts = real_texts(args.real, limit_mb=args.limit_mb)
    with tempfile.TemporaryDirectory(prefix="bench_tokenize_") as tmp:
        res = run(texts, tokenizer_spec=spec, out_dir=args.out or tmp, num_threads=args.threads,
                  batch_docs=args.batch_docs, repeats=args.repeats)
    json.dump(res, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
