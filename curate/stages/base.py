"""The stage contract.

A stage is a small class with one job over an Arrow table of documents (``curate.schema.DOC_SCHEMA``
plus columns earlier stages added):

- ``name`` is its ledger name, the name of its entry in the stage registry (``curate.pipeline``: ``license``,
  ``langid``, ``quality``, ``decontaminate``, and any a plugin registers).
- ``required_columns`` are checked by the processor before every batch.
- ``added_columns`` are the columns ``process`` adds or overwrites (besides ``drop_reason``); the processor checks
  at every boundary that they are set and that the rows are the same, in the same order
  (``curate.pipeline.check_stage_output``).
- ``setup()`` loads models; it runs once per Ray worker process (its partition processor), never in
  ``__init__``, so a stage pickles with only its configuration.
- ``process(table)`` returns the same rows in the same order with ``added_columns`` set and a
  ``drop_reason`` string column: null keeps the row, a short code (``license:GPL-3.0-only``,
  ``lang_score_low``, ``gopher_mean_word_length``) drops it. A stage never removes rows itself:
  the runner splits kept and dropped rows and records every drop in the ledger and in
  ``documents/``, so nothing is lost silently.

A stage built from a recipe source entry is constructed with ``Stage.from_source(name, source_cfg, recipe)``
and returns ``None`` when the recipe does not ask for it (no ``quality:`` key, no quality stage).
"""

from __future__ import annotations

from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc

from curate.errors import SchemaError
from curate.schema import DROP_REASON


class Stage:
    """Base class of per-document stages. Subclasses set the class attributes and implement ``process``."""

    name: ClassVar[str] = ""
    required_columns: ClassVar[tuple[str, ...]] = ("text",)
    added_columns: ClassVar[tuple[str, ...]] = ()
    #: the processor tokenizes the documents this stage drops, so the ledger counts their tokens (few rows)
    count_dropped_tokens: ClassVar[bool] = False

    def setup(self) -> None:
        """Load models or other heavy state. Called once per worker before the first ``process``."""

    def process(self, table: pa.Table) -> pa.Table:  # pragma: no cover - abstract
        """Return ``table`` with ``added_columns`` and ``drop_reason`` set; same rows, same order."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """JSON-able description of the configured stage; ``curate plan`` shows it (``curate.pipeline.describe``)."""
        return {"stage": self.name}

    # ------------------------------------------------------------------
    def check_columns(self, table: pa.Table, *, where: str = "") -> None:
        """Raise ``SchemaError`` when ``table`` lacks a required column."""
        missing = [c for c in self.required_columns if c not in table.column_names]
        if missing:
            msg = f"stage `{self.name}` needs column(s) {missing}, got {table.column_names}"
            raise SchemaError(msg, file=where or "<pipeline>")


def count_values(table: pa.Table, col: str) -> dict[str, int]:
    """Count the non-null values of ``col`` (e.g. the eval set a document matched) with one Arrow aggregation."""
    if table.num_rows == 0 or col not in table.column_names:
        return {}
    vc = pc.value_counts(table[col].combine_chunks().drop_null())
    return {v["values"].as_py(): v["counts"].as_py() for v in vc}


def with_drop_reason(table: pa.Table, reasons: pa.Array | list[str | None]) -> pa.Table:
    """Set (or replace) the ``drop_reason`` column of ``table``."""
    arr = reasons if isinstance(reasons, (pa.Array, pa.ChunkedArray)) else pa.array(reasons, type=pa.string())
    if DROP_REASON in table.column_names:
        return table.set_column(table.schema.get_field_index(DROP_REASON), DROP_REASON, arr)
    return table.append_column(DROP_REASON, arr)


def set_column(table: pa.Table, name: str, values: pa.Array | pa.ChunkedArray) -> pa.Table:
    """Add ``name`` to ``table``, replacing it if present."""
    if name in table.column_names:
        return table.set_column(table.schema.get_field_index(name), name, values)
    return table.append_column(name, values)
