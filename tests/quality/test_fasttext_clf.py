"""fastText quality classifier: training (fasttext package) and scoring (fasttext or fasttext-predict)."""

from __future__ import annotations

import json
import pickle

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.errors import InputError, SchemaError
from curate.io_utils import temp_path
from curate.quality import fasttext_clf as F

fasttext = pytest.importorskip("fasttext", reason="the fasttext module is not installed")
needs_training = pytest.mark.skipif(not hasattr(fasttext, "train_supervised"),
                                    reason="installed `fasttext` is fasttext-predict (no training)")

SUBJECTS = ["The committee", "A new study", "The museum", "Local historians", "The report", "Researchers"]
VERBS = ["describes", "explains", "examines", "documents", "reviews", "summarizes"]
TOPICS = ["the history of the river", "how photosynthesis works in plants", "the early printing presses",
          "the ecology of the northern forest", "the growth of the old harbor", "changes in rural education"]
SPAM = ["click here", "buy now", "cheap pills", "free shipping", "best price", "hot deals", "win a prize",
        "login", "register", "cart", "checkout", "sign up today"]
GOOD = [f"{s} {v} {t} in careful detail." for s in SUBJECTS for v in VERBS for t in TOPICS]
BAD = [" ".join(SPAM[(i * k) % len(SPAM)] for k in range(1, 6)) for i in range(1, 100)]
SMALL = {"epoch": 30, "lr": 0.05, "dim": 16, "bucket": 50_000}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("ft")
    pq.write_table(pa.table({"body": GOOD}), d / "pos.parquet")
    with open(d / "neg.jsonl", "w", encoding="utf-8") as f:
        for t in BAD:
            f.write(json.dumps({"body": t}) + "\n")
    return d


@pytest.fixture(scope="module")
def model(corpus):
    if not hasattr(fasttext, "train_supervised"):
        pytest.skip("installed `fasttext` is fasttext-predict (no training)")
    out = corpus / "model" / "model.bin"
    summary = F.train([str(corpus / "pos.parquet")], [str(corpus / "neg.jsonl")], str(out), text_column="body",
                      **SMALL)
    return out, summary


@needs_training
def test_train_writes_model_atomically(model):
    path, summary = model
    assert path.is_file() and not temp_path(path).exists()
    assert [p.name for p in path.parent.iterdir()] == ["model.bin"]  # no training file left behind
    assert summary["n_positive"] == len(GOOD) and summary["n_negative"] == len(BAD)
    assert summary["labels"] == [F.POSITIVE_LABEL, F.NEGATIVE_LABEL]
    assert summary["train_precision"] == 1.0


@needs_training
def test_scores_separate_the_classes(model):
    path, _ = model
    scorer = F.FastTextScorer(str(path))
    s = scorer.score(pa.array(["A new report examines the ecology of the river.\nIt explains the history in detail.",
                               "buy now cheap pills\nfree shipping click here", None]))
    assert s[0] > 0.8 and s[1] < 0.2 and 0.0 <= s[2] <= 1.0
    # the loaded model does not travel with the scorer: workers load their own copy
    clone = pickle.loads(pickle.dumps(scorer))
    assert clone._model is None and clone.score(pa.array(["buy cheap pills now"]))[0] == pytest.approx(
        scorer.score(pa.array(["buy cheap pills now"]))[0])


@needs_training
def test_cli_train(corpus, tmp_path, capsys):
    out = tmp_path / "cli.bin"
    rc = F.cli_train(["--positive", str(corpus / "pos.parquet"), "--negative", str(corpus / "neg.jsonl"), "-o",
                      str(out), "--text-column", "body", "--epoch", "5", "--lr", "0.05", "--dim", "8",
                      "--bucket", "50000"])
    assert rc == 0 and out.is_file()
    assert json.loads(capsys.readouterr().out)["model"] == str(out)


def test_read_errors_name_the_file(corpus, tmp_path):
    with pytest.raises(SchemaError, match=r"pos\.parquet.*no column `text`"):
        F.read_texts(corpus / "pos.parquet")
    with pytest.raises(SchemaError, match=r"neg\.jsonl.*no field `text`"):
        F.read_texts(corpus / "neg.jsonl")
    (tmp_path / "x.csv").write_text("a\n")
    with pytest.raises(InputError, match=r"x\.csv.*unknown file type"):
        F.read_texts(tmp_path / "x.csv")


def test_one_line():
    assert F.one_line(pa.array(["a\nb\r\n\tc  ", None])).to_pylist() == ["a b c", None]


def test_scorer_errors(model, tmp_path):
    with pytest.raises(InputError, match="model not found"):
        F.FastTextScorer(str(tmp_path / "missing.bin")).load()
    path, _ = model
    with pytest.raises(InputError, match="__label__good"):
        F.FastTextScorer(str(path), label="__label__good").load()
