"""The ``quality`` stage: score every document with heuristic (and optionally fastText) rules, drop failures.

A source asks for it with ``quality:`` in the recipe: a preset name, a list of names, or a mapping
``{preset: {override: value}}``. Presets are YAML files ``filters/quality/<name>.yaml``::

    version: gopher_v1
    rules:                       # order = priority of the drop reason
      gopher_word_count: {min: 50, max: 100000}
      ...
    options: {stop_words: {...}}

A rule fails a document when its score is below ``min`` or above ``max``; a NaN score (rule not applicable,
e.g. a stop-word list for another language) never fails. The special preset ``fasttext`` takes
``{model: path, threshold: 0.5, label: __label__hq}`` and scores the probability of ``label``
(:mod:`curate.quality.fasttext_clf`).

Overrides (``sources.<name>.quality.<preset>.<key>``): a rule name with a number (replaces the rule's only
bound; a rule with both bounds needs ``{min: .., max: ..}``), a mapping ``{min, max}`` (either or both) or
null (no bounds: score only); an option name with a value of the option's type; or one of the preset's
``aliases``, datatrove's parameter names (``min_doc_words: 100``, ``line_punct_thr: 0.1``), with a number or
null. Anything else is a ``RecipeError`` that lists the valid keys. ``curate.pipeline`` builds the stage of every
source when the recipe is loaded, so all of this fails before any worker starts.

Columns added (schema):

================ ================ ===========================================================================
column           type             meaning
================ ================ ===========================================================================
``q_<rule>``     float64 / int64  the rule's score (counts are int64), null when not applicable; kept so that
                                  users can re-threshold without recomputing
``quality_fail`` list<string>     every failing rule, in preset order
``drop_reason``  string           ``quality:<first failing rule>`` or null (an earlier stage's reason is kept)
================ ================ ===========================================================================

Work is vectorized per batch (see :mod:`curate.quality.heuristics`); a batch is cut into slices of at most
``max_batch_chars`` characters so that batches of whole books stay within memory (the flat token table costs
about 50 bytes per token).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate import presets
from curate.errors import RecipeError
from curate.quality import heuristics as H
from curate.quality.fasttext_clf import POSITIVE_LABEL, FastTextScorer
from curate.schema import DROP_REASON
from curate.stages.base import Stage, set_column, with_drop_reason

if TYPE_CHECKING:
    from curate.recipe import Recipe, SourceConfig

FASTTEXT = "fasttext"
FASTTEXT_KEYS = ("model", "threshold", "label")
QUALITY_FAIL = "quality_fail"
#: Options that take one of a few strings.
CHOICES = {"dup_ngram_counting": ("union", "greedy")}
#: Default slice size of :meth:`QualityStage.process`, in characters (~1.6 GB of token arrays at most).
MAX_BATCH_CHARS = 32_000_000


@dataclass
class Rule:
    """One rule of a preset: its name (score column ``q_<name>``) and bounds (None = unbounded)."""

    name: str
    min: float | None = None
    max: float | None = None

    def fails(self, score: np.ndarray) -> np.ndarray:
        """Bool array: the score is outside the bounds (NaN never fails)."""
        bad = np.zeros(score.shape, dtype=bool)
        with np.errstate(invalid="ignore"):
            if self.min is not None:
                bad |= score < self.min
            if self.max is not None:
                bad |= score > self.max
        return bad

    def to_dict(self) -> dict[str, float | None]:
        return {"min": self.min, "max": self.max}


@dataclass
class QualityPreset:
    """A loaded quality preset: ordered rules, options, and the YAML file it came from."""

    name: str
    version: str
    rules: list[Rule]
    options: dict[str, Any] = field(default_factory=dict)
    file: str = ""
    #: override names taken from datatrove's filter parameters -> ``["rule.min" | "rule.max", ...]``
    aliases: dict[str, list[str]] = field(default_factory=dict)

    @property
    def families(self) -> list[str]:
        """Scorer families needed by the rules (:data:`curate.quality.heuristics.FAMILIES`), in rule order."""
        out: list[str] = []
        for r in self.rules:
            if r.name == FASTTEXT:
                fam = FASTTEXT
            else:
                fam = H.RULE_FAMILY[r.name]
            if fam not in out:
                out.append(fam)
        return out


# ---------------------------------------------------------------------------- loading presets
def preset_file(name: str) -> Path:
    """Path of ``filters/quality/<name>.yaml``."""
    return presets.filters_dir() / "quality" / f"{name}.yaml"


def _bound(value: Any, *, where: str, file: str | None = None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        msg = f"a threshold must be a number or null, got {value!r}"
        raise RecipeError(msg, path=where, recipe_file=file)
    return float(value)


def load_quality_preset(name: str) -> QualityPreset:
    """Load and validate ``filters/quality/<name>.yaml``.

    Raises
    ------
    RecipeError
        the file is missing, not valid YAML, names an unknown rule or option, or has a bad threshold; the
        error names the file and the key (``rules.gopher_word_count.min``).
    """
    p = preset_file(name)
    if not p.is_file():
        known = presets.preset_names("quality")
        msg = f"unknown quality preset {name!r}; must be one of {known + [FASTTEXT]}"
        raise RecipeError(msg)
    data = presets.read_yaml(p)
    f = str(p)
    if not isinstance(data, dict) or not isinstance(data.get("rules"), dict) or not data["rules"]:
        msg = "a quality preset needs a non-empty `rules:` mapping"
        raise RecipeError(msg, path="rules", recipe_file=f)
    extra = set(data) - {"version", "rules", "options", "aliases"}
    if extra:
        msg = f"unknown key(s) {sorted(extra)}; valid keys are ['aliases', 'options', 'rules', 'version']"
        raise RecipeError(msg, path=sorted(extra)[0], recipe_file=f)
    rules = []
    for rname, spec in data["rules"].items():
        if rname not in H.RULE_FAMILY:
            msg = f"unknown rule {rname!r}; known rules: {sorted(H.RULE_FAMILY)}"
            raise RecipeError(msg, path=f"rules.{rname}", recipe_file=f)
        spec = spec or {}
        if not isinstance(spec, dict) or set(spec) - {"min", "max"}:
            msg = f"a rule is a mapping with `min` and/or `max`, got {spec!r}"
            raise RecipeError(msg, path=f"rules.{rname}", recipe_file=f)
        rules.append(Rule(rname, _bound(spec.get("min"), where=f"rules.{rname}.min", file=f),
                          _bound(spec.get("max"), where=f"rules.{rname}.max", file=f)))
    preset = QualityPreset(name=name, version=str(data.get("version", name)), rules=rules, file=f)
    defaults = _option_defaults(preset)
    opts = data.get("options") or {}
    if not isinstance(opts, dict):
        msg = "`options` must be a mapping"
        raise RecipeError(msg, path="options", recipe_file=f)
    for k, v in opts.items():
        if k not in defaults:
            msg = f"unknown option {k!r}; options of this preset's rules: {sorted(defaults)}"
            raise RecipeError(msg, path=f"options.{k}", recipe_file=f)
        _check_option(k, v, defaults[k], where=f"options.{k}", file=f)
    preset.options = {**copy.deepcopy(defaults), **opts}
    preset.aliases = _load_aliases(data.get("aliases") or {}, preset, file=f)
    return preset


def _load_aliases(raw: Any, preset: QualityPreset, *, file: str) -> dict[str, list[str]]:
    if not isinstance(raw, dict):
        msg = "`aliases` must map a name to `rule.min`/`rule.max` (or a list of them)"
        raise RecipeError(msg, path="aliases", recipe_file=file)
    rules = {r.name for r in preset.rules}
    out: dict[str, list[str]] = {}
    for alias, targets in raw.items():
        targets = [targets] if isinstance(targets, str) else targets
        for t in targets or []:
            rule, _, bound = str(t).rpartition(".")
            if rule not in rules or bound not in ("min", "max"):
                msg = f"alias target {t!r} must be `<rule of this preset>.min` or `.max`"
                raise RecipeError(msg, path=f"aliases.{alias}", recipe_file=file)
        if alias in rules or alias in preset.options:
            msg = f"alias {alias!r} shadows a rule or option of the same name"
            raise RecipeError(msg, path=f"aliases.{alias}", recipe_file=file)
        out[alias] = list(targets)
    return out


def _option_defaults(preset: QualityPreset) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for fam in preset.families:
        out.update(H.FAMILIES[fam].options)
    return out


def _check_option(key: str, value: Any, default: Any, *, where: str, file: str | None = None) -> None:
    def bad(expect: str) -> None:
        shown = repr(value)
        msg = f"option `{key}` must be {expect}, got {shown[:200] + ' ...' if len(shown) > 200 else shown}"
        raise RecipeError(msg, path=where, recipe_file=file)

    if isinstance(default, bool):
        if not isinstance(value, bool):
            bad("true or false")
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            bad("a number")
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            bad("an integer")
    elif isinstance(default, str):
        if not isinstance(value, str):
            bad("a string")
    elif isinstance(default, list):
        if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
            bad("a list of strings")
    elif key == "stop_words":
        if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, list) and all(isinstance(w, str) for w in v)
                for k, v in value.items()):
            bad("a mapping of language code to a list of words")
        for lg, ws in value.items():
            for i, w in enumerate(ws):
                why = H.check_stop_word(w)
                if why:
                    msg = f"stop word {why}; use single words"
                    raise RecipeError(msg, path=f"{where}.{lg}[{i}]", recipe_file=file)
    if key in CHOICES and value not in CHOICES[key]:
        bad(f"one of {sorted(CHOICES[key])}")
    if key == "vendor_pattern" and value:
        import polars as pl

        try:
            pl.Series([""]).str.contains(value)
        except Exception as e:  # noqa: BLE001 - polars raises ComputeError subclasses for bad patterns
            msg = f"option `vendor_pattern` is not a valid regular expression: {e}"
            raise RecipeError(msg, path=where, recipe_file=file) from None


def apply_overrides(preset: QualityPreset, overrides: dict[str, Any], *, yaml_path: str) -> QualityPreset:
    """Return a copy of ``preset`` with recipe overrides applied (see the module docstring).

    Raises
    ------
    RecipeError
        naming ``<yaml_path>.<key>`` for an unknown key or a bad value, and listing the valid keys.
    """
    out = copy.deepcopy(preset)
    by_name = {r.name: r for r in out.rules}
    valid = list(by_name) + sorted(out.options) + sorted(out.aliases)
    for key, value in (overrides or {}).items():
        where = f"{yaml_path}.{key}"
        if key in out.aliases:
            v = _bound(value, where=where)
            for target in out.aliases[key]:
                rule, _, bound = target.rpartition(".")
                setattr(by_name[rule], bound, v)
        elif key in by_name:
            r = by_name[key]
            if value is None or value is False:
                r.min = r.max = None
            elif isinstance(value, dict):
                extra = set(value) - {"min", "max"}
                if extra:
                    msg = f"a rule override takes `min` and/or `max`, got {sorted(extra)}"
                    raise RecipeError(msg, path=f"{where}.{sorted(extra)[0]}")
                if "min" in value:
                    r.min = _bound(value["min"], where=f"{where}.min")
                if "max" in value:
                    r.max = _bound(value["max"], where=f"{where}.max")
            else:
                v = _bound(value, where=where)
                if r.min is not None and r.max is not None:
                    msg = f"rule `{key}` has both bounds (min {r.min:g}, max {r.max:g}); give {{min: .., max: ..}}"
                    raise RecipeError(msg, path=where)
                if r.max is not None:
                    r.max = v
                else:
                    r.min = v
        elif key in out.options:
            _check_option(key, value, H.FAMILIES[_family_of_option(out, key)].options[key], where=where)
            out.options[key] = copy.deepcopy(value)
        else:
            msg = f"unknown override key {key!r}; valid keys for preset `{preset.name}`: {valid}"
            raise RecipeError(msg, path=where)
    return out


def _family_of_option(preset: QualityPreset, key: str) -> str:
    return next(f for f in preset.families if key in H.FAMILIES[f].options)


def fasttext_preset(spec: dict[str, Any], *, yaml_path: str, recipe: Recipe | None,
                    check_paths: bool = False) -> tuple[QualityPreset, FastTextScorer]:
    """Build the ``fasttext`` pseudo-preset (one rule, ``fasttext``, bounded below by ``threshold``).

    With ``check_paths`` the model file must exist (the recipe is being loaded on the driver).
    """
    for key in spec:
        if key not in FASTTEXT_KEYS:
            msg = f"unknown key {key!r}; valid keys for `fasttext`: {list(FASTTEXT_KEYS)}"
            raise RecipeError(msg, path=f"{yaml_path}.{key}")
    if not spec.get("model"):
        msg = "the fasttext quality scorer needs `model: path/to/model.bin`"
        raise RecipeError(msg, path=f"{yaml_path}.model")
    model = str(spec["model"])
    model = recipe.resolve_path(model) if recipe is not None else model
    if check_paths and not Path(model).is_file():
        msg = f"quality model not found: {model}"
        raise RecipeError(msg, path=f"{yaml_path}.model")
    threshold = _bound(spec.get("threshold", 0.5), where=f"{yaml_path}.threshold")
    label = spec.get("label", POSITIVE_LABEL)
    if not isinstance(label, str) or not label:
        msg = f"`label` must be a fastText label such as {POSITIVE_LABEL!r}, got {label!r}"
        raise RecipeError(msg, path=f"{yaml_path}.label")
    preset = QualityPreset(name=FASTTEXT, version="fasttext_v1", rules=[Rule(FASTTEXT, min=threshold)],
                    options={"model": model, "label": label})
    return preset, FastTextScorer(model, label=label)


# ---------------------------------------------------------------------------- the stage
class QualityStage(Stage):
    """Score documents with the rules of one or more presets and drop those failing any rule.

    Parameters
    ----------
    presets : list of QualityPreset
        loaded presets (with overrides applied), in priority order.
    scorer : FastTextScorer, optional
        the model of the ``fasttext`` preset, when one of ``presets`` is it.
    source : str
        recipe source name, for messages.
    max_batch_chars : int
        slice size in characters (see the module docstring).
    """

    name: ClassVar[str] = "quality"
    required_columns: ClassVar[tuple[str, ...]] = ("text",)

    def __init__(self, presets: list[QualityPreset], *, scorer: FastTextScorer | None = None, source: str = "",
                 max_batch_chars: int = MAX_BATCH_CHARS) -> None:
        if not presets:
            msg = "QualityStage needs at least one preset"
            raise ValueError(msg)
        names = [r.name for p in presets for r in p.rules]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            msg = f"rule(s) {dup} appear in more than one preset of this source; list each preset once"
            raise RecipeError(msg, path=f"sources.{source}.quality" if source else "quality")
        if any(p.name == FASTTEXT for p in presets) and scorer is None:
            msg = "the fasttext preset needs its FastTextScorer"
            raise ValueError(msg)
        self.presets = presets
        self.scorer = scorer
        self.source = source
        self.max_batch_chars = max_batch_chars
        self.rules: list[Rule] = [r for p in presets for r in p.rules]
        self._int_rules = {r for f in H.FAMILIES.values() for r in f.int_rules}
        #: instance-level: the columns depend on the presets
        self.added_columns = (*(f"q_{r.name}" for r in self.rules), QUALITY_FAIL)

    @classmethod
    def from_source(cls, source_name: str, src: SourceConfig, recipe: Recipe | None = None, *,
                    check_paths: bool = False) -> QualityStage | None:
        """Build the stage for one recipe source; None when it has no ``quality:`` key.

        Raises
        ------
        RecipeError
            naming ``sources.<name>.quality.<preset>[.<key>]`` for an unknown preset or override key.
        """
        spec = src.quality_spec()
        if not spec:
            return None
        presets: list[QualityPreset] = []
        scorer = None
        for pname, overrides in spec.items():
            yp = f"sources.{source_name}.quality.{pname}"
            if pname == FASTTEXT:
                preset, scorer = fasttext_preset(overrides, yaml_path=yp, recipe=recipe, check_paths=check_paths)
            else:
                try:
                    loaded = load_quality_preset(pname)
                except RecipeError as e:
                    if e.path is not None or e.recipe_file is not None:
                        raise  # an error inside the preset file names that file
                    raise RecipeError(e.message, path=f"sources.{source_name}.quality") from None
                preset = apply_overrides(loaded, overrides, yaml_path=yp)
            presets.append(preset)
        return cls(presets, scorer=scorer, source=source_name)

    def setup(self) -> None:
        """Load the fastText model, when the ``fasttext`` preset is used."""
        if self.scorer is not None:
            self.scorer.load()

    def describe(self) -> dict[str, Any]:
        """The presets with their effective rules and options."""
        return {
            "stage": self.name,
            "source": self.source,
            "presets": {p.name: {"version": p.version, "rules": {r.name: r.to_dict() for r in p.rules},
                                 "options": p.options} for p in self.presets},
        }

    # ------------------------------------------------------------------ scoring
    def score(self, table: pa.Table) -> dict[str, np.ndarray]:
        """Scores of every rule for ``table`` (float64 arrays, NaN = not applicable), without thresholds."""
        out: dict[str, np.ndarray] = {}
        starts = _slices(table, self.max_batch_chars)
        parts = [self._score_slice(table.slice(a, b - a)) for a, b in zip(starts[:-1], starts[1:])]
        for r in self.rules:
            out[r.name] = np.concatenate([p[r.name] for p in parts]) if parts else np.zeros(0)
        return out

    def _score_slice(self, table: pa.Table) -> dict[str, np.ndarray]:
        batch = H.DocBatch(table["text"], lang=_col(table, "lang"), meta=_col(table, "meta"))
        out: dict[str, np.ndarray] = {}
        for p in self.presets:
            for fam in p.families:
                if fam == FASTTEXT:
                    assert self.scorer is not None
                    out[FASTTEXT] = self.scorer.score(batch.text)
                    continue
                f = H.FAMILIES[fam]
                scores = f.score(batch, {k: p.options[k] for k in f.options})
                out.update({r.name: scores[r.name] for r in p.rules if r.name in scores})
        return out

    def process(self, table: pa.Table) -> pa.Table:
        """Add ``q_<rule>`` scores, ``quality_fail`` and ``drop_reason``; same rows, same order."""
        self.check_columns(table, where=f"source {self.source!r}" if self.source else "")
        scores = self.score(table)
        n = table.num_rows
        fails = np.zeros((n, len(self.rules)), dtype=bool)
        for j, r in enumerate(self.rules):
            s = scores[r.name]
            fails[:, j] = r.fails(s)
            if r.name in self._int_rules:
                col = pa.array(np.nan_to_num(s).astype(np.int64), type=pa.int64())
            else:
                col = pa.array(s, type=pa.float64(), from_pandas=True)  # NaN -> null
            table = set_column(table, f"q_{r.name}", col)
        names = pa.array([r.name for r in self.rules], type=pa.string())
        rows, cols = np.nonzero(fails)  # row-major: rows ascending, rules in preset order
        offsets = np.zeros(n + 1, dtype=np.int32)
        np.cumsum(np.bincount(rows, minlength=n), out=offsets[1:])
        fail_lists = pa.ListArray.from_arrays(pa.array(offsets), names.take(pa.array(cols, type=pa.int64())))
        table = set_column(table, QUALITY_FAIL, fail_lists)
        any_fail = fails.any(axis=1)
        first = np.argmax(fails, axis=1)
        reasons = pa.array(np.where(any_fail, np.array([f"quality:{r.name}" for r in self.rules] or [""],
                                                       dtype=object)[first], None), type=pa.string())
        if DROP_REASON in table.column_names:
            reasons = pc.coalesce(table[DROP_REASON].combine_chunks().cast(pa.string()), reasons)
        return with_drop_reason(table, reasons)

    @staticmethod
    def fail_counts(table: pa.Table) -> dict[str, int]:
        """How many documents of a processed table fail each rule (all failures, not only the first).

        Keys are rule names (``gopher_word_count``); the runner adds them as counters.
        """
        if QUALITY_FAIL not in table.column_names or table.num_rows == 0:
            return {}
        flat = pc.list_flatten(table[QUALITY_FAIL])
        if len(flat) == 0:
            return {}
        vc = pc.value_counts(flat)
        return {v["values"].as_py(): v["counts"].as_py() for v in vc}


def _col(table: pa.Table, name: str) -> pa.ChunkedArray | None:
    return table[name] if name in table.column_names else None


def _slices(table: pa.Table, max_chars: int) -> list[int]:
    """Row offsets cutting ``table`` into slices of at most ``max_chars`` characters (>= 1 row each)."""
    n = table.num_rows
    if n == 0:
        return [0]
    if "nbytes" in table.column_names:
        size = np.asarray(table["nbytes"].to_numpy(zero_copy_only=False), dtype=np.int64)
    else:
        size = np.asarray(pc.binary_length(table["text"].cast(pa.large_binary())).to_numpy(zero_copy_only=False),
                          dtype=np.int64)
    size = np.nan_to_num(size.astype(np.float64)).astype(np.int64)
    cuts = [0]
    cum = np.cumsum(size)
    while cuts[-1] < n:
        start = cuts[-1]
        base = cum[start - 1] if start else 0
        end = int(np.searchsorted(cum, base + max_chars, side="right"))
        cuts.append(max(end, start + 1) if end < n else n)
    return cuts
