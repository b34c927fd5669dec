"""The per-document pipeline as data: an ordered registry of stages, and recipe loading through it.

Each :class:`StageEntry` names one stage of the pipeline:

============== ===================================================================================================
field          meaning
============== ===================================================================================================
``name``       the ledger name (a key of ``audit --json``'s ``funnel``); also the stage's ``Stage.name``
``recipe_key`` the key of a source entry that configures it (``sources.<name>.<recipe_key>``), for the docs
``build``      ``build(source, cfg, recipe, ctx) -> Stage | None``: the configured stage of one source, or None
               when the source does not run it; raises :class:`~curate.errors.RecipeError` naming the YAML path
``counters``   optional ``counters(stage, processed_table) -> {name: n}``: extra ledger counters of a batch
============== ===================================================================================================

:func:`stage_names` is the ledger's stage order: ``ingest``, the registered stages in order, ``dedup``, ``mix``.
A plugin (a module named in the recipe's ``plugins:``) adds a stage with :func:`register_stage`; its module runs in
the driver and in every worker before any stage is built, so the stage is in the ledger, the funnel and the audit
like a built-in one.

Loading a recipe is :func:`load_recipe` / :func:`parse_recipe`: the config layer (:mod:`curate.recipe`: the
pydantic models and the checks across keys) and then :func:`validate`, which builds every stage of every source
once. Validation *is* construction: a bad preset, override, licence id or language code fails exactly where the
stage would fail, so each check is written once, in its stage. A worker rebuilds the recipe from the payload of
:func:`payload_for` without validating again.
"""

from __future__ import annotations

import contextlib
import importlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from curate.errors import RecipeError, StageContractError
from curate.recipe import Recipe, SourceConfig, load_config, parse_config
from curate.schema import DROP_REASON

if TYPE_CHECKING:
    import pyarrow as pa

    from curate.stages.base import Stage


@dataclass(frozen=True)
class BuildContext:
    """What a stage's ``build`` gets besides the recipe: whether to check files, and objects the runner built."""

    check_paths: bool = True
    #: the decontamination index the runner built once and shipped through the object store (None: build in setup)
    decont_index: Any = None


@dataclass(frozen=True)
class StageEntry:
    """One stage of the registry (see the module docstring)."""

    name: str
    recipe_key: str | None
    build: Callable[[str, SourceConfig, Recipe, BuildContext], Stage | None]
    counters: Callable[[Stage, pa.Table], dict[str, int]] | None = None


# ---------------------------------------------------------------------------- the built-in stages
def _license(source: str, cfg: SourceConfig, recipe: Recipe, ctx: BuildContext) -> Stage:
    """Always runs: with no ``license:`` policy it only annotates the normalized license for lineage."""
    from curate.stages.license import LicenseStage

    return LicenseStage.from_source(source, cfg, recipe) or LicenseStage.annotator(source, cfg)


def _langid(source: str, cfg: SourceConfig, recipe: Recipe, ctx: BuildContext) -> Stage | None:
    """Annotates every non-code document; filters only with a ``langid:`` policy."""
    from curate.stages.langid import LangIdStage

    return LangIdStage.from_source(source, cfg, recipe)


def _quality(source: str, cfg: SourceConfig, recipe: Recipe, ctx: BuildContext) -> Stage | None:
    """Only when the source names presets."""
    from curate.stages.quality import QualityStage

    return QualityStage.from_source(source, cfg, recipe, check_paths=ctx.check_paths)


def _quality_counters(stage: Stage, table: pa.Table) -> dict[str, int]:
    """``fail:<rule>``: documents failing each rule (all failures, not only the first)."""
    return {f"fail:{k}": v for k, v in stage.fail_counts(table).items()}  # type: ignore[attr-defined]


def _decontaminate(source: str, cfg: SourceConfig, recipe: Recipe, ctx: BuildContext) -> Stage | None:
    """Every source of a recipe with a ``decontaminate:`` block, unless the source sets ``decontaminate: false``."""
    from curate.stages.decontaminate import DecontaminateStage

    return DecontaminateStage.from_source(source, cfg, recipe, index=ctx.decont_index)


def _decontaminate_counters(stage: Stage, table: pa.Table) -> dict[str, int]:
    """``matched:<eval>``: documents matched per eval set (in ``annotate`` mode too)."""
    return {f"matched:{k}": v for k, v in stage.match_counts(table).items()}  # type: ignore[attr-defined]


_REGISTRY: list[StageEntry] = [
    StageEntry("license", "license", _license),
    StageEntry("langid", "langid", _langid),
    StageEntry("quality", "quality", _quality, _quality_counters),
    StageEntry("decontaminate", "decontaminate", _decontaminate, _decontaminate_counters),
]

#: Ledger stages around the per-document ones: reading, and the two global steps.
FIRST, GLOBAL = ("ingest",), ("dedup", "mix")


def register_stage(entry: StageEntry, *, before: str | None = None) -> StageEntry:
    """Add ``entry`` to the pipeline, before the stage named ``before`` (default: last). Idempotent by name."""
    reserved = {*FIRST, *GLOBAL}
    if entry.name in reserved or not entry.name.isidentifier():
        msg = f"a stage name is an identifier other than {sorted(reserved)}, got {entry.name!r}"
        raise ValueError(msg)
    _REGISTRY[:] = [e for e in _REGISTRY if e.name != entry.name]
    names = [e.name for e in _REGISTRY]
    if before is not None and before not in names:
        msg = f"unknown stage {before!r}; registered stages are {names}"
        raise ValueError(msg)
    _REGISTRY.insert(names.index(before) if before is not None else len(_REGISTRY), entry)
    return entry


def stage_entries() -> tuple[StageEntry, ...]:
    """The registered per-document stages, in pipeline order."""
    return tuple(_REGISTRY)


def stage_names() -> tuple[str, ...]:
    """Ledger stage names in pipeline order (``audit --json`` uses these keys in ``funnel``)."""
    return (*FIRST, *(e.name for e in _REGISTRY), *GLOBAL)


def build_stages(recipe: Recipe, source: str, *, ctx: BuildContext | None = None) -> list[tuple[StageEntry, Stage]]:
    """The stages ``source`` runs, in pipeline order, each with its registry entry (not set up)."""
    ctx = ctx or BuildContext()
    cfg = recipe.sources[source]
    out = []
    for entry in _REGISTRY:
        st = entry.build(source, cfg, recipe, ctx)
        if st is None:
            continue
        if st.name != entry.name:
            msg = f"stage registered as {entry.name!r} built a stage named {st.name!r}; the names must agree"
            raise TypeError(msg)
        out.append((entry, st))
    return out


@contextlib.contextmanager
def _in_file(recipe_file: str | None) -> Iterator[None]:
    """Fill in the recipe file of a ``RecipeError`` raised by a stage, a plugin or a reader check."""
    try:
        yield
    except RecipeError as e:
        if e.recipe_file or not recipe_file:
            raise
        raise RecipeError(e.message, path=e.path, recipe_file=recipe_file) from None


def describe(recipe: Recipe) -> dict[str, list[dict[str, Any]]]:
    """``{source: [Stage.describe() of each stage it runs, in order]}``: what ``curate plan`` shows of the pipeline."""
    return {source: [st.describe() for _, st in build_stages(recipe, source, ctx=BuildContext(check_paths=False))]
            for source in recipe.sources}


def validate(recipe: Recipe, *, recipe_file: str | None = None, check_paths: bool = True) -> None:
    """Build every stage of every source once; a problem is a ``RecipeError`` naming the YAML path."""
    ctx = BuildContext(check_paths=check_paths)
    with _in_file(recipe_file):
        for source in recipe.sources:
            build_stages(recipe, source, ctx=ctx)


def check_stage_output(st: Stage, uids: pa.ChunkedArray, out: pa.Table, *, where: str) -> None:
    """The stage contract at a boundary: same rows in the same order, its declared columns and ``drop_reason``.

    Raises ``StageContractError`` naming the stage and the file, instead of a ledger imbalance at the end of the run.
    """
    problem = None
    if out.num_rows != len(uids):
        problem = f"returned {out.num_rows} rows for {len(uids)} (a stage never removes or adds rows)"
    elif "uid" not in out.column_names or not out["uid"].equals(uids):
        problem = "changed the rows or their order (a stage returns the same rows, in the same order)"
    else:
        missing = [c for c in (*st.added_columns, DROP_REASON) if c not in out.column_names]
        if missing:
            problem = f"did not set its declared column(s) {missing}"
    if problem:
        raise StageContractError(f"stage `{st.name}` {problem} in {where or '<pipeline>'}")


# ---------------------------------------------------------------------------- loading recipes
def parse_recipe(data: Any, *, base_dir: Path, recipe_file: str | None = None, check_paths: bool = True) -> Recipe:
    """Validate recipe data (already parsed YAML): the config checks, the plugins, then every stage."""
    recipe = parse_config(data, base_dir=base_dir, recipe_file=recipe_file, check_paths=check_paths)
    with _in_file(recipe_file):
        import_plugins(recipe)
    validate(recipe, recipe_file=recipe_file, check_paths=check_paths)
    return recipe


def load_recipe(path: str | Path, *, check_paths: bool = True) -> Recipe:
    """Load and validate a recipe file. Raises :class:`RecipeError` naming the YAML path."""
    recipe = load_config(path, check_paths=check_paths)
    with _in_file(str(path)):
        import_plugins(recipe)
    validate(recipe, recipe_file=str(path), check_paths=check_paths)
    return recipe


def import_plugins(recipe: Recipe) -> None:
    """Import the recipe's ``plugins`` (module names only; the recipe itself never holds code).

    A plugin runs at import time in the driver and in every worker, before any stage, e.g. to register a
    reader with ``curate.sources.base.register``, a shard writer with ``curate.shard_formats.register`` or a
    stage with :func:`register_stage`. Then every source's ``format`` and every ``shards.format`` must name a
    registered reader and writer.
    """
    for i, mod in enumerate(recipe.plugins):
        try:
            importlib.import_module(mod)
        except ImportError as e:
            msg = f"cannot import plugin {mod!r}: {e}; install it in the environment of the driver and workers"
            raise RecipeError(msg, path=f"plugins[{i}]") from None
    from curate import shard_formats
    from curate.sources import check_formats

    check_formats(recipe)
    shard_formats.check_formats(recipe)


def payload_for(recipe: Recipe) -> dict[str, Any]:
    """What a worker needs to rebuild the recipe: the validated data and the folder paths resolve against."""
    return {"recipe": json.loads(recipe.model_dump_json()), "base_dir": str(recipe.base_dir)}


def recipe_from_payload(payload: dict[str, Any]) -> Recipe:
    """The recipe of :func:`payload_for`, with its plugins imported; validated already, so not again."""
    recipe = parse_config(payload["recipe"], base_dir=Path(payload["base_dir"]), check_paths=False)
    import_plugins(recipe)
    return recipe


def load_run_recipe(run_dir: str | Path) -> Recipe:
    """The recipe a run directory was written with (its ``recipe.json``), plugins imported."""
    from curate.io_utils import read_json
    from curate.layout import RunLayout

    return recipe_from_payload(read_json(RunLayout(run_dir).recipe_json))
