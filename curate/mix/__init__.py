"""The mixer as a package: the pure core, the mix's Ray tasks and their driver, and the documents table.

- :mod:`curate.mix.core`: token targets per member, token-exact selection, chunking, the interleaving sort and
  its window bound, achieved shares (numpy only; no files, no Ray).
- :mod:`curate.mix.task`: ``mix``, the driver of the mix's Ray tasks (kept tables in, order files, ``selected``
  and the plan out), and its helpers (member assignment, balance values).
- :mod:`curate.mix.prepare`: ``prepare_partition`` (one task per partition) and the validation carve task.
- :mod:`curate.mix.select`: ``select_leaf`` (one task per cell x hash range: token-exact selection, the leaf's
  stream file) and ``write_selected`` (one task per partition).
- :mod:`curate.mix.interleave`: ``write_orders``, the leaf streams interleaved into the shard order files in bounded
  key windows (exactly ``core.interleave``'s order, one Ray task per window and per shard).
- :mod:`curate.mix.documents`: ``write_documents``, the final status of every input record of a partition.
- :mod:`curate.mix.writer`: ``write_shard``, one Ray task per shard: the order file in bounded tables, every
  format of ``shards.format``, lineage and the shard's manifest entry.

Callers import from here or the submodules.
"""

from curate.mix.core import (
    MemberPlan,
    MixPlan,
    ShortfallError,
    achieved_shares,
    chunk_documents,
    default_window,
    interleave,
    member_seed,
    plan_member_targets,
    select_documents,
    select_sequences,
    trim_selection,
    window_deviation_bound,
    window_max_deviation,
)
from curate.mix.documents import write_documents
from curate.mix.task import BALANCE_DROP, KEPT_COLUMNS, assign_members, balance_values, mix

__all__ = [
    "BALANCE_DROP", "KEPT_COLUMNS", "MemberPlan", "MixPlan", "ShortfallError", "achieved_shares", "assign_members",
    "balance_values", "chunk_documents", "default_window", "interleave", "member_seed", "mix", "plan_member_targets",
    "select_documents", "select_sequences", "trim_selection", "window_deviation_bound", "window_max_deviation", "write_documents",
]
