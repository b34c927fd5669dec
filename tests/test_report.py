"""The audit report (issues 9 and 20): a self-contained page whose charts really draw, offline, in a browser;
the notebook runs on the same data functions; a run in progress renders what is known.
"""

from __future__ import annotations

import html as html_mod
import json
import os
import re
import shutil
from pathlib import Path

import pytest

from curate import audit as audit_mod
from curate import report
from curate.report import SECTIONS, render_html, write_html

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = report.find_chromium()
MAX_BYTES = 5_000_000


def test_notebook_executes(audit_run, tmp_path) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    *_, res = audit_run
    nb = nbformat.read(REPO / "notebooks" / "audit.ipynb", as_version=4)
    os.environ["CURATE_RUN_DIR"] = str(res.run_dir)
    try:
        nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                resources={"metadata": {"path": str(REPO / "notebooks")}}).execute()
    finally:
        os.environ.pop("CURATE_RUN_DIR", None)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "violations: 0" in text
    # the notebook draws Vega-Lite charts from the report's own data functions
    vl = [o for o in outputs if "vegaEmbed" in "".join(o.get("data", {}).get("text/html", ""))]
    assert len(vl) >= 7, [list(o.get("data", {})) for o in outputs]


def _static_checks(page: str) -> None:
    """The page names no external resource and carries a policy that forbids the browser to fetch one."""
    assert len(page.encode()) < MAX_BYTES
    assert "default-src 'none'" in page
    markup = re.sub(r"(<script[^>]*>).*?</script>", r"\1</script>", page, flags=re.S)  # the tags, not the JS
    assert markup.count("<script") == 2  # the inlined Vega bundle and the chart specs
    for attr in re.findall(r"""<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)\s*=\s*["']?([^"' >]+)""", markup):
        assert attr.startswith(("data:", "#")), f"external resource {attr}"


class _Dom:
    """What the headless browser rendered: chart containers, sections, sample cards, body flags."""

    def __init__(self, dom: str) -> None:
        self.dom = dom
        # the document's own <body> tag (the inlined scripts contain the string too): the one with attributes
        tags = re.findall(r'<body((?:\s+[\w-]+="[^"]*")+)\s*>', dom)
        self.body = dict(re.findall(r'([\w-]+)="([^"]*)"', tags[-1])) if tags else {}
        self.charts = {}
        for m in re.finditer(r'<div([^>]*\bclass="chart[ "][^>]*)>', dom):  # vega-embed adds its own class
            attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', m.group(1)))
            self.charts[attrs.get("id")] = (attrs.get("data-rendered"), "<svg" in dom[m.end(): m.end() + 600])
        self.sections = {}
        starts = [(m.start(), m.group(1)) for m in re.finditer(r'<section id="sec-([\w-]+)"', dom)]
        for i, (pos, sid) in enumerate(starts):
            end = starts[i + 1][0] if i + 1 < len(starts) else len(dom)
            self.sections[sid] = dom[pos:end]

    def dropped_reasons_with_text(self) -> set[str]:
        out = set()
        samples = self.sections.get("samples", "")
        for m in re.finditer(r'<div class="reason dropped" data-reason="([^"]+)">(.*?)</div></div>', samples, re.S):
            texts = re.findall(r'<pre class="text">(.*?)</pre>', m.group(2), re.S)
            if any(t.strip() for t in texts):
                out.add(html_mod.unescape(m.group(1)))
        return out


def _check_in_browser(page: Path, tmp_path: Path, name: str) -> _Dom:
    shot = tmp_path / f"{name}.png"
    dom = _Dom(report.chromium(page, profile=tmp_path / f"profile-{name}", screenshot=shot, height=3000))
    assert shot.exists() and shot.stat().st_size > 20_000
    # the charts were drawn, with the network cut off, and the page asked for nothing
    assert dom.body.get("data-charts") == "done", dom.body
    assert json.loads(html_mod.unescape(dom.body.get("data-resources", "null"))) == []
    assert "data-csp-violations" not in dom.body
    assert dom.charts and all(v == ("ok", True) for v in dom.charts.values()), dom.charts
    # every section is there and drew its content
    for sid in SECTIONS:
        sec = dom.sections.get(sid)
        assert sec is not None, f"section {sid} missing"
        assert 'class="na"' not in sec, f"section {sid} says not available: {sec[:400]}"
    for cid in ("c-shares", "c-funnel", "c-scores", "c-dedup", "c-languages", "c-licenses", "c-stream",
                "c-timings"):
        assert cid in dom.charts, f"chart {cid} missing"
    reasons = dom.dropped_reasons_with_text()
    assert len(reasons) >= 2, reasons
    assert 'class="reason kept"' in dom.sections["samples"]
    return dom


@pytest.mark.browser
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_report_renders_offline_in_headless_chromium_20(audit_run, tmp_path) -> None:
    """The report `curate run` wrote for the demo run draws every section offline, with samples of drops."""
    *_, res = audit_run
    page = res.run_dir / "report.html"
    assert page.exists(), "curate run writes RUN_DIR/report.html"
    _static_checks(page.read_text())
    dom = _check_in_browser(page, tmp_path, "demo")
    reasons = dom.dropped_reasons_with_text()
    assert any(r.startswith("license:") for r in reasons) and any(r.startswith("quality:") for r in reasons)


@pytest.fixture(scope="module")
def real_run(real_data, tmp_path_factory, ray_session):
    from curate.pipeline import parse_recipe
    from curate.runner import run
    from tests.test_real_e2e import real_recipe

    tmp = tmp_path_factory.mktemp("real-report")
    return run(parse_recipe(real_recipe(real_data, tmp / "run"), base_dir=tmp), quiet=True)


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.real
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_report_of_real_run_renders_offline_20(real_run, tmp_path) -> None:
    page = tmp_path / "audit.html"
    write_html(audit_mod.audit(real_run.run_dir), page)
    _static_checks(page.read_text())
    dom = _check_in_browser(page, tmp_path, "real")
    # the real samples' planted problems show up with their text: copyleft code, near/exact duplicate web pages
    reasons = dom.dropped_reasons_with_text()
    assert {"license:AGPL-3.0-or-later", "exact_duplicate"} <= reasons, reasons


def test_report_is_self_contained_and_bounded(audit_run) -> None:
    *_, res = audit_run
    result = audit_mod.audit(res.run_dir)
    page = render_html(result)
    _static_checks(page)
    assert "vegaEmbed" in page and "cdn" not in page.lower()
    for sid in SECTIONS:
        assert f"id='sec-{sid}'" in page
    assert "Not yet available" not in page
    # the audit JSON carries what the page draws
    assert [t["phase"] for t in result["timings"]] == ["ray_start", "parts", "dedup", "mix", "shards", "documents",
                                                      "finalize", "report"]
    assert result["timings"][1]["worker_cpu_s"] > 0
    assert result["samples"]["rows"] > 0 and result["samples"]["bytes"] < 1_000_000
    assert result["scores"]["thresholds"]["refinedweb"]["q_fineweb_line_punct_ratio"]["min"] is not None
    assert {m["key"] for m in result["members"]} == set(result["sources"])


def test_report_renders_whatever_the_audit_returns_20() -> None:
    """An in-progress audit may lack any section: each missing one says so; nothing raises."""
    minimal = {"run": {"run_dir": None, "name": "x", "complete": False, "shards_done": 0}, "status": "incomplete",
               "progress": {"partitions_done": 3, "partitions_total": 10, "phase": "parts", "shards": []}}
    page = render_html(minimal)
    assert "Run in progress" in page and "partitions 3 of 10" in page and "phase parts" in page
    assert page.count("Not yet available") == len(SECTIONS)
    # sections added by other audits are drawn as tables when present
    page = render_html({**minimal, "balance": {"code": {"before": 0.1, "after": 0.15}},
                        "decontamination": [{"eval": "mmlu", "hits": 3}]})
    assert "id='sec-balance'" in page and "<td>mmlu</td>" in page and "<td>0.15</td>" in page
    # a section whose data is malformed says so instead of breaking the page
    page = render_html({**minimal, "funnel": {"src": "not a mapping"}})
    assert "could not be built" in page


def test_report_mid_run_draws_what_is_known_20(audit_run, tmp_path) -> None:
    """A run directory as it is after the parts phase: funnel, scores and samples from work/parts; the rest waits."""
    *_, res = audit_run
    rd = tmp_path / "run"
    shutil.copytree(res.run_dir, rd)
    for d in ("shards", "documents"):
        shutil.rmtree(rd / d)
    for sub in ("dedup", "mix"):
        shutil.rmtree(rd / "work" / sub, ignore_errors=True)
    for f in ("manifest.json", "ledger.json", "samples.parquet", "scores.json", "audit.json", "report.html"):
        (rd / f).unlink(missing_ok=True)
    page = report.write_run_report(rd).read_text()
    sec = dict(re.findall(r"<section id='sec-(\w+)'>(.*?)</section>", page, re.S))
    for sid in ("funnel", "scores", "samples", "timings"):
        assert "Not yet available" not in sec[sid], sid
    for sid in ("shares", "stream", "langlic"):
        assert "Not yet available" in sec[sid], sid
    assert "Run in progress" in page
    assert "quality:" in sec["samples"] and "license:" in sec["samples"]


def test_report_stays_bounded_on_a_big_run_20(tmp_path) -> None:
    """A synthetic audit of a big run (many sources, subsets, reasons, rules, languages): the page stays small."""
    import numpy as np
    import pyarrow as pa

    from curate.samples import SAMPLE_K, SAMPLE_SCHEMA, TEXT_CHARS

    rng = np.random.default_rng(0)
    srcs = [f"src{i}" for i in range(10)]
    reasons = [f"quality:rule{j}" for j in range(100)] + [f"lang:l{j}" for j in range(100)]
    entry = {"target": 0.1, "actual": 0.1, "tokens": 10**9}
    funnel = {s: {"ingest": {"docs_in": 10**7, "docs_out": 10**7, "dropped": {}, "quarantined": {}},
                  "quality": {"docs_in": 10**7, "docs_out": 5 * 10**6, "quarantined": {},
                              "dropped": {r: int(rng.integers(1, 10**5)) for r in reasons}}} for s in srcs}
    scores = {"hist": {s: {f"q_rule{j}": {"buckets": {f"{v:.2g}": 1 for v in rng.lognormal(0, 3, 3000)},
                                           "null": 0} for j in range(30)} for s in srcs},
              "thresholds": {s: {f"q_rule{j}": {"min": 0.5, "max": 100.0} for j in range(30)} for s in srcs}}
    result = {"run": {"run_dir": str(tmp_path), "name": "big", "complete": True, "shards_done": 4000},
              "total_tokens": 10**10, "groups": {f"g{i}": entry for i in range(10)},
              "sources": {s: entry for s in srcs}, "subsets": {f"src0/sub{i}": entry for i in range(500)},
              "languages": {f"l{i}": 10**6 + i for i in range(200)},
              "licenses": {f"lic{i}": 10**6 + i for i in range(300)}, "funnel": funnel, "scores": scores,
              "dedup_matrix": {a: {b: 10 for b in srcs} for a in srcs}, "violations": [], "flags": [],
              "timings": [{"phase": "parts", "wall_s": 1.0, "driver_cpu_s": 0.1, "worker_cpu_s": 2.0}],
              "samples": {"rows": 0, "bytes": 0, "k": SAMPLE_K}}
    n = len(srcs) * len(reasons) * SAMPLE_K
    rows = {"source": np.repeat(srcs, len(reasons) * SAMPLE_K).tolist(),
            "subset": [""] * n, "stage": ["quality"] * n, "reason": np.tile(np.repeat(reasons, SAMPLE_K), 10).tolist(),
            "doc_id": [f"d{i}" for i in range(n)], "uid": list(range(n)), "hash": list(range(n)),
            "nbytes": [5000] * n, "lang": ["en"] * n, "text": ["<&> é " * (TEXT_CHARS // 6)] * n,
            "scores": [json.dumps({f"q_rule{j}": 0.5 for j in range(30)})] * n}
    import pyarrow.parquet as pq

    pq.write_table(pa.table(rows, schema=SAMPLE_SCHEMA), tmp_path / "samples.parquet")
    page = render_html(result)
    assert len(page.encode()) < MAX_BYTES / 2, len(page.encode())
    assert "188 rarer reasons" in page  # 200 per source, 12 shown
