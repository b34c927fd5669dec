"""Temperature balancing of a group or member over a column's values (issue 23): the arithmetic, the recipe
option, determinism, and the mix task's per-value selection (the end-to-end runs are in test_balance_e2e.py)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from curate.balance import plan_scope, water_fill
from curate.errors import RecipeError
from curate.mix.core import select_documents
from curate.pipeline import parse_recipe


def _plan(supply: dict[str, int], target: int, alpha: float, *, max_epochs: float = 4.0, min_tokens: int = 0):
    return plan_scope("g", "g", by="lang", temperature=alpha, min_tokens=min_tokens, max_epochs=max_epochs,
                      target=target, cells={"m": supply})


def _targets(sp) -> dict[str, int]:
    return {v.value: v.target for v in sp.values}


# ---------------------------------------------------------------------------- the arithmetic
def test_alpha_one_follows_supply_exactly() -> None:
    sp = _plan({"de": 1000, "fr": 100, "sw": 10}, 111, 1.0)
    assert _targets(sp) == {"de": 100, "fr": 10, "sw": 1}
    assert not any(v.capped for v in sp.values)
    assert sp.cells == {"m": {"de": 100, "fr": 10, "sw": 1}}


def test_alpha_zero_equal_shares_until_a_cap_binds() -> None:
    # no cap binds: 300 over three values is 100 each
    sp = _plan({"de": 1000, "fr": 100, "sw": 30}, 300, 0.0)
    assert _targets(sp) == {"de": 100, "fr": 100, "sw": 100}
    assert [v.capped for v in sp.values] == [False, False, False]
    # sw (10 tokens, 4 epochs) may give 40: the other 260 go equally to de and fr
    sp = _plan({"de": 1000, "fr": 100, "sw": 10}, 300, 0.0)
    assert _targets(sp) == {"de": 130, "fr": 130, "sw": 40}
    assert [v.capped for v in sp.values] == [False, False, True]
    assert {v.value: v.epochs for v in sp.values}["sw"] == 4.0


def test_alpha_point_three_matches_the_formula() -> None:
    supply = {"de": 5_000_000, "fr": 800_000, "ja": 120_000, "sw": 30_000}
    target = 1_000_000
    sp = _plan(supply, target, 0.3)
    n = np.array(list(supply.values()), dtype=float)
    p = n**0.3 / (n**0.3).sum()
    got = np.array([v.target for v in sp.values])
    assert np.all(np.abs(got - target * p) <= 1)  # largest remainder: within one token of the real share
    assert got.sum() == target
    assert np.allclose([v.temperature_share for v in sp.values], p)
    assert not any(v.capped for v in sp.values)  # 30,000 x 4 epochs > sw's share


def test_caps_redistribute_in_proportion_to_the_others_weights() -> None:
    supply = {"a": 10_000_000, "b": 1_000_000, "c": 1000, "d": 10}
    target = 2_000_000
    sp = _plan(supply, target, 0.3, max_epochs=2.0)
    t = _targets(sp)
    capped = {v.value for v in sp.values if v.capped}
    assert capped == {"c", "d"} and t["c"] == 2000 and t["d"] == 20
    assert sum(t.values()) == target
    # the free values keep their temperature ratio among themselves
    assert abs(t["a"] / t["b"] - 10**0.3) < 1e-5


def test_one_dominant_value_takes_what_the_small_ones_cannot() -> None:
    supply = {"en": 10**9, "x1": 10, "x2": 10, "x3": 10}
    sp = _plan(supply, 10**6, 0.3)
    t = _targets(sp)
    assert t == {"en": 10**6 - 120, "x1": 40, "x2": 40, "x3": 40}
    assert [v.capped for v in sp.values] == [False, True, True, True]


def test_a_value_of_one_document_is_repeated_up_to_max_epochs() -> None:
    sp = _plan({"big": 100_000, "one": 37}, 20_000, 0.0)
    t = _targets(sp)
    assert t["one"] == 4 * 37 and t["big"] == 20_000 - 148
    idx, ep = select_documents(np.array([37]), t["one"], seed=1, max_epochs=4.0)
    assert idx.tolist() == [0, 0, 0, 0] and ep.tolist() == [0, 1, 2, 3]


def test_infeasible_scope_says_so() -> None:
    sp = _plan({"a": 10, "b": 10}, 100, 0.3)
    assert not sp.feasible
    assert _targets(sp) == {"a": 40, "b": 40}


def test_min_tokens_drops_values_with_a_reason() -> None:
    sp = _plan({"de": 1000, "fr": 500, "sw": 5}, 900, 1.0, min_tokens=100)
    assert [v.value for v in sp.values] == ["de", "fr"]
    assert sp.dropped == ({"value": "sw", "supply": 5, "reason": "supply 5 tokens < min_tokens 100"},)
    assert _targets(sp) == {"de": 600, "fr": 300}


def test_pooled_members_split_a_value_by_their_supply() -> None:
    sp = plan_scope("ml", "ml", by="lang", temperature=1.0, min_tokens=0, max_epochs=4.0, target=300,
                    cells={"cx": {"de": 200, "fr": 100}, "wiki": {"de": 100, "ja": 0}})
    assert _targets(sp) == {"de": 225, "fr": 75}
    assert sp.cells == {"cx": {"de": 150, "fr": 75}, "wiki": {"de": 75}}


@pytest.mark.parametrize("seed", range(30))
def test_water_fill_invariants_on_random_inputs(seed: int) -> None:
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, 40))
    n = rng.integers(1, 10**6, size=k) ** rng.integers(1, 3)
    alpha = float(rng.choice([0.0, 0.3, 1.0]))
    e = float(rng.choice([1.0, 2.5, 4.0]))
    caps = np.floor(n * e).astype(np.int64)
    total = int(rng.integers(0, int(caps.sum()) + 1))
    w = n.astype(float) ** alpha
    t, capped, ok = water_fill(total, w, caps)
    assert ok and int(t.sum()) == total and np.all(t <= caps) and np.all(t >= 0)
    assert np.array_equal(t[capped], caps[capped])
    free = ~capped
    if free.sum() > 1:  # free values are split by weight (within a token), and would not fit under their cap
        rest = total - int(caps[capped].sum())
        assert np.all(np.abs(t[free] - rest * w[free] / w[free].sum()) <= 1)
    # a capped value wanted at least its cap at the final level: no free value could have given it more
    if capped.any() and free.any():
        level = t[free].max() / w[free][t[free].argmax()]
        assert np.all(caps[capped] <= w[capped] * level + 1)


def test_plan_is_deterministic_and_order_free() -> None:
    a = _plan({"de": 901, "fr": 77, "ja": 4000, "sw": 3}, 5000, 0.3)
    b = _plan({"sw": 3, "ja": 4000, "de": 901, "fr": 77}, 5000, 0.3)
    assert a == b and a.as_dict() == b.as_dict()


# ---------------------------------------------------------------------------- the recipe option
RECIPE = {
    "name": "bal",
    "budget_tokens": 1000,
    "sources": {
        "cx": {"format": "culturax", "paths": ["c/*.parquet"]},
        "wiki": {"format": "wikipedia", "paths": ["w/*.parquet"]},
        "web": {"format": "refinedweb", "subsets": {"a": {"paths": ["a"]}, "b": {"paths": ["b"]}}},
    },
    "mixture": {
        "multilingual": {"share": 0.3, "sources": {"cx": 1, "wiki": 1}, "balance": {"by": "lang", "temperature": 0.3}},
        "soup": {"share": 0.7, "sources": {"wiki": 1, "web/a": 1, "web/b": 1}},
    },
    "route_by_lang": [{"group": "multilingual", "not": ["en"]}],
}


def _recipe(data: dict):
    return parse_recipe(copy.deepcopy(data), base_dir=Path("."), check_paths=False)


def test_recipe_group_and_member_balance_scopes() -> None:
    r = _recipe(RECIPE)
    assert [(s, g, m, b.by, b.temperature, b.max_epochs) for s, g, m, b in r.balance_scopes()] == [
        ("multilingual", "multilingual", ["cx", "multilingual:wiki"], "lang", 0.3, None)]
    data = copy.deepcopy(RECIPE)
    data["mixture"]["multilingual"] = {"share": 0.3, "sources": {
        "cx": {"weight": 3, "balance": {"by": "lang", "min_tokens": 50, "max_epochs": 2}}, "wiki": 1}}
    r = _recipe(data)
    assert [m[3] for m in r.members()][:2] == pytest.approx([0.3 * 3 / 4, 0.3 / 4])
    (scope, g, keys, b), = r.balance_scopes()
    assert (scope, g, keys, b.min_tokens, b.max_epochs) == ("multilingual:cx", "multilingual", ["cx"], 50, 2.0)


@pytest.mark.parametrize(("edit", "path", "needle"), [
    (lambda d: d["mixture"]["multilingual"]["balance"].update(by="url"), "mixture.multilingual.balance.by",
     "`lang`, `subset` or `meta.<key>`"),
    (lambda d: d["mixture"]["multilingual"]["balance"].update(temperature=1.5),
     "mixture.multilingual.balance.temperature", "less than or equal to 1"),
    (lambda d: d["mixture"]["multilingual"]["balance"].update(speed=1), "mixture.multilingual.balance.speed",
     "unknown key"),
    (lambda d: d["mixture"]["multilingual"]["sources"].update(cx=3), "mixture.multilingual.balance",
     "member weights do not apply"),
    (lambda d: d["mixture"]["multilingual"]["sources"].update(cx={"weight": 1, "balance": {"by": "lang"}}),
     "mixture.multilingual.sources.cx.balance", "not both"),
    (lambda d: d["mixture"]["multilingual"]["balance"].update(by="subset"), "mixture.multilingual.balance.by",
     "needs a whole source with subsets"),
])
def test_recipe_balance_errors_name_the_yaml_path(edit, path: str, needle: str) -> None:
    data = copy.deepcopy(RECIPE)
    edit(data)
    with pytest.raises(RecipeError, match=needle) as e:
        _recipe(data)
    assert e.value.path == path


def test_balance_values_follow_routing_first() -> None:
    from curate.mix.members import assign_members, balance_values

    r = _recipe(RECIPE)
    t = pa.table({"source": ["wiki", "wiki", "wiki", "cx", "cx", "web"], "subset": ["", "", "", "", "", "a"],
                  "lang": ["en", "de", None, "fr", "de", "ja"]})
    member = assign_members(r, t)
    assert member.tolist() == ["soup:wiki", "multilingual:wiki", "multilingual:wiki", "cx", "cx", "web/a"]
    # English Wikipedia stays in the soup (unbalanced); the routed articles are balanced by language
    assert balance_values(r, t, member).tolist() == [None, "de", "und", "fr", "de", None]


def test_meta_value_extraction_is_vectorized_and_null_safe() -> None:
    from curate.partition import meta_value

    meta = pa.array(['{"domain": "news", "n": 3}', '{"n": 4}', None, '{"domain": "blog"}'])
    assert meta_value(meta, "domain").to_pylist() == ["news", None, None, "blog"]
    assert meta_value(meta, "n").to_pylist() == ["3", "4", None, None]


# ---------------------------------------------------------------------------- closing a value's last gap
@pytest.mark.parametrize("seed", range(20))
def test_refine_selection_never_worse_and_keeps_the_pass_rules(seed: int) -> None:
    from curate.balance import refine_selection

    rng = np.random.default_rng(seed)
    lengths = rng.integers(20, 400, size=int(rng.integers(2, 60)))
    target = int(rng.integers(1, int(lengths.sum()) * 3))
    idx, ep = select_documents(lengths, target, seed=seed, max_epochs=4.0)
    r_idx, r_ep = refine_selection(lengths, idx, ep, target)
    before, after = abs(target - int(lengths[idx].sum())), abs(target - int(lengths[r_idx].sum()))
    assert after <= before
    full = target // int(lengths.sum())
    assert np.array_equal(r_idx[r_ep < full], idx[ep < full])  # full passes untouched
    last = r_idx[r_ep == full]
    assert last.size == np.unique(last).size  # a document at most once in the partial pass
    assert np.all(np.diff(r_ep) >= 0) and (r_ep.size == 0 or r_ep.max() <= 3)
    assert not np.any(r_idx[1:] == r_idx[:-1])  # never back to back with its own repeat


def test_refine_selection_finds_the_exact_swap() -> None:
    from curate.balance import refine_selection

    lengths = np.array([100, 100, 100, 57, 43])
    idx, ep = np.array([0, 1]), np.array([0, 0], dtype=np.int32)  # 200 of a 243 target
    r_idx, _ = refine_selection(lengths, idx, ep, 243)
    assert int(lengths[r_idx].sum()) == 243


# ---------------------------------------------------------------------------- curate plan
def test_plan_prints_the_per_value_table_and_json_carries_it(tmp_path) -> None:
    import json

    from rich.console import Console

    from curate.demo import generate
    from curate.planner import plan, render
    from tests._demo import demo_recipe

    generate(tmp_path / "data", seed=2, scale=0.2)
    r = parse_recipe(demo_recipe(tmp_path / "data", tmp_path / "run", budget_tokens=50_000), base_dir=tmp_path)
    result = json.loads(json.dumps(plan(r)))
    d = result["balance"]["multilingual"]
    assert d["by"] == "lang" and d["temperature"] == 0.3 and d["target"] == 7500
    assert sum(v["target"] for v in d["values"]) == 7500
    assert len(d["values"]) >= 8 and "en" not in {v["value"] for v in d["values"]}  # langid drops English
    assert "language ID on the sample" in d["basis"] and "estimated" in d["basis"]
    assert {"value", "supply", "share", "target", "epochs", "capped"} <= set(d["values"][0])
    con = Console(record=True, width=160)
    render(result, console=con)
    text = con.export_text()
    assert "balance: multilingual by lang" in text and d["values"][0]["value"] in text


def test_pooled_group_member_without_documents_of_the_group_gets_nothing() -> None:
    """Routing can leave a pooled member empty (no non-English Wikipedia): the others carry the group's share."""
    from curate.balance import scope_caps
    from curate.mix.task import _plan_balance
    from curate.mix.core import plan_member_targets

    r = _recipe(RECIPE)
    cells = {"cx": {"de": 3000, "fr": 1000}, "multilingual:wiki": {}}
    supply, caps = scope_caps(cells, min_tokens=0, max_epochs=4.0)
    available = {"cx": supply["cx"], "multilingual:wiki": 0, "soup:wiki": 5000, "web/a": 5000, "web/b": 5000}
    pooled = sum(caps.values())
    plan = plan_member_targets(r, available, caps={m: pooled // 2 for m in cells})
    plan, (sp,) = _plan_balance(r, plan, r.balance_scopes(), {"multilingual": cells})
    assert plan.target("multilingual:wiki") == 0 and plan.target("cx") == 300
    assert sum(m.target for m in plan.members) == 1000
    assert sp.cells == {"cx": {"de": 300 - sp.cells["cx"]["fr"], "fr": sp.cells["cx"]["fr"]}, "multilingual:wiki": {}}
