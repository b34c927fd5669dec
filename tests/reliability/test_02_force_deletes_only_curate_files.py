"""Issue 22, item 2: ``--force`` deletes only what a curate run left, and never touches a folder without one.

A curate run is recognized by its ``run.json``; inside it only the layout's own names go (``work/``, shards
named ``<shards.name>_NNNNN.*``, ``documents/pNNNNNN.parquet``, ``quarantine/pNNNNNN.parquet``, the top-level
summary files). A non-empty folder with no ``run.json`` is refused, ``--force`` or not (exit 2).
"""

from __future__ import annotations

import pytest

from curate.errors import ResumeError
from curate.pipeline import load_recipe
from curate.runner import clean_run_dir, run
from tests.reliability._tiny import cli, run_args, write_jsonl, write_recipe


def _tree(d) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("force", [True, False])
def test_folder_without_a_curate_run_is_refused_even_with_force_02(tmp_path, force: bool) -> None:
    """The issue's reproduction: a folder holding documents/thesis.txt, then ``curate run --out it --force``."""
    data = write_jsonl(tmp_path / "docs.jsonl", 10)
    recipe = write_recipe(tmp_path, [str(data)])
    home = tmp_path / "home"
    (home / "documents").mkdir(parents=True)
    (home / "documents" / "thesis.txt").write_text("four years of work")
    (home / "shards").mkdir()
    (home / "shards" / "mix_00000.bin").write_bytes(b"not curate's")  # a curate-like name, still not a run
    before = _tree(home)
    res = cli(*run_args(recipe, home, *(["--force"] if force else [])))
    assert res.returncode == 2, res.stderr
    assert "holds no curate run (no run.json)" in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    if force:
        assert "--force deletes only the files of a curate run" in res.stderr
    assert _tree(home) == before
    assert sorted(p.name for p in home.iterdir()) == ["documents", "shards"], "not even a lock file is left"
    with pytest.raises(ResumeError, match="no run.json"):
        clean_run_dir(home)
    assert _tree(home) == before


def test_force_in_a_run_directory_keeps_the_users_files_02(ray_session, tmp_path) -> None:
    """``--force`` over a finished run deletes its outputs by name; a user's files in every folder stay."""
    data = write_jsonl(tmp_path / "docs.jsonl", 30)
    recipe = load_recipe(write_recipe(tmp_path, [str(data)]))
    out = tmp_path / "run"
    run(recipe, out=str(out), quiet=True)
    assert list((out / "shards").glob("mix_*.bin")) and (out / "documents" / "p000000.parquet").exists()
    mine = {"notes.txt": b"n", "documents/thesis.txt": b"t", "shards/README.md": b"r",
            "shards/other_00000.bin": b"another recipe's shard name", "quarantine/keep.parquet": b"k",
            "reports/mine.html": b"h", "data/raw.jsonl": b"d"}
    for rel, b in mine.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(b)
    # --force over a run (here of the same recipe) starts over, keeping the user's files
    address = ray_session.get_runtime_context().gcs_address
    res = cli(*run_args(tmp_path / "tiny.yaml", out, "--force", "--ray-address", address))
    assert res.returncode == 0, res.stderr
    assert {k: v for k, v in _tree(out).items() if k in mine} == mine
    assert (out / "manifest.json").exists()
    # what --force deletes, exactly: everything of the run, nothing of the user
    clean_run_dir(out)
    assert _tree(out) == mine, "only curate's own files may go"
