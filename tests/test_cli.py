"""curate.cli's process exit (exit_process): exit handlers run, output flushed, the exit code kept."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import curate

REPO = Path(curate.__file__).resolve().parent.parent

_CHILD = """
import atexit, sys, tempfile, weakref
from pathlib import Path
from curate.cli import exit_process
d = tempfile.TemporaryDirectory()  # removed by a weakref.finalize exit hook
Path(sys.argv[1]).write_text(d.name)
atexit.register(lambda: print("handler ran", flush=False))
sys.stdout.write("unflushed ")  # buffered: a plain os._exit would lose it
sys.stderr.write("to stderr")
exit_process(int(sys.argv[2]))
print("not reached")
"""


def _child(tmp_path: Path, code: int) -> tuple[subprocess.CompletedProcess, Path]:
    note = tmp_path / "tmpdir.txt"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.run([sys.executable, "-c", _CHILD, str(note), str(code)], capture_output=True, text=True,
                       env=env, timeout=120, check=False)
    return p, Path(note.read_text())


def test_exit_process_runs_the_exit_handlers_flushes_and_keeps_the_code(tmp_path) -> None:
    p, tmp = _child(tmp_path, 3)
    assert p.returncode == 3, p.stderr
    assert p.stdout == "unflushed handler ran\n"
    assert p.stderr == "to stderr"
    assert not tmp.exists()  # TemporaryDirectory's finalizer ran


def test_exit_process_exit_zero(tmp_path) -> None:
    p, _ = _child(tmp_path, 0)
    assert p.returncode == 0, p.stderr
    assert "not reached" not in p.stdout


def test_the_curate_program_is_console() -> None:
    """pyproject's entry point ends through exit_process (the 1.5 s faster Ray shutdown, no teardown)."""
    text = (REPO / "pyproject.toml").read_text()
    assert 'curate = "curate.cli:console"' in text


def _session_processes(sid: int) -> list[str]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.getsid(int(d)) == sid:
                    out.append(Path(f"/proc/{d}/cmdline").read_text().replace("\0", " ")[:100])
            except OSError:
                pass
    return out


def test_a_run_that_fails_while_ray_starts_prints_its_error_first_and_leaves_no_process(tmp_path) -> None:
    """`curate run` begins Ray's start before reading the recipe; a bad recipe still fails at once, its message
    first (Ray's start-up log is dropped), and the half-started Ray is killed with every process it spawned."""
    import time

    from tests.test_reliability import private_ray_tmp, run_env

    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nsources: {}\n")
    with private_ray_tmp() as ray_tmp:
        env = {**run_env(ray_tmp), "PYTHONPATH": str(REPO)}
        p = subprocess.Popen([sys.executable, "-m", "curate.cli", "run", str(bad), "--out", str(tmp_path / "run")],
                             env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
        _, err = p.communicate(timeout=120)
        time.sleep(3)  # a reparented Ray agent would still be there (they linger for a minute)
        left = _session_processes(p.pid)
    assert p.returncode == 2, err
    assert err.startswith(f"curate run: error: {bad}: `budget_tokens`: required key is missing"), err
    assert "Ray" not in err, err
    assert left == [], left
