"""Recipe validation: every error names the YAML path and says what is wrong (issue 2)."""

from __future__ import annotations

import copy
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from curate.errors import RecipeError
from curate.pipeline import load_recipe, parse_recipe

BASE = {
    "name": "t",
    "seed": 1,
    "tokenizer": "rwkv-world",
    "budget_tokens": 1000,
    "sources": {
        "web": {"format": "refinedweb", "paths": ["data/web/*.parquet"]},
        "code": {"format": "the-stack-v1", "paths": ["data/code/*.parquet"], "license": "permissive",
                 "quality": "code"},
    },
    "mixture": {"a": {"share": 0.5, "sources": {"web": 1}}, "b": {"share": 0.5, "sources": {"code": 1}}},
}


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    for d in ("web", "code"):
        (tmp_path / "data" / d).mkdir(parents=True)
        pq.write_table(pa.table({"x": [1]}), tmp_path / "data" / d / "part-0.parquet")
    return tmp_path


def _err(data: dict, base: Path) -> RecipeError:
    with pytest.raises(RecipeError) as ei:
        parse_recipe(data, base_dir=base, recipe_file="r.yaml")
    return ei.value


def test_valid_recipe_loads_from_yaml(tree: Path) -> None:
    f = tree / "r.yaml"
    f.write_text(yaml.safe_dump(BASE))
    r = load_recipe(f)
    assert r.budget_tokens == 1000
    assert [m[:3] for m in r.members()] == [("a", "web", None), ("b", "code", None)]
    assert r.fingerprint() == load_recipe(f).fingerprint()


def test_issue_recipe_validates(tmp_path: Path) -> None:
    """The EagleX-style recipe of issue 2 validates (paths unchecked: they are the user's)."""
    text = (Path(__file__).resolve().parent.parent / "recipes" / "eaglex.yaml").read_text()
    r = parse_recipe(yaml.safe_load(text), base_dir=tmp_path, check_paths=False)
    assert set(r.mixture) == {"code", "multilingual", "soup"}
    assert r.dedup.minhash.bands * r.dedup.minhash.rows == 112
    assert list(r.decontaminate.evals) == ["gsm8k", "math", "mmlu_stem", "humaneval"]
    assert r.decontaminate.expected(list(r.sources)) == {"math": ["math"]}


@pytest.mark.parametrize(
    ("mutate", "path", "needle"),
    [
        (lambda d: d["mixture"]["a"].update(share=0.6), "mixture", "must sum to 1"),
        (lambda d: d["mixture"]["a"]["sources"].update(nope=1), "mixture.a.sources.nope", "unknown source 'nope'"),
        (lambda d: d.update(mixture={"a": {"share": 1.0, "sources": {"web": 1}}}), "sources.code", "in no mixture group"),
        (lambda d: d["mixture"]["a"]["sources"].update(web=-1), "mixture.a.sources.web", "weights must be >= 0"),
        (lambda d: d["sources"]["web"].update(paths=["data/none/*.parquet"]), "sources.web.paths[0]",
         "matches no file"),
        (lambda d: d["sources"]["web"].update(format="warc"), "sources.web.format", "got 'warc'"),
        (lambda d: d.update(tokenizer="gpt9"), "tokenizer", "rwkv-world"),
        (lambda d: d.update(tokenizer={"hf": "missing/tokenizer.json"}), "tokenizer.hf", "tokenizer file not found"),
        (lambda d: d["sources"]["code"].update(license="copyleftish"), "sources.code.license",
         "unknown license preset 'copyleftish'"),
        (lambda d: d["sources"]["code"].update(quality="nice"), "sources.code.quality", "unknown quality preset"),
        (lambda d: d["sources"]["web"].update(langid={"keep": ["en"], "drop": ["de"]}), "sources.web.langid",
         "either `keep` or `drop`"),
        (lambda d: d["sources"]["web"].update(langid={"min_score": 1.5}), "sources.web.langid.min_score",
         "less than or equal to 1"),
        (lambda d: d.update(budgt_tokens=5), "budgt_tokens", "unknown key"),
        (lambda d: d["sources"]["web"].update(pahts=["x"]), "sources.web.pahts", "unknown key"),
        (lambda d: d.pop("budget_tokens"), "budget_tokens", "required key is missing"),
        (lambda d: d.update(dedup={"keep_priority": ["web", "zzz"]}), "dedup.keep_priority[1]", "unknown source"),
        (lambda d: d["mixture"]["b"]["sources"].update(web=1), "mixture.b.sources.web", "already in group 'a'"),
        (lambda d: d["mixture"]["a"]["sources"].update({"web/sub": 1}), "mixture.a.sources.web/sub",
         "declares no subsets"),
        (lambda d: d.update(plugins=["os; rm -rf /"]), "plugins[0]", "importable module names"),
    ],
)
def test_recipe_errors_name_the_yaml_path(tree: Path, mutate, path: str, needle: str) -> None:
    data = copy.deepcopy(BASE)
    mutate(data)
    e = _err(data, tree)
    assert e.path == path, str(e)
    assert needle in str(e), str(e)
    assert "r.yaml" in str(e)


def test_subsets_validate_and_flatten(tree: Path) -> None:
    data = copy.deepcopy(BASE)
    data["sources"]["web"] = {"format": "refinedweb", "subsets": {"x": {"paths": ["data/web/*.parquet"]},
                                                                   "y": {"paths": ["data/web/*.parquet"]}}}
    data["mixture"]["a"]["sources"] = {"web/x": 1, "web/y": 3}
    r = parse_recipe(data, base_dir=tree)
    shares = {(s, sub): sh for _g, s, sub, sh in r.members()}
    assert shares[("web", "x")] == pytest.approx(0.125)
    assert shares[("web", "y")] == pytest.approx(0.375)
    data["mixture"]["a"]["sources"] = {"web/x": 1}
    assert "subsets ['y']" in str(_err(data, tree))


def test_yaml_is_data_only(tmp_path: Path) -> None:
    f = tmp_path / "r.yaml"
    f.write_text("name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(f)


def test_unknown_spdx_id_in_license_list(tree: Path) -> None:
    data = copy.deepcopy(BASE)
    data["sources"]["code"]["license"] = ["MIT", "Not-A-License-9"]
    e = _err(data, tree)
    assert e.path.startswith("sources.code.license"), str(e)


def test_fingerprint_is_order_sensitive(tree: Path) -> None:
    """Source order numbers partitions (uids): a reordered recipe must not resume another's run."""
    a = parse_recipe(copy.deepcopy(BASE), base_dir=tree)
    data = copy.deepcopy(BASE)
    data["sources"] = dict(reversed(list(data["sources"].items())))
    b = parse_recipe(data, base_dir=tree)
    assert a.fingerprint() != b.fingerprint()
    assert a.fingerprint() == parse_recipe(copy.deepcopy(BASE), base_dir=tree).fingerprint()
