"""Issue 22, item 12c: after a kill -9 of the driver alone, Ray's agents linger; they must not hurt a resume.

What happens (Ray 2.x, measured): the local Ray's GCS and raylet die with the driver, the workers soon after;
the dashboard agent and the runtime-env agent notice their raylet is gone within 2 s, then try to report its
death to the (dead) GCS with a timeout hard-coded to 60 s (``ray._private.utils.publish_error_to_driver``), and
exit only then. No Ray setting shortens it (``RAY_gcs_rpc_server_reconnect_timeout_s`` does not), and no hook
runs in a SIGKILLed driver, so curate leaves them: they hold no CPU reservation, no file of the run directory
and not the run lock (the lock's descriptor is close-on-exec and only the driver has it). This test pins the
part that matters: a resume started at once, with the agents still there, takes the stale lock over and ends
byte-identical. To clean up at once anyway: kill the processes of the dead run's session (``ps -s SID``).
"""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest

from curate.recipe import load_recipe
from curate.runner import run
from tests.reliability._tiny import write_jsonl, write_recipe
from tests.test_reliability import (RUN_TIMEOUT, assert_same_outputs, kill_session, output_hashes,
                                    private_ray_tmp, run_env, session_pids, start_run, wait_ok)


@pytest.mark.slow
def test_resume_right_after_a_driver_kill_12c(ray_session, tmp_path) -> None:
    data = write_jsonl(tmp_path / "docs.jsonl", 60)
    recipe = write_recipe(tmp_path, [str(data)])
    run(load_recipe(recipe), out=str(tmp_path / "clean"), quiet=True)
    out = tmp_path / "run"
    log = tmp_path / "run.log"
    with private_ray_tmp() as ray_tmp:
        env = run_env(ray_tmp)
        first = start_run(recipe, out, env, log)
        try:
            deadline = time.monotonic() + RUN_TIMEOUT
            # once Ray is up (the partition actors write their first temporary files), kill the driver
            parts = out / "work" / "parts"
            while not (parts.is_dir() and any(parts.iterdir())):
                assert first.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.01)
            os.kill(first.pid, signal.SIGKILL)  # the driver only: Ray's processes are left to themselves
            first.wait(timeout=30)
            time.sleep(3)
            lingering = [" ".join(psutil.Process(p).cmdline()[:1]) for p in session_pids(first.pid)]
            second = start_run(recipe, out, env, log)
            wait_ok(second, log)
        finally:
            kill_session(first.pid)
    print("lingering after the driver kill:", lingering)
    assert "took over the stale run lock of pid" in log.read_text(), log.read_text()[-3000:]
    assert not list(out.rglob("*.tmp"))
    assert_same_outputs(output_hashes(out), output_hashes(tmp_path / "clean"))
