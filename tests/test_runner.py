"""curate.runner helpers that need no Ray: the report refresh throttle."""

from __future__ import annotations

import curate.report
from curate import runner


def test_mid_run_report_refreshes_are_throttled_the_final_one_always_draws(tmp_path, monkeypatch) -> None:
    drawn: list[str] = []
    monkeypatch.setattr(curate.report, "run_report", lambda d: drawn.append(str(d)))
    clock = [1000.0]
    monkeypatch.setattr(runner.time, "monotonic", lambda: clock[0])
    runner._last_report[str(tmp_path)] = clock[0]  # the run starts
    runner.refresh_report(tmp_path, "parts")  # 0 s in: too soon
    clock[0] += runner.REPORT_REFRESH_S + 1
    runner.refresh_report(tmp_path, "dedup")  # a long phase ended: drawn
    runner.refresh_report(tmp_path, "shards")  # right after: skipped
    runner.refresh_report(tmp_path, "finalize", final=True)  # always
    assert drawn == [str(tmp_path)] * 2


def test_a_failing_report_never_fails_the_run(tmp_path, monkeypatch, caplog) -> None:
    def boom(d):
        raise ValueError("no data")

    monkeypatch.setattr(curate.report, "run_report", boom)
    runner.refresh_report(tmp_path, "finalize", final=True)
    assert "report.html not refreshed after phase finalize" in caplog.text
