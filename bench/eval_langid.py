"""Per-language precision and recall of the langid stage on the real, labelled test data.

Datasets (from ``../shared/data/real``, see its PROVENANCE.md; only counts are written, never text):

- ``culturax``: 2,030 Universal Dependencies documents in 21 languages; truth is ``culturax_labels.parquet``
  (``url`` -> ``lang_iso639_1``), joined on ``url``. Evaluated on documents of >= 200 characters whose
  language lid.176 knows (the acceptance set of ``tests/stages/test_langid.py``), and on all documents.
- ``wikipedia``: 1,528 articles; truth is the language edition in the url (``https://de.wikipedia.org/...``),
  articles of >= 200 characters.
- ``gutenberg``: 41 whole books; truth is the ``lang`` column of the PG-19 table in PROVENANCE.md. Books are
  long, so this is where the sampling choice matters: the report compares the stage's head + middle sample
  with the first ``sample_chars`` characters alone.

Writes ``bench/results/langid_eval.md`` and ``bench/results/langid_eval.json``::

    python -m bench.eval_langid [--real DIR] [--sample-chars 1000] [--out bench/results]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate import lid_model as lid
from curate.stages.langid import LangIdStage

REPO = Path(__file__).resolve().parent.parent
DEFAULT_REAL = Path(os.environ.get("CURATE_REAL_DATA", REPO.parent / "shared" / "data" / "real"))
MIN_CHARS = 200


# ---------------------------------------------------------------------------- datasets: (text, truth) tables
def culturax(real: Path) -> pa.Table:
    docs = pq.read_table(real / "culturax.parquet", columns=["text", "url"])
    labels = pq.read_table(real / "culturax_labels.parquet")
    t = docs.join(labels, "url", join_type="inner")
    if t.num_rows != docs.num_rows:
        msg = f"{real / 'culturax_labels.parquet'}: {docs.num_rows - t.num_rows} documents have no label by url"
        raise SystemExit(msg)
    return pa.table({"text": t.column("text"), "truth": t.column("lang_iso639_1")})


def wikipedia(real: Path) -> pa.Table:
    t = pq.read_table(real / "wikipedia.parquet", columns=["text", "url"])
    host = pc.extract_regex(t.column("url"), r"^https?://(?P<lang>[a-z-]+)\.wikipedia\.org/")
    return pa.table({"text": t.column("text"), "truth": pc.struct_field(host, "lang")})


def gutenberg(real: Path) -> pa.Table | None:
    """Books with their language from the PG-19 table in PROVENANCE.md (``None`` when it cannot be parsed)."""
    prov = (real / "PROVENANCE.md").read_text(encoding="utf-8")
    section = prov.split("## gutenberg.parquet", 1)[-1].split("\n## ", 1)[0]
    lang_by_id: dict[str, str] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 8 and cells[0].isdigit():
            lang_by_id[cells[0]] = cells[5]
    if not lang_by_id:
        return None
    t = pq.read_table(real / "gutenberg.parquet", columns=["text", "url"])
    pg_id = pc.struct_field(pc.extract_regex(t.column("url"), r"/ebooks/(?P<id>\d+)$"), "id")
    truth = pa.array([lang_by_id.get(i) for i in pg_id.to_pylist()], type=pa.string())  # 41 books
    return pa.table({"text": t.column("text"), "truth": truth}).filter(pc.is_valid(truth))


# ---------------------------------------------------------------------------- metrics
def confusion(truth: pa.Array, pred: pa.Array) -> pa.Table:
    """Counts of (truth, pred) pairs; a null prediction is counted as ``und``."""
    t = pa.table({"truth": truth, "pred": pc.fill_null(pred, lid.UNDETERMINED)})
    return t.group_by(["truth", "pred"]).aggregate([([], "count_all")]).rename_columns(["truth", "pred", "n"])


def per_language(conf: pa.Table) -> dict:
    """Precision, recall and F1 per true language, plus overall accuracy and the top confusions."""
    rows = conf.to_pylist()
    langs = sorted({r["truth"] for r in rows})
    out = {}
    for lang in langs:
        tp = sum(r["n"] for r in rows if r["truth"] == lang and r["pred"] == lang)
        support = sum(r["n"] for r in rows if r["truth"] == lang)
        predicted = sum(r["n"] for r in rows if r["pred"] == lang)
        p = tp / predicted if predicted else 0.0
        rec = tp / support if support else 0.0
        out[lang] = {"precision": round(p, 4), "recall": round(rec, 4),
                     "f1": round(2 * p * rec / (p + rec), 4) if p + rec else 0.0, "support": support}
    total = sum(r["n"] for r in rows)
    correct = sum(r["n"] for r in rows if r["truth"] == r["pred"])
    errors = sorted((r for r in rows if r["truth"] != r["pred"]), key=lambda r: -r["n"])[:10]
    return {"accuracy": round(correct / total, 4) if total else None, "documents": total, "languages": out,
            "top_confusions": [{"truth": r["truth"], "pred": r["pred"], "n": r["n"]} for r in errors]}


def head_only(model, text: pa.Array, sample_chars: int) -> pa.Array:
    """Labels from the first ``sample_chars`` characters only (the alternative the stage does not use)."""
    sample = pc.replace_substring(pc.utf8_slice_codeunits(text, 0, sample_chars), "\n", " ")
    return lid.predict_samples(model, sample.combine_chunks() if isinstance(sample, pa.ChunkedArray) else sample)[0]


def evaluate(name: str, t: pa.Table, *, sample_chars: int, model, supported: pa.Array) -> dict:
    long_enough = pc.greater_equal(pc.utf8_length(t.column("text")), MIN_CHARS)
    in_model = pc.is_in(t.column("truth"), value_set=supported)
    subset = t.filter(pc.and_(long_enough, in_model))
    stage = LangIdStage(sample_chars=sample_chars)
    start = time.perf_counter()
    pred = stage.process(subset).column("lang").combine_chunks()
    seconds = time.perf_counter() - start
    truth = subset.column("truth").combine_chunks()
    res = {"dataset": name, "rows": t.num_rows, "evaluated": subset.num_rows,
           "skipped_short": int(t.num_rows - pc.sum(long_enough).as_py()),
           "skipped_unsupported": int(t.num_rows - pc.sum(in_model).as_py()),
           "seconds": round(seconds, 3), **per_language(confusion(truth, pred))}
    head = head_only(model, subset.column("text"), sample_chars)
    head_ok = pc.cast(pc.equal(pc.fill_null(head, ""), truth), pa.float64())
    res["head_only_accuracy"] = round(pc.mean(head_ok).as_py(), 4)
    if name == "culturax":  # every document, whatever its length
        all_pred = stage.process(t.filter(in_model)).column("lang").combine_chunks()
        res["all_lengths"] = per_language(confusion(t.filter(in_model).column("truth").combine_chunks(), all_pred))
    return res


# ---------------------------------------------------------------------------- report
def markdown(results: list[dict], *, sample_chars: int) -> str:
    lines = ["# Language ID evaluation (lid.176.ftz through LangIdStage)", "",
             f"Sample: whole document up to {sample_chars} characters, else head {sample_chars // 2} + middle "
             f"{sample_chars - sample_chars // 2}. Documents of >= {MIN_CHARS} characters in languages lid.176 "
             "knows. Generated by `python -m bench.eval_langid`.", "",
             "| dataset | documents | accuracy | head-only accuracy | seconds |", "|---|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['dataset']} | {r['evaluated']} | {r['accuracy']:.4f} | {r['head_only_accuracy']:.4f} "
                     f"| {r['seconds']} |")
    for r in results:
        lines += ["", f"## {r['dataset']}", ""]
        if "all_lengths" in r:
            a = r["all_lengths"]
            lines += [f"All lengths (including < {MIN_CHARS} characters): accuracy {a['accuracy']:.4f} on "
                      f"{a['documents']} documents.", ""]
        lines += ["| lang | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
        for lang, m in r["languages"].items():
            lines.append(f"| {lang} | {m['precision']:.4f} | {m['recall']:.4f} | {m['f1']:.4f} | {m['support']} |")
        if r["top_confusions"]:
            conf = ", ".join(f"{c['truth']}->{c['pred']} ({c['n']})" for c in r["top_confusions"])
            lines += ["", f"Confusions (truth->predicted): {conf}"]
    return "\n".join(lines) + "\n"


def write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--real", type=Path, default=DEFAULT_REAL, help="folder with the real test data")
    ap.add_argument("--sample-chars", type=int, default=lid.DEFAULT_SAMPLE_CHARS)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = ap.parse_args(argv)
    if not (args.real / "culturax.parquet").is_file():
        msg = f"real data not found at {args.real}; pass --real or set CURATE_REAL_DATA"
        raise SystemExit(msg)
    model = lid.load_model()
    supported = pa.array(lid.lid176_labels())
    results = []
    for name, loader in (("culturax", culturax), ("wikipedia", wikipedia), ("gutenberg", gutenberg)):
        t = loader(args.real)
        if t is None:
            print(f"{name}: skipped (labels not found)")
            continue
        r = evaluate(name, t, sample_chars=args.sample_chars, model=model, supported=supported)
        print(f"{name}: accuracy {r['accuracy']:.4f} on {r['evaluated']} documents "
              f"(head-only {r['head_only_accuracy']:.4f}), {r['seconds']} s")
        results.append(r)
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"model": str(lid.default_model_path().name), "sample_chars": args.sample_chars,
              "min_chars": MIN_CHARS, "datasets": results}
    write(args.out / "langid_eval.json", json.dumps(report, indent=2) + "\n")
    write(args.out / "langid_eval.md", markdown(results, sample_chars=args.sample_chars))
    print(f"wrote {args.out / 'langid_eval.md'} and .json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
