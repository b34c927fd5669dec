"""Issue 22, item 8: one ``curate run`` at a time per run directory (``RUN_DIR/.lock``, see ``curate.lock``).

A second run is refused naming the owner (pid, host, start time) and touches nothing, in particular not the
first run's in-flight temporary files; a lock left by a dead run is taken over, and the run says so.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from curate.lock import LockError, RunLock
from curate.pipeline import load_recipe
from curate.runner import run
from tests.reliability._tiny import (cli, cli_on_session, run_args, tiny_with_clean, wait_until, write_jsonl,
                                    write_recipe)
from tests.test_reliability import (assert_same_outputs, kill_session, output_hashes, private_ray_tmp, run_env,
                                    start_run, wait_ok)


def test_lock_excludes_a_second_holder_and_is_removed_on_release_08(tmp_path) -> None:
    d = tmp_path / "run"
    with RunLock(d) as lock:
        info = json.loads((d / ".lock").read_text())
        assert info["pid"] == os.getpid() and info["host"] == socket.gethostname()
        assert lock.took_over is None
        with pytest.raises(LockError) as ei:
            RunLock(d).acquire()  # flock conflicts between two opens, even in one process
        assert f"pid {os.getpid()} on host {socket.gethostname()}, started {info['started']}" in str(ei.value)
    assert not (d / ".lock").exists()
    with RunLock(d):  # free again
        pass


def test_second_run_is_refused_naming_the_owner_08(tmp_path) -> None:
    data = write_jsonl(tmp_path / "docs.jsonl", 10)
    recipe = write_recipe(tmp_path, [str(data)])
    out = tmp_path / "run"
    with RunLock(out):
        res = cli(*run_args(recipe, out))
    assert res.returncode == 1, res.stderr
    assert res.stderr.startswith(f"curate run: error: {out} is in use by another curate run (pid {os.getpid()} "
                                 f"on host {socket.gethostname()}"), res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert sorted(p.name for p in out.iterdir()) == [], "a refused run writes nothing"


def test_stale_lock_of_a_dead_run_is_taken_over_08(ray_session, tmp_path, capsys) -> None:
    data = write_jsonl(tmp_path / "docs.jsonl", 20)
    recipe = load_recipe(write_recipe(tmp_path, [str(data)]))
    out = tmp_path / "run"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out.mkdir()
    (out / ".lock").write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(),
                                           "started": "2026-01-01T00:00:00Z"}))
    run(recipe, out=str(out), quiet=True)
    err = capsys.readouterr().err
    assert (f"took over the stale run lock of pid {dead.pid} on host {socket.gethostname()}, started "
            "2026-01-01T00:00:00Z, which no longer runs") in err, err
    assert (out / "manifest.json").exists() and not (out / ".lock").exists()


@pytest.mark.slow
def test_two_runs_on_one_directory_08(ray_session, tmp_path) -> None:
    """The issue's reproduction: a second ``curate run`` while the first is writing. The second is refused
    before it deletes anything; the first finishes byte-identical to a run that was never disturbed."""
    recipe, clean = tiny_with_clean(tmp_path)
    out = tmp_path / "run"
    log = tmp_path / "first.log"
    with private_ray_tmp() as ray_tmp:
        first = start_run(recipe, out, run_env(ray_tmp), log)
        try:
            wait_until(first, (out / "run.json").exists, log)
            owner = json.loads((out / ".lock").read_text())
            res = cli_on_session(ray_session, *run_args(recipe, out))
            still_running = first.poll() is None
            wait_ok(first, log)
        finally:
            kill_session(first.pid)
    assert still_running, "the first run ended before the second was started: nothing was tested"
    assert res.returncode == 1, res.stderr
    assert f"is in use by another curate run (pid {owner['pid']} on host {owner['host']}" in res.stderr
    assert_same_outputs(output_hashes(out), output_hashes(clean))
