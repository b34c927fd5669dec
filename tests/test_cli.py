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
