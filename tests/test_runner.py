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


def test_shutdown_ray_leaves_a_ray_it_did_not_start_running(ray_session) -> None:
    """The test session's Ray (started by the fixture, not by init_ray) is not curate's to stop."""
    assert runner.init_ray(None, num_cpus=2) is ray_session  # already up: init_ray starts nothing
    assert runner.shutdown_ray() is False
    assert ray_session.is_initialized()


_CHILD = """
import json, sys
import psutil
from curate import runner
ray = runner.init_ray(None, num_cpus=1)
from ray._private import worker
pids = [p.process.pid for infos in worker._global_node.all_processes.values() for p in infos]
assert ray.get(ray.remote(lambda: 7).remote()) == 7
stopped = runner.shutdown_ray()
alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
print(json.dumps({"stopped": stopped, "n": len(pids), "alive": alive, "up": ray.is_initialized(),
                  "again": runner.shutdown_ray()}))
"""


def test_shutdown_ray_stops_every_process_of_the_local_ray_init_ray_started() -> None:
    """In a process of its own: init_ray starts Ray; shutdown_ray stops it, monitor included, and only once."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(runner.__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(repo)}
    p = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, env=env, timeout=180,
                       check=False)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["stopped"] is True and out["up"] is False and out["again"] is False
    assert out["n"] >= 4  # gcs, raylet, monitor, dashboard, ... all listed
    assert out["alive"] == []
