"""The decontaminate stage (issue 18): normalization, matching rules, bad eval input, and the real leak.

Inline tables use invented sentences; the real-data tests read ../shared/data/real and ../shared/data/evals
(skipped with the reason when absent) and never copy their text into the repository.
"""

from __future__ import annotations

import gzip
import json
import re
import unicodedata
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate import decont as D
from curate.errors import InputError, RecipeError, SchemaError
from curate.recipe import EvalSetConfig
from curate.pipeline import parse_recipe
from curate.stages.decontaminate import DecontaminateStage

ITEM_A = ("A farmer has seventeen sheep and buys nine more at the market every spring before the long rains "
          "arrive in the valley")
ITEM_B = "Which planet in our solar system has the longest day measured in hours"  # 13 words
ITEM_SHORT = "the quick brown fox jumps over lazy dogs today"  # 9 words: matches only as a whole
FILLER = ("Once upon a time there lived an old miller by the river who ground corn for the whole village and "
          "told stories to the children every evening by the fire.")


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _index(tmp_path: Path, items: list[str], **kw) -> D.DecontIndex:
    f = _jsonl(tmp_path / "bench.jsonl", [{"id": f"b{i}", "q": t} for i, t in enumerate(items)])
    s = D.read_eval_set("bench", EvalSetConfig(paths=[str(f)], fields=["q"], id_field="id"), [str(f)])
    return D.build_index([s], **kw)


def _stage(idx: D.DecontIndex, mode: str = "drop") -> DecontaminateStage:
    return DecontaminateStage(idx, mode=mode)


# ---------------------------------------------------------------------------- normalization
def test_normalize_nfkc_and_case() -> None:
    assert D.normalize(["The ﬁRST", "Ｆｕｌｌ ＷＩＤＴＨ", "Cafe\u0301", "plain"]).to_pylist() == [
        "the first", "full width", "café", "plain"]


def test_tokens_ignore_punctuation_and_split_cjk_per_character() -> None:
    a, _ = D.tokenize(D.normalize(["Hello, WORLD -- it's 3.14!"]))
    b, _ = D.tokenize(D.normalize(["hello world it s 3 14"]))
    assert a.tolist() == b.tolist()
    zh, doc = D.tokenize(D.normalize(["今天天气 good"]))
    assert len(zh) == 5 and doc.tolist() == [0] * 5  # four characters, one word


# ---------------------------------------------------------------------------- matching rules
def test_drop_mode_marks_eval_item_and_count(tmp_path) -> None:
    idx = _index(tmp_path, [ITEM_A, ITEM_B])
    t = pa.table({"text": [FILLER + " " + ITEM_A + " " + FILLER,  # verbatim in the middle of prose
                           ITEM_A.upper().replace(" ", ", "),  # other case and punctuation
                           ITEM_A.replace("seventeen", "eighteen"),  # an edited number, 13+ words still shared
                           FILLER]})
    out = _stage(idx).process(t)
    assert out["drop_reason"].to_pylist() == ["contaminated:bench"] * 3 + [None]
    assert out["decont_eval"].to_pylist() == ["bench"] * 3 + [None]
    assert out["decont_item"].to_pylist() == ["b0"] * 3 + [None]
    n = len(ITEM_A.split()) - 13 + 1
    assert out["decont_ngrams"].to_pylist()[:2] == [n, n]
    assert 0 < out["decont_ngrams"][2].as_py() < n  # the windows over the edited word are gone
    assert out["decont_ngrams"][3].as_py() == 0


def test_annotate_mode_keeps_rows(tmp_path) -> None:
    idx = _index(tmp_path, [ITEM_A])
    out = _stage(idx, mode="annotate").process(pa.table({"text": [ITEM_A, FILLER]}))
    assert out["drop_reason"].to_pylist() == [None, None]
    assert out["decont_eval"].to_pylist() == ["bench", None]
    assert _stage(idx, mode="annotate").match_counts(out) == {"bench": 1}


def test_near_miss_of_twelve_words_is_not_flagged(tmp_path) -> None:
    idx = _index(tmp_path, [ITEM_A])
    words = ITEM_A.split()
    out = _stage(idx).process(pa.table({"text": [FILLER + " " + " ".join(words[2:14]) + " " + FILLER,
                                                 FILLER + " " + " ".join(words[2:15]) + " " + FILLER]}))
    assert out["drop_reason"].to_pylist() == [None, "contaminated:bench"]


def test_short_item_matches_only_as_a_whole_sequence(tmp_path) -> None:
    idx = _index(tmp_path, [ITEM_SHORT, "too short to match"])
    assert idx.stats["evals"]["bench"]["items_short"] == 1
    assert idx.stats["evals"]["bench"]["items_too_short"] == 1
    w = ITEM_SHORT.split()
    texts = [f"{FILLER} {ITEM_SHORT.title()}! {FILLER}", " ".join(w[:-1]) + " and " + w[-1],
             "too short to match", ITEM_SHORT]
    out = _stage(idx).process(pa.table({"text": texts}))
    assert out["drop_reason"].to_pylist() == ["contaminated:bench", None, None, "contaminated:bench"]
    assert out["decont_ngrams"].to_pylist() == [1, 0, 0, 1]


def test_numbers_only_ngrams_and_boilerplate_leave_the_index(tmp_path) -> None:
    counting = " ".join(str(i) for i in range(1, 30))
    boiler = "for which of these two scenarios does the main character do something clearly morally wrong"
    items = [f"{boiler} case {k} {w}" for k, w in enumerate(["apples", "pears", "plums"])] + [counting + " done"]
    idx = _index(tmp_path, items, max_items_per_ngram=2)
    assert idx.stats["ngrams_uninformative"] > 0 and idx.stats["ngrams_frequent"] > 0
    out = _stage(idx).process(pa.table({"text": [counting, f"{FILLER} {boiler} {FILLER}", items[1]]}))
    assert out["drop_reason"].to_pylist() == [None, None, "contaminated:bench"]
    assert out["decont_item"][2].as_py() == "b1"


def test_best_eval_wins_and_list_fields_are_joined(tmp_path) -> None:
    f1 = _jsonl(tmp_path / "one.jsonl", [{"q": ITEM_A}])
    f2 = _jsonl(tmp_path / "two.jsonl", [{"q": "Pick the answer", "choices": ITEM_B.split(" in ")}])
    s1 = D.read_eval_set("one", EvalSetConfig(paths=[str(f1)], fields=["q"]), [str(f1)])
    s2 = D.read_eval_set("two", EvalSetConfig(paths=[str(f2)], fields=["q", "choices"]), [str(f2)])
    assert s1.ids == ["one.jsonl:1"]
    idx = D.build_index([s1, s2])
    out = _stage(idx).process(pa.table({"text": [f"Pick the answer\n{ITEM_B.replace(' in ', chr(10))}", ITEM_A]}))
    assert out["decont_eval"].to_pylist() == ["two", "one"]


# ---------------------------------------------------------------------------- bad eval input
def test_missing_field_names_file_line_and_field(tmp_path) -> None:
    f = _jsonl(tmp_path / "e.jsonl", [{"question": ITEM_A}, {"question": ITEM_B}, {"prompt": "x"}])
    with pytest.raises(SchemaError) as e:
        D.read_eval_set("e", EvalSetConfig(paths=[str(f)], fields=["question"]), [str(f)])
    assert e.value.file == str(f) and e.value.line == 3 and e.value.column == "question"
    assert "e.jsonl, line 3, column `question`" in str(e.value)


def test_parquet_without_field(tmp_path) -> None:
    f = tmp_path / "e.parquet"
    pq.write_table(pa.table({"prompt": [ITEM_A]}), f)
    with pytest.raises(SchemaError, match=r"column `question`.*not found; columns: \['prompt'\]"):
        D.read_eval_set("e", EvalSetConfig(paths=[str(f)], fields=["question"]), [str(f)])
    ok = D.read_eval_set("e", EvalSetConfig(paths=[str(f)], fields=["prompt"]), [str(f)])
    assert ok.texts == [ITEM_A] and ok.ids == ["e.parquet:0"]


def test_empty_eval_set_is_an_error(tmp_path) -> None:
    f = tmp_path / "e.jsonl"
    f.write_text("\n  \n")
    with pytest.raises(InputError, match="holds no items") as e:
        D.read_eval_set("e", EvalSetConfig(paths=[str(f)], fields=["q"]), [str(f)])
    assert e.value.file == str(f)


def test_unreadable_files(tmp_path) -> None:
    bad_json = tmp_path / "a.jsonl"
    bad_json.write_text(json.dumps({"q": ITEM_A}) + "\n{not json\n")
    with pytest.raises(InputError, match="not a JSON line") as e:
        D.read_eval_set("e", EvalSetConfig(paths=[str(bad_json)], fields=["q"]), [str(bad_json)])
    assert e.value.line == 2
    gz = tmp_path / "b.jsonl.gz"
    gz.write_bytes(gzip.compress((json.dumps({"q": ITEM_A}) + "\n").encode() * 50)[:-20])
    with pytest.raises(InputError, match="truncated or corrupt gzip") as e:
        D.read_eval_set("e", EvalSetConfig(paths=[str(gz)], fields=["q"]), [str(gz)])
    assert e.value.file == str(gz) and e.value.line is not None
    pqf = tmp_path / "c.parquet"
    pqf.write_bytes(b"PAR1 this is not parquet PAR1")
    with pytest.raises(InputError, match="cannot read Parquet") as e:
        D.read_eval_set("e", EvalSetConfig(paths=[str(pqf)], fields=["q"]), [str(pqf)])
    obj = _jsonl(tmp_path / "d.jsonl", [{"q": {"nested": 1}}])
    with pytest.raises(SchemaError, match="is an object") as e:
        D.read_eval_set("e", EvalSetConfig(paths=[str(obj)], fields=["q"]), [str(obj)])
    assert e.value.line == 1 and e.value.column == "q"


def _recipe(tmp_path: Path, block: dict, **src) -> dict:
    (tmp_path / "d.jsonl").write_text(json.dumps({"text": FILLER}) + "\n")
    _jsonl(tmp_path / "bench.jsonl", [{"q": ITEM_A}])
    return {"name": "t", "budget_tokens": 100, "decontaminate": block,
            "sources": {"web": {"format": "jsonl", "text_column": "text", "paths": ["d.jsonl"], **src}},
            "mixture": {"all": {"share": 1.0, "sources": {"web": 1}}}}


@pytest.mark.parametrize(("block", "path"), [
    ({"evals": {}}, "decontaminate.evals"),
    ({"evals": {"b": {"paths": ["nope*.jsonl"], "fields": ["q"]}}}, "decontaminate.evals.b.paths[0]"),
    ({"evals": {"b": {"paths": ["bench.jsonl"]}}}, "decontaminate.evals.b.fields"),
    ({"evals": {"b c": {"paths": ["bench.jsonl"], "fields": ["q"]}}}, "decontaminate.evals.b c"),
    ({"evals": {"b": {"paths": ["bench.jsonl"], "fields": ["q"]}}, "expect": ["x"]}, "decontaminate.expect[0]"),
    ({"evals": {"b": {"paths": ["bench.jsonl"], "fields": ["q"]}}, "expect": {"nope": ["b"]}},
     "decontaminate.expect.nope"),
    ({"evals": {"b": {"paths": ["bench.jsonl"], "fields": ["q"]}}, "mode": "delete"}, "decontaminate.mode"),
    ({"evals": {"b": {"paths": ["bench.jsonl"], "fields": ["q"], "field": "q"}}}, "decontaminate.evals.b.field"),
    ({"evals": {"b": {"paths": ["bench.jsonl"], "fields": ["q"]}}, "ngram": 100}, "decontaminate.ngram"),
])
def test_recipe_errors_name_the_yaml_path(tmp_path, block, path) -> None:
    with pytest.raises(RecipeError) as e:
        parse_recipe(_recipe(tmp_path, block), base_dir=tmp_path)
    assert e.value.path == path, e.value


def test_source_opt_out(tmp_path) -> None:
    block = {"evals": {"b": {"paths": ["bench.jsonl"], "fields": ["q"]}}}
    from curate.pipeline import build_stages

    r = parse_recipe(_recipe(tmp_path, block), base_dir=tmp_path)
    assert [s.name for _, s in build_stages(r, "web")][-1] == "decontaminate"
    r = parse_recipe(_recipe(tmp_path, block, decontaminate=False), base_dir=tmp_path)
    assert "decontaminate" not in [s.name for _, s in build_stages(r, "web")]


# ---------------------------------------------------------------------------- the real leak
EVALS = {"gsm8k": ("gsm8k_test.jsonl", ["question", "answer"]), "math": ("math_test.jsonl", ["problem", "solution"])}


@pytest.fixture(scope="module")
def real_index(real_data):
    ev = real_data.parent / "evals"
    if not (ev / "PROVENANCE.md").is_file():
        pytest.skip(f"eval sets not found at {ev}")
    sets = [D.read_eval_set(n, EvalSetConfig(paths=[f], fields=fl, id_field="idx"), [str(ev / f)])
            for n, (f, fl) in EVALS.items()]
    return D.build_index(sets), sets


def _ref_tokens(text: str) -> list[str]:
    """Plain reference tokenization: NFKC, lowercase, runs of word characters (\\w, which is Unicode-aware)."""
    return re.findall(r"\w+", unicodedata.normalize("NFKC", text).lower())


def _ref_ngrams(text: str, n: int = 13) -> set[tuple[str, ...]]:
    w = _ref_tokens(text)
    return {tuple(w[i: i + n]) for i in range(len(w) - n + 1)}


def test_real_openwebmath_recall_and_precision(real_index, real_data) -> None:
    idx, sets = real_index
    t = pq.read_table(real_data / "openwebmath.parquet", columns=["text", "metadata"])
    meta = [json.loads(m) for m in t["metadata"].to_pylist()]
    out = _stage(idx).process(t.select(["text"]))
    dropped = [r is not None for r in out["drop_reason"].to_pylist()]
    texts = t["text"].to_pylist()
    ds = [{"hendrycks_math": "math"}.get(m.get("dataset"), m.get("dataset")) for m in meta]
    is_test = [m.get("split") == "test" and d in ("gsm8k", "math") for m, d in zip(meta, ds)]
    assert sum(is_test) == 1319 + 5000
    # recall: every document built from a test item long enough to match (>= 8 words) is dropped
    long_enough = [tt and len(_ref_tokens(x)) >= 8 for tt, x in zip(is_test, texts)]
    missed = [i for i, (le, d) in enumerate(zip(long_enough, dropped)) if le and not d]
    assert not missed, [meta[i] for i in missed[:5]]
    # ... with the right benchmark
    ev = out["decont_eval"].to_pylist()
    assert all(ev[i] == ds[i] for i in range(len(ds)) if is_test[i] and dropped[i])
    # precision: any other dropped document shares a 13-gram with a test item, by a plain reference check
    ref: set[tuple[str, ...]] = set()
    for s in sets:
        for x in s.texts:
            ref |= _ref_ngrams(x)
    extra = [i for i, d in enumerate(dropped) if d and not is_test[i]]
    for i in extra:
        assert _ref_ngrams(texts[i]) & ref, meta[i]
    kinds = sorted((meta[i].get("dataset"), meta[i].get("split")) for i in extra)
    assert 5 <= len(extra) <= 30 and set(kinds) == {("gsm8k", "train")}, kinds  # about a dozen train problems
    # the reference finds those and one arXiv paper, whose only shared 13-gram is numbers ("1 1 1 ... 1"): the
    # stage does not index n-grams without a word (curate.decont.MIN_WORDY)
    ref_hit = [i for i, x in enumerate(texts) if not is_test[i] and _ref_ngrams(x) & ref]
    skipped = [i for i in ref_hit if not dropped[i]]
    assert [meta[i].get("source") for i in skipped] == ["arxiv"]
    assert all(not any(re.search(r"[^\W\d_]{2}", w) for g in _ref_ngrams(texts[i]) & ref for w in g)
               for i in skipped)


@pytest.mark.parametrize(("name", "col"), [("wikipedia", "text"), ("gutenberg", "text"), ("refinedweb", "content"),
                                           ("thestack", "content"), ("culturax", "text")])
def test_real_other_sources_lose_nothing(real_index, real_data, name, col) -> None:
    idx, _ = real_index
    t = pq.read_table(real_data / f"{name}.parquet", columns=[col]).rename_columns(["text"])
    out = _stage(idx).process(t)
    assert out["drop_reason"].null_count == t.num_rows


def test_real_planted_cases_in_a_book(real_index, real_data) -> None:
    idx, sets = real_index
    book = pq.read_table(real_data / "gutenberg.parquet", columns=["text"])["text"][3].as_py()
    para = book[len(book) // 2: len(book) // 2 + 3000]
    cut = para.rfind(" ", 0, 1500)
    gsm = sets[0]
    q = gsm.texts[100]  # question + answer of one GSM8K test item
    verbatim = para[:cut] + " " + q + " " + para[cut:]
    shouted = para[:cut] + " " + re.sub(r"[,.?!$]", " ; ", q.upper()) + " " + para[cut:]
    nums = re.findall(r"\d+", q)
    assert nums
    edited = para[:cut] + " " + re.sub(r"\d+", lambda m: str(int(m.group()) + 7), q, count=2) + " " + para[cut:]
    # a near miss: 12 consecutive words of the item's question, between book words
    w = re.findall(r"\w+", q)
    near = para[:cut] + " " + " ".join(w[1:13]) + " " + para[cut:]
    assert not (_ref_ngrams(near) & _ref_ngrams(q))
    assert _ref_ngrams(edited) & _ref_ngrams(q)
    out = _stage(idx).process(pa.table({"text": [verbatim, shouted, edited, near, para]}))
    assert out["drop_reason"].to_pylist() == ["contaminated:gsm8k"] * 3 + [None, None]
    assert out["decont_item"].to_pylist()[:3] == [gsm.ids[100]] * 3


def test_hf_zstd_and_text_eval_inputs(tmp_path, monkeypatch) -> None:
    import zstandard

    root = tmp_path / "mirror"
    d = root / "org" / "bench" / "data"
    d.mkdir(parents=True)
    pq.write_table(pa.table({"question": ["Pick one"], "choices": [ITEM_B.split(" in ")], "idx": [5]}),
                   d / "train-00000-of-00001.parquet")
    monkeypatch.setenv("CURATE_HF_MIRROR", str(root))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    hf = D.read_eval_set("h", EvalSetConfig(paths=["hf://datasets/org/bench"], fields=["question", "choices"],
                                            id_field="idx"), ["hf://datasets/org/bench"])
    assert hf.texts == ["Pick one\n" + ITEM_B.replace(" in ", "\n")] and hf.ids == ["5"]
    z = tmp_path / "e.jsonl.zst"
    z.write_bytes(zstandard.ZstdCompressor().compress((json.dumps({"q": ITEM_A}) + "\n").encode()))
    zs = D.read_eval_set("z", EvalSetConfig(paths=[str(z)], fields=["q"]), [str(z)])
    assert zs.texts == [ITEM_A] and zs.ids == ["e.jsonl.zst:1"]
    txt = tmp_path / "passage.txt"
    txt.write_text(ITEM_A)
    ts = D.read_eval_set("t", EvalSetConfig(paths=[str(txt)]), [str(txt)])
    assert ts.texts == [ITEM_A] and ts.ids == ["passage.txt"]
    idx = D.build_index([hf, zs, ts])
    out = _stage(idx).process(pa.table({"text": ["pick one: " + ITEM_B.replace(" in ", ", "), ITEM_A]}))
    assert out["decont_eval"].to_pylist() == ["h", "z"]  # ties go to the first eval set in recipe order
