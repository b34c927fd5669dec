"""A plugin stage, added through the stage registry alone (issue 15): ``exclaim`` counts exclamation marks.

It adds ``exclaims`` (int64, the number of ``!`` in the text) and drops a document with three or more as
``exclaim:too_loud``; its registry counters add ``loud`` (documents with at least one ``!``). It runs only on
sources whose name starts with ``loud`` (a registry entry decides where its stage runs), so that the other tests
of a session, in which this module may be imported, see no new stage.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.pipeline import StageEntry, register_stage
from curate.stages.base import Stage, set_column, with_drop_reason

LIMIT = 3


class ExclaimStage(Stage):
    name: ClassVar[str] = "exclaim"
    required_columns: ClassVar[tuple[str, ...]] = ("text",)
    added_columns: ClassVar[tuple[str, ...]] = ("exclaims",)

    def process(self, table: pa.Table) -> pa.Table:
        n = pc.count_substring(table["text"], "!").cast(pa.int64())
        loud = np.asarray(pc.greater_equal(n, LIMIT).to_numpy(zero_copy_only=False))
        reasons = pa.array(np.where(loud, "exclaim:too_loud", None), pa.string())
        return with_drop_reason(set_column(table, "exclaims", n), reasons)


def _build(source, cfg, recipe, ctx):
    return ExclaimStage() if source.startswith("loud") else None


def _counters(stage, table: pa.Table) -> dict[str, int]:
    return {"loud": int(pc.sum(pc.greater(table["exclaims"], 0)).as_py() or 0)}


ENTRY = register_stage(StageEntry("exclaim", None, _build, _counters), before="decontaminate")
