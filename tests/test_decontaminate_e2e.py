"""Decontamination end to end on a local Ray (issue 18): the demo corpus with eval items cut from its math pages.

The index is built on the driver and shipped to the actors; dropped documents carry their evidence in
``documents/``; the ledger, the audit's benchmark × source table and its flags agree with them.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from curate import audit as audit_mod
from curate.demo import generate
from curate.ledger import Ledger
from curate.pipeline import parse_recipe
from curate.runner import run
from curate.partition import sequence_tokens
from tests._demo import demo_recipe

pytestmark = pytest.mark.slow


def _documents(run_dir) -> pa.Table:
    """All partitions of documents/ (their columns differ: decont_* only where the stage ran)."""
    return pa.concat_tables([pq.read_table(f) for f in sorted((run_dir / "documents").glob("*.parquet"))],
                            promote_options="permissive")


@pytest.fixture(scope="module")
def decont_run(tmp_path_factory, ray_session):
    tmp = tmp_path_factory.mktemp("decont")
    generate(tmp / "data", seed=0, scale=0.5)
    math = pq.read_table(sorted((tmp / "data" / "math").glob("*.parquet"))[0], columns=["text", "url"])
    long = [i for i, t in enumerate(math["text"].to_pylist()) if len(t.split()) >= 40][:3]
    assert len(long) == 3
    rows = [{"id": f"item{k}", "problem": math["text"][i].as_py()} for k, i in enumerate(long)]
    (tmp / "bench.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp / "absent.jsonl").write_text(json.dumps({"id": "a0", "problem": "zebras quietly juggle eleven violet "
                                                  "umbrellas under the frozen lighthouse every other thursday"})
                                      + "\n")
    data = demo_recipe(tmp / "data", tmp / "run", budget_tokens=120_000, decontaminate={
        "evals": {"bench": {"paths": ["bench.jsonl"], "fields": ["problem"], "id_field": "id"},
                  "absent": {"paths": ["absent.jsonl"], "fields": ["problem"], "id_field": "id"}},
        "expect": {"math": ["bench", "absent"]}, "max_drop_share": 0.0})
    data["sources"]["the-stack"]["decontaminate"] = False
    recipe = parse_recipe(data, base_dir=tmp)
    res = run(recipe, quiet=True)
    return recipe, res, [math["url"][i].as_py() for i in long]


def test_dropped_documents_carry_evidence(decont_run) -> None:
    recipe, res, urls = decont_run
    docs = _documents(res.run_dir)
    dc = docs.filter(pc.equal(docs["stage"], "decontaminate"))
    assert dc.num_rows >= 3
    assert set(dc["reason"].to_pylist()) == {"contaminated:bench"}
    assert set(dc["decont_item"].to_pylist()) <= {"item0", "item1", "item2"}
    assert min(dc["decont_ngrams"].to_pylist()) >= 1
    assert set(urls) <= set(dc["url"].to_pylist()), "the pages the items were cut from are dropped"
    assert "the-stack" not in set(dc["source"].to_pylist())
    # kept documents of decontaminated sources were looked at too: no evidence on them
    kept = docs.filter(pc.and_(pc.equal(docs["status"], "kept"), pc.equal(docs["source"], "math")))
    assert kept["decont_ngrams"].to_pylist() == [0] * kept.num_rows


def test_ledger_and_audit_table(decont_run) -> None:
    recipe, res, _ = decont_run
    led = Ledger.read(res.run_dir / "ledger.json")
    docs = _documents(res.run_dir)
    dc = docs.filter(pc.equal(docs["stage"], "decontaminate"))
    result = audit_mod.audit(res.run_dir)
    assert result["violations"] == [], result["violations"]
    table = result["decontamination"]["table"]
    assert set(result["decontamination"]["sources"]) == set(recipe.sources) - {"the-stack"}
    for src in set(dc["source"].to_pylist()):
        sub = dc.filter(pc.equal(dc["source"], src))
        c = led.by_source("decontaminate")[src]
        assert c.dropped == {"contaminated:bench": sub.num_rows}
        want_tokens = int(sequence_tokens(np.asarray(sub["ntok"].to_pylist()), recipe.max_doc_tokens).sum())
        assert c.dropped_tokens == {"contaminated:bench": want_tokens}
        assert table["bench"][src] == {"docs": sub.num_rows, "tokens": want_tokens, "matched": sub.num_rows}
        assert result["funnel"][src]["decontaminate"]["dropped"] == {"contaminated:bench": sub.num_rows}
    assert all(v["docs"] == 0 for v in table["absent"].values())
    kinds = {(f["kind"], f["where"]) for f in result["flags"]}
    assert ("decontamination_expected", "decontaminate/absent") in kinds
    assert ("decontamination_expected", "decontaminate/bench") not in kinds
    assert ("decontamination_drop_share", "decontaminate/math") in kinds  # max_drop_share 0 flags any loss
    idx = result["decontamination"]["index"]
    assert idx["items"] == 4 and idx["ngrams"] > 0 and idx["index_bytes"] > 0
    from rich.console import Console

    con = Console(record=True, width=200)
    audit_mod.render_table(result, console=con)
    text = con.export_text()
    assert "decontamination (drop, 13-grams)" in text and "absent" in text


def test_html_report_shows_the_table(decont_run, tmp_path) -> None:
    from curate.report import write_html

    _, res, _ = decont_run
    out = tmp_path / "r.html"
    write_html(audit_mod.audit(res.run_dir), out)
    text = out.read_text()
    assert "Decontamination (drop, 13-grams)" in text
    assert "bench" in text and "absent" in text
