"""The ``decontaminate`` stage: drop (or mark) documents that share an n-gram with a benchmark's test items.

Runs after ``quality`` and before dedup, on every source of a recipe with a ``decontaminate:`` block unless the
source says ``decontaminate: false``. Matching is exact hashed word n-grams against an index of the eval sets
(:mod:`curate.decont`); the index is built once per run on the driver and reaches every partition worker through
the Ray object store, so a stage holds a reference to it, never its own copy of the eval files.

Columns added (schema):

================= ======= ===================================================================================
column            type    meaning
================= ======= ===================================================================================
``decont_eval``   string  the eval set the document shares most n-grams with; null when it shares none
``decont_item``   string  id of that set's item with most shared n-grams (``id_field``, else ``file:line``)
``decont_ngrams`` int32   distinct n-grams shared with that set (a short item's whole-sequence match counts 1)
``drop_reason``   string  ``contaminated:<eval>`` with ``mode: drop`` (the default); null with ``annotate``
================= ======= ===================================================================================

The ledger counts drops per reason, i.e. per eval set, under each source, and ``matched:<eval>`` counters (also
in ``annotate`` mode); the worker tokenizes the dropped documents (few) so the audit can report the tokens each
benchmark removed from each source.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pyarrow as pa

from curate.stages.base import Stage, set_column, with_drop_reason

if TYPE_CHECKING:
    from curate.decont import DecontIndex
    from curate.recipe import Recipe, SourceConfig

REASON_PREFIX = "contaminated:"


class DecontaminateStage(Stage):
    """Match each document against the eval index; drop or annotate the matches.

    Parameters
    ----------
    index
        The built index, or None to build it in :meth:`setup` from ``recipe`` (direct use outside a run; a run
        passes the index it put in the object store).
    mode
        ``drop`` or ``annotate``.
    recipe
        Needed only when ``index`` is None.
    """

    name: ClassVar[str] = "decontaminate"
    required_columns: ClassVar[tuple[str, ...]] = ("text",)
    added_columns: ClassVar[tuple[str, ...]] = ("decont_eval", "decont_item", "decont_ngrams")
    #: the worker tokenizes this stage's dropped rows so the ledger carries their tokens
    count_dropped_tokens: ClassVar[bool] = True

    def __init__(self, index: DecontIndex | None = None, *, mode: str = "drop", recipe: Recipe | None = None,
                 source: str = "") -> None:
        self.index = index
        self.mode = mode
        self.recipe = recipe
        self.source = source

    @classmethod
    def from_source(cls, source_name: str, src: SourceConfig, recipe: Recipe | None = None, *,
                    index: DecontIndex | None = None) -> DecontaminateStage | None:
        """The stage for one source; None without a ``decontaminate:`` block or with ``decontaminate: false``."""
        if recipe is None or recipe.decontaminate is None or not src.decontaminate:
            return None
        return cls(index, mode=recipe.decontaminate.mode, recipe=recipe, source=source_name)

    def setup(self) -> None:
        if self.index is None:
            from curate.decont import recipe_index

            assert self.recipe is not None, "a DecontaminateStage without an index needs the recipe"
            self.index = recipe_index(self.recipe)

    def process(self, table: pa.Table) -> pa.Table:
        """Set ``decont_*`` and ``drop_reason``; same rows, same order."""
        from curate.decont import match

        self.setup()
        idx = self.index
        m = match(idx, table["text"])
        hit = m.eval >= 0
        names = np.array(idx.evals + [""], dtype=object)
        ids = np.array(idx.item_ids + [""], dtype=object)
        ev = pa.array(names[np.where(hit, m.eval, -1)], pa.string(), mask=~hit)
        item = pa.array(ids[np.where(hit, m.item, -1)], pa.string(), mask=~hit)
        table = set_column(table, "decont_eval", ev)
        table = set_column(table, "decont_item", item)
        table = set_column(table, "decont_ngrams", pa.array(m.ngrams.astype(np.int32)))
        if self.mode == "drop":
            reasons = np.array([REASON_PREFIX + n for n in idx.evals] + [""], dtype=object)
            reason = pa.array(reasons[np.where(hit, m.eval, -1)], pa.string(), mask=~hit)
        else:
            reason = pa.nulls(table.num_rows, pa.string())
        return with_drop_reason(table, reason)

    def match_counts(self, table: pa.Table) -> dict[str, int]:
        """Documents of a processed batch matched per eval set (ledger counters ``matched:<eval>``)."""
        from curate.stages.base import count_values

        return count_values(table, "decont_eval")

    def describe(self) -> dict[str, Any]:
        return {"stage": self.name, "source": self.source, "mode": self.mode,
                "evals": list(self.index.evals) if self.index is not None else None}
