"""Issue 22, item 4: a key repeated in a YAML mapping is refused (YAML itself keeps the last one silently)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curate.cli import main as cli_main
from curate.errors import RecipeError
from curate.recipe import read_yaml
from curate.pipeline import load_recipe


def _data(root: Path) -> Path:
    (root / "a.jsonl").write_text(json.dumps({"text": "hello there"}) + "\n")
    return root / "a.jsonl"


RECIPE_TWO_SOURCES_A = """\
name: dup
budget_tokens: 100
sources:
  a: {format: jsonl, paths: ["a.jsonl"], text_column: text}
  b: {format: jsonl, paths: ["a.jsonl"], text_column: text}
  a:
    format: text
    paths: ["a.jsonl"]
mixture:
  g: {share: 1.0, sources: {a: 1, b: 1}}
"""

RECIPE_GROUP_KEY_REPEATED = """\
name: dup
budget_tokens: 100
sources:
  a: {format: jsonl, paths: ["a.jsonl"], text_column: text}
mixture:
  g:
    share: 0.5
    sources: {a: 1}
    share: 1.0
"""


def test_source_defined_twice_names_both_lines_and_the_key_path_22(tmp_path) -> None:
    _data(tmp_path)
    f = tmp_path / "r.yaml"
    f.write_text(RECIPE_TWO_SOURCES_A)
    with pytest.raises(RecipeError) as ei:
        load_recipe(f)
    assert ei.value.path == "sources.a"
    assert "duplicate key 'a' at lines 4 and 6" in str(ei.value)
    assert str(ei.value).startswith(f"{f}: `sources.a`: ")


def test_group_key_repeated_is_refused_through_the_cli_22(tmp_path, capsys) -> None:
    _data(tmp_path)
    f = tmp_path / "r.yaml"
    f.write_text(RECIPE_GROUP_KEY_REPEATED)
    assert cli_main(["plan", str(f)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"curate plan: error: {f}: `mixture.g.share`: duplicate key 'share' at lines 7 and 9"), err


def test_duplicate_inside_a_list_item_names_the_index_22(tmp_path) -> None:
    f = tmp_path / "r.yaml"
    f.write_text("route_by_lang:\n  - {group: a, in: [de]}\n  - group: b\n    group: c\n")
    with pytest.raises(RecipeError) as ei:
        read_yaml(f)
    assert ei.value.path == "route_by_lang[1].group" and "lines 3 and 4" in str(ei.value)


def test_same_key_in_different_mappings_is_fine_22(tmp_path) -> None:
    f = tmp_path / "r.yaml"
    f.write_text("a: {x: 1}\nb: {x: 2}\nc: [{x: 1}, {x: 2}]\n")
    assert read_yaml(f) == {"a": {"x": 1}, "b": {"x": 2}, "c": [{"x": 1}, {"x": 2}]}


def test_duplicate_key_in_a_license_preset_is_refused_22(tmp_path) -> None:
    from curate.license_policy import load_license_preset

    (tmp_path / "mine.yaml").write_text("allow: [MIT]\nunknown: drop\nallow: [GPL-3.0-only]\n")
    with pytest.raises(RecipeError) as ei:
        load_license_preset("mine", filters_dir=tmp_path)
    assert "duplicate key 'allow' at lines 1 and 3" in str(ei.value)


def test_duplicate_key_in_a_quality_preset_is_refused_22(tmp_path, monkeypatch) -> None:
    from curate import presets
    from curate.stages import quality

    (tmp_path / "quality").mkdir()
    (tmp_path / "quality" / "mine.yaml").write_text(
        "rules:\n  gopher_word_count: {min: 50}\n  gopher_word_count: {min: 5}\n")
    monkeypatch.setattr(presets, "FILTERS_DIR", tmp_path)
    with pytest.raises(RecipeError) as ei:
        quality.load_quality_preset("mine")
    assert "`rules.gopher_word_count`" in str(ei.value) and "lines 2 and 3" in str(ei.value)
