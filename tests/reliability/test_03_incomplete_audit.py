"""Issue 22, item 3: the audit never says "passed" on an incomplete or crashed run.

Two crashes: ``curate run`` SIGKILLed halfway through its partitions (the kill harness of
``tests/test_reliability.py``), and a disk-full crash at 3 of 4 shards, simulated on a finished run by deleting
the last shard and ``manifest.json`` (what such a crash leaves). An audit of a run still being written never
raises, whatever files appear mid-read.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from curate import audit as audit_mod
from tests.test_reliability import kill_when, private_ray_tmp, run_env, start_run, wait_ok

REPO = Path(__file__).resolve().parents[2]
WORDS = "river stone market garden window paper music light winter harbor forest yellow bridge".split()


def _cli_audit(run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "curate.cli", "audit", str(run_dir), *extra], capture_output=True,
                          text=True, check=False, cwd=REPO, timeout=120)


def _recipe(root: Path, n_files: int = 6) -> Path:
    rng = random.Random(22)
    (root / "in").mkdir(parents=True, exist_ok=True)
    for f in range(n_files):
        lines = [json.dumps({"text": " ".join(rng.choice(WORDS) for _ in range(40))}) for _ in range(30)]
        (root / "in" / f"part-{f}.jsonl").write_text("\n".join(lines) + "\n")
    d = {"name": "halfway", "seed": 1, "budget_tokens": 2_000, "max_doc_tokens": 64,
         "sources": {"s": {"format": "jsonl", "paths": [str(root / "in" / "*.jsonl")], "text_column": "text"}},
         "mixture": {"all": {"share": 1.0, "sources": {"s": 1}}}, "shards": {"max_tokens": 300}}
    f = root / "r.yaml"
    f.write_text(yaml.safe_dump(d, sort_keys=False))
    return f


@pytest.mark.slow
def test_audit_of_a_run_killed_halfway_says_incomplete_22(tmp_path) -> None:
    recipe = _recipe(tmp_path)
    out, log = tmp_path / "run", tmp_path / "run.log"
    parts = out / "work" / "parts"

    def halfway() -> bool:
        return parts.is_dir() and 1 <= len(list(parts.glob("*.done"))) < 6

    with private_ray_tmp() as ray_tmp:
        env = run_env(ray_tmp)
        hit = kill_when(start_run(recipe, out, env, log), ray_tmp, halfway, what="halfway")
        assert hit, f"the run finished before it could be killed:\n{log.read_text()[-2000:]}"

        res = _cli_audit(out, "--json")
        assert res.returncode == audit_mod.EXIT_INCOMPLETE, res.stderr
        result = json.loads(res.stdout)
        assert result["status"] == "incomplete" and result["run"]["complete"] is False
        prog = result["progress"]
        assert prog["phase"] == "parts" and prog["partitions_total"] == 6
        assert 1 <= prog["partitions_done"] < 6
        assert any("partitions not processed" in m for m in prog["missing"])
        assert any(m.startswith("manifest.json") for m in prog["missing"])
        assert result["tolerance"]["partial"] is True and result["tolerance"]["applied_pp"] == 1.0

        table = _cli_audit(out)
        assert table.returncode == audit_mod.EXIT_INCOMPLETE
        assert "INCOMPLETE" in table.stdout and "audit passed" not in table.stdout
        partial = _cli_audit(out, "--partial")
        assert partial.returncode == 0, partial.stdout + partial.stderr
        assert "partial view" in partial.stdout and "audit passed" not in partial.stdout
        assert "Traceback" not in res.stderr + table.stderr + partial.stderr

        # resume; audit the directory again and again while it is being written: it never raises
        proc = start_run(recipe, out, env, log)
        seen = set()
        while proc.poll() is None:
            r = audit_mod.audit(out)
            seen.add((r["status"], r["progress"]["phase"]))
        wait_ok(proc, log)
    final = audit_mod.audit(out)
    assert final["status"] == "complete" and final["progress"]["phase"] == "complete"
    assert final["progress"]["missing"] == [] and audit_mod.exit_code(final) == 0, final["violations"]
    assert ("complete", "complete") in seen | {("complete", "complete")}


def _disk_full_at_last_shard(res, tmp_path: Path) -> tuple[Path, str]:
    d = tmp_path / "run"
    shutil.copytree(res.run_dir, d)
    last = res.manifest["shards"][-1]
    for f in (last["bin"], last["idx"], last["lineage"], f"{last['name']}.json"):
        (d / "shards" / f).unlink()
    (d / "manifest.json").unlink()
    return d, last["name"]


def test_disk_full_at_the_last_shard_is_incomplete_not_passed_22(audit_run, tmp_path) -> None:
    *_, res = audit_run
    n = len(res.manifest["shards"])
    d, last = _disk_full_at_last_shard(res, tmp_path)
    res_json = _cli_audit(d, "--json")
    assert res_json.returncode == audit_mod.EXIT_INCOMPLETE, res_json.stderr
    result = json.loads(res_json.stdout)
    assert result["status"] == "incomplete"
    prog = result["progress"]
    assert prog["phase"] == "shards" and prog["shards_done"] == n - 1 and prog["shards_planned"] == n
    assert any(f"1 of {n} shards not written ({last})" == m for m in prog["missing"]), prog["missing"]
    # the shards written so far, with their composition
    assert [s["name"] for s in prog["shards"]] == [s["name"] for s in res.manifest["shards"][:-1]]
    for s, want in zip(prog["shards"], res.manifest["shards"], strict=False):
        assert s["tokens"] == want["tokens"] and sum(s["by_group"].values()) == want["tokens"]
    table = _cli_audit(d)
    assert table.returncode == audit_mod.EXIT_INCOMPLETE
    assert "audit passed" not in table.stdout and f"shards {n - 1}/{n}" in table.stdout
    partial = _cli_audit(d, "--partial")
    assert "audit passed" not in partial.stdout and "partial view" in partial.stdout
    assert "held to 1 pp, not the recipe's" in partial.stdout
    # the HTML report draws what is known, mid-run
    html = tmp_path / "mid.html"
    drawn = _cli_audit(d, "--partial", "--html", str(html))
    assert drawn.returncode == 0 and html.stat().st_size > 0 and "Traceback" not in drawn.stderr, drawn.stderr


def test_an_incomplete_run_is_never_exit_0_without_partial_22(audit_run, tmp_path) -> None:
    *_, res = audit_run
    d, _ = _disk_full_at_last_shard(res, tmp_path)
    result = audit_mod.audit(d)
    assert result["violations"] == [] or audit_mod.exit_code(result) == 1
    assert audit_mod.exit_code(result) != 0
    assert audit_mod.exit_code(result, partial=True) == (1 if result["violations"] else 0)
    whole = audit_mod.audit(res.run_dir)
    assert whole["status"] == "complete" and audit_mod.exit_code(whole) == 0


def test_audit_tolerates_files_vanishing_and_damaged_json_mid_run_22(audit_run, tmp_path) -> None:
    *_, res = audit_run
    d, _ = _disk_full_at_last_shard(res, tmp_path)
    first = res.manifest["shards"][0]
    (d / "shards" / first["lineage"]).unlink()  # removed under the audit's feet (a --force restart)
    (d / "work" / "mix" / "plan.json").write_text('{"n_shards": ')  # damaged
    result = audit_mod.audit(d)
    kinds = {v["kind"] for v in result["violations"]}
    assert "corrupt_file" in kinds and result["status"] == "incomplete"
    assert any(v["where"] == "work/mix/plan.json" for v in result["violations"])
