"""Benchmark corpus builder: real samples amplified to a chosen size, in each source's native schema.

Layout written (git-ignored, never committed: it holds real text)::

    bench/corpus/<variant>-<size>mb-s<seed>/
        <source>/part-NNNNN.parquet     native schema of the source (the-stack v1, CulturaX, PG-19, ...)
        <source>/demo-part-NNNNN.parquet  curate.demo's generator output for that source (same schema)
        recipe.yaml                     the demo recipe's policies pointed at these files
        corpus.json                     what was built: bytes and documents per source and kind, seed, time

Where the documents come from (per source, until its byte share of ``size_mb`` is reached):

- ``original``: real documents of ``../shared/data/real`` once each, in a seeded order, up to 60% of the
  source's bytes (so even a small corpus has copies for dedup to find; PG-19 books are cut into ~64 KB pieces at
  paragraph boundaries first, so a book is not one 2 MB row).
- ``remix`` (~75% of the added documents): the units of a real document (sentences for prose, paragraphs for
  books, blank-line blocks for code) plus a random half of the units of another real document of the same
  source (same language for CulturaX), shuffled. Remixes share sentences, not 5-word shingle sets, so they are
  distinct documents for MinHash (Jaccard well under the 14x8 LSH threshold of ~0.72) that still look like the
  source to the quality filters and the language model.
- ``near_dup`` (~15%): an earlier document with 0.5-2% of its words swapped with a neighbour and as many
  deleted: Jaccard of 5-shingles ~0.8-0.95, i.e. what MinHash dedup exists to find.
- ``exact`` (~10%): a byte-identical copy of an earlier document under a new id.
- ``demo``: :func:`curate.demo.generate` output, ~5% of the bytes of each source (synthetic, so a corpus built
  without the real samples is still the right shape; the real-data part is then skipped).

Ids (``hexsha``, ``url``, ``id``) are made unique per copy, so readers and the ledger see distinct records; a
copy's text is what makes it a duplicate. Everything is a function of ``seed`` (``random.Random`` per source),
so the same seed and size give byte-identical files.

Variants: ``mixed`` (all six demo sources: code 20%, multilingual 10%, books 15%, wiki 20%, web 20%, math 15%
of the bytes) and ``prose`` (wikipedia 40%, gutenberg 35%, refinedweb 25%: documents that mostly survive the
filters). ``size_mb`` counts document text (UTF-8 bytes), not Parquet bytes.

Run::

    python -m bench.corpus [--variant mixed|prose] [--size-mb 500] [--seed 0] [--tokenizer rwkv-world|PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

REPO = Path(__file__).resolve().parent.parent
REAL = Path(os.environ.get("CURATE_REAL_DATA", REPO.parent / "shared" / "data" / "real"))
CORPUS_ROOT = REPO / "bench" / "corpus"
PART_BYTES = 24_000_000  # text bytes per output Parquet file (= one curate partition)


@dataclass(frozen=True)
class SourceSpec:
    """One source of the benchmark corpus: where its real sample is and how to cut it into units."""

    file: str
    format: str
    text: str
    ids: tuple[str, ...]  # id-like columns made unique per copy
    unit: str  # "sentence", "paragraph", "block"
    recipe: dict[str, Any]


SOURCES: dict[str, SourceSpec] = {
    "the-stack": SourceSpec("thestack.parquet", "the-stack-v1", "content",
                            ("hexsha",), "block", {"license": "permissive", "quality": "code"}),
    "culturax": SourceSpec("culturax.parquet", "culturax", "text", ("url",), "sentence",
                           {"langid": {"drop": ["en"], "min_score": 0.65}}),
    "gutenberg": SourceSpec("gutenberg.parquet", "pg19", "text", ("url", "short_book_title"), "paragraph",
                            {"quality": "gopher"}),
    "wikipedia": SourceSpec("wikipedia.parquet", "wikipedia", "text", ("id", "url"), "sentence", {}),
    "refinedweb": SourceSpec("refinedweb.parquet", "refinedweb", "content", ("url",), "sentence",
                             {"quality": "fineweb"}),
    "math": SourceSpec("openwebmath.parquet", "open-web-math", "text", ("url",), "sentence", {}),
}

VARIANTS: dict[str, dict[str, float]] = {
    "mixed": {"the-stack": 0.20, "culturax": 0.10, "gutenberg": 0.15, "wikipedia": 0.20, "refinedweb": 0.20,
              "math": 0.15},
    "prose": {"wikipedia": 0.40, "gutenberg": 0.35, "refinedweb": 0.25},
}
KIND_P = (("remix", 0.75), ("near_dup", 0.15), ("exact", 0.10))
DEMO_SHARE = 0.05
ORIGINAL_SHARE = 0.6  # at most this share of a source's bytes are unchanged real documents
BOOK_PIECE = 64_000
_SENT = re.compile(r"(?<=[.!?。])\s+")


def corpus_dir(variant: str, size_mb: float, seed: int, root: Path = CORPUS_ROOT) -> Path:
    """Folder of one built corpus (``<root>/<variant>-<size>mb-s<seed>``)."""
    return root / f"{variant}-{size_mb:g}mb-s{seed}"


# ---------------------------------------------------------------------------- units and perturbations
def _units(text: str, unit: str) -> list[str]:
    if unit == "sentence":
        return [u for u in _SENT.split(text) if u]
    return [u for u in text.split("\n\n") if u.strip()]


def _join(units: list[str], unit: str) -> str:
    return " ".join(units) if unit == "sentence" else "\n\n".join(units)


def remix(a: str, b: str, unit: str, rng: random.Random) -> str:
    """All units of ``a`` plus a random half of the units of ``b``, shuffled."""
    ua, ub = _units(a, unit), _units(b, unit)
    out = ua + rng.sample(ub, len(ub) // 2)
    rng.shuffle(out)
    return _join(out, unit)


def near_dup(text: str, rng: random.Random) -> str:
    """Swap a random 0.5-2% of words with their right neighbour and delete as many (whitespace kept as spaces
    inside each line, so line structure, which the quality rules read, survives)."""
    lines = text.split("\n")
    rate = rng.uniform(0.005, 0.02)
    out = []
    for line in lines:
        w = line.split(" ")
        n = len(w)
        if n > 3:
            for _ in range(int(n * rate + rng.random())):
                i = rng.randrange(n - 1)
                w[i], w[i + 1] = w[i + 1], w[i]
            for _ in range(int(n * rate + rng.random())):
                if len(w) > 3:
                    del w[rng.randrange(len(w))]
        out.append(" ".join(w))
    return "\n".join(out)


# ---------------------------------------------------------------------------- per source
def _pool(spec: SourceSpec, real: Path) -> pa.Table:
    t = pq.read_table(real / spec.file)
    t = t.filter(pc.fill_null(pc.greater(pc.utf8_length(t[spec.text]), 0), False))
    if spec.format != "pg19":
        return t
    # cut books into pieces at paragraph boundaries: a 2 MB row would make a partition of one document
    rows, texts = [], []
    for i, text in enumerate(t[spec.text].to_pylist()):
        piece: list[str] = []
        size = 0
        for para in text.split("\n\n"):
            piece.append(para)
            size += len(para) + 2
            if size >= BOOK_PIECE:
                rows.append(i)
                texts.append("\n\n".join(piece))
                piece, size = [], 0
        if piece:
            rows.append(i)
            texts.append("\n\n".join(piece))
    out = t.take(pa.array(rows, pa.int64()))
    out = out.set_column(out.schema.get_field_index(spec.text), spec.text, pa.array(texts, pa.string()))
    return _unique_ids(out, spec, pa.array(range(len(rows)), pa.int64()), "p")


def _unique_ids(t: pa.Table, spec: SourceSpec, n: pa.Array, tag: str) -> pa.Table:
    suffix = pc.binary_join_element_wise(pa.scalar(f"#{tag}"), pc.cast(n, pa.string()), "")
    for col in spec.ids:
        i = t.schema.get_field_index(col)
        new = pc.binary_join_element_wise(pc.fill_null(pc.cast(t[col], pa.string()), ""), suffix, "")
        t = t.set_column(i, t.schema.field(i).with_type(pa.string()), new)
    return t


def _groups(pool: pa.Table, name: str, real: Path) -> list[list[int]]:
    """Row indices that may be remixed together: all rows, or one group per language for CulturaX."""
    if name != "culturax" or not (real / "culturax_labels.parquet").exists():
        return [list(range(pool.num_rows))]
    labels = dict(zip(*pq.read_table(real / "culturax_labels.parquet").to_pydict().values(), strict=False))
    by: dict[str, list[int]] = {}
    for i, u in enumerate(pool["url"].to_pylist()):
        by.setdefault(labels.get(u, "?"), []).append(i)
    return [g for g in by.values() if len(g) >= 2]


def build_source(name: str, target_bytes: int, out: Path, *, seed: int, real: Path) -> dict[str, Any]:
    """Write ``out/<name>/part-*.parquet`` with ~``target_bytes`` of text from the real sample; return counts."""
    spec = SOURCES[name]
    rng = random.Random(f"{seed}:{name}")
    pool = _pool(spec, real)
    texts: list[str] = pool[spec.text].to_pylist()
    # originals first, in a seeded order, as many as fit (a small corpus takes a sample of the real rows)
    order = list(range(pool.num_rows))
    rng.shuffle(order)
    template: list[int] = []
    out_texts: list[str] = []
    total = 0
    for i in order:
        if total >= ORIGINAL_SHARE * target_bytes:
            break
        template.append(i)
        out_texts.append(texts[i])
        total += len(texts[i].encode())
    kinds = {"original": [len(template), total]}
    groups = _groups(pool, name, real)
    group_of = {i: g for g in groups for i in g}
    names, weights = zip(*KIND_P, strict=True)
    while total < target_bytes:
        kind = rng.choices(names, weights)[0]
        if kind == "remix":
            a = rng.randrange(pool.num_rows)
            g = group_of.get(a) or groups[0]
            b = rng.choice(g)
            text = remix(texts[a], texts[b], spec.unit, rng)
            tpl = a
        else:
            j = rng.randrange(len(out_texts))
            text = out_texts[j] if kind == "exact" else near_dup(out_texts[j], rng)
            tpl = template[j]
        out_texts.append(text)
        template.append(tpl)
        nb = len(text.encode())
        k = kinds.setdefault(kind, [0, 0])
        k[0] += 1
        k[1] += nb
        total += nb
    # one table in the native schema: template rows with the new text and unique ids
    t = pool.take(pa.array(template, pa.int64()))
    t = t.set_column(t.schema.get_field_index(spec.text), spec.text, pa.array(out_texts, pa.string()))
    t = _unique_ids(t, spec, pa.array(range(t.num_rows), pa.int64()), "b")
    if "size" in t.schema.names:
        t = t.set_column(t.schema.get_field_index("size"), t.schema.field("size"),
                         pc.cast(pc.binary_length(t[spec.text]), t.schema.field("size").type))
    # shuffle rows so copies do not sit next to their originals, then cut into ~PART_BYTES files
    order = list(range(t.num_rows))
    rng.shuffle(order)
    t = t.take(pa.array(order, pa.int64()))
    nbytes = pc.binary_length(t[spec.text]).to_numpy(zero_copy_only=False)
    d = out / name
    d.mkdir(parents=True, exist_ok=True)
    start, acc, part = 0, 0, 0
    for i, b in enumerate(nbytes):
        acc += int(b)
        if acc >= PART_BYTES or i == len(nbytes) - 1:
            pq.write_table(t.slice(start, i + 1 - start), d / f"part-{part:05d}.parquet", compression="zstd")
            part, start, acc = part + 1, i + 1, 0
    return {"docs": t.num_rows, "bytes": int(nbytes.sum()), "files": part,
            "kinds": {k: {"docs": v[0], "bytes": v[1]} for k, v in kinds.items()}}


def add_demo(out: Path, sources: list[str], demo_bytes: int, *, seed: int) -> dict[str, int]:
    """Add curate.demo's generator output (``demo-part-*.parquet``) to the source folders; return bytes/source."""
    from curate.demo import generate

    got: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="bench_demo_") as tmp:
        # scale 1 is ~3.4 MB of text over the six sources
        written = generate(tmp, seed=seed, scale=max(0.05, demo_bytes / 3.4e6), files_per_source=1)
        for src, files in written.items():
            if src not in sources:
                continue
            for j, f in enumerate(files):
                dst = out / src / f"demo-part-{j:05d}.parquet"
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, dst)
                t = pq.read_table(dst)
                col = SOURCES[src].text
                got[src] = got.get(src, 0) + int(pc.sum(pc.binary_length(t[col])).as_py() or 0)
    return got


def write_recipe(out: Path, sources: list[str], *, tokenizer: str, budget_tokens: int, seed: int) -> Path:
    """The demo recipe's policies over the corpus files: everything kept is tokenized, ``rescale`` on shortfall."""
    tok: Any = tokenizer if tokenizer == "rwkv-world" else {"hf": str(Path(tokenizer).resolve())}
    srcs = {s: {"format": SOURCES[s].format, "paths": [f"{s}/*.parquet"], **SOURCES[s].recipe} for s in sources}
    groups = {"code": ["the-stack"], "multilingual": ["culturax"],
              "soup": ["wikipedia", "gutenberg", "refinedweb", "math"]}
    shares = {"code": 0.15, "multilingual": 0.15, "soup": 0.70}
    mixture = {}
    present = {g: [s for s in m if s in sources] for g, m in groups.items()}
    norm = sum(shares[g] for g, m in present.items() if m)
    for g, m in present.items():
        if m:
            mixture[g] = {"share": round(shares[g] / norm, 6), "sources": {s: 1 for s in m}}
    recipe = {
        "name": f"bench-{out.name}", "seed": seed, "tokenizer": tok, "budget_tokens": budget_tokens,
        "max_epochs": 1, "on_shortfall": "rescale", "tolerance_pp": 0.5, "max_doc_tokens": 4096,
        "max_drop_share": 1.0, "sources": srcs,
        "dedup": {"exact": True, "minhash": {"ngram": 5, "bands": 14, "rows": 8},
                  "keep_priority": [s for s in ("wikipedia", "gutenberg", "math", "the-stack", "culturax",
                                                "refinedweb") if s in sources]},
        "mixture": mixture, "shards": {"format": "megatron", "max_tokens": 50_000_000},
    }
    p = out / f"recipe-{'rwkv' if tokenizer == 'rwkv-world' else Path(tokenizer).stem}.yaml"
    p.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return p


def build(variant: str = "mixed", size_mb: float = 500, *, seed: int = 0, real: Path = REAL,
          root: Path = CORPUS_ROOT, force: bool = False) -> Path:
    """Build (or reuse) the corpus ``variant`` of ``size_mb`` MB of text; return its folder.

    Parameters
    ----------
    variant
        ``mixed`` or ``prose`` (see :data:`VARIANTS`).
    size_mb
        Target text size in MB (1e6 bytes); each source stops at the first document past its share.
    seed
        Everything random derives from it.
    real
        Folder of the real samples; when absent, the corpus is curate.demo output only.
    force
        Rebuild even when ``corpus.json`` says this corpus is complete.
    """
    if variant not in VARIANTS:
        msg = f"unknown corpus variant {variant!r}; choose one of {sorted(VARIANTS)}"
        raise ValueError(msg)
    out = corpus_dir(variant, size_mb, seed, root)
    if (out / "corpus.json").exists() and not force:
        return out
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    t0 = time.time()
    shares = VARIANTS[variant]
    target = size_mb * 1e6
    have_real = all((real / SOURCES[s].file).exists() for s in shares)
    demo_share = DEMO_SHARE if have_real else 1.0
    demo = add_demo(out, list(shares), int(target * demo_share), seed=seed)
    info: dict[str, Any] = {"variant": variant, "size_mb": size_mb, "seed": seed, "real": have_real,
                            "sources": {}}
    for s, share in shares.items():
        entry: dict[str, Any] = {"demo_bytes": demo.get(s, 0)}
        if have_real:
            entry.update(build_source(s, int(target * share * (1 - DEMO_SHARE)), out, seed=seed, real=real))
        info["sources"][s] = entry
    info["text_bytes"] = sum(e.get("bytes", 0) + e["demo_bytes"] for e in info["sources"].values())
    info["parquet_bytes"] = sum(p.stat().st_size for p in out.rglob("*.parquet"))
    info["docs"] = sum(e.get("docs", 0) for e in info["sources"].values())
    info["build_seconds"] = round(time.time() - t0, 2)
    (out / "corpus.json").write_text(json.dumps(info, indent=2))
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line: build one corpus and print its folder and summary."""
    ap = argparse.ArgumentParser(prog="python -m bench.corpus", description=__doc__.split("\n")[0])
    ap.add_argument("--variant", choices=sorted(VARIANTS), default="mixed")
    ap.add_argument("--size-mb", type=float, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--real", type=Path, default=REAL)
    ap.add_argument("--root", type=Path, default=CORPUS_ROOT)
    ap.add_argument("--force", action="store_true")
    args = ap.parse_args(argv)
    out = build(args.variant, args.size_mb, seed=args.seed, real=args.real, root=args.root, force=args.force)
    print(out)
    print((out / "corpus.json").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
