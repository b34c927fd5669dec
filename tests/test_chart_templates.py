"""Chart templates (curate.chart_templates): placeholders filled exactly, kept on disk and rebuilt when foreign,
and the report's charts the same as altair builds them with the values in place."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from curate import chart_templates as ct
from curate import report


def _tpl() -> dict:
    return {"spec": {"data": {"name": "rows"}, "height": ct.NUM_BASE, "title": "⟦title⟧",
                     "transform": [{"calculate": f"indexof(⟦order_json⟧, datum.x) + {ct.NUM_BASE + 1}"}],
                     "encoding": {"color": {"sort": ["⟦order⟧"], "scale": {"domain": [0, ct.NUM_BASE + 1]}}},
                     "layer": [{"mark": "rule", "data": {"name": "thr"}, "note": "a ⟦title⟧ here"}],
                     "flag": True, "count": 3},
            "numbers": {str(ct.NUM_BASE): "height", str(ct.NUM_BASE + 1): "top"}}


def test_fill_replaces_every_placeholder() -> None:
    tpl = _tpl()
    before = json.dumps(tpl)
    got = ct.fill(tpl, {"rows": [{"x": 1}], "thr": []},
                  {"height": 90, "title": "sources", "order_json": '["a","b"]', "order": ["a", "b"], "top": 12.5})
    assert got == {"data": {"values": [{"x": 1}]}, "height": 90, "title": "sources",
                   "transform": [{"calculate": 'indexof(["a","b"], datum.x) + 12.5'}],
                   "encoding": {"color": {"sort": ["a", "b"], "scale": {"domain": [0, 12.5]}}},
                   "layer": [{"mark": "rule", "data": {"values": []}, "note": "a sources here"}],
                   "flag": True, "count": 3}
    assert json.dumps(tpl) == before  # the template itself is never modified
    # a value is put in as it is: a title that looks like a placeholder is not replaced again
    got = ct.fill(tpl, {"rows": [], "thr": []}, {"height": 1, "title": f"⟦order⟧ {ct.NUM_BASE + 1}",
                                                 "order_json": "[]", "order": [], "top": 2})
    assert got["layer"][0]["note"] == f"a ⟦order⟧ {ct.NUM_BASE + 1} here"


def test_fill_names_what_has_no_value() -> None:
    with pytest.raises(KeyError, match="'order'"):
        ct.fill(_tpl(), {"rows": [], "thr": []}, {"height": 1, "title": "t", "order_json": "[]", "top": 1})
    with pytest.raises(KeyError, match="'thr' has no rows"):
        ct.fill(_tpl(), {"rows": []}, {"height": 1, "title": "t", "order_json": "[]", "order": [], "top": 1})


def _build_counter():
    calls = []

    def build(alt, s: ct.Slots):
        calls.append(1)
        return alt.Chart(alt.NamedData("rows")).mark_bar().encode(x="a:Q").properties(height=s.num("h"))
    return build, calls


def test_template_is_kept_on_disk_and_rebuilt_when_foreign(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CURATE_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CURATE_CHART_TEMPLATE_CACHE", "1")
    monkeypatch.setattr(ct, "_memo", {})
    build, calls = _build_counter()
    first = ct.template("t-test", ("k", 1), build)
    files = list((tmp_path / "chart-templates").glob("t-test-*.json"))
    assert len(calls) == 1 and len(files) == 1
    ct._memo.clear()  # a new process: the template comes from the disk, altair is not asked
    assert ct.template("t-test", ("k", 1), build) == first and len(calls) == 1
    ct.template("t-test", ("k", 2), build)  # another shape: another template
    assert len(calls) == 2 and len(list((tmp_path / "chart-templates").glob("t-test-*.json"))) == 2
    for bad in ("not json", json.dumps({"format": ct.FORMAT, "fingerprint": "other", "template": first}),
                json.dumps({"format": ct.FORMAT + 1, "template": first})):
        files[0].write_text(bad)
        ct._memo.clear()
        assert ct.template("t-test", ("k", 1), build) == first
    assert len(calls) == 5
    monkeypatch.setenv("CURATE_CHART_TEMPLATE_CACHE", "0")  # off: built in every process, nothing written
    ct._memo.clear()
    files[0].unlink()
    ct.template("t-test", ("k", 1), build)
    assert len(calls) == 6 and not files[0].exists()


def test_a_chart_with_inline_data_is_refused(monkeypatch) -> None:
    monkeypatch.setattr(ct, "_memo", {})
    import polars as pl

    with pytest.raises(ValueError, match="inline data"):
        ct.template("t-inline", None, lambda alt, s: alt.Chart(pl.DataFrame({"a": [1]})).mark_bar().encode(x="a:Q"))


class _Values(ct.Slots):
    """Slots that are the values themselves: the chart as altair builds it for one run."""

    def __init__(self, values: dict) -> None:
        super().__init__()
        self.values = values

    def num(self, name: str):
        return self.values[name]

    def text(self, name: str):
        return self.values[name]

    def seq(self, name: str):
        return self.values[name]


def _charts(result: dict) -> dict:
    tol = report.tolerance_pp(result)
    out = {"shares": report.shares_chart(report.shares_frame(result), tol),
           "funnel": report.funnel_chart(report.fate_frame(result), report.funnel_frame(result)),
           "scores": report.scores_chart(*report.score_frame(result)),
           "dedup": report.dedup_chart(report.dedup_frame(result)),
           "languages": report.tokens_chart(report.tokens_frame(result, "languages"), "tokens per language"),
           "stream": report.stream_chart(report.stream_frame(result)),
           "timings": report.timings_chart(report.timings_frame(result))}
    return {k: v.to_dict(validate=True) for k, v in out.items() if v is not None}


def test_report_charts_are_what_altair_builds_with_the_values(audit_run, monkeypatch) -> None:
    """Every chart of the demo run's report, from its template, equals the chart altair builds with the run's
    values in place of the placeholders (and is valid Vega-Lite)."""
    from curate import audit as audit_mod

    *_, res = audit_run
    result = audit_mod.audit(res.run_dir)
    templated = _charts(result)
    assert set(templated) == {"shares", "funnel", "scores", "dedup", "languages", "stream", "timings"}

    def direct_template(name, key, build):
        return {"build": build}

    def direct_fill(tpl, data, values):
        spec = tpl["build"](ct.altair(), _Values(values)).to_dict(validate=False)
        spec.pop("datasets", None)
        return ct.fill({"spec": spec, "numbers": {}}, data, {})

    monkeypatch.setattr(report, "template", direct_template)
    monkeypatch.setattr(report, "fill", direct_fill)
    assert _charts(result) == templated


def test_a_report_with_kept_templates_does_not_import_altair(audit_run, tmp_path) -> None:
    from curate import audit as audit_mod
    from curate.io_utils import user_cache_dir

    *_, res = audit_run
    result = audit_mod.audit(res.run_dir)
    report.render_html(result)  # the Vega bundle is in the user's cache folder now: copied, not bundled again
    for f in user_cache_dir().glob("vega-bundle-*.js"):
        (tmp_path / f.name).write_bytes(f.read_bytes())
    (tmp_path / "audit.json").write_text(json.dumps(result, default=str))
    script = ("import json, sys; from curate import report; "
              f"page = report.render_html(json.load(open({str(tmp_path / 'audit.json')!r}))); "
              "print(json.dumps({'altair': 'altair' in sys.modules, 'page': page}))")
    env = {**os.environ, "CURATE_CACHE_DIR": str(tmp_path), "CURATE_CHART_TEMPLATE_CACHE": "1",
           "CURATE_VALIDATE_CHARTS": "0"}
    runs = [json.loads(subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                                      check=True, cwd=Path(__file__).resolve().parent.parent).stdout)
            for _ in range(2)]
    assert runs[0]["altair"] and not runs[1]["altair"]  # built once, then read back
    assert runs[0]["page"] == runs[1]["page"]
    assert list((tmp_path / "chart-templates").glob("*.json"))
