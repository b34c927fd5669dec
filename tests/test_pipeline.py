"""The stage registry and recipe loading through it (issue 15).

A stage and a reader format are added by plugins alone (``tests/plugins``), and a real run through Ray shows
the stage in the ledger, the funnel and the audit, over documents the plugin reader read. The stage contract
(same rows, same order, declared columns) is asserted at every boundary.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from curate import pipeline
from curate.errors import RecipeError, StageContractError
from curate.stages.base import Stage, with_drop_reason

PLUGINS = ["tests.plugins.tsv_reader", "tests.plugins.exclaim_stage"]


def _recipe(tmp_path: Path, *, plugins: list[str], source: str = "loudmouth") -> dict:
    lines = []
    for i in range(40):
        bangs = "!" * (3 if i % 8 == 0 else (1 if i % 3 == 0 else 0))
        lines.append(f"t{i}\tline {i} of a small corpus about rivers and harbors number {i * 7919}{bangs}")
    (tmp_path / "docs.tsv").write_text("\n".join(lines) + "\n")
    return {"name": "plugins", "seed": 3, "output": str(tmp_path / "run"), "budget_tokens": 300,
            "max_doc_tokens": 64, "plugins": plugins,
            "sources": {source: {"format": "tsv", "paths": [str(tmp_path / "docs.tsv")]}},
            "mixture": {"all": {"share": 1.0, "sources": {source: 1}}}, "shards": {"max_tokens": 200}}


def test_stage_names_follow_the_registry() -> None:
    from tests.plugins import exclaim_stage  # noqa: F401 - registers `exclaim` before `decontaminate`

    names = pipeline.stage_names()
    assert names[0] == "ingest" and names[-2:] == ("dedup", "mix")
    assert names.index("quality") < names.index("exclaim") < names.index("decontaminate")
    with pytest.raises(ValueError, match="identifier other than"):
        pipeline.register_stage(pipeline.StageEntry("dedup", None, lambda *a: None))
    with pytest.raises(ValueError, match="unknown stage 'nope'"):
        pipeline.register_stage(pipeline.StageEntry("other", None, lambda *a: None), before="nope")


def test_a_format_no_reader_registered_is_a_recipe_error_listing_the_readers(tmp_path) -> None:
    with pytest.raises(RecipeError) as ei:
        pipeline.parse_recipe(_recipe(tmp_path, plugins=[]), base_dir=tmp_path)
    assert ei.value.path == "sources.loudmouth.format"
    assert "got 'tsv'" in str(ei.value) and "'jsonl'" in str(ei.value) and "'wikipedia'" in str(ei.value)
    r = pipeline.parse_recipe(_recipe(tmp_path, plugins=PLUGINS), base_dir=tmp_path)
    assert [st.name for _, st in pipeline.build_stages(r, "loudmouth")] == ["license", "langid", "exclaim"]


def test_describe_lists_each_sources_stages_in_order(tmp_path) -> None:
    r = pipeline.parse_recipe(_recipe(tmp_path, plugins=PLUGINS), base_dir=tmp_path)
    d = pipeline.describe(r)
    assert [x["stage"] for x in d["loudmouth"]] == ["license", "langid", "exclaim"]
    assert d["loudmouth"][0]["policy"] is None and d["loudmouth"][1]["mode"] == "annotate"


class _Broken(Stage):
    name = "broken"
    added_columns = ("score",)

    def __init__(self, how: str) -> None:
        self.how = how

    def process(self, table: pa.Table) -> pa.Table:
        if self.how == "drops":
            table = table.slice(1)
        elif self.how == "reorders":
            table = table.take(pa.array(list(range(table.num_rows))[::-1]))
        if self.how != "no_column":
            table = table.append_column("score", pa.array([1.0] * table.num_rows))
        return with_drop_reason(table, [None] * table.num_rows)


@pytest.mark.parametrize(("how", "needle"), [("drops", "returned 2 rows for 3"), ("reorders", "changed the rows"),
                                             ("no_column", "declared column(s) ['score']")])
def test_the_stage_contract_is_checked_at_the_boundary(how: str, needle: str) -> None:
    t = pa.table({"uid": pa.array([1, 2, 3], pa.int64()), "text": ["a", "b", "c"]})
    st = _Broken(how)
    with pytest.raises(StageContractError, match="stage `broken`") as ei:
        pipeline.check_stage_output(st, t["uid"], st.process(t), where="in.parquet")
    assert needle in str(ei.value) and "in.parquet" in str(ei.value)
    ok = _Broken("fine")
    pipeline.check_stage_output(ok, t["uid"], ok.process(t), where="in.parquet")


def test_a_plugin_stage_and_reader_run_end_to_end(tmp_path, ray_session) -> None:
    from curate import audit as audit_mod
    from curate.runner import run

    recipe = pipeline.parse_recipe(_recipe(tmp_path, plugins=PLUGINS), base_dir=tmp_path)
    res = run(recipe, quiet=True)
    result = audit_mod.audit(res.run_dir)
    assert result["violations"] == [], result["violations"]
    fun = result["funnel"]["loudmouth"]
    assert list(fun)[:4] == ["ingest", "license", "langid", "exclaim"]
    assert fun["ingest"]["docs_in"] == 40  # read by the plugin reader
    assert fun["exclaim"]["docs_in"] == 40 and fun["exclaim"]["dropped"] == {"exclaim:too_loud": 5}
    assert fun["exclaim"]["docs_out"] == 35 == fun["dedup"]["docs_in"]
    rows = [r for r in json.loads((Path(res.run_dir) / "ledger.json").read_text()) if r["stage"] == "exclaim"]
    # the registry's counters see the whole processed batch: 5 documents with "!!!" and 12 with one "!"
    assert len(rows) == 1 and rows[0]["counters"] == {"loud": 17}


def test_the_kept_schema_is_the_one_the_mix_reads() -> None:
    from curate import schema
    from curate.mix import task as mix_task

    assert sorted(mix_task.KEPT_COLUMNS) == sorted(schema.KEPT_COLUMNS)
    s = schema.kept_schema(["topic"], dedup=True, bands=4)
    assert s.names[-3:] == ["meta.topic", "content_hash", "band_keys"] and s.field("band_keys").type.list_size == 4
