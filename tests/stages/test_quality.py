"""QualityStage: the stage contract, recipe wiring, overrides and their errors, and the fastText preset."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.errors import RecipeError, SchemaError
from curate.recipe import SourceConfig
from curate.pipeline import parse_recipe
from curate.schema import DOC_SCHEMA, DROP_REASON
from curate.stages.quality import QUALITY_FAIL, QualityStage, apply_overrides, load_quality_preset
from tests.quality.texts import GOOD, ZH

SHORT = "The cat sat with me."
BULLETS = "\n".join("- " + line for line in GOOD.split("\n"))


def docs(texts: list[str], *, lang: list | None = None, meta: list | None = None) -> pa.Table:
    n = len(texts)
    return pa.table({
        "uid": list(range(n)), "doc_id": [f"web:{i}" for i in range(n)], "native_id": [str(i) for i in range(n)],
        "source": ["web"] * n, "subset": [""] * n, "text": texts, "url": [None] * n,
        "lang": lang or [None] * n, "license": [None] * n,
        "meta": [json.dumps(m) if m is not None else None for m in (meta or [None] * n)],
        "nbytes": [len(t.encode()) for t in texts],
    }, schema=DOC_SCHEMA)


def recipe(quality: object, tmp: Path | None = None, *, name: str = "web"):
    src = {"format": "jsonl", "paths": ["x.jsonl"], "text_column": "text", "quality": quality}
    r = parse_recipe({"name": "t", "budget_tokens": 10, "sources": {name: src},
                      "mixture": {"g": {"share": 1.0, "sources": {name: 1}}}}, base_dir=tmp or Path("."),
                     check_paths=False)
    return r.sources[name], r


def stage(quality: object, tmp: Path | None = None) -> QualityStage:
    src, r = recipe(quality, tmp)
    st = QualityStage.from_source("web", src, r)
    assert st is not None
    return st


# ---------------------------------------------------------------------------- construction
def test_no_quality_key_means_no_stage():
    src = SourceConfig(format="jsonl", paths=["x"], text_column="text")
    assert QualityStage.from_source("web", src, None) is None


@pytest.mark.parametrize("quality", ["gopher", ["gopher", "fineweb"], {"gopher": {}, "c4": {}}])
def test_quality_forms(quality):
    st = stage(quality)
    names = list(quality) if not isinstance(quality, str) else [quality]
    assert [p.name for p in st.presets] == names
    assert st.added_columns[-1] == QUALITY_FAIL
    assert st.added_columns[:-1] == tuple(f"q_{r.name}" for p in st.presets for r in p.rules)


def test_unknown_preset():
    src = SourceConfig(format="jsonl", paths=["x"], text_column="text", quality="gopherr")
    with pytest.raises(RecipeError) as e:
        QualityStage.from_source("web", src, None)
    assert e.value.path == "sources.web.quality" and "gopher" in str(e.value)


def test_unknown_override_key_names_the_yaml_path_and_lists_valid_keys():
    with pytest.raises(RecipeError) as e:
        stage({"gopher": {"gopher_word_cout": 10}})
    assert e.value.path == "sources.web.quality.gopher.gopher_word_cout"
    assert "gopher_word_count" in str(e.value) and "stop_words" in str(e.value)


@pytest.mark.parametrize(("override", "path", "match"), [
    ({"gopher_word_count": 30}, "gopher_word_count", "both bounds"),
    ({"gopher_word_count": {"minimum": 3}}, "gopher_word_count.minimum", "min"),
    ({"gopher_stop_words": "two"}, "gopher_stop_words", "number"),
    ({"count_punctuation_as_words": "yes"}, "count_punctuation_as_words", "true or false"),
    ({"stop_words": {"en": "the"}}, "stop_words", "mapping"),
])
def test_bad_override_values(override, path, match):
    with pytest.raises(RecipeError, match=match) as e:
        stage({"gopher": override})
    assert e.value.path == f"sources.web.quality.gopher.{path}"


def test_override_errors_surface_when_the_recipe_loads(tmp_path):
    import yaml

    from curate.pipeline import load_recipe

    data = {"name": "t", "budget_tokens": 10, "mixture": {"g": {"share": 1.0, "sources": {"web": 1}}},
            "sources": {"web": {"format": "jsonl", "paths": ["x.jsonl"], "text_column": "text",
                                "quality": {"fineweb": {"short_line_lenght": 20}}}}}
    f = tmp_path / "r.yaml"
    f.write_text(yaml.safe_dump(data))
    with pytest.raises(RecipeError) as e:
        load_recipe(f, check_paths=False)
    assert e.value.path == "sources.web.quality.fineweb.short_line_lenght" and e.value.recipe_file == str(f)
    assert "short_line_length" in str(e.value)


def test_datatrove_parameter_names_are_aliases():
    st = stage({"gopher": {"min_doc_words": 5, "max_symbol_word_ratio": None}, "fineweb": {"line_punct_thr": 0.5}})
    rules = {r.name: r for r in st.rules}
    assert rules["gopher_word_count"].min == 5 and rules["gopher_word_count"].max == 100000
    assert rules["gopher_hash_word_ratio"].max is None and rules["gopher_ellipsis_word_ratio"].max is None
    assert rules["fineweb_line_punct_ratio"].min == 0.5
    with pytest.raises(RecipeError) as e:
        stage({"gopher": {"min_doc_wrds": 5}})
    assert "min_doc_words" in str(e.value)


def test_fasttext_keys_are_checked(tmp_path):
    with pytest.raises(RecipeError) as e:
        stage({"fasttext": {"model": "m.bin", "treshold": 0.3}}, tmp_path)
    assert e.value.path == "sources.web.quality.fasttext.treshold" and "threshold" in str(e.value)


def test_same_preset_rules_twice_is_an_error():
    with pytest.raises(RecipeError, match="more than one preset"):
        QualityStage([load_quality_preset("gopher"), load_quality_preset("gopher")], source="web")


# ---------------------------------------------------------------------------- processing
def test_process_adds_scores_fail_lists_and_reasons():
    st = stage(["gopher", "fineweb"])
    out = st.process(docs([GOOD, SHORT, BULLETS]))
    assert out.column_names[:11] == DOC_SCHEMA.names  # the input columns, unchanged and first
    assert out["text"].to_pylist() == [GOOD, SHORT, BULLETS]
    assert out.schema.field("q_gopher_word_count").type == pa.float64()
    assert out.schema.field(QUALITY_FAIL).type == pa.list_(pa.string())
    fails = out[QUALITY_FAIL].to_pylist()
    assert fails[0] == []
    assert fails[1][0] == "gopher_word_count" and "fineweb_short_line_ratio" in fails[1]
    assert fails[2] == ["gopher_bullet_lines_ratio"]
    # the first failing rule in preset order (gopher before fineweb) is the drop reason
    assert out[DROP_REASON].to_pylist() == [None, "quality:gopher_word_count", "quality:gopher_bullet_lines_ratio"]


def test_int_scores_and_null_for_not_applicable():
    st = stage(["gopher", "c4"])
    out = st.process(docs([GOOD, GOOD], lang=["en", "hy"]))  # no Armenian stop-word list
    assert out.schema.field("q_c4_num_sentences").type == pa.int64()
    assert out["q_gopher_stop_words"].to_pylist() == [5.0, None]


def test_fail_counts_count_every_failing_rule():
    st = stage(["gopher", "fineweb"])
    out = st.process(docs([GOOD, SHORT, SHORT, BULLETS]))
    counts = QualityStage.fail_counts(out)
    assert counts["gopher_word_count"] == 2 and counts["gopher_bullet_lines_ratio"] == 1
    assert counts["fineweb_short_line_ratio"] == 2
    assert sum(counts.values()) == sum(len(f) for f in out[QUALITY_FAIL].to_pylist())
    assert st.fail_counts(st.process(docs([GOOD]))) == {}


def test_an_earlier_drop_reason_is_kept():
    st = stage("gopher")
    t = docs([GOOD, SHORT, SHORT]).append_column(DROP_REASON, pa.array(["license:GPL-3.0-only", None, "lang:de"]))
    out = st.process(t)
    assert out[DROP_REASON].to_pylist() == ["license:GPL-3.0-only", "quality:gopher_word_count", "lang:de"]


def test_overrides_change_decisions():
    base = stage("gopher").process(docs([SHORT]))
    assert base[DROP_REASON].to_pylist() == ["quality:gopher_word_count"]
    lax = stage({"gopher": {"gopher_word_count": {"min": 5}, "gopher_stop_words": 1,
                            "gopher_top_2gram_char_frac": None, "gopher_top_3gram_char_frac": None,
                            "gopher_top_4gram_char_frac": None}})
    out = lax.process(docs([SHORT]))
    assert out[DROP_REASON].to_pylist() == [None]
    # the score is still computed for a rule without bounds
    assert out["q_gopher_top_2gram_char_frac"][0].as_py() > 0.2


def test_slicing_by_size_gives_the_same_result():
    texts = [GOOD, SHORT, BULLETS, ZH, GOOD + "\n" + GOOD] * 3
    big = stage(["gopher", "fineweb", "c4"])
    small = stage(["gopher", "fineweb", "c4"])
    small.max_batch_chars = 700  # about one document per slice
    a, b = big.process(docs(texts)), small.process(docs(texts))
    assert a.equals(b)


def test_empty_table_and_missing_text():
    st = stage("gopher")
    out = st.process(docs([]))
    assert out.num_rows == 0 and QUALITY_FAIL in out.column_names
    with pytest.raises(SchemaError, match="text"):
        st.check_columns(pa.table({"body": ["x"]}))


def test_stage_pickles_and_describes():
    st = stage({"gopher": {"gopher_word_count": {"min": 20}}, "code": {}})
    clone = pickle.loads(pickle.dumps(st))
    t = docs([GOOD, SHORT], meta=[{"path": "a.py"}, {"path": "vendor/x.py"}])
    assert clone.process(t).equals(st.process(t))
    d = json.loads(json.dumps(st.describe()))
    assert d["stage"] == "quality" and d["presets"]["gopher"]["rules"]["gopher_word_count"] == {"min": 20,
                                                                                                  "max": 100000}
    assert d["presets"]["code"]["version"] == "code_v1"


def test_apply_overrides_does_not_touch_the_loaded_preset():
    p = load_quality_preset("fineweb")
    q = apply_overrides(p, {"fineweb_short_line_ratio": 0.9, "short_line_length": 10}, yaml_path="x")
    assert p.rules[1].max == 0.67 and p.options["short_line_length"] == 30
    assert q.rules[1].max == 0.9 and q.options["short_line_length"] == 10


# ---------------------------------------------------------------------------- fastText preset
def test_fasttext_preset_end_to_end(tmp_path):
    fasttext = pytest.importorskip("fasttext")
    if not hasattr(fasttext, "train_supervised"):
        pytest.skip("installed `fasttext` is fasttext-predict (no training)")
    from curate.quality.fasttext_clf import train
    from tests.quality.test_fasttext_clf import BAD, GOOD as POS

    pq.write_table(pa.table({"text": POS}), tmp_path / "pos.parquet")
    pq.write_table(pa.table({"text": BAD}), tmp_path / "neg.parquet")
    train([str(tmp_path / "pos.parquet")], [str(tmp_path / "neg.parquet")], str(tmp_path / "m" / "model.bin"),
          epoch=30, lr=0.05, dim=16, bucket=50_000)
    st = stage({"fasttext": {"model": "m/model.bin", "threshold": 0.5}}, tmp_path)
    assert st.scorer is not None and st.scorer.model_path == str(tmp_path / "m" / "model.bin")
    st.setup()
    out = st.process(docs(["A new study examines the history of the river in careful detail.",
                           "buy now cheap pills free shipping click here and win a prize with the best price"]))
    q = out["q_fasttext"].to_pylist()
    assert q[0] > 0.5 > q[1]
    assert out[DROP_REASON].to_pylist() == [None, "quality:fasttext"]
    assert out[QUALITY_FAIL].to_pylist() == [[], ["fasttext"]]
    assert np.isfinite(np.array(q)).all()


def test_fasttext_model_required(tmp_path):
    src = SourceConfig(format="jsonl", paths=["x"], text_column="text", quality={"fasttext": {"threshold": 0.5}})
    with pytest.raises(RecipeError) as e:
        QualityStage.from_source("web", src, None)
    assert e.value.path == "sources.web.quality.fasttext.model"
