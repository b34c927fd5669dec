"""The audit catches what went missing (issue 9): planted failures give the exact violation and exit code."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from curate import audit as audit_mod
from curate.errors import CurateError, RecipeError
from curate.pipeline import parse_recipe
from curate.runner import run

@pytest.fixture(scope="session")
def base_run(audit_run):
    return audit_run


def _copy(res, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(res.run_dir, dst)
    return dst


def _cli_audit(run_dir: Path, *extra: str) -> tuple[int, dict]:
    out = subprocess.run([sys.executable, "-m", "curate.cli", "audit", str(run_dir), "--json", *extra],
                         capture_output=True, text=True, check=False)
    return out.returncode, (json.loads(out.stdout) if out.stdout.strip() else {"stderr": out.stderr})


def test_deleted_shard_is_a_violation(base_run, tmp_path) -> None:
    *_, res = base_run
    d = _copy(res, tmp_path)
    (d / "shards" / f"{res.manifest['shards'][1]['name']}.bin").unlink()
    code, result = _cli_audit(d)
    assert code == 1
    first = result["violations"][0]
    assert first["kind"] == "shard_missing" and res.manifest["shards"][1]["name"] in first["message"]
    # and what the trainer would get is now off the recipe: the shares say so too
    # (the demo recipe balances its languages, so a language's share of the group may be off as well)
    assert {v["kind"] for v in result["violations"][1:]} <= {"share_out_of_tolerance", "balance_out_of_tolerance",
                                                              "missing_balance_value"}


def test_flipped_byte_fails_verify(base_run, tmp_path) -> None:
    *_, res = base_run
    d = _copy(res, tmp_path)
    f = d / "shards" / res.manifest["shards"][0]["bin"]
    b = bytearray(f.read_bytes())
    b[len(b) // 2] ^= 0xFF
    f.write_bytes(bytes(b))
    assert _cli_audit(d)[0] == 0, "without --verify a same-size flip is not visible"
    code, result = _cli_audit(d, "--verify")
    assert code == 1
    assert [(v["kind"], v["where"]) for v in result["violations"]] == [("shard_checksum", f.name)]


def test_truncated_bin_is_caught(base_run, tmp_path) -> None:
    *_, res = base_run
    d = _copy(res, tmp_path)
    f = d / "shards" / res.manifest["shards"][0]["bin"]
    f.write_bytes(f.read_bytes()[:-10])
    code, result = _cli_audit(d)
    assert code == 1
    assert "shard_checksum" in {v["kind"] for v in result["violations"]}


def test_altered_lineage_is_a_violation(base_run, tmp_path) -> None:
    *_, res = base_run
    d = _copy(res, tmp_path)
    p = d / "shards" / res.manifest["shards"][0]["lineage"]
    t = pq.read_table(p)
    tok = t["tokens"].to_numpy().copy()
    tok[3] += 7
    pq.write_table(t.set_column(t.schema.get_field_index("tokens"), "tokens", pa.array(tok)), p)
    code, result = _cli_audit(d)
    assert code == 1
    kinds = [v["kind"] for v in result["violations"]]
    assert kinds[0] == "lineage_mismatch" and "1 sequence" in result["violations"][0]["message"]


def test_broken_ledger_conservation(base_run, tmp_path) -> None:
    *_, res = base_run
    d = _copy(res, tmp_path)
    led = json.loads((d / "ledger.json").read_text())
    row = next(r for r in led if r["stage"] == "quality" and r["source"] == "refinedweb")
    row["docs_out"] -= 5
    (d / "ledger.json").write_text(json.dumps(led))
    code, result = _cli_audit(d)
    assert code == 1
    v = [v for v in result["violations"] if v["kind"] == "ledger_conservation"]
    assert v and v[0]["where"] == "quality/refinedweb"


def test_filter_removing_all_of_math_is_named(base_run, tmp_path) -> None:
    tmp, data, _recipe, _res = base_run
    d = json.loads(json.dumps(data))
    d["output"] = str(tmp_path / "run")
    d["sources"]["math"]["quality"] = {"gopher": {"min_doc_words": 100000}}
    recipe = parse_recipe(d, base_dir=tmp)
    with pytest.raises(CurateError, match=r"math"):
        run(recipe, quiet=True)
    result = audit_mod.audit(tmp_path / "run")
    assert audit_mod.exit_code(result) == 1
    missing = [v for v in result["violations"] if v["kind"] == "missing_source"]
    assert missing and missing[0]["where"] == "math"
    assert missing[0]["message"].startswith("math: target 20.0% of soup, found 0 tokens — dropped at stage quality")


def test_glob_emptied_between_plan_and_run(base_run, tmp_path) -> None:
    tmp, data, *_ = base_run
    src = tmp_path / "math"
    shutil.copytree(Path(data["sources"]["math"]["paths"][0]).parent, src)
    d = json.loads(json.dumps(data))
    d["output"] = str(tmp_path / "run")
    d["sources"]["math"]["paths"] = [str(src / "*.parquet")]
    f = tmp_path / "r.yaml"
    f.write_text(yaml.safe_dump(d))
    plan = subprocess.run([sys.executable, "-m", "curate.cli", "plan", str(f)], capture_output=True, text=True,
                          check=False)
    assert plan.returncode == 0, plan.stderr
    for p in src.iterdir():
        p.unlink()
    out = subprocess.run([sys.executable, "-m", "curate.cli", "run", str(f), "--quiet", "--num-cpus", "1"],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 2
    assert "`sources.math.paths[0]`" in out.stderr and "matches no file" in out.stderr
    assert "Traceback" not in out.stderr


def test_partial_run_counts_only_complete_shards(base_run, tmp_path) -> None:
    """Audit mid-run: shards beyond the first are not yet written (their .json entry is the completion mark)."""
    *_, res = base_run
    d = _copy(res, tmp_path)
    (d / "manifest.json").unlink()
    for s in res.manifest["shards"][1:]:
        (d / "shards" / f"{s['name']}.json").unlink()
        (d / "shards" / s["idx"]).unlink()
    result = audit_mod.audit(d)
    assert result["run"]["complete"] is False
    assert result["run"]["shards_done"] == 1
    assert result["run"]["shards_planned"] == len(res.manifest["shards"])
    assert result["total_tokens"] == res.manifest["shards"][0]["tokens"]
    # the first shard is a prefix of the interleaved stream: every group is there, near its share
    for g, e in result["groups"].items():
        assert e["tokens"] > 0, g


def test_trainer_views_match_brute_force_replay(base_run) -> None:
    _tmp, _data, recipe, res = base_run
    from tests._mmidx import read_tokens

    # brute force: replay the stream in reading order, sequence by sequence
    groups, sizes = [], []
    for s in res.manifest["shards"]:
        lin = pq.read_table(res.run_dir / "shards" / s["lineage"])
        _, seqs = read_tokens(res.run_dir / "shards" / s["name"])
        groups += lin["group"].to_pylist()
        sizes += [len(x) for x in seqs]
    stream_group = np.repeat(np.array(groups, dtype=object), sizes)
    n = int(len(stream_group) * 0.37)
    view = audit_mod.audit(res.run_dir, consumed_tokens=n)["trainer_view"]
    for g in recipe.mixture:
        assert view["groups"][g]["tokens"] == int(np.sum(stream_group[:n] == g)), g
    # RWKV-LM sampling: ctx_len+1 tokens at ((int(P*(sqrt5-1)/2) * ii^3) mod P) * ctx_len, ii = 1 + sample
    ctx = 512
    p = res.manifest["rwkv"]["magic_prime"]
    import math

    factor = int(p * (math.sqrt(5) - 1) / 2)
    counts = dict.fromkeys(recipe.mixture, 0)
    for g_idx in range(40):
        ii = 1 + g_idx
        off = ((factor * ii * ii * ii) % p) * ctx
        for g in stream_group[off: off + ctx + 1]:
            counts[g] += 1
    rv = audit_mod.audit(res.run_dir, rwkv={"magic_prime": p, "ctx_len": ctx, "samples": 40})["rwkv_view"]
    assert {g: rv["groups"][g]["tokens"] for g in recipe.mixture} == counts


def test_against_diffs_two_runs(base_run) -> None:
    *_, res = base_run
    result = audit_mod.audit(res.run_dir, against=res.run_dir)
    assert all(r["delta_pp"] == 0 for r in result["against"]["groups"].values())


def test_html_report(base_run, tmp_path) -> None:
    *_, res = base_run
    out = tmp_path / "audit.html"
    code = subprocess.run([sys.executable, "-m", "curate.cli", "audit", str(res.run_dir), "--html", str(out)],
                          capture_output=True, text=True, check=False).returncode
    assert code == 0
    html = out.read_text()
    assert html.count("class='chart'") >= 6 and "vegaEmbed" in html and "No violations" in html


def test_recipe_error_exit_code(tmp_path) -> None:
    f = tmp_path / "r.yaml"
    f.write_text("name: x\nbudget_tokens: 10\nsources: {}\nmixture: {}\n")
    out = subprocess.run([sys.executable, "-m", "curate.cli", "plan", str(f)], capture_output=True, text=True,
                         check=False)
    assert out.returncode == 2 and "sources" in out.stderr and "Traceback" not in out.stderr
    with pytest.raises(RecipeError):
        parse_recipe(yaml.safe_load(f.read_text()), base_dir=tmp_path)
