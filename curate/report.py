"""The audit report: one self-contained HTML page a data team reads first (``curate audit --html FILE``, and
``RUN_DIR/report.html``, which ``curate run`` rewrites as its phases finish).

Charts are Vega-Lite specs built with ``altair``; the Vega, Vega-Lite and Vega-Embed scripts are inlined from
the ``vl-convert-python`` wheel (``vl_convert.javascript_bundle``), so the page opens offline and can be mailed
around. A Content-Security-Policy (``default-src 'none'``) makes the browser refuse any request the page
might try, and every chart's data is bounded (aggregates, top-N, pre-binned histograms, a fixed sample), so a
report stays around 1–2 MB whatever the corpus size.

Sections (each with one line saying what it shows; a section whose data the run has not produced yet says
"not yet available" instead): status and violations, target vs actual shares with the tolerance band, the
funnel with drop reasons, quality-score distributions with thresholds, the dedup attribution matrix, tokens
per language and per license, group shares along the token stream, per-phase timings, document samples per
drop reason (and kept ones), and any further audit sections (``balance``, ``decontamination``, ...) as tables.

The ``*_frame`` functions return the plotted data as polars DataFrames; ``notebooks/audit.ipynb`` uses the
same functions, so the notebook and the page show the same numbers.
"""

from __future__ import annotations

import functools
import html
import importlib.metadata
import json
import os
from pathlib import Path
from typing import Any

import polars as pl

from curate.chart_templates import Slots, Spec, fill, template
from curate.io_utils import atomic_write_text, user_cache_dir
from curate.layout import RunLayout
from curate.pipeline import stage_names

#: Reasons shown by name in the funnel; the rest are summed as "other".
TOP_REASONS = 12
#: Languages / licenses shown by name.
TOP_VALUES = 15
#: Histogram bins per score.
SCORE_BINS = 40
#: Windows along the token stream.
STREAM_POINTS = 100
#: Sampled documents shown per (source, reason).
SAMPLES_PER_REASON = 3
STREAM_TOLERANCE_PP = 1.0
KEPT_LABEL = "in mixture"

SECTIONS = {  # id: (title, one-line explanation)
    "shares": ("Target vs actual", "Share of the mixture's tokens per group, source and subset against the recipe; "
               "right: the deviation in percentage points, with the tolerance band shaded."),
    "funnel": ("Funnel", "Where every ingested document ended: in the mixture, or dropped at a stage for a reason "
               "(left); documents remaining after each stage, as a share of those ingested (right)."),
    "scores": ("Quality score distributions", "Histogram of each score over the documents that reached its "
               "stage, per source; red lines are the thresholds (documents beyond them are dropped)."),
    "dedup": ("Dedup attribution", "Documents removed as duplicates from the row's source whose kept copy is in "
              "the column's source."),
    "langlic": ("Tokens per language and license", "Tokens in the shards by language label and by normalized "
                "license (from the lineage)."),
    "stream": ("Composition along the token stream", "Each group's share in a window of the token stream a trainer "
               "reads (the audit's window, at 100 positions); shaded: its overall share ± 1 pp, dashed: the recipe's "
               "target."),
    "timings": ("Timings", "Wall-clock and CPU seconds of each phase of the run, then CPU seconds, documents, "
                           "bytes and tokens of each stage (RUN_DIR/stats.json)."),
    "samples": ("Document samples", "A few documents per drop reason of every source, and kept ones as a contrast: "
                "id, the first characters and the scores (a deterministic sample by id hash, never a re-read)."),
}


def _na(why: str) -> str:
    return f"<p class='na'>Not yet available: {html.escape(why)}</p>"


# ---------------------------------------------------------------------------- data (shared with the notebook)
def tolerance_pp(result: dict[str, Any]) -> float:
    tol = result.get("tolerance_pp")
    return float(tol) if tol is not None else 0.1


def shares_frame(result: dict[str, Any]) -> pl.DataFrame:
    """level, name, target, actual, delta_pp, tokens, epochs, within (|delta| <= tolerance)."""
    tol = tolerance_pp(result)
    epochs = {m.get("key"): m.get("epochs") for m in result.get("members") or []}
    rows = []
    for level in ("groups", "sources", "subsets"):
        for name, e in (result.get(level) or {}).items():
            t, a = e.get("target"), e.get("actual")
            ok_t = t is not None and t == t
            d = (a - t) * 100 if ok_t and a is not None else None
            rows.append({"level": level, "name": name, "target": t if ok_t else None, "actual": a,
                         "delta_pp": d, "tokens": e.get("tokens"), "epochs": epochs.get(name),
                         "within": d is None or abs(d) <= tol + 1e-9})
    schema = {"level": pl.String, "name": pl.String, "target": pl.Float64, "actual": pl.Float64,
              "delta_pp": pl.Float64, "tokens": pl.Int64, "epochs": pl.Float64, "within": pl.Boolean}
    return pl.DataFrame(rows, schema=schema)


def funnel_frame(result: dict[str, Any]) -> pl.DataFrame:
    """source, stage, step (stage index), docs_out, share (of ingested documents)."""
    rows = []
    for src, stages in (result.get("funnel") or {}).items():
        base = (stages.get("ingest") or {}).get("docs_in") or 0
        for i, st in enumerate(stage_names()):
            c = stages.get(st)
            if c is None:
                continue
            rows.append({"source": src, "stage": st, "step": i, "docs_out": c.get("docs_out", 0),
                         "share": (c.get("docs_out", 0) / base) if base else None})
    return pl.DataFrame(rows, schema={"source": pl.String, "stage": pl.String, "step": pl.Int64,
                                      "docs_out": pl.Int64, "share": pl.Float64})


def fate_frame(result: dict[str, Any], *, top: int = TOP_REASONS) -> pl.DataFrame:
    """source, outcome, stage, docs: every ingested document's end (in mixture / a drop reason / "other")."""
    rows = []
    for src, stages in (result.get("funnel") or {}).items():
        last = None
        for st in stage_names():
            c = stages.get(st)
            if c is None:
                continue
            last = (st, c)
            for r, n in (c.get("dropped") or {}).items():
                rows.append({"source": src, "outcome": r, "stage": st, "docs": n})
            for r, n in (c.get("quarantined") or {}).items():
                rows.append({"source": src, "outcome": f"quarantined:{r}", "stage": st, "docs": n})
        if last is not None:
            st, c = last
            label = KEPT_LABEL if st == "mix" else f"remaining after {st}"
            rows.append({"source": src, "outcome": label, "stage": st, "docs": c.get("docs_out", 0)})
    df = pl.DataFrame(rows, schema={"source": pl.String, "outcome": pl.String, "stage": pl.String, "docs": pl.Int64})
    if df.is_empty():
        return df
    df = df.filter(pl.col("docs") > 0)
    keep_always = df.filter(~pl.col("outcome").is_in(_drop_like(df)))["outcome"].unique().to_list()
    drops = df.filter(pl.col("outcome").is_in(_drop_like(df))).group_by("outcome").agg(pl.col("docs").sum())
    named = drops.sort(["docs", "outcome"], descending=[True, False]).head(top)["outcome"].to_list()
    df = df.with_columns(pl.when(pl.col("outcome").is_in(named + keep_always)).then(pl.col("outcome"))
                         .otherwise(pl.lit("other")).alias("outcome"))
    return df.group_by(["source", "outcome"], maintain_order=True).agg(pl.col("stage").first(), pl.col("docs").sum())


def _drop_like(df: pl.DataFrame) -> list[str]:
    return [o for o in df["outcome"].unique().to_list() if o != KEPT_LABEL and not o.startswith("remaining after")]


def _symlog(x: float) -> float:
    import math

    return math.copysign(math.log1p(abs(x)), x)


def _symexp(y: float) -> float:
    import math

    return math.copysign(math.expm1(abs(y)), y)


def score_frame(result: dict[str, Any], *, bins: int = SCORE_BINS) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(histograms: source, score, x0, x1, docs, scale; thresholds: source, score, bound, value).

    The merged two-significant-digit buckets of ``curate.samples`` are re-binned into ``bins`` bins, equally
    wide on a linear axis, or on a symmetric-log axis for scores that reach 100 (counts and lengths).
    """
    import numpy as np

    sc = result.get("scores") or {}
    hist_rows, thr_rows = [], []
    for src, cols in sorted((sc.get("hist") or {}).items()):
        thr = (sc.get("thresholds") or {}).get(src, {})
        for col, h in sorted(cols.items()):
            if not h.get("buckets"):
                continue
            v = np.array([float(k) for k in h["buckets"]], dtype=np.float64)
            n = np.array(list(h["buckets"].values()), dtype=np.int64)
            bounds = thr.get(col, {})
            marks = [float(bounds[b]) for b in ("min", "max") if bounds.get(b) is not None]
            lo, hi = min([float(v.min()), *marks]), max([float(v.max()), *marks])
            log = max(abs(lo), abs(hi)) >= 100
            f, finv = (_symlog, _symexp) if log else (float, float)
            a, b = f(lo), f(hi)
            if b <= a:
                a, b = a - 0.5, b + 0.5
            edges = np.linspace(a, b, bins + 1)
            fv = np.array([f(x) for x in v])
            at = np.clip(np.searchsorted(edges, fv, side="right") - 1, 0, bins - 1)
            counts = np.bincount(at, weights=n, minlength=bins).astype(np.int64)
            name = col[2:] if col.startswith("q_") else col
            for i in np.nonzero(counts)[0].tolist():
                hist_rows.append({"source": src, "score": name, "x0": finv(edges[i]), "x1": finv(edges[i + 1]),
                                  "docs": int(counts[i]), "scale": "symlog" if log else "linear"})
            for bound in ("min", "max"):
                if bounds.get(bound) is not None:
                    thr_rows.append({"source": src, "score": name, "bound": bound, "value": float(bounds[bound])})
    return (pl.DataFrame(hist_rows, schema={"source": pl.String, "score": pl.String, "x0": pl.Float64,
                                            "x1": pl.Float64, "docs": pl.Int64, "scale": pl.String}),
            pl.DataFrame(thr_rows, schema={"source": pl.String, "score": pl.String, "bound": pl.String,
                                           "value": pl.Float64}))


def dedup_frame(result: dict[str, Any]) -> pl.DataFrame:
    """removed_from, kept_in, docs: the dedup attribution matrix, long form."""
    rows = [{"removed_from": a, "kept_in": b, "docs": int(n)}
            for a, row in sorted((result.get("dedup_matrix") or {}).items()) for b, n in sorted(row.items()) if n]
    return pl.DataFrame(rows, schema={"removed_from": pl.String, "kept_in": pl.String, "docs": pl.Int64})


def tokens_frame(result: dict[str, Any], key: str, *, top: int = TOP_VALUES) -> pl.DataFrame:
    """name, tokens, share for ``languages`` or ``licenses``; the values past ``top`` summed as "other"."""
    items = sorted((result.get(key) or {}).items(), key=lambda kv: (-kv[1], str(kv[0])))
    total = sum(v for _, v in items) or 1
    rows = [{"name": "(none)" if k in (None, "None", "") else str(k), "tokens": int(v)} for k, v in items[:top]]
    rest = sum(v for _, v in items[top:])
    if rest:
        rows.append({"name": f"other ({len(items) - top})", "tokens": int(rest)})
    for r in rows:
        r["share"] = r["tokens"] / total
    return pl.DataFrame(rows, schema={"name": pl.String, "tokens": pl.Int64, "share": pl.Float64})


def stream_series(run_dir: Path, groups: list[str], points: int = 50, *,
                  window: int | None = None) -> dict[str, list[float]]:
    """Each group's share in ``points`` windows of the token stream (from shard lineage).

    Without ``window``: consecutive windows of ``total / points`` tokens. With ``window`` (shorter than the
    stream): windows of ``window`` tokens centred at ``points`` evenly spaced positions, the windows the audit's
    ``stream_check`` bounds. Computed by Ray tasks, a shard each (:func:`curate.shard_summary.stream_series`):
    the driver never reads the lineage.
    """
    from curate.shard_summary import stream_series as per_shard

    return per_shard(Path(run_dir), groups, points, window=window)


def stream_frame(result: dict[str, Any], *, points: int = STREAM_POINTS) -> pl.DataFrame:
    """group, window, position (share of the stream), share, actual (overall), target, lo, hi."""
    groups = result.get("groups") or {}
    run_dir = (result.get("run") or {}).get("run_dir")
    rows = []
    total = result.get("total_tokens") or 0
    if groups and run_dir and total:
        window = (result.get("stream") or {}).get("window_tokens")
        series = stream_series(Path(run_dir), list(groups), points, window=window)
        sliding = window is not None and 0 < window < total
        for g, vals in series.items():
            a, t = groups[g].get("actual") or 0.0, groups[g].get("target")
            for i, v in enumerate(vals):
                if sliding:
                    c = window / 2 + (total - window) * (i / max(len(vals) - 1, 1))
                    position = c / total
                else:
                    position = (i + 0.5) / len(vals)
                rows.append({"group": g, "window": i, "position": position, "share": float(v),
                             "actual": a, "target": t, "lo": max(a - STREAM_TOLERANCE_PP / 100, 0.0),
                             "hi": a + STREAM_TOLERANCE_PP / 100})
    return pl.DataFrame(rows, schema={"group": pl.String, "window": pl.Int64, "position": pl.Float64,
                                      "share": pl.Float64, "actual": pl.Float64, "target": pl.Float64,
                                      "lo": pl.Float64, "hi": pl.Float64})


def timings_frame(result: dict[str, Any]) -> pl.DataFrame:
    """phase, wall_s, driver_cpu_s, worker_cpu_s, in run order."""
    return pl.DataFrame(result.get("timings") or [], schema={"phase": pl.String, "wall_s": pl.Float64,
                                                            "driver_cpu_s": pl.Float64, "worker_cpu_s": pl.Float64})


def samples_frame(run_dir: str | Path, *, source: str | None = None, reason: str | None = None,
                  n: int = SAMPLES_PER_REASON, kept: bool | None = None) -> pl.DataFrame:
    """The run's document sample (``curate.samples``), at most ``n`` per (source, reason)."""
    from curate.samples import load_samples, select_samples

    t = select_samples(load_samples(run_dir), source=source, reason=reason, n=n, kept=kept)
    return pl.from_arrow(t.drop_columns(["hash"]))


# ---------------------------------------------------------------------------- charts
# Each chart is an altair template (curate.chart_templates: built once per shape, kept on disk) filled with the
# run's rows and the few numbers that differ between runs; a run imports altair only to build a missing template.
def _rows(df: pl.DataFrame) -> list[dict[str, Any]]:
    return df.to_dicts()


def _base_spec() -> dict[str, Any]:
    """``$schema`` and ``config`` of a top-level chart (what altair puts around every spec)."""
    spec = fill(template("base", None, lambda alt, s: alt.Chart(alt.NamedData("none")).mark_point()), {"none": []}, {})
    return {k: spec[k] for k in ("$schema", "config") if k in spec}


def _top(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` with the top-level keys a nested chart must not carry removed."""
    for k in ("$schema", "config", "datasets"):
        spec.pop(k, None)
    return spec


def _shares_row(alt, s: Slots):
    """One level of :func:`shares_chart`: actual bars and target ticks (left), deviation dots in the band (right)."""
    h = s.num("height")
    tip = ["name:N", alt.Tooltip("target:Q", format=".3%"), alt.Tooltip("actual:Q", format=".3%"),
           alt.Tooltip("delta_pp:Q", format="+.3f"), alt.Tooltip("tokens:Q", format=","),
           alt.Tooltip("epochs:Q", format=".2f")]
    base = alt.Chart(alt.NamedData("rows"), height=h)
    y = alt.Y("name:N", title=None, sort=None)
    bars = base.mark_bar(color="#4e79a7").encode(y=y, x=alt.X("actual:Q", title="share of tokens",
                                                                axis=alt.Axis(format="%")), tooltip=tip)
    tick = base.mark_tick(color="#f28e2b", thickness=3, size=20).encode(y=y, x="target:Q", tooltip=tip)
    label = base.mark_text(align="left", dx=4, fontSize=10).encode(
        y=y, x="actual:Q", text=alt.Text("tokens:Q", format=","))
    left = alt.layer(bars, tick, label).properties(width=330, title=s.text("left_title"))
    dom = [s.num("dom_lo"), s.num("dom_hi")]
    xs = alt.Scale(domain=dom, clamp=True)
    band = alt.Chart(alt.NamedData("band"), height=h).mark_rect(color="#59a14f", opacity=0.18).encode(
        x=alt.X("lo:Q", scale=xs), x2="hi:Q")
    zero = alt.Chart(alt.NamedData("zero"), height=h).mark_rule(color="#59a14f").encode(x=alt.X("z:Q", scale=xs))
    dots = base.mark_point(filled=True, size=70).encode(
        y=y, x=alt.X("delta_pp:Q", title="actual − target (pp)", scale=alt.Scale(domain=dom, clamp=True)),
        color=alt.Color("within:N", scale=alt.Scale(domain=[True, False], range=["#59a14f", "#e15759"]),
                        legend=None), tooltip=tip)
    right = alt.layer(band, zero, dots).properties(width=300, title=s.text("right_title"))
    return alt.hconcat(left, right).resolve_scale(y="shared")


def shares_chart(df: pl.DataFrame, tol: float) -> Spec | None:
    """Per level (groups, sources, subsets): actual share and target (left), deviation against ±``tol`` (right)."""
    dmax = max([abs(x) for x in df["delta_pp"].drop_nulls().to_list()] + [0.0])
    half = max(2 * tol, 1.15 * dmax)
    tpl = template("shares_row", None, _shares_row)
    rows = []
    for level in ("groups", "sources", "subsets"):
        d = df.filter(pl.col("level") == level)
        if d.is_empty():
            continue
        rows.append(_top(fill(tpl, {"rows": _rows(d), "band": [{"lo": -tol, "hi": tol}], "zero": [{"z": 0.0}]},
                              {"height": max(60, 22 * d.height), "dom_lo": -half, "dom_hi": half,
                               "left_title": f"{level}: actual (bar), target (orange tick)",
                               "right_title": f"deviation, tolerance ±{tol:g} pp"})))
    return Spec({**_base_spec(), "vconcat": rows}, "VConcatChart") if rows else None


#: the funnel's outcome colours, kept first
PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
           "#bab0ac", "#86bcb6", "#d37295", "#fabfd2", "#b6992d", "#499894"]


def _funnel(alt, s: Slots):
    order = s.seq("order")
    stacked = alt.Chart(alt.NamedData("fates")).mark_bar().encode(
        y=alt.Y("source:N", title=None),
        x=alt.X("sum(docs):Q", stack="normalize", title="share of ingested documents", axis=alt.Axis(format="%")),
        color=alt.Color("outcome:N", sort=order, scale=alt.Scale(domain=order, range=s.seq("palette")),
                        legend=alt.Legend(title="outcome", orient="bottom", columns=3, labelLimit=260)),
        order=alt.Order("outcome_rank:Q"),
        tooltip=["source:N", "outcome:N", "stage:N", alt.Tooltip("docs:Q", format=",")],
    ).transform_calculate(outcome_rank=f"indexof({s.text('order_json')}, datum.outcome)").properties(
        width=420, height=s.num("height"), title="where the documents ended")
    lines = alt.Chart(alt.NamedData("steps")).mark_line(point=True).encode(
        x=alt.X("stage:N", sort=s.seq("stages"), title=None),
        y=alt.Y("share:Q", title="documents remaining", axis=alt.Axis(format="%")),
        color=alt.Color("source:N", legend=alt.Legend(orient="right", title="source")),
        tooltip=["source:N", "stage:N", alt.Tooltip("docs_out:Q", format=","), alt.Tooltip("share:Q", format=".1%")],
    ).properties(width=300, height=220, title="remaining after each stage")
    return alt.hconcat(stacked, lines).resolve_scale(color="independent")


def funnel_chart(fates: pl.DataFrame, steps: pl.DataFrame) -> Spec | None:
    """Each source's documents by outcome (stacked, left) and the share remaining after each stage (right)."""
    if fates.is_empty():
        return None
    order = [KEPT_LABEL] + sorted(o for o in fates["outcome"].unique().to_list() if o != KEPT_LABEL)
    spec = fill(template("funnel", None, _funnel), {"fates": _rows(fates), "steps": _rows(steps)},
                {"order": order, "order_json": json.dumps(order), "palette": PALETTE[: len(order)],
                 "height": max(80, 26 * fates["source"].n_unique()), "stages": list(stage_names())})
    return Spec(spec, "HConcatChart")


def _score_panel(symlog: bool, with_threshold: bool):
    """One histogram panel, its data the sources ``hist`` and ``thr`` (the threshold rules)."""
    def build(alt, s: Slots):
        scale = alt.Scale(type="symlog") if symlog else alt.Scale(zero=False)
        # counts and lengths on the symlog axis read best in SI units (2k, 10k); ratios keep Vega's own format
        fmt = {"format": "~s"} if symlog else {}
        x = alt.X("x0:Q", title=None, scale=scale,
                  axis=alt.Axis(tickCount=4, labelFlush=True, labelOverlap="greedy", **fmt))
        layers = [alt.Chart(alt.NamedData("hist")).mark_bar(color="#4e79a7").encode(
            x=x, x2="x1:Q", y=alt.Y("docs:Q", title=None, axis=alt.Axis(tickCount=3)), y2=alt.datum(0),
            tooltip=[alt.Tooltip("x0:Q", format=".3g", title="from"), alt.Tooltip("x1:Q", format=".3g", title="to"),
                     alt.Tooltip("docs:Q", format=",")])]
        if with_threshold:
            layers.append(alt.Chart(alt.NamedData("thr")).mark_rule(color="#e15759", strokeWidth=2,
                                                                    strokeDash=[4, 2])
                          .encode(x=alt.X("value:Q", scale=scale),
                                  tooltip=[alt.Tooltip("bound:N"), alt.Tooltip("value:Q", format=".4g")]))
        return alt.layer(*layers).properties(width=190, height=90)
    return build


def scores_chart(hist: pl.DataFrame, thr: pl.DataFrame) -> Spec | None:
    """One small histogram per (source, score), the recipe's thresholds as red rules, four to a row.

    The panels differ only in their data, title and scale type: two or four panel shapes, each one template.
    """
    panels = []
    for (src, score), d in hist.group_by(["source", "score"], maintain_order=True):
        t = thr.filter((pl.col("source") == src) & (pl.col("score") == score)).select(["bound", "value"])
        shape = (d["scale"][0] == "symlog", not t.is_empty())
        # per chart only what it draws, at 4 significant digits: hundreds of these charts stay small
        rows = d.select([pl.col("x0").map_elements(_sig4, return_dtype=pl.Float64),
                         pl.col("x1").map_elements(_sig4, return_dtype=pl.Float64), "docs"]).to_dicts()
        panel = _top(fill(template("score_panel", shape, _score_panel(*shape)),
                          {"hist": rows, "thr": t.to_dicts()}, {}))
        panel["title"] = {"text": f"{score}", "subtitle": src, "fontSize": 11, "subtitleFontSize": 10}
        panels.append(panel)
    if not panels:
        return None
    return Spec({**_base_spec(), "concat": panels, "columns": 4}, "ConcatChart")


def _sig4(x: float) -> float:
    return float(f"{x:.4g}")


def _dedup(alt, s: Slots):
    base = alt.Chart(alt.NamedData("cells")).encode(x=alt.X("kept_in:N", title="kept copy in"),
                                                    y=alt.Y("removed_from:N", title="removed from"))
    rect = base.mark_rect().encode(color=alt.Color("docs:Q", scale=alt.Scale(scheme="blues",
                                                                             domain=[0, s.num("top")]),
                                                   title="documents"),
                                   tooltip=["removed_from:N", "kept_in:N", alt.Tooltip("docs:Q", format=",")])
    text = base.mark_text(fontSize=11).encode(
        text=alt.Text("docs:Q", format=","),
        color=alt.condition(alt.datum.docs > s.num("half"), alt.value("white"), alt.value("black")))
    return alt.layer(rect, text).properties(width=s.num("width"), height=s.num("height"))


def dedup_chart(df: pl.DataFrame) -> Spec | None:
    """Documents removed from the row's source whose kept copy is in the column's source."""
    if df.is_empty():
        return None
    top = int(df["docs"].max())
    n = max(df["removed_from"].n_unique(), df["kept_in"].n_unique())
    spec = fill(template("dedup", None, _dedup), {"cells": _rows(df)},
                {"top": top, "half": top / 2, "width": max(160, 60 * df["kept_in"].n_unique()),
                 "height": max(80, 34 * n)})
    return Spec(spec, "LayerChart")


def _tokens(alt, s: Slots):
    base = alt.Chart(alt.NamedData("rows")).encode(y=alt.Y("name:N", sort=None, title=None))
    bars = base.mark_bar(color="#76b7b2").encode(
        x=alt.X("tokens:Q", title="tokens"),
        tooltip=["name:N", alt.Tooltip("tokens:Q", format=","), alt.Tooltip("share:Q", format=".2%")])
    text = base.mark_text(align="left", dx=3, fontSize=10).encode(x="tokens:Q", text=alt.Text("share:Q", format=".1%"))
    return alt.layer(bars, text).properties(width=300, height=s.num("height"), title=s.text("title"))


def tokens_chart(df: pl.DataFrame, title: str) -> Spec | None:
    """Tokens per value (language, license), with each one's share."""
    if df.is_empty():
        return None
    spec = fill(template("tokens", None, _tokens), {"rows": _rows(df)},
                {"height": max(60, 20 * df.height), "title": title})
    return Spec(spec, "LayerChart")


def _stream(alt, s: Slots):
    x = alt.X("position:Q", title="position in the token stream", axis=alt.Axis(format="%"),
              scale=alt.Scale(domain=[0, 1]))
    band = alt.Chart().mark_area(color="#59a14f", opacity=0.2).encode(x=x, y="lo:Q", y2="hi:Q")
    line = alt.Chart().mark_line(color="#4e79a7", strokeWidth=1.5).encode(
        x=x, y=alt.Y("share:Q", title="share", axis=alt.Axis(format="%", tickCount=3), scale=alt.Scale(zero=False)),
        tooltip=["group:N", alt.Tooltip("position:Q", format=".1%"), alt.Tooltip("share:Q", format=".2%")])
    target = alt.Chart().mark_rule(color="#111", strokeDash=[5, 3]).encode(y="mean(target):Q")
    return alt.layer(band, line, target, data=alt.NamedData("rows")).properties(width=620, height=80).facet(
        row=alt.Row("group:N", title=None, header=alt.Header(labelAngle=0, labelAlign="left", labelFontWeight="bold")),
    ).resolve_scale(y="independent")


def stream_chart(df: pl.DataFrame) -> Spec | None:
    """Each group's share along the token stream, its band and its target, one row per group."""
    if df.is_empty():
        return None
    return Spec(fill(template("stream", None, _stream), {"rows": _rows(df)}, {}), "FacetChart")


def _timings(alt, s: Slots):
    return alt.Chart(alt.NamedData("rows")).mark_bar(color="#edc948").encode(
        y=alt.Y("phase:N", sort=None, title=None), x=alt.X("wall_s:Q", title="wall seconds"),
        tooltip=["phase:N", alt.Tooltip("wall_s:Q", format=".2f"), alt.Tooltip("driver_cpu_s:Q", format=".2f"),
                 alt.Tooltip("worker_cpu_s:Q", format=".2f")]).properties(width=360, height=s.num("height"))


def timings_chart(df: pl.DataFrame) -> Spec | None:
    """Wall seconds per phase."""
    if df.is_empty():
        return None
    return Spec(fill(template("timings", None, _timings), {"rows": _rows(df)}, {"height": max(60, 22 * df.height)}),
                "Chart")


# ---------------------------------------------------------------------------- html pieces
def _table(rows: list[dict[str, Any]], cols: list[str] | None = None, *, limit: int = 60) -> str:
    if not rows:
        return ""
    cols = cols or list(dict.fromkeys(k for r in rows for k in r))
    out = ["<table><tr>" + "".join(f"<th>{html.escape(str(c))}</th>" for c in cols) + "</tr>"]
    for r in rows[:limit]:
        out.append("<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c)))}</td>" for c in cols) + "</tr>")
    out.append("</table>")
    if len(rows) > limit:
        out.append(f"<p class='note'>… {len(rows) - limit} more rows (see the audit JSON)</p>")
    return "".join(out)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) >= 1 or v == 0 else f"{v:.4g}"
    if isinstance(v, (dict, list)):
        s = json.dumps(v, default=str)
        return s if len(s) <= 160 else s[:157] + "…"
    return str(v)


def generic_section(value: Any) -> str:
    """Any audit section as HTML tables: scalars as key/value rows, a mapping of mappings or a list of
    mappings as a table, anything else as JSON (cut at 20 kB)."""
    if isinstance(value, list) and all(isinstance(x, dict) for x in value):
        return _table(value) or "<p class='note'>(empty)</p>"
    if isinstance(value, dict):
        scalars = {k: v for k, v in value.items() if not isinstance(v, (dict, list))}
        nested = {k: v for k, v in value.items() if isinstance(v, (dict, list))}
        out = []
        if scalars:
            out.append(_table([{"key": k, "value": v} for k, v in scalars.items()]))
        if nested and all(isinstance(v, dict) for v in nested.values()) and all(
                not any(isinstance(x, (dict, list)) for x in v.values()) for v in nested.values()):
            out.append(_table([{"name": k, **v} for k, v in nested.items()]))
        else:
            for k, v in nested.items():
                out.append(f"<h4>{html.escape(str(k))}</h4>{generic_section(v)}")
        return "".join(out) or "<p class='note'>(empty)</p>"
    s = json.dumps(value, indent=1, default=str)
    return f"<pre>{html.escape(s[:20_000])}</pre>"


def reason_counts(result: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Documents per drop reason per source, over all stages (from the funnel)."""
    out: dict[str, dict[str, int]] = {}
    for src, stages in (result.get("funnel") or {}).items():
        c = out.setdefault(src, {})
        for st in stages.values():
            for r, n in (st.get("dropped") or {}).items():
                c[r] = c.get(r, 0) + n
    return out


def _samples_html(df: pl.DataFrame, counts: dict[str, dict[str, int]], *, top: int = TOP_REASONS) -> str:
    """Sample cards per source: up to ``top`` drop reasons, then kept documents."""
    if df.is_empty():
        return ""
    out = []
    for (src,), d in df.sort(["source", "reason"]).group_by(["source"], maintain_order=True):
        n = counts.get(src, {})
        # in pipeline order (the filters first, then dedup and mix), the most frequent first within a stage
        stage_of = dict(zip(d["reason"].to_list(), d["stage"].to_list()))
        rank = {st: i for i, st in enumerate(stage_names())}
        drops = sorted((r for r in stage_of if r != "kept"),
                       key=lambda r: (rank.get(stage_of[r] or "", len(rank)), -n.get(r, 0), r))
        reasons = drops[:top] + (["kept"] if "kept" in d["reason"].to_list() else [])
        more = f"; {len(drops) - top} rarer reasons: see <code>curate inspect</code>" if len(drops) > top else ""
        out.append(f"<details class='src' open><summary>{html.escape(src)} — {len(drops)} drop reason(s)"
                   f"{more}</summary>")
        for r in reasons:
            cls = "kept" if r == "kept" else "dropped"
            label = f"{r} ({_fmt(n[r])} documents)" if r in n else r
            out.append(f"<div class='reason {cls}' data-reason='{html.escape(r)}'><h4>{html.escape(label)}</h4>")
            for row in d.filter(pl.col("reason") == r).iter_rows(named=True):
                scores = json.loads(row.get("scores") or "{}")
                sc = " · ".join(f"{k.removeprefix('q_')} {_fmt(v)}" for k, v in scores.items())
                out.append(f"<div class='doc'><div class='meta'><code>{html.escape(row['doc_id'] or '')}</code>"
                           f" <span>{html.escape(row.get('stage') or 'kept')}</span>"
                           f" <span>{_fmt(row.get('nbytes'))} B</span> <span>{html.escape(row.get('lang') or '')}"
                           f"</span></div><div class='scores'>{html.escape(sc)}</div>"
                           f"<pre class='text'>{html.escape(row['text'] or '')}</pre></div>")
            out.append("</div>")
        out.append("</details>")
    return "".join(out)


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:1180px;color:#222;
 padding:0 16px}
h1{margin-bottom:4px} h2{margin-top:36px;border-bottom:1px solid #ddd;padding-bottom:4px}
p.why{color:#555;margin-top:-6px} p.na{color:#8a6d00;background:#fff8db;padding:6px 10px;border-radius:4px}
.banner{padding:8px 12px;border-radius:4px;margin:12px 0} .ok{background:#e7f5e9} .bad{background:#fde8e8}
.prog{background:#fff8db} .v{color:#b00} .flag{color:#8a6d00}
table{border-collapse:collapse;margin:8px 0;font-size:13px}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:right} td:first-child,th:first-child{text-align:left}
nav a{margin-right:12px;font-size:14px} .chart{margin:8px 0}
details.src{margin:8px 0} summary{font-weight:600;cursor:pointer}
.reason{margin:6px 0 12px 16px} .reason h4{margin:6px 0} .reason.dropped h4{color:#b00}
.reason.kept h4{color:#2e7d32}
.doc{border:1px solid #e3e3e3;border-radius:4px;padding:6px 8px;margin:6px 0;background:#fafafa}
.doc .meta span{color:#666;margin-left:8px;font-size:12px} .doc .scores{color:#555;font-size:12px}
pre.text{white-space:pre-wrap;word-break:break-word;margin:4px 0 0;font-size:12px;max-height:9em;overflow:auto}
.note{color:#666;font-size:12px}
"""

CSP = ("default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; "
       "img-src data:; font-src data:")

EMBED_JS = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', e => {
  window.__csp.push(e.blockedURI); document.body.dataset.cspViolations = String(window.__csp.length); });
const opts = {renderer: 'svg', actions: false};
Promise.all(Object.entries(SPECS).map(([id, spec]) => vegaEmbed('#' + id, spec, opts)
  .then(() => { document.getElementById(id).dataset.rendered = 'ok'; })
  .catch(err => { const el = document.getElementById(id); el.dataset.rendered = 'error';
                  el.textContent = 'chart could not be drawn: ' + err; })))
  .then(() => {
    // every resource the page fetched (scripts, data, fonts, images): none, since everything is inline
    document.body.dataset.resources = JSON.stringify(performance.getEntriesByType('resource').map(e => e.name));
    document.body.dataset.charts = 'done'; });
"""


@functools.lru_cache(maxsize=2)
def _js_bundle() -> str:
    try:
        import vl_convert as vlc
    except ImportError as e:
        msg = "the HTML report needs vl-convert-python (pip install 'vl-convert-python>=1.6,<2')"
        raise ImportError(msg) from e
    # the Vega-Lite version the specs are written for, from their $schema (".../vega-lite/v6.1.0.json")
    major_minor = ".".join(_base_spec()["$schema"].rsplit("/v", 1)[-1].split(".")[:2])
    versions = vlc.get_vegalite_versions()
    vl = major_minor if major_minor in versions else versions[-1]
    # bundling takes ~2.5 s; the bundle depends only on the vl-convert version and the Vega-Lite version, so it
    # is kept in the user's cache folder (a failure to read or write there only costs the 2.5 s)
    cache = user_cache_dir() / f"vega-bundle-vlc{importlib.metadata.version('vl-convert-python')}-vl{vl}.js"
    try:
        return cache.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        pass
    bundle = vlc.javascript_bundle(vl_version=vl)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(cache, bundle)
    except OSError:
        pass
    return bundle


def _status(result: dict[str, Any]) -> str:
    r = result.get("run") or {}
    complete = r.get("complete") and result.get("status") != "incomplete"
    out = []
    if not complete:
        prog = result.get("progress") or {}
        bits = []
        if isinstance(prog, dict):
            pd, pt = prog.get("partitions_done"), prog.get("partitions_total")
            if pd is not None:
                bits.append(f"partitions {pd} of {pt if pt is not None else '?'}")
            if prog.get("phase"):
                bits.append(f"phase {prog['phase']}")
        bits.append(f"shards {r.get('shards_done', 0)} of {r.get('shards_planned') or '?'}")
        out.append(f"<div class='banner prog'><b>Run in progress</b> — {html.escape(', '.join(bits))}. This page "
                   "shows what is known so far; sections the run has not reached yet say so.</div>")
        if isinstance(prog, dict) and prog:
            out.append(f"<details><summary>progress</summary>{generic_section(prog)}</details>")
    viol = result.get("violations") or []
    if viol:
        out.append(f"<div class='banner bad'><b class='v'>{len(viol)} violation(s)</b><ul>" + "".join(
            f"<li class='v'><b>{html.escape(str(v.get('kind')))}</b> {html.escape(str(v.get('message')))}</li>"
            for v in viol) + "</ul></div>")
    elif complete:
        out.append("<div class='banner ok'><b>No violations</b>: every group, source and subset is within "
                   "tolerance.</div>")
    flags = result.get("flags") or []
    if flags:
        out.append("<ul>" + "".join(f"<li class='flag'>{html.escape(str(f.get('message')))}</li>" for f in flags)
                   + "</ul>")
    return "".join(out)


def _safe(fn, *a):
    try:
        return fn(*a), None
    except Exception as e:  # noqa: BLE001 - one broken section must not hide the others
        return None, f"could not be built ({type(e).__name__}: {e})"


def render_html(result: dict[str, Any]) -> str:
    """The report page for an audit ``result`` (``curate.audit.audit``); any key may be missing mid-run."""
    r = result.get("run") or {}
    run_dir = r.get("run_dir")
    name = str(r.get("name", "run"))
    specs: dict[str, Any] = {}
    body: list[str] = []

    def chart(cid: str, ch) -> str:
        if ch is None:
            return ""
        # the specs are built by this module's own functions, which the tests render with validation on
        # (CURATE_VALIDATE_CHARTS=1); a run skips altair's JSON-schema pass, about a third of the drawing time
        specs[cid] = ch.to_dict(validate=os.environ.get("CURATE_VALIDATE_CHARTS") == "1")
        return f"<div class='chart' id='{cid}'></div>"

    def section(sid: str, content: str | None, missing: str) -> None:
        title, why = SECTIONS[sid]
        body.append(f"<section id='sec-{sid}'><h2>{html.escape(title)}</h2><p class='why'>{html.escape(why)}</p>"
                    f"{content if content else _na(missing)}</section>")

    tol = tolerance_pp(result)
    # target vs actual
    df, err = _safe(shares_frame, result)
    if df is not None and not df.is_empty() and result.get("total_tokens"):
        ch, err = _safe(shares_chart, df, tol)
        cols = ["level", "name", "target", "actual", "delta_pp", "tokens", "epochs"]
        content = chart("c-shares", ch) + _table(df.select(cols).to_dicts(), cols) if ch is not None else None
    else:
        content = None
    section("shares", content, err or "no shard is written yet (shares are measured on the shards)")
    # funnel
    fates, err = _safe(fate_frame, result)
    steps, err2 = _safe(funnel_frame, result)
    content = None
    if fates is not None and steps is not None and not fates.is_empty():
        ch, err = _safe(funnel_chart, fates, steps)
        content = chart("c-funnel", ch) if ch is not None else None
    section("funnel", content, err or err2 or "no partition has been processed yet")
    # scores
    hs, err = _safe(score_frame, result)
    content = None
    if hs is not None and not hs[0].is_empty():
        ch, err = _safe(scores_chart, *hs)
        content = chart("c-scores", ch) if ch is not None else None
    section("scores", content, err or "no score histograms in this run (no source has a quality or langid "
                                      "threshold, the parts phase has not finished a partition, or the run predates "
                                      "score histograms)")
    # dedup
    dd, err = _safe(dedup_frame, result)
    content = None
    if dd is not None and not dd.is_empty():
        ch, err = _safe(dedup_chart, dd)
        content = chart("c-dedup", ch) if ch is not None else None
    elif dd is not None and "dedup_matrix" in result and (result.get("funnel") or {}) and any(
            "dedup" in st for st in result["funnel"].values()):
        content = "<p>Dedup removed no document.</p>"
    section("dedup", content, err or "the dedup phase has not finished (or the recipe has no dedup)")
    # languages and licenses
    parts = []
    for key, title in (("languages", "tokens per language"), ("licenses", "tokens per license")):
        tf, err = _safe(tokens_frame, result, key)
        if tf is not None and not tf.is_empty():
            ch, err = _safe(tokens_chart, tf, title)
            if ch is not None:
                parts.append(chart(f"c-{key}", ch))
    section("langlic", "<div style='display:flex;gap:32px;flex-wrap:wrap'>" + "".join(parts) + "</div>"
            if parts else None, err or "no shard is written yet")
    # stream
    sf, err = _safe(stream_frame, result)
    content = None
    if sf is not None and not sf.is_empty():
        ch, err = _safe(stream_chart, sf)
        content = chart("c-stream", ch) if ch is not None else None
        st = result.get("stream") or {}
        if content and st:
            content += (f"<p class='note'>Largest deviation over windows of {_fmt(st.get('window_tokens'))} tokens: "
                        f"{_fmt(st.get('max_deviation_pp'))} pp (bound {STREAM_TOLERANCE_PP} pp).</p>")
    section("stream", content, err or "no shard is written yet")
    # timings
    tf, err = _safe(timings_frame, result)
    content = None
    if tf is not None and not tf.is_empty():
        ch, err = _safe(timings_chart, tf)
        content = (chart("c-timings", ch) if ch is not None else "") + _table(tf.to_dicts())
        if result.get("stages"):  # per-partition steps (CPU summed over partitions) and the global ones
            content += "<p class='note'>Per stage: CPU seconds summed over the partitions, documents, bytes and " \
                       "tokens in and out (RUN_DIR/stats.json).</p>" + _table(result["stages"])
    section("timings", content, err or "no phase has finished yet (or the run predates RUN_DIR/stats.json)")
    # samples
    content, err = None, None
    if run_dir:
        sm, err = _safe(samples_frame, run_dir)
        if sm is not None and not sm.is_empty():
            info = result.get("samples") or {}
            size = (f"<p class='note'>Sample: {_fmt(info.get('rows'))} documents, {_fmt(info.get('bytes'))} bytes "
                    f"(k = {info.get('k')} per source and reason); showing {SAMPLES_PER_REASON} per reason. "
                    "<code>curate inspect RUN_DIR</code> prints them in a terminal.</p>") if info else ""
            content = size + _samples_html(sm, reason_counts(result))
    section("samples", content, err or "no partition has finished yet (or the run predates document samples)")
    # the recipe's optional sections: language balance and benchmark decontamination
    if result.get("balance"):
        body.append("<section id='sec-balance'><p class='why'>Each balanced value's share of its scope (group or "
                    "member): target from n<sup>α</sup> with caps, actual from the lineage.</p>"
                    f"{_or_generic(balance_tables, result, result['balance'])}</section>")
    if result.get("decontamination"):
        body.append("<section id='sec-decontamination'><p class='why'>Documents and tokens the decontaminate stage "
                    "removed, per benchmark and source.</p>"
                    f"{_or_generic(_decontamination, result['decontamination'], result['decontamination'])}"
                    "</section>")
    if result.get("validation"):  # the held-out sets (curate.validation)
        rows = [{"member": m, **e} for m, e in (result["validation"].get("members") or {}).items()]
        body.append("<section id='sec-validation'><p class='why'>Validation sets held out per member before mixing "
                    "(tokens read from each set's .idx), disjoint from train by document and dedup component.</p>"
                    f"{_table(rows, ['member', 'requested', 'tokens', 'sequences', 'documents', 'file'])}</section>")

    nav = "".join(f"<a href='#sec-{s}'>{html.escape(t)}</a>" for s, (t, _) in SECTIONS.items())
    total = result.get("total_tokens")
    head = (f"<h1>curate audit — {html.escape(name)}</h1><p>{html.escape(str(run_dir or ''))} · "
            f"{_fmt(r.get('shards_done', 0))} shard(s) · {_fmt(total) if total is not None else '?'} tokens</p>")
    specs_js = json.dumps(specs, separators=(",", ":"), default=str).replace("</", "<\\/")
    return ("<!doctype html><html><head><meta charset='utf-8'>"
            f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">"
            f"<title>curate audit — {html.escape(name)}</title><style>{CSS}</style>"
            f"<script>{_js_bundle()}</script></head><body>{head}<nav>{nav}</nav>{_status(result)}"
            + "".join(body) + f"<script>const SPECS = {specs_js};{EMBED_JS}</script></body></html>")


def balance_tables(result: dict[str, Any]) -> str:
    """One small table per balanced scope: supply, target and actual share of the scope, epochs, capped."""
    out = []
    for scope, values in (result.get("balance") or {}).items():
        out.append(f"<h2>Balance: {html.escape(scope)} (shares of the scope)</h2><table><tr><th>value</th>"
                   "<th>supply</th><th>target</th><th>actual</th><th>Δ pp</th><th>epochs</th><th>capped</th></tr>")
        for v, e in values.items():
            sup = f"{e['supply_tokens']:,}" if e["supply_tokens"] is not None else "-"
            ep = f"{e['epochs']:.2f}" if e["epochs"] is not None else "-"
            out.append(f"<tr><td>{html.escape(str(v))}</td><td>{sup}</td><td>{e['target']:.2%}</td>"
                       f"<td>{e['actual']:.2%}</td><td>{e['deviation_pp']:+.3f}</td><td>{ep}</td>"
                       f"<td>{'yes' if e['capped'] else ''}</td></tr>")
        out.append("</table>")
        out += [f"<p>{html.escape(scope)}: value {html.escape(repr(d['value']))} dropped: "
                f"{html.escape(d['reason'])}</p>" for d in (result.get("balance_dropped") or {}).get(scope, [])]
    return "".join(out)


def _decontamination(dc: dict[str, Any] | None) -> str:
    """Benchmark × source: documents / tokens removed by the decontaminate stage (matched, in parentheses)."""
    if not dc:
        return ""
    srcs = list(dc["sources"])
    out = [f"<h2>Decontamination ({html.escape(dc['mode'])}, {dc['ngram']}-grams): documents / tokens removed "
           "(documents matched)</h2><table><tr><th>benchmark</th>" +
           "".join(f"<th>{html.escape(s)}</th>" for s in srcs) + "</tr>"]
    for ev, row in dc["table"].items():
        out.append(f"<tr><td>{html.escape(ev)}</td>" + "".join(
            f"<td>{row[s]['docs']:,} / {row[s]['tokens']:,} ({row[s]['matched']:,})</td>" if s in row else "<td>-</td>"
            for s in srcs) + "</tr>")
    out.append("<tr><td>share of documents removed</td>" + "".join(
        f"<td>{dc['sources'][s]['share_removed']:.2%}</td>" for s in srcs) + "</tr></table>")
    return "".join(out)


def _or_generic(fn, arg: Any, raw: Any) -> str:
    """The dedicated table, or the generic rendering when the section's data has another shape (an older or
    partial audit): the page never fails on one section."""
    try:
        return fn(arg)
    except (KeyError, TypeError, ValueError, AttributeError):
        return generic_section(raw)


def write_html(result: dict[str, Any], path: str | Path) -> None:
    atomic_write_text(path, render_html(result))


def run_report(run_dir: str | Path) -> dict[str, Any]:
    """Audit ``run_dir`` (complete or not), write ``RUN_DIR/report.html`` and return the audit it shows."""
    from curate.audit import audit

    result = audit(Path(run_dir))
    write_html(result, RunLayout(run_dir).report_html)
    return result


def write_run_report(run_dir: str | Path) -> Path:
    """Audit ``run_dir`` (complete or not) and write ``RUN_DIR/report.html``; returns its path."""
    run_report(run_dir)
    return RunLayout(run_dir).report_html


# ---------------------------------------------------------------------------- headless browser
def find_chromium() -> str | None:
    import shutil

    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def chromium(page: str | Path, *, profile: str | Path, screenshot: str | Path | None = None, width: int = 1280,
             height: int = 2400, timeout: float = 180) -> str:
    """Load ``page`` in headless Chromium with the network cut off; return the DOM after the charts are drawn.

    Every request would fail: a proxy on a closed port and a host resolver that resolves nothing. With
    ``screenshot`` a second load writes a PNG of ``width`` x ``height`` pixels.
    """
    import subprocess

    exe = find_chromium()
    if exe is None:
        msg = "chromium is not installed (apt-get install chromium)"
        raise FileNotFoundError(msg)
    base = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--hide-scrollbars", f"--user-data-dir={profile}",
            "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND", "--virtual-time-budget=30000"]
    url = Path(page).resolve().as_uri()
    dom = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True, timeout=timeout, check=True)
    if screenshot is not None:
        subprocess.run([*base, f"--screenshot={screenshot}", f"--window-size={width},{height}", url],
                       capture_output=True, text=True, timeout=timeout, check=True)
    return dom.stdout


def screenshot_png(page: str | Path, png: str | Path, *, width: int = 1280, height: int = 3000,
                   colors: int = 128) -> Path:
    """A small PNG of the top of the report (for the README): Chromium screenshot, quantized to ``colors``."""
    import tempfile

    from PIL import Image

    png = Path(png)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.png"
        chromium(page, profile=Path(tmp) / "profile", screenshot=raw, width=width, height=height)
        img = Image.open(raw).convert("RGB")
        png.parent.mkdir(parents=True, exist_ok=True)
        img.quantize(colors=colors, method=Image.Quantize.MEDIANCUT).save(png, optimize=True)
    return png


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="write RUN_DIR/report.html, or screenshot a report for the README")
    ap.add_argument("run_dir")
    ap.add_argument("--png", help="also write a screenshot of the report to this PNG")
    ap.add_argument("--height", type=int, default=3000)
    a = ap.parse_args()
    page = write_run_report(a.run_dir)
    print(page)
    if a.png:
        print(screenshot_png(page, a.png, height=a.height))
