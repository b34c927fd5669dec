"""Issue 22, item 6: a resume checks each finished shard against its ``.json`` marker and rewrites a damaged one.

Sizes of ``.bin``, ``.idx`` and ``.lineage.parquet`` are always checked (cheap); with ``--verify`` the sha256
of ``.bin`` and ``.idx`` too. A repaired shard is byte-identical to the original, and so is the whole run; a
kill -9 while a resume repairs a shard is itself resumed byte-identically.
"""

from __future__ import annotations

import json

import pytest

from curate import audit as audit_mod
from curate.pipeline import load_recipe
from curate.runner import run
from tests.reliability._tiny import cli_on_session, run_args, write_jsonl, write_recipe
from tests.test_reliability import (assert_same_outputs, kill_when, output_hashes, private_ray_tmp, run_env,
                                    start_run, wait_ok)


@pytest.fixture
def finished(ray_session, tmp_path):
    """A finished tiny run with several shards, and its output hashes."""
    data = write_jsonl(tmp_path / "docs.jsonl", 60)
    recipe_file = write_recipe(tmp_path, [str(data)])
    out = tmp_path / "run"
    res = run(load_recipe(recipe_file), out=str(out), quiet=True)
    assert len(res.manifest["shards"]) >= 3
    return recipe_file, out, output_hashes(out)


def test_flipped_bin_is_rewritten_with_verify_06(ray_session, finished, capsys) -> None:
    recipe_file, out, want = finished
    b = out / "shards" / "mix_00001.bin"
    raw = bytearray(b.read_bytes())
    raw[len(raw) // 2] ^= 0x01  # same size: only the sha256 can tell
    b.write_bytes(bytes(raw))
    assert audit_mod.exit_code(audit_mod.audit(out, verify=True)) == 1
    res = cli_on_session(ray_session, *run_args(recipe_file, out, "--verify"))
    assert res.returncode == 0, res.stderr
    assert "shard mix_00001 is rewritten: mix_00001.bin does not have the sha256 its marker records" in res.stderr
    assert_same_outputs(output_hashes(out), want)
    assert audit_mod.audit(out, verify=True)["violations"] == []


@pytest.mark.parametrize(("victim", "damage"), [("mix_00000.bin", "delete"), ("mix_00002.idx", "truncate"),
                                                ("mix_00001.lineage.parquet", "delete")])
def test_missing_or_truncated_file_is_rewritten_06(finished, capsys, victim: str, damage: str) -> None:
    recipe_file, out, want = finished
    f = out / "shards" / victim
    if damage == "delete":
        f.unlink()
    else:
        f.write_bytes(f.read_bytes()[:-8])
    run(load_recipe(recipe_file), out=str(out), quiet=True)
    err = capsys.readouterr().err
    assert f"shard {victim.split('.')[0]} is rewritten: {victim}" in err, err
    assert_same_outputs(output_hashes(out), want)
    assert audit_mod.audit(out, verify=True)["violations"] == []


def test_marker_records_every_file_size_06(finished) -> None:
    _, out, _ = finished
    m = json.loads((out / "shards" / "mix_00000.json").read_text())
    for kind in ("bin", "idx", "lineage"):
        assert m[f"{kind}_bytes"] == (out / "shards" / m[kind]).stat().st_size


@pytest.mark.slow
def test_kill_during_a_resume_that_repairs_a_shard_06(finished, tmp_path) -> None:
    """SIGKILL the whole run while it rewrites damaged shards; the next resume is byte-identical."""
    recipe_file, out, want = finished
    for name in ("mix_00000.bin", "mix_00002.bin"):
        (out / "shards" / name).unlink()
    marker = out / "shards" / "mix_00000.json"
    log = tmp_path / "run.log"
    with private_ray_tmp() as ray_tmp:
        env = run_env(ray_tmp)
        proc = start_run(recipe_file, out, env, log)
        hit = kill_when(proc, ray_tmp, lambda: not marker.exists(), what="repairing a shard")
        assert hit, f"the resume ended before the kill:\n{log.read_text()[-3000:]}"
        assert not (out / "manifest.json").exists(), "a run repairing a shard must not look complete"
        proc = start_run(recipe_file, out, env, log)
        wait_ok(proc, log)
    assert not list(out.rglob("*.tmp"))
    assert_same_outputs(output_hashes(out), want)
    assert audit_mod.audit(out, verify=True)["violations"] == []
