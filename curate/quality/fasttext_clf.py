"""DCLM-style fastText quality classifier: train on "good" vs "other" documents, score documents in a stage.

DCLM (Li et al. 2024, "DataComp-LM", Sec. 4.4) keeps web pages that a bigram fastText classifier, trained on
instruction-like positives against random web negatives, scores as positive. curate trains the same kind of
model from any Parquet or JSON-lines files (``train``, CLI ``curate quality train``) and scores with it in the
quality stage (preset ``fasttext``: ``{model: path, threshold: 0.5, label: __label__hq}``).

Training file format (fastText's): one document per line, ``__label__hq <text>`` or ``__label__lq <text>``,
with all whitespace runs of the text collapsed to one space (fastText reads one example per line). Input files:
``*.parquet`` or ``*.jsonl``/``*.json``/``*.jsonl.gz`` with a string column ``text_column``.

Two PyPI packages provide the module ``fasttext``: ``fasttext-predict`` (a core dependency of curate:
inference only, a small wheel with no numpy requirement) and ``fasttext`` (the ``train`` extra: training too).
They install the same files (``fasttext/`` and ``fasttext_pybind*.so``), so whichever was installed last is
the one imported. Both expose ``fasttext.load_model(path).predict(list_of_lines, k, threshold)`` returning
``(labels, probabilities)`` lists, the only call scoring uses, so scoring works with either. Training needs
``fasttext.train_supervised`` from the full package: ``pip install 'curate[train]'`` (and, if fasttext-predict
was installed after it, ``pip install --force-reinstall --no-deps 'fasttext>=0.9.3,<0.10'``).
Single-string ``predict`` of fasttext 0.9.3 calls ``np.array(..., copy=False)``, which numpy 2 rejects; the
list form used here does not.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.errors import InputError, SchemaError
from curate.io_utils import temp_path

POSITIVE_LABEL = "__label__hq"
NEGATIVE_LABEL = "__label__lq"
#: Times :func:`train` halves the learning rate and retries after fastText diverges ("Encountered NaN").
DIVERGENCE_RETRIES = 2


def _import_fasttext(*, training: bool) -> Any:
    try:
        import fasttext
    except ImportError:
        msg = "the fastText quality scorer needs the `fasttext` module: pip install fasttext-predict (scoring) or " \
              "pip install 'curate[train]' (training)"
        raise ImportError(msg) from None
    if training and not hasattr(fasttext, "train_supervised"):
        msg = ("the installed `fasttext` module is fasttext-predict (inference only); training needs the full "
               "package: pip install --force-reinstall --no-deps 'fasttext>=0.9.3,<0.10'  (or 'curate[train]')")
        raise ImportError(msg)
    return fasttext


def read_texts(path: str | os.PathLike, *, text_column: str = "text") -> pa.Array:
    """Read the ``text_column`` strings of a Parquet or JSON-lines file (nulls dropped).

    Raises
    ------
    InputError
        the file cannot be read or has an unknown extension.
    SchemaError
        the file has no column ``text_column``.
    """
    p = str(path)
    name = p.lower()
    try:
        if name.endswith(".parquet"):
            import pyarrow.parquet as pq

            schema = pq.read_schema(p)
            if text_column not in schema.names:
                msg = f"no column `{text_column}` (columns: {schema.names}); pass --text-column"
                raise SchemaError(msg, file=p, column=text_column)
            col = pq.read_table(p, columns=[text_column])[text_column]
        elif name.endswith((".jsonl", ".json", ".jsonl.gz", ".json.gz", ".ndjson")):
            import pyarrow.json as pj

            table = pj.read_json(p)
            if text_column not in table.column_names:
                msg = f"no field `{text_column}` (fields: {table.column_names}); pass --text-column"
                raise SchemaError(msg, file=p, column=text_column)
            col = table[text_column]
        else:
            msg = "unknown file type; give .parquet or .jsonl/.json(.gz) files"
            raise InputError(msg, file=p)
    except (OSError, pa.ArrowInvalid) as e:
        if isinstance(e, InputError):
            raise
        msg = f"cannot read: {e}"
        raise InputError(msg, file=p) from None
    if not pa.types.is_string(col.type) and not pa.types.is_large_string(col.type):
        msg = f"column `{text_column}` has type {col.type}, expected string"
        raise SchemaError(msg, file=p, column=text_column)
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    return col.filter(pc.is_valid(col))


def one_line(texts: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Collapse every whitespace run (newlines included) to one space and strip: fastText reads one line."""
    return pc.utf8_trim_whitespace(pc.replace_substring_regex(texts, r"\s+", " "))


def _train_worker(train_file: str, model_path: str, params: dict) -> tuple[bool, float | str]:
    """Train and save one model (runs in a spawned process); returns (True, precision@1) or (False, error)."""
    fasttext = _import_fasttext(training=True)
    try:
        model = fasttext.train_supervised(input=train_file, verbose=0, **params)
    except RuntimeError as e:
        return False, str(e)
    _, precision, _ = model.test(train_file)
    model.save_model(model_path)
    return True, float(precision)


def train(positive: list[str], negative: list[str], out: str, *, text_column: str = "text", epoch: int = 5,
          lr: float = 0.1, dim: int = 100, word_ngrams: int = 2, min_count: int = 1, bucket: int = 2_000_000,
          seed: int = 0, threads: int = 1, label: str = POSITIVE_LABEL,
          negative_label: str = NEGATIVE_LABEL) -> dict[str, Any]:
    """Train a binary fastText classifier and write it atomically to ``out`` (its :func:`curate.io_utils.temp_path`, then renamed).

    Parameters
    ----------
    positive, negative : list of str
        Parquet/JSON-lines files of high-quality and other documents.
    out : str
        path of the model file (``model.bin``).
    text_column : str
        column (field) holding the text.
    epoch, lr, dim, word_ngrams, min_count, bucket : int or float
        fastText ``train_supervised`` options (bigrams as in DCLM). The model file holds
        ``(vocabulary + bucket) * dim`` floats: fastText's default ``bucket`` of 2,000,000 with ``dim`` 100 makes
        an 800 MB ``model.bin``; lower ``bucket`` for small corpora.
    seed : int
        seed of the example shuffle and of fastText. fastText training is not bit-reproducible even on one
        thread (measured with fasttext 0.9.3: repeated runs on the same file give slightly different models),
        and on tiny corpora it now and then diverges at a learning rate that worked a moment before.
    threads : int
        fastText threads (more is faster but not reproducible).
    label, negative_label : str
        labels written for positive and negative examples.

    Returns
    -------
    dict
        ``model`` (path), ``n_positive``, ``n_negative``, ``labels``, ``train_precision`` (precision@1 on the
        training set), ``seconds`` and the fastText options used (``params.lr`` is the learning rate that
        trained the model: after a divergence, :data:`DIVERGENCE_RETRIES` times at most, it is halved).
    """
    _import_fasttext(training=True)  # fail early, with the install hint, before reading any data
    if not positive or not negative:
        msg = "training needs at least one --positive and one --negative file"
        raise ValueError(msg)
    t0 = time.perf_counter()
    pos = [one_line(read_texts(p, text_column=text_column)) for p in positive]
    neg = [one_line(read_texts(p, text_column=text_column)) for p in negative]
    def labelled(lab: str, a: pa.Array) -> pa.Array:
        a = a.cast(pa.large_string())
        return pc.binary_join_element_wise(pa.scalar(lab, pa.large_string()), a, pa.scalar(" ", pa.large_string()))

    pos_lines = [labelled(label, a) for a in pos]
    neg_lines = [labelled(negative_label, a) for a in neg]
    lines = pa.chunked_array(pos_lines + neg_lines, type=pa.large_string()).combine_chunks()
    n_pos, n_neg = sum(len(a) for a in pos), sum(len(a) for a in neg)
    if n_pos == 0 or n_neg == 0:
        msg = f"no documents read: {n_pos} positive, {n_neg} negative (check --text-column and the files)"
        raise ValueError(msg)
    lines = lines.take(pa.array(np.random.default_rng(seed).permutation(len(lines))))
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    params = {"epoch": epoch, "lr": lr, "dim": dim, "wordNgrams": word_ngrams, "minCount": min_count,
              "bucket": bucket, "seed": seed, "thread": threads}
    with tempfile.TemporaryDirectory(dir=out_path.parent, prefix=".fasttext-train-") as tmp:
        train_file = os.path.join(tmp, "train.txt")
        with open(train_file, "w", encoding="utf-8") as f:
            f.write("\n".join(lines.to_pylist()))
            f.write("\n")
        tmp_model = str(temp_path(out_path))
        # Train in a fresh process: fastText's C++ trainer shares the process with whatever the caller loaded
        # (Ray, BLAS, other native libraries), and in a long-lived test process we saw it report NaN on every
        # retry while the same call in a fresh process never did. A crash there also cannot take the caller down.
        ctx = multiprocessing.get_context("spawn")
        for attempt in range(DIVERGENCE_RETRIES + 1):
            with ctx.Pool(1) as pool:
                ok, precision = pool.apply(_train_worker, (train_file, tmp_model, params))
            if ok:
                break
            # fastText stops with "Encountered NaN" when training diverges; its authors' advice is a lower
            # learning rate (facebookresearch/fastText#638). Halve it and try again, and say so in the summary.
            if "NaN" not in precision or attempt == DIVERGENCE_RETRIES:
                msg = (f"fastText training diverged ({precision}) down to lr {params['lr']}; give a lower --lr "
                       "or more data")
                raise ValueError(msg)
            params["lr"] = params["lr"] / 2
        os.replace(tmp_model, out_path)
    return {
        "model": str(out_path),
        "n_positive": n_pos,
        "n_negative": n_neg,
        "labels": [label, negative_label],
        "train_precision": float(precision),
        "seconds": round(time.perf_counter() - t0, 3),
        "params": params,
    }


class FastTextScorer:
    """Probability of one label for each document, from a fastText model loaded once (in ``load``).

    Parameters
    ----------
    model : str
        path of the model file.
    label : str
        the label whose probability is the score (``__label__hq``).
    """

    def __init__(self, model: str, *, label: str = POSITIVE_LABEL) -> None:
        self.model_path = model
        self.label = label
        self._model: Any = None

    def __getstate__(self) -> dict[str, Any]:
        # the loaded model is not picklable; workers load their own copy in setup()
        return {"model_path": self.model_path, "label": self.label, "_model": None}

    def load(self) -> None:
        """Load the model (idempotent). Raises ``InputError`` when the file is missing or not a model."""
        if self._model is not None:
            return
        fasttext = _import_fasttext(training=False)
        if not os.path.isfile(self.model_path):
            msg = "fastText model not found; train one with `curate quality train` or fix `model:`"
            raise InputError(msg, file=self.model_path)
        try:
            self._model = fasttext.load_model(self.model_path)
        except ValueError as e:
            msg = f"not a fastText model: {e}"
            raise InputError(msg, file=self.model_path) from None
        labels = self._model.get_labels() if hasattr(self._model, "get_labels") else None
        if labels is not None and self.label not in labels:
            msg = f"label {self.label!r} is not one of the model's labels {labels}; fix `label:`"
            raise InputError(msg, file=self.model_path)

    def score(self, texts: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Probability of ``label`` per text (float64; 0 where fastText does not return the label)."""
        self.load()
        lines = one_line(pc.fill_null(texts, "")).to_pylist()
        labels, probs = self._model.predict(lines, k=-1, threshold=0.0)
        # fastText returns per-document label lists; picking one label is a cheap Python pass over them
        return np.array([_prob_of(ls, ps, self.label) for ls, ps in zip(labels, probs)], dtype=np.float64)


def _prob_of(labels: list[str], probs: list[float], label: str) -> float:
    for lb, p in zip(labels, probs):
        if lb == label:
            return float(min(1.0, max(0.0, p)))
    return 0.0


# ---------------------------------------------------------------------------- CLI
def build_parser(prog: str = "curate quality train") -> argparse.ArgumentParser:
    """Argument parser of ``curate quality train``."""
    ap = argparse.ArgumentParser(prog=prog, description="Train a fastText quality classifier (DCLM-style).")
    ap.add_argument("--positive", nargs="+", required=True, help="Parquet/JSONL files of high-quality documents")
    ap.add_argument("--negative", nargs="+", required=True, help="Parquet/JSONL files of other documents")
    ap.add_argument("-o", "--output", required=True, help="model file to write (model.bin)")
    ap.add_argument("--text-column", default="text")
    ap.add_argument("--epoch", type=int, default=5)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--dim", type=int, default=100)
    ap.add_argument("--word-ngrams", type=int, default=2)
    ap.add_argument("--min-count", type=int, default=1)
    ap.add_argument("--bucket", type=int, default=2_000_000, help="hash buckets of word n-grams (model size)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    return ap


def cli_train(argv: list[str] | None = None) -> int:
    """Entry point of ``curate quality train``: train, print the summary as JSON, return the exit code."""
    a = build_parser().parse_args(argv)
    summary = train(a.positive, a.negative, a.output, text_column=a.text_column, epoch=a.epoch, lr=a.lr,
                    dim=a.dim, word_ngrams=a.word_ngrams, min_count=a.min_count, bucket=a.bucket, seed=a.seed,
                    threads=a.threads)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(cli_train())
