"""Shared fixtures: the real-data folder (skipped cleanly when absent) and one Ray session per test run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# the report's Vega-Lite specs are checked against the schema in every test that draws one (runs skip it)
os.environ.setdefault("CURATE_VALIDATE_CHARTS", "1")
# every test probes the tokenizer gate itself: a decision kept on disk by an earlier test (or run) would hide a probe
os.environ.setdefault("CURATE_TOKENIZER_GATE_CACHE", "0")
# and builds its charts' templates with altair (kept in memory for the session, not on disk)
os.environ.setdefault("CURATE_CHART_TEMPLATE_CACHE", "0")
REAL = Path(os.environ.get("CURATE_REAL_DATA", REPO.parent / "shared" / "data" / "real"))
TOKENIZERS = REAL.parent / "tokenizers"


@pytest.fixture(scope="session")
def real_data() -> Path:
    """Path to ../shared/data/real; skips the test when it is absent."""
    if not (REAL / "PROVENANCE.md").is_file():
        pytest.skip(f"real data not found at {REAL} (../shared/data/real is absent on this machine)")
    return REAL


@pytest.fixture(scope="session")
def neox_tokenizer() -> Path:
    p = TOKENIZERS / "gpt-neox-20b.json"
    if not p.is_file():
        pytest.skip(f"GPT-NeoX tokenizer not found at {p} (../shared is absent)")
    return p


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole test session (2 CPUs, like CI)."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1"}})
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def audit_run(tmp_path_factory, ray_session):
    """One small demo run (several shards, RWKV ctx_len set) shared by the audit and report tests."""
    from curate import audit as audit_mod
    from curate.demo import generate
    from curate.pipeline import parse_recipe
    from curate.runner import run
    from tests._demo import demo_recipe

    tmp = tmp_path_factory.mktemp("audit")
    generate(tmp / "data", seed=3, scale=0.4)
    data = demo_recipe(tmp / "data", tmp / "run", budget_tokens=80_000,
                       shards={"format": "megatron", "max_tokens": 15_000, "ctx_len": 512})
    recipe = parse_recipe(data, base_dir=tmp)
    res = run(recipe, quiet=True)
    assert audit_mod.audit(res.run_dir)["violations"] == []
    return tmp, data, recipe, res
