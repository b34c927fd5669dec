"""LangIdStage: per-source policies from the recipe, drop reasons, pickling, custom models, real-data accuracy."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from curate import lid_model as lid
from curate.errors import RecipeError
from curate.pipeline import parse_recipe
from curate.schema import DROP_REASON
from curate.stages.langid import LangIdStage

TEXTS = {
    "en": "The committee will publish its final report on the new railway line early next year.",
    "de": "Der Ausschuss wird seinen Abschlussbericht über die neue Bahnstrecke Anfang nächsten Jahres vorlegen.",
    "fr": "Le comité publiera son rapport final sur la nouvelle ligne de chemin de fer au début de l'année.",
    "es": "El comité publicará su informe final sobre la nueva línea de ferrocarril a principios del año.",
}
CODE = "def main(argv):\n    for x in range(10):\n        print(x)\n    return 0\n"


def docs(*langs: str) -> pa.Table:
    texts = [TEXTS[x] for x in langs]
    return pa.table({"text": pa.array(texts, type=pa.large_string()),
                     "lang": pa.array(["xx"] * len(texts), type=pa.string())})  # source-given lang is replaced


def recipe(tmp_path: Path, *, web: dict | None = None, code: dict | None = None, langid: dict | None = None):
    sources = {"web": {"format": "culturax", "paths": ["web/*.parquet"], **(web or {})},
               "code": {"format": "the-stack-v1", "paths": ["code/*.parquet"], **(code or {})}}
    data = {"name": "t", "budget_tokens": 1000, "sources": sources,
            "mixture": {"all": {"share": 1.0, "sources": {"web": 1.0, "code": 1.0}}}}
    if langid:
        data["langid"] = langid
    return parse_recipe(data, base_dir=tmp_path, check_paths=False)


def stage_for(tmp_path: Path, name: str = "web", **kw) -> LangIdStage | None:
    r = recipe(tmp_path, **kw)
    return LangIdStage.from_source(name, r.sources[name], r)


# ---------------------------------------------------------------------------- policies
def test_no_policy_annotates_every_document_and_drops_nothing(tmp_path):
    stage = stage_for(tmp_path)
    assert stage is not None and not stage.filters
    out = stage.process(docs("en", "de", "fr", "es"))
    assert out.column("lang").to_pylist() == ["en", "de", "fr", "es"]
    assert pc.min(out.column("lang_score")).as_py() > 0.5
    assert out.column(DROP_REASON).null_count == 4
    assert out.column("text").equals(docs("en", "de", "fr", "es").column("text"))  # same rows, same order
    assert out.schema.field("lang").type == pa.string() and out.schema.field("lang_score").type == pa.float32()


def test_keep_list_drops_other_languages_with_their_code(tmp_path):
    stage = stage_for(tmp_path, web={"langid": {"keep": ["en", "fr"]}})
    out = stage.process(docs("en", "de", "fr", "es"))
    assert out.column(DROP_REASON).to_pylist() == [None, "lang:de", None, "lang:es"]


def test_drop_list_drops_only_listed_languages(tmp_path):
    stage = stage_for(tmp_path, web={"langid": {"drop": ["en"]}})
    out = stage.process(docs("en", "de", "en"))
    assert out.column(DROP_REASON).to_pylist() == ["lang:en", None, "lang:en"]


def test_min_score_drops_low_confidence_first(tmp_path):
    stage = stage_for(tmp_path, web={"langid": {"keep": ["de"], "min_score": 0.5}})
    t = pa.table({"text": [TEXTS["de"], "1 2 3", TEXTS["en"], "   "]})
    out = stage.process(t)
    score = out.column("lang_score").to_pylist()
    assert score[1] < 0.5 and score[2] > 0.5  # digits carry no language signal
    assert out.column(DROP_REASON).to_pylist() == [None, "lang_score_low", "lang:en", "lang_score_low"]
    assert out.column("lang").to_pylist()[3] is None


def test_blank_document_is_und_for_a_keep_list(tmp_path):
    out = stage_for(tmp_path, web={"langid": {"keep": ["en"]}}).process(pa.table({"text": ["", TEXTS["en"]]}))
    assert out.column(DROP_REASON).to_pylist() == ["lang:und", None]
    out = stage_for(tmp_path, web={"langid": {"keep": ["en", "und"]}}).process(pa.table({"text": ["", "\n"]}))
    assert out.column(DROP_REASON).null_count == 2


def test_earlier_drop_reason_is_kept(tmp_path):
    stage = stage_for(tmp_path, web={"langid": {"keep": ["en"]}})
    t = docs("en", "de", "de").append_column(DROP_REASON, pa.array(["license:GPL-3.0-only", None, "x"]))
    assert stage.process(t).column(DROP_REASON).to_pylist() == ["license:GPL-3.0-only", "lang:de", "x"]


def test_langid_false_means_no_stage(tmp_path):
    assert stage_for(tmp_path, web={"langid": False}) is None


def test_code_sources_are_skipped_unless_annotate_code(tmp_path):
    assert stage_for(tmp_path, name="code") is None
    stage = stage_for(tmp_path, name="code", langid={"annotate_code": True})
    assert stage is not None and not stage.filters
    out = stage.process(pa.table({"text": [CODE]}))
    assert out.column("lang").null_count == 0 and out.column(DROP_REASON).null_count == 1


def test_code_source_with_explicit_policy_but_annotate_code_off_is_an_error(tmp_path):
    with pytest.raises(RecipeError, match="annotate_code") as e:
        stage_for(tmp_path, name="code", code={"langid": {"keep": ["en"]}})
    assert e.value.path == "sources.code.langid"


@pytest.mark.parametrize(("policy", "path"), [({"keep": ["en", "eng"]}, "sources.web.langid.keep[1]"),
                                              ({"drop": ["english"]}, "sources.web.langid.drop[0]")])
def test_unknown_language_code_for_lid176_names_the_yaml_path(tmp_path, policy, path):
    with pytest.raises(RecipeError, match="not a label") as e:
        stage_for(tmp_path, web={"langid": policy})
    assert e.value.path == path


def test_recipe_sample_chars_and_label_prefix_reach_the_stage(tmp_path):
    stage = stage_for(tmp_path, langid={"sample_chars": 300})
    assert stage.sample_chars == 300 and stage.describe()["sample_chars"] == 300
    assert stage.describe()["model"].endswith("lid.176.ftz") and stage.describe()["mode"] == "annotate"


# ---------------------------------------------------------------------------- contract
def test_pickles_without_the_model_and_reloads_in_setup(tmp_path):
    stage = stage_for(tmp_path, web={"langid": {"drop": ["de"]}})
    stage.setup()
    clone = pickle.loads(pickle.dumps(stage))
    assert clone._model is None
    clone.setup()
    assert clone._model is lid.load_model()  # one model per process, shared by the source stages
    assert clone.process(docs("de", "en")).column(DROP_REASON).to_pylist() == ["lang:de", None]


def test_empty_and_chunked_tables(tmp_path):
    stage = stage_for(tmp_path, web={"langid": {"keep": ["en"]}})
    empty = stage.process(docs().slice(0, 0))
    assert empty.num_rows == 0 and {"lang", "lang_score", DROP_REASON} <= set(empty.column_names)
    chunked = pa.concat_tables([docs("en", "de"), docs("fr")])
    assert chunked.column("text").num_chunks == 2
    assert stage.process(chunked).column(DROP_REASON).to_pylist() == [None, "lang:de", "lang:fr"]


def test_missing_text_column_is_a_schema_error(tmp_path):
    with pytest.raises(Exception, match="needs column"):
        stage_for(tmp_path).process(pa.table({"content": ["x"]}))


# ---------------------------------------------------------------------------- a GlotLID-style model
def write_fasttext_model(path: Path, vocab: dict[str, int], labels: list[str]) -> None:
    """Write a tiny supervised fastText model (file format version 12) with GlotLID-style labels.

    Softmax loss, no subwords or word n-grams (bucket 0), ``dim = len(labels)``: word ``w`` has the input
    vector ``5 * e[vocab[w]]`` and label ``i`` the output vector ``e[i]``, so a text made of one label's words
    gets that label with probability ~0.99. Written by hand because training needs full fasttext (not
    fasttext-predict) and 0.9.3's trainer reports NaN on tiny corpora at random.
    """
    dim = len(labels)
    out = bytearray(struct.pack("<ii", 793712314, 12))  # magic, version
    # args: dim ws epoch minCount neg wordNgrams loss(softmax=3) model(supervised=3) bucket minn maxn lrUpdateRate t
    out += struct.pack("<12id", dim, 5, 1, 1, 5, 1, 3, 3, 0, 0, 0, 100, 1e-4)
    entries = [(w, 0) for w in vocab] + [(lab, 1) for lab in labels]  # (entry, type word=0 / label=1)
    out += struct.pack("<iiiqq", len(entries), len(vocab), len(labels), len(entries), -1)  # -1: not pruned
    for word, kind in entries:
        out += word.encode() + b"\0" + struct.pack("<qb", 1, kind)
    inp = np.zeros((len(vocab), dim), np.float32)
    inp[np.arange(len(vocab)), list(vocab.values())] = 5.0
    outm = np.eye(len(labels), dim, dtype=np.float32)
    for m in (inp, outm):
        out += struct.pack("<?qq", False, *m.shape) + m.tobytes()  # not quantized, rows, cols, data
    path.write_bytes(bytes(out))


@pytest.fixture(scope="module")
def glotlid_style_model(tmp_path_factory) -> Path:
    vocab = {w: 0 for w in "the cat report on we will".split()} | {w: 1 for w in "die der katze bericht über".split()}
    path = tmp_path_factory.mktemp("glot") / "glot.bin"
    write_fasttext_model(path, vocab, ["__label__eng_Latn", "__label__deu_Latn"])
    return path


def test_glotlid_style_labels_are_kept_whole(tmp_path, glotlid_style_model):
    r = recipe(glotlid_style_model.parent, web={"langid": {"keep": ["eng_Latn"]}},
               langid={"model": glotlid_style_model.name})  # relative to the recipe's folder
    stage = LangIdStage.from_source("web", r.sources["web"], r)
    out = stage.process(pa.table({"text": ["the report on the cat", "der bericht über die katze", "zzz"]}))
    assert out.column("lang").to_pylist() == ["eng_Latn", "deu_Latn", None]  # no known token: no label
    assert out.column("lang_score")[0].as_py() > 0.99
    assert out.column(DROP_REASON).to_pylist() == [None, "lang:deu_Latn", "lang:und"]


def test_policy_codes_are_checked_against_a_custom_model_in_setup(glotlid_style_model):
    if lid.model_labels(lid.load_model(glotlid_style_model)) is None:
        pytest.skip("this fasttext binding (fasttext-predict) cannot list a model's labels")
    stage = LangIdStage(model_path=str(glotlid_style_model), keep=["en"], source="web")
    with pytest.raises(RecipeError, match="not a label") as e:
        stage.setup()
    assert e.value.path == "sources.web.langid.keep[0]"


def test_wrong_label_prefix_is_a_recipe_error(glotlid_style_model):
    stage = LangIdStage(model_path=str(glotlid_style_model), label_prefix="__lang__")
    with pytest.raises(RecipeError, match="label_prefix"):
        stage.process(pa.table({"text": ["the cat"]}))


# ---------------------------------------------------------------------------- real data
@pytest.mark.real
def test_accuracy_on_culturax_at_least_95_percent(real_data):
    docs_t = pq.read_table(real_data / "culturax.parquet", columns=["text", "url"])
    labels = pq.read_table(real_data / "culturax_labels.parquet")
    t = docs_t.join(labels, "url", join_type="inner")
    assert t.num_rows == docs_t.num_rows
    supported = pa.array(lid.lid176_labels())
    t = t.filter(pc.and_(pc.greater_equal(pc.utf8_length(t.column("text")), 200),
                         pc.is_in(t.column("lang_iso639_1"), value_set=supported)))
    assert t.num_rows > 1500
    out = LangIdStage().process(t)
    ok = pc.equal(out.column("lang"), out.column("lang_iso639_1"))
    per = pa.table({"lang": out.column("lang_iso639_1"), "ok": pc.cast(ok, pa.int64())}).group_by("lang").aggregate(
        [("ok", "mean"), ("ok", "count")]).sort_by("lang")
    for row in per.to_pylist():
        print(f"{row['lang']:>3}  {row['ok_mean']:.3f}  n={row['ok_count']}")
    overall = pc.mean(pc.cast(ok, pa.float64())).as_py()
    print(f"overall {overall:.4f} on {t.num_rows} documents")
    assert overall >= 0.95
