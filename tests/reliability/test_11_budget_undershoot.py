"""Issue 22, item 11: a mixture short of ``budget_tokens`` is never silent.

One source, one document far longer than the budget and no ``max_doc_tokens``: the unit of selection is a
whole document, so the mixer cannot fill the target. The audit says so with the numbers and the cause; with
``max_doc_tokens`` the same data fills the budget. ``rescaled`` stays what it is: whether the budget was
lowered on purpose (``on_shortfall: rescale``), which the audit reports as a flag.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from curate import audit as audit_mod
from curate.pipeline import parse_recipe
from curate.runner import run

WORDS = "river stone market garden window paper music light winter harbor forest yellow bridge".split()


def _data(root: Path) -> Path:
    rng = random.Random(11)
    lines = [json.dumps({"id": "huge", "text": " ".join(rng.choice(WORDS) for _ in range(6_000))})]
    lines += [json.dumps({"id": f"s{i}", "text": " ".join(rng.choice(WORDS) for _ in range(30))}) for i in range(12)]
    (root / "in").mkdir(parents=True, exist_ok=True)
    (root / "in" / "a.jsonl").write_text("\n".join(lines) + "\n")
    return root / "in" / "a.jsonl"


def _recipe(root: Path, **kw) -> dict:
    return {"name": "undershoot", "seed": 1, "budget_tokens": 2_000,
            "sources": {"s": {"format": "jsonl", "paths": [str(_data(root))], "text_column": "text",
                              "id_column": "id"}},
            "mixture": {"all": {"share": 1.0, "sources": {"s": 1}}}, "shards": {"max_tokens": 1_000}, **kw}


def test_one_huge_document_without_max_doc_tokens_is_a_named_undershoot_22(ray_session, tmp_path) -> None:
    # whole sequences only: with the trim (issue 16, the default) the huge document's first tokens fill the budget
    res = run(parse_recipe(_recipe(tmp_path, trim_to_target=False), base_dir=tmp_path), out=str(tmp_path / "run"),
              quiet=True)
    assert res.manifest["tokens"] < 2_000 * 0.9, "the premise: the huge document cannot be selected"
    assert res.manifest["rescaled"] is False, "nothing lowered the budget on purpose"
    result = audit_mod.audit(res.run_dir)
    (v,) = [v for v in result["violations"] if v["kind"] == "budget_undershoot"]
    total = res.manifest["tokens"]
    assert v["tokens"] == total and v["budget"] == 2_000 and v["short_by"] == 2_000 - total
    assert f"the shards hold {total:,} tokens, {2_000 - total:,}" in v["message"]
    assert "its longest document is" in v["message"] and "`max_doc_tokens` is not set" in v["message"]
    assert audit_mod.exit_code(result) == 1


def test_with_max_doc_tokens_the_budget_is_filled_and_nothing_is_flagged_22(ray_session, tmp_path) -> None:
    res = run(parse_recipe(_recipe(tmp_path, max_doc_tokens=128), base_dir=tmp_path), out=str(tmp_path / "run"),
              quiet=True)
    result = audit_mod.audit(res.run_dir)
    assert not [f for f in result["flags"] + result["violations"] if f["kind"].startswith("budget_")]
    assert 2_000 - res.manifest["tokens"] <= 128 + 1, "within one sequence of the budget"
