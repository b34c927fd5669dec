"""``curate audit --html FILE``: a self-contained HTML report (inline SVG; no scripts, no network).

Plots: target vs actual share per group and per source, the per-source funnel (documents after each stage),
each group's share along the token stream (the interleaving, from the lineage), tokens per license, a table
per balanced scope (``balance:``), and the decontamination table (benchmark × source) when the recipe
decontaminates.
Violations are listed first, in red, so a reviewer cannot miss them.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from curate.io_utils import atomic_write_text
from curate.schema import STAGES

PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f",
           "#bab0ac"]


def _bars(title: str, rows: list[tuple[str, float | None, float]], *, fmt=lambda v: f"{v:.1%}") -> str:
    """Paired horizontal bars: target (light; omitted when None) and actual (dark) per row."""
    h = 28 * len(rows) + 40
    width, left = 640, 160
    vmax = max([max(t or 0.0, a) for _, t, a in rows] + [1e-9])
    out = [f'<svg class="plot" width="{width}" height="{h}" role="img" aria-label="{html.escape(title)}">',
           f'<text x="4" y="16" font-weight="bold">{html.escape(title)}</text>']
    for i, (name, t, a) in enumerate(rows):
        y = 30 + i * 28
        tw, aw = (width - left - 200) * (t or 0.0) / vmax, (width - left - 200) * a / vmax
        out.append(f'<text x="4" y="{y + 14}">{html.escape(name)}</text>')
        if t is not None:
            out.append(f'<rect x="{left}" y="{y}" width="{tw:.1f}" height="10" fill="#c7d7ea"><title>target '
                       f'{fmt(t)}</title></rect>')
        out.append(f'<rect x="{left}" y="{y + 11}" width="{aw:.1f}" height="10" fill="#4e79a7"><title>actual '
                   f'{fmt(a)}</title></rect>')
        label = fmt(a) if t is None else f"{fmt(a)} actual / {fmt(t)} target"
        out.append(f'<text x="{left + max(tw, aw) + 6:.1f}" y="{y + 16}" font-size="11">{label}</text>')
    out.append("</svg>")
    return "".join(out)


def _yaxis(left: int, top: int, bottom: int, width: int) -> str:
    """0%, 50%, 100% gridlines for a plot whose y runs from ``bottom`` (0) to ``top`` (1)."""
    out = []
    for v in (0.0, 0.5, 1.0):
        y = top + (1 - v) * (bottom - top)
        out.append(f'<line x1="{left}" x2="{width - 20}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>'
                   f'<text x="2" y="{y + 4:.1f}" font-size="10">{v:.0%}</text>')
    return "".join(out)


def _funnel(fun: dict[str, dict]) -> str:
    width, h = 640, 220
    left, top, bottom = 40, 24, 40
    srcs = list(fun)
    out = [f'<svg class="plot" width="{width}" height="{h}" role="img" aria-label="funnel">',
           '<text x="4" y="16" font-weight="bold">Funnel: documents after each stage (share of ingested)</text>']
    n = len(STAGES)
    out.append(_yaxis(left, top, h - bottom, width))
    for j, st in enumerate(STAGES):
        x = left + j * (width - left - 20) / (n - 1)
        out.append(f'<text x="{x - 14:.1f}" y="{h - 20}" font-size="11">{st}</text>')
    for i, s in enumerate(srcs):
        base = (fun[s].get("ingest") or {}).get("docs_out") or 0
        pts = []
        for j, st in enumerate(STAGES):
            c = fun[s].get(st)
            if c is None or not base:
                continue
            v = c["docs_out"] / base
            x = left + j * (width - left - 20) / (n - 1)
            y = top + (1 - min(v, 1.0)) * (h - top - bottom)
            pts.append(f"{x:.1f},{y:.1f}")
        color = PALETTE[i % len(PALETTE)]
        out.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{" ".join(pts)}"/>')
        out.append(f'<text x="{width - 120}" y="{top + 14 * i}" fill="{color}" font-size="11">{html.escape(s)}</text>')
    out.append("</svg>")
    return "".join(out)


def _stream(series: dict[str, list[float]], targets: dict[str, float]) -> str:
    width, h, left, top, bottom = 640, 220, 40, 24, 30
    out = [f'<svg class="plot" width="{width}" height="{h}" role="img" aria-label="stream">',
           '<text x="4" y="16" font-weight="bold">Group share along the token stream (windows; dashed: target)'
           '</text>', _yaxis(left, top, h - bottom, width)]
    for i, (g, vals) in enumerate(series.items()):
        if not vals:
            continue
        color = PALETTE[i % len(PALETTE)]
        pts = " ".join(f"{left + k * (width - left - 20) / max(len(vals) - 1, 1):.1f},"
                       f"{top + (1 - v) * (h - top - bottom):.1f}" for k, v in enumerate(vals))
        out.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{pts}"/>')
        ty = top + (1 - targets.get(g, 0)) * (h - top - bottom)
        out.append(f'<line x1="{left}" x2="{width - 20}" y1="{ty:.1f}" y2="{ty:.1f}" stroke="{color}" '
                   'stroke-dasharray="4 3"/>')
        out.append(f'<text x="{width - 120}" y="{top + 14 * i}" fill="{color}" font-size="11">{html.escape(g)}</text>')
    out.append("</svg>")
    return "".join(out)


def stream_series(run_dir: Path, groups: list[str], points: int = 50) -> dict[str, list[float]]:
    """Each group's share in ``points`` consecutive windows of the token stream (from shard lineage)."""
    import numpy as np
    import pyarrow.parquet as pq

    files = sorted((Path(run_dir) / "shards").glob("*.lineage.parquet"))
    if not files:
        return {g: [] for g in groups}
    tabs = [pq.read_table(f, columns=["group", "tokens"]) for f in files]
    grp = np.concatenate([t["group"].to_numpy(zero_copy_only=False) for t in tabs])
    tok = np.concatenate([t["tokens"].to_numpy() for t in tabs]).astype(np.float64)
    ends = np.cumsum(tok)
    edges = np.linspace(0, ends[-1], points + 1)
    out = {}
    for g in groups:
        cum = np.concatenate([[0.0], np.cumsum(np.where(grp == g, tok, 0.0))])
        pos = np.concatenate([[0.0], ends])
        at = np.interp(edges, pos, cum)
        out[g] = list(np.diff(at) / np.diff(edges))
    return out


def render_html(result: dict[str, Any]) -> str:
    r = result["run"]
    parts = ["<!doctype html><html><head><meta charset='utf-8'>",
             f"<title>curate audit — {html.escape(r['name'])}</title>",
             "<style>body{font-family:sans-serif;margin:24px;max-width:980px} .v{color:#b00} table{border-collapse:"
             "collapse} td,th{border:1px solid #ccc;padding:3px 8px;text-align:right} td:first-child{text-align:left}"
             " svg{display:block;margin:12px 0;font-family:sans-serif;font-size:12px}</style></head><body>",
             f"<h1>curate audit — {html.escape(r['name'])}</h1>",
             f"<p>{'complete' if r['complete'] else 'in progress'}; {r['shards_done']} shard(s); "
             f"{result['total_tokens']:,} tokens.</p>"]
    if result["violations"]:
        parts.append("<h2 class='v'>Violations</h2><ul>")
        parts += [f"<li class='v'><b>{html.escape(v['kind'])}</b> {html.escape(v['message'])}</li>"
                  for v in result["violations"]]
        parts.append("</ul>")
    else:
        parts.append("<p><b>No violations.</b></p>")
    parts.append(_bars("Groups: target vs actual share", [(g, e["target"], e["actual"])
                                                          for g, e in result["groups"].items()]))
    parts.append(_bars("Sources: target vs actual share", [(s, e["target"], e["actual"])
                                                           for s, e in result["sources"].items()]))
    parts.append(_funnel(result["funnel"]))
    series = stream_series(Path(r["run_dir"]), list(result["groups"]))
    parts.append(_stream(series, {g: e["target"] for g, e in result["groups"].items()}))
    lic = list(result.get("licenses", {}).items())[:12]
    tot = max(sum(v for _, v in lic), 1)
    parts.append(_bars("Share of tokens per license", [(k, None, v / tot) for k, v in lic]))
    parts.append("<h2>Funnel (documents)</h2><table><tr><th>source</th>" +
                 "".join(f"<th>{s}</th>" for s in STAGES) + "</tr>")
    for s, st in result["funnel"].items():
        parts.append(f"<tr><td>{html.escape(s)}</td>" + "".join(
            f"<td>{st[x]['docs_out']:,}</td>" if x in st else "<td>-</td>" for x in STAGES) + "</tr>")
    parts.append("</table>")
    parts.append(balance_tables(result))
    parts.append(_decontamination(result.get("decontamination")))
    parts.append("</body></html>")
    return "".join(parts)


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


def write_html(result: dict[str, Any], path: str | Path) -> None:
    atomic_write_text(path, render_html(result))
