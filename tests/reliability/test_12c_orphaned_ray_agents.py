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

import pytest

from tests.reliability._tiny import tiny_with_clean, wait_until
from tests.test_reliability import (assert_same_outputs, kill_session, output_hashes, private_ray_tmp, run_env,
                                    session_pids, start_run, wait_ok)


@pytest.mark.slow
def test_resume_right_after_a_driver_kill_12c(ray_session, tmp_path) -> None:
    recipe, clean = tiny_with_clean(tmp_path)
    out = tmp_path / "run"
    log = tmp_path / "run.log"
    parts = out / "work" / "parts"
    with private_ray_tmp() as ray_tmp:
        env = run_env(ray_tmp)
        first = start_run(recipe, out, env, log)
        try:
            # once Ray is up (the partition tasks write their first temporary files), kill the driver
            wait_until(first, lambda: parts.is_dir() and any(parts.iterdir()), log)
            os.kill(first.pid, signal.SIGKILL)  # the driver only: Ray's processes are left to themselves
            first.wait(timeout=30)
            time.sleep(3)
            lingering = len(session_pids(first.pid))  # Ray's agents, measured at 2 (see the docstring)
            second = start_run(recipe, out, env, log)
            try:
                wait_ok(second, log)
            finally:
                kill_session(second.pid)
        finally:
            kill_session(first.pid)
    print(f"{lingering} process(es) of the killed run still there when the resume started")
    assert "took over the stale run lock of pid" in log.read_text(), log.read_text()[-3000:]
    assert not list(out.rglob("*.tmp"))
    assert_same_outputs(output_hashes(out), output_hashes(clean))
