"""Issue 22, item 7: faults a user can cause give one line and an exit code, never a bare traceback, and leave
the run resumable.

=================================== =========================================================================
fault                               expected
=================================== =========================================================================
``budget_tokens`` ≥ 2^63            a recipe error naming ``budget_tokens``, exit 2, from ``plan`` and ``run``
disk full (ENOSPC) in a Ray task    ``cannot write <file>: ... (ENOSPC)``, exit 1; the rerun completes
disk full in the driver             the same, for the driver's own writes (``manifest.json``)
read-only output (EROFS)            ``cannot write <file>: ... (EROFS)``, exit 1; writable again, it resumes
two runs on one directory           the lock's refusal (tests/reliability/test_08_run_lock.py)
=================================== =========================================================================

Disk full is real. In a shard task, ``shards/`` is a small tmpfs bind-mounted over the run's folder and filled
to its last page, so the kernel answers the worker's writes with ENOSPC whatever temporary name the worker picks
(the name holds its process id, :func:`curate.io_utils.temp_path`). In the driver, whose process id the test
knows, the temporary file is made a symlink to ``/dev/full``. A read-only file system is real too: a small tmpfs
remounted read-only. The mounts need root and mount rights; those tests are skipped otherwise, saying so.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from curate import cli as cli_mod
from curate.io_utils import temp_path
from curate.pipeline import load_recipe
from curate.runner import run
from tests.reliability._tiny import cli, cli_on_session, run_args, write_jsonl, write_recipe
from tests.test_reliability import assert_same_outputs, output_hashes


def _one_line_error(stderr: str, *needles: str) -> None:
    lines = [ln for ln in stderr.strip().splitlines() if ln.startswith("curate run: error:")
             or ln.startswith("curate plan: error:")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    for n in needles:
        assert n in lines[0], stderr


@pytest.mark.parametrize("budget", [2**63, 2**70])
def test_budget_beyond_int64_is_a_recipe_error_07(tmp_path, budget: int) -> None:
    data = write_jsonl(tmp_path / "docs.jsonl", 5)
    recipe = write_recipe(tmp_path, [str(data)], budget_tokens=budget)
    for args in (["plan", str(recipe)], run_args(recipe, tmp_path / "run")):
        res = cli(*args)
        assert res.returncode == 2, res.stderr
        _one_line_error(res.stderr, "`budget_tokens`", "less than 9223372036854775808")
    assert not (tmp_path / "run").exists(), "a recipe error is found before anything is written"


@pytest.fixture
def finished(ray_session, tmp_path):
    data = write_jsonl(tmp_path / "docs.jsonl", 60)
    recipe_file = write_recipe(tmp_path, [str(data)])
    out = tmp_path / "run"
    run(load_recipe(recipe_file), out=str(out), quiet=True)
    return recipe_file, out, output_hashes(out)


@contextlib.contextmanager
def _tmpfs(size: str = "64m") -> Path:
    d = Path(tempfile.mkdtemp(prefix="crro", dir="/tmp"))
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(d)], capture_output=True,
                         check=False)
    if res.returncode != 0:
        d.rmdir()
        pytest.skip(f"cannot mount a tmpfs here (needs root and mount rights): {res.stderr.decode().strip()}")
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], check=False)
        d.rmdir()


def _fill(fs: Path) -> None:
    """Write ``fs/fill`` until the file system is out of space: every page in use, the next write fails."""
    fd = os.open(fs / "fill", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as e:
        assert e.errno == errno.ENOSPC, e
    finally:
        os.close(fd)


@contextlib.contextmanager
def _full_shards_dir(out: Path) -> Path:
    """``out/shards`` moved onto a 4 MiB tmpfs (bind-mounted back in place); yields the tmpfs root.

    ``fs/shards`` is what the run sees as ``out/shards``; ``fs/pin`` beside it holds hard links the test uses so
    that a deletion during the run frees no page.
    """
    shards = out / "shards"
    with _tmpfs(size="4m") as fs:
        shutil.copytree(shards, fs / "shards", symlinks=True)
        (fs / "pin").mkdir()
        shutil.rmtree(shards)
        shards.mkdir()
        res = subprocess.run(["mount", "--bind", str(fs / "shards"), str(shards)], capture_output=True, check=False)
        if res.returncode != 0:
            shutil.rmtree(shards)
            shutil.copytree(fs / "shards", shards, symlinks=True)
            pytest.skip(f"cannot bind-mount a tmpfs over shards/ here: {res.stderr.decode().strip()}")
        try:
            yield fs
        finally:
            subprocess.run(["umount", "-l", str(shards)], check=False)
            shutil.rmtree(shards)
            shutil.copytree(fs / "shards", shards, symlinks=True)


def test_disk_full_in_a_shard_task_07(ray_session, finished) -> None:
    recipe_file, out, want = finished
    with _full_shards_dir(out) as fs:
        (out / "shards" / "mix_00001.bin").unlink()  # the resume rewrites it ...
        # ... onto a full disk. The resume deletes the shard's marker before the task writes; pinned by a second
        # link, its page stays in use, so the disk is still full when the worker writes the .bin.
        os.link(fs / "shards" / "mix_00001.json", fs / "pin" / "mix_00001.json")
        _fill(fs)
        res = cli_on_session(ray_session, *run_args(recipe_file, out))
        assert res.returncode == 1, res.stderr
        _one_line_error(res.stderr, f"cannot write {out / 'shards' / 'mix_00001.bin'}", "(ENOSPC)", "rerun")
        assert not list((out / "shards").glob(".*.tmp")), "the failed write removes its temporary files"
        assert not (out / "shards" / "mix_00001.bin").exists()
        (fs / "fill").unlink()  # space again: the rerun completes, byte for byte the first run
        res = cli_on_session(ray_session, *run_args(recipe_file, out))
        assert res.returncode == 0, res.stderr
        assert_same_outputs(output_hashes(out), want)


def test_disk_full_in_the_driver_07(ray_session, finished, capsys) -> None:
    recipe_file, out, want = finished
    (out / "manifest.json").unlink()
    tmp = temp_path(out / "manifest.json")  # the driver is this process here
    tmp.symlink_to("/dev/full")
    args = run_args(recipe_file, out, "--ray-address", ray_session.get_runtime_context().gcs_address)
    assert cli_mod.main(args) == 1
    _one_line_error(capsys.readouterr().err, f"cannot write {out / 'manifest.json'}", "(ENOSPC)")
    assert not tmp.is_symlink()
    assert cli_mod.main(args) == 0
    assert_same_outputs(output_hashes(out), want)


def test_read_only_output_directory_07(ray_session, tmp_path) -> None:
    data = write_jsonl(tmp_path / "docs.jsonl", 60)
    recipe_file = write_recipe(tmp_path, [str(data)])
    with _tmpfs() as fs:
        out = fs / "run"
        res = cli_on_session(ray_session, *run_args(recipe_file, out))
        assert res.returncode == 0, res.stderr
        want = output_hashes(out)
        (out / "shards" / "mix_00000.bin").unlink()
        subprocess.run(["mount", "-o", "remount,ro", str(fs)], check=True)
        try:
            res = cli_on_session(ray_session, *run_args(recipe_file, out))
        finally:
            subprocess.run(["mount", "-o", "remount,rw", str(fs)], check=True)
        assert res.returncode == 1, res.stderr
        _one_line_error(res.stderr, f"cannot write {out}", "(EROFS)")
        res = cli_on_session(ray_session, *run_args(recipe_file, out))
        assert res.returncode == 0, res.stderr
        assert_same_outputs(output_hashes(out), want)


def test_budget_just_below_the_limit_is_valid_07() -> None:
    """The bound is the int64 limit: a budget just under it passes validation (``plan`` then reports a shortfall)."""
    from curate.pipeline import parse_recipe

    recipe = {"name": "x", "budget_tokens": 2**63 - 1,
              "sources": {"s": {"format": "jsonl", "paths": ["a"], "text_column": "text"}},
              "mixture": {"all": {"share": 1.0, "sources": {"s": 1}}}}
    assert parse_recipe(recipe, base_dir=Path("."), check_paths=False).budget_tokens == 2**63 - 1
