"""Member assignment and language routing (issues 5 and 8): which mixture member a document counts toward
(curate.mix.members)."""

from __future__ import annotations

import copy
from pathlib import Path

import pyarrow as pa
import pytest

from curate.errors import RecipeError
from curate.mix.members import assign_members
from curate.pipeline import parse_recipe

RECIPE = {
    "name": "route",
    "budget_tokens": 1000,
    "sources": {
        "wiki": {"format": "wikipedia", "paths": ["w/*.parquet"]},
        "cx": {"format": "culturax", "paths": ["c/*.parquet"]},
        "code": {"format": "the-stack-v1", "paths": ["s/*.parquet"]},
        "web": {"format": "refinedweb", "subsets": {"a": {"paths": ["a"]}, "b": {"paths": ["b"]}}},
    },
    "mixture": {
        "code": {"share": 0.2, "sources": {"code": 1}},
        "multilingual": {"share": 0.3, "sources": {"cx": 3, "wiki": 1}},
        "soup": {"share": 0.5, "sources": {"wiki": 2, "web/a": 1, "web/b": 1}},
    },
    "route_by_lang": [{"group": "multilingual", "not": ["en"]}],
}


def _recipe(data: dict = RECIPE):
    return parse_recipe(copy.deepcopy(data), base_dir=Path("."), check_paths=False)


def test_non_english_wikipedia_routes_to_multilingual() -> None:
    r = _recipe()
    t = pa.table({"source": ["wiki", "wiki", "wiki", "cx", "cx", "code", "web", "web"],
                  "subset": ["", "", "", "", "", "", "a", "b"],
                  "lang": ["en", "de", None, "fr", "en", None, "en", "ja"]})
    got = assign_members(r, t).tolist()
    assert got == ["soup:wiki", "multilingual:wiki", "multilingual:wiki", "cx", "cx", "code", "web/a", "web/b"]
    # keys are group-qualified only for entries listed in several groups
    assert [r.member_key(g, s, b) for g, s, b, _ in r.members()] == [
        "code", "cx", "multilingual:wiki", "soup:wiki", "web/a", "web/b"]


def test_without_routing_a_source_belongs_to_one_group() -> None:
    data = copy.deepcopy(RECIPE)
    data.pop("route_by_lang")
    with pytest.raises(RecipeError, match="already in group 'multilingual'") as e:
        _recipe(data)
    assert e.value.path == "mixture.soup.sources.wiki"


@pytest.mark.parametrize(("rules", "path", "needle"), [
    ([{"group": "nope", "not": ["en"]}], "route_by_lang[0].group", "unknown group"),
    ([{"group": "soup", "in": ["en"], "not": ["de"]}], "route_by_lang[0]", "either `in` or `not`"),
    ([{"group": "soup"}, {"group": "multilingual", "not": ["en"]}], "route_by_lang[0]", "must come last"),
])
def test_route_rule_errors(rules, path, needle) -> None:
    data = copy.deepcopy(RECIPE)
    data["route_by_lang"] = rules
    with pytest.raises(RecipeError, match=needle) as e:
        _recipe(data)
    assert e.value.path == path


def test_unmixed_subset_is_flagged_empty() -> None:
    data = copy.deepcopy(RECIPE)
    data["sources"]["web"] = {"format": "refinedweb", "paths": ["x"], "subset_by": "dump"}
    data["mixture"]["soup"]["sources"] = {"wiki": 2, "web/2020": 1}
    r = _recipe(data)
    t = pa.table({"source": ["web", "web"], "subset": ["2020", "2021"], "lang": ["en", "en"]})
    assert assign_members(r, t).tolist() == ["web/2020", ""]


def test_chunked_columns_null_subset_and_empty_table() -> None:
    """Chunked kept columns (several row groups), a null subset and an empty table take the vectorized path."""
    r = _recipe()
    t = pa.Table.from_batches([
        pa.record_batch({"source": ["web", "wiki"], "subset": ["a", None], "lang": ["en", "de"]}),
        pa.record_batch({"source": ["nope", "web"], "subset": ["", "b"], "lang": ["en", "en"]}),
    ])
    assert t["source"].num_chunks == 2
    assert assign_members(r, t).tolist() == ["web/a", "multilingual:wiki", "", "web/b"]
    assert assign_members(r, t.slice(0, 0)).tolist() == []
