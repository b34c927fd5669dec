"""Mixture sweeps and recipe-from-weights (issue 19).

One sweep of 4 mixtures on the demo corpus (the first run processes, the other three are remixes): every
mixture's audit passes, and ``mixtures.csv`` agrees with the tokens in each mixture's shards as an independent
reader sees them (``tests._mmidx`` sequence lengths, attributed to members through the lineage rows).
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from curate.demo import generate
from curate.errors import SweepError
from curate.io_utils import read_json
from curate.pipeline import load_recipe
from curate.remix import processing_fingerprint
from curate.sweep import draw_mixtures, member_keys, recipe_from_weights, sweep, units
from tests._demo import demo_recipe
from tests._mmidx import read_idx

COMMON = {"budget_tokens": 50_000, "tolerance_pp": 1.0}


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("sweep")
    generate(tmp / "data", seed=4, scale=0.25)
    f = tmp / "base.yaml"
    f.write_text(yaml.safe_dump(demo_recipe(tmp / "data", tmp / "unused", **COMMON), sort_keys=False))
    return f


@pytest.fixture(scope="module")
def swept(base, ray_session) -> Path:
    out = base.parent / "sw"
    sweep(base, n=4, out=out, concentration=20.0, seed=7, quiet=True)
    return out


@pytest.mark.slow
def test_sweep_of_four_passes_every_audit_and_csv_matches_the_shards(swept, base) -> None:
    info = read_json(swept / "sweep.json")
    assert [m["id"] for m in info["mixtures"]] == ["mix-000", "mix-001", "mix-002", "mix-003"]
    assert all(m["audit_exit"] == 0 for m in info["mixtures"]), info
    for m in info["mixtures"]:
        assert not read_json(swept / m["id"] / "audit.json")["violations"]
    # one processed corpus: the remixes reused mix-000's partitions
    for i in (1, 2, 3):
        assert read_json(swept / f"mix-{i:03d}" / "run.json")["reused"]["from"] == str(swept / "mix-000")
    rows = list(csv.DictReader((swept / "mixtures.csv").open()))
    recipe = load_recipe(base)
    members = member_keys(recipe)
    assert [r["mixture"] for r in rows] == [m["id"] for m in info["mixtures"]]
    assert list(rows[0])[1:1 + len(members)] == members
    weights = []
    for r in rows:
        run_dir = swept / r["mixture"]
        mix_recipe = load_recipe(swept / f"{r['mixture']}.yaml")
        # the weights are the generated recipe's member shares
        for g, s, sub, share in mix_recipe.members():
            assert math.isclose(float(r[mix_recipe.member_key(g, s, sub)]), share, rel_tol=1e-12)
        # achieved shares from the shards' bytes: .idx sequence lengths, members from the lineage rows
        tokens = dict.fromkeys(members, 0)
        manifest = read_json(run_dir / "manifest.json")
        for sh in manifest["shards"]:
            sizes = read_idx(run_dir / "shards" / f"{sh['name']}.idx")["sizes"]
            lin = pq.read_table(run_dir / "shards" / sh["lineage"]).to_pylist()
            assert len(lin) == len(sizes)
            for row, n in zip(lin, sizes):
                tokens[mix_recipe.member_key(row["group"], row["source"], row["subset"] or None)] += int(n)
        total = sum(tokens.values())
        assert int(r["tokens"]) == total == manifest["tokens"]
        supply = {m["key"]: m["available"] for m in manifest["mix"]["members"]}
        for m in members:
            assert math.isclose(float(r[f"achieved:{m}"]), tokens[m] / total, rel_tol=1e-12)
            assert math.isclose(float(r[f"epochs:{m}"]), tokens[m] / supply[m], rel_tol=1e-12)
            assert abs(tokens[m] / total - float(r[m])) <= 0.01 + 1e-9  # within tolerance_pp = 1.0
        weights.append([float(r[m]) for m in members])
    assert len({tuple(w) for w in weights}) == 4, "four different mixtures"
    assert np.allclose(np.sum(weights, axis=1), 1.0)


@pytest.mark.slow
def test_sweep_rerun_resumes_with_the_same_mixtures(swept, base) -> None:
    before = (swept / "mixtures.csv").read_bytes()
    recipes = {p.name: p.read_bytes() for p in swept.glob("mix-*.yaml")}
    sweep(base, n=4, out=swept, concentration=20.0, seed=7, quiet=True)
    assert (swept / "mixtures.csv").read_bytes() == before
    assert {p.name: p.read_bytes() for p in swept.glob("mix-*.yaml")} == recipes


def test_draws_are_deterministic_and_infeasible_draws_are_redrawn_and_counted(base) -> None:
    recipe = load_recipe(base)
    seen = []

    def every_fourth(r):  # stands in for the planner: reject three draws of every four
        seen.append(r)
        return len(seen) % 4 == 0, [{"member": "math", "epochs_needed": 9.0}]

    a, red = draw_mixtures(recipe, 2, concentration=5.0, seed=1, base_dir=base.parent, check=every_fourth)
    assert red == 6 and len(a) == 2
    seen.clear()
    b, _ = draw_mixtures(recipe, 2, concentration=5.0, seed=1, base_dir=base.parent, check=every_fourth)
    assert a == b
    with pytest.raises(SweepError, match="gave up after 3 infeasible draws"):
        draw_mixtures(recipe, 1, concentration=5.0, seed=1, base_dir=base.parent, max_redraws=2,
                      check=lambda r: (False, [{"member": "math", "epochs_needed": 9.0}]))


def test_an_infeasible_budget_gives_up_with_the_planners_reason(base) -> None:
    d = yaml.safe_load(base.read_text())
    d["budget_tokens"] = 50_000_000
    f = base.parent / "huge.yaml"
    f.write_text(yaml.safe_dump(d, sort_keys=False))
    with pytest.raises(SweepError, match=r"gave up after 2 infeasible draws.*needs .* epochs"):
        draw_mixtures(load_recipe(f), 1, concentration=10.0, seed=0, base_dir=base.parent, max_redraws=1)


def test_balanced_group_is_one_unit(base) -> None:
    us = units(load_recipe(base))
    assert [(u.group, u.entries) for u in us if u.group == "multilingual"] == [("multilingual", ("culturax",))]
    assert math.isclose(sum(u.share for u in us), 1.0)


def test_recipe_from_weights_round_trip(base, tmp_path) -> None:
    recipe = load_recipe(base)
    target = {"the-stack": 0.1, "culturax": 0.2, "wikipedia": 0.3, "gutenberg": 0.05, "refinedweb": 0.25,
              "math": 0.1}
    w = tmp_path / "weights.json"
    w.write_text(json.dumps({k: v * 7 for k, v in target.items()}))  # any scale: normalized
    out = tmp_path / "final.yaml"
    cli = [sys.executable, "-m", "curate.cli", "recipe-from-weights", str(w), "--base", str(base), "--out", str(out)]
    res = subprocess.run(cli, capture_output=True, text=True, check=False, timeout=120)
    assert res.returncode == 0, res.stderr
    final = load_recipe(out)
    got = {final.member_key(g, s, sub): share for g, s, sub, share in final.members()}
    assert got.keys() == target.keys() and all(math.isclose(got[k], target[k], rel_tol=1e-9) for k in target)
    # same hierarchy (groups, balance), same processing: the final recipe remixes from any sweep run
    assert list(final.mixture) == list(recipe.mixture)
    assert final.mixture["multilingual"].balance == recipe.mixture["multilingual"].balance
    assert processing_fingerprint(final) == processing_fingerprint(recipe)
    assert final.seed == recipe.seed and final.budget_tokens == recipe.budget_tokens
    # and back: its weights give the same recipe
    again = tmp_path / "again.yaml"
    recipe_from_weights(got, out, again)
    back = load_recipe(again)
    assert all(math.isclose(a[3], b[3], rel_tol=1e-9) and a[:3] == b[:3]
               for a, b in zip(back.members(), final.members(), strict=True))
    # unknown and missing members are named, exit 2, no traceback
    w.write_text(json.dumps({**{k: 1 for k in target if k != "math"}, "wikipedai": 1}))
    res = subprocess.run(cli, capture_output=True, text=True, check=False, timeout=120)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "unknown ['wikipedai']" in res.stderr and "missing ['math']" in res.stderr, res.stderr


@pytest.mark.slow
def test_sweep_writes_the_validation_sets_once_for_every_mixture(base, ray_session) -> None:
    """With `validation`, the sweep folder holds one set per member, the same bytes every mixture carved."""
    data = yaml.safe_load(base.read_text())
    data["validation"] = {"tokens": 2000}
    rec = base.parent / "with_valid.yaml"
    rec.write_text(yaml.safe_dump(data, sort_keys=False))
    out = base.parent / "sw-valid"
    info = sweep(rec, n=2, out=out, concentration=20.0, seed=3, quiet=True)
    assert all(m["audit_exit"] == 0 for m in info["mixtures"]), info
    shared = sorted(p.name for p in (out / "validation").glob("*.bin"))
    assert shared and len(shared) == len(member_keys(load_recipe(rec)))
    for m in ("mix-000", "mix-001"):
        for name in shared:
            for ext in (".bin", ".idx"):
                f = name.removesuffix(".bin") + ext
                assert (out / "validation" / f).read_bytes() == (out / m / "validation" / f).read_bytes(), (m, f)


def test_validation_settings_are_not_processing_keys(base, tmp_path) -> None:
    """The mix carves the validation sets: a remix may change them (top level, per source)."""
    data = yaml.safe_load(base.read_text())
    src = next(iter(data["sources"]))
    data["validation"] = {"tokens": 1000}
    data["sources"][src]["validation"] = {"tokens": 3000}
    f = tmp_path / "v.yaml"
    f.write_text(yaml.safe_dump(data, sort_keys=False))
    assert processing_fingerprint(load_recipe(f)) == processing_fingerprint(load_recipe(base))
