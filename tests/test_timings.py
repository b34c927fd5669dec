"""RUN_DIR/stats.json: wall and CPU seconds per phase; CPU seconds, documents, bytes and tokens per stage."""

from __future__ import annotations

from curate.io_utils import read_json
from curate.ledger import Ledger
from curate.timings import read_stage_rows, read_timings, render_stages, render_timings


def test_stage_rows_follow_the_pipeline_and_the_ledger(audit_run) -> None:
    _, _, recipe, res = audit_run
    rows = read_stage_rows(res.run_dir)
    names = [r["stage"] for r in rows]
    assert names[0] == "ingest" and names[-2:] == ["dedup", "mix"]
    assert names[names.index("tokenize"):names.index("tokenize") + 3] == ["tokenize", "sign", "write"]
    assert {"license", "langid", "quality"} <= set(names)
    led = Ledger.read(res.run_dir / "ledger.json")
    by = {r["stage"]: r for r in rows}
    for st in ("ingest", "license", "langid", "quality", "dedup", "mix"):
        counts = list(led.by_source(st).values())
        assert by[st]["docs_in"] == sum(c.docs_in for c in counts), st
        assert by[st]["docs_out"] == sum(c.docs_out for c in counts), st
    # a filter sees at most what ingest let through; the per-partition tail works on every survivor
    per_part = names[:names.index("write") + 1]
    for s in ("license", "langid", "quality"):
        assert by[s]["docs_in"] <= by["ingest"]["docs_out"] and by[s]["docs_out"] <= by[s]["docs_in"], s
    for s in ("tokenize", "sign", "write"):
        assert by[s]["docs_in"] == by[s]["docs_out"] == by["dedup"]["docs_in"], s
    assert by["tokenize"]["tokens_out"] == by["dedup"]["tokens_in"] == sum(
        c.tokens_in for c in led.by_source("dedup").values())
    assert by["tokenize"]["tokens_out"] > 0 and by["quality"]["tokens_out"] is None
    # CPU is measured per partition step and is part of the workers' CPU of the parts phase
    cpu = [by[s]["cpu_s"] for s in per_part]
    assert all(c is not None and c >= 0 for c in cpu) and sum(cpu) > 0
    parts_cpu = next(t for t in read_timings(res.run_dir) if t["phase"] == "parts")["worker_cpu_s"]
    assert sum(cpu) <= parts_cpu + 0.05
    assert by["dedup"]["cpu_s"] is None


def test_partition_summaries_carry_their_step_cpu(audit_run) -> None:
    _, _, _, res = audit_run
    dones = sorted((res.run_dir / "work" / "parts").glob("*.done"))
    assert dones
    for d in dones:
        cpu = read_json(d)["stage_cpu_s"]
        assert set(cpu) >= {"ingest", "tokenize", "sign", "write"} and all(v >= 0 for v in cpu.values())


def test_audit_and_report_carry_the_stage_table(audit_run, tmp_path) -> None:
    from curate import audit as audit_mod
    from curate.report import write_html

    _, _, _, res = audit_run
    result = audit_mod.audit(res.run_dir)
    assert [r["stage"] for r in result["stages"]] == [r["stage"] for r in read_stage_rows(res.run_dir)]
    write_html(result, tmp_path / "r.html")
    page = (tmp_path / "r.html").read_text()
    sec = page[page.index("id='sec-timings'"):]
    assert "tokenize" in sec[:20_000] and "docs_out" in sec[:20_000]


def test_run_tables_render(audit_run) -> None:
    from rich.console import Console

    _, _, _, res = audit_run
    con = Console(record=True, width=160)
    render_timings(read_timings(res.run_dir), console=con)
    render_stages(read_stage_rows(res.run_dir), console=con)
    text = con.export_text()
    assert "phases (seconds)" in text and "stages (CPU seconds" in text
    for name in ("parts", "finalize", "ingest", "tokenize", "dedup", "mix"):
        assert name in text
