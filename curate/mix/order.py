"""The mix's interleaving: the leaf streams in, the shard order files out (``write_orders``, one Ray task).

For now one task, bounded by nothing: it reads every leaf stream file (``work/mix/streams/``), merges each
cell's leaves into the cell's stream (each leaf spread over the whole cell, :func:`_merge_leaves`), calls
:func:`curate.mix.core.interleave` over the cells exactly as the single-task mixer did, and cuts the order into
``work/mix/shard_NNNNN.order.parquet`` at ``shards.max_tokens``. A chunked, bounded equivalent
(``curate.mix.interleave``) replaces its body.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from curate.io_utils import atomic_write_parquet
from curate.layout import RunLayout
from curate.pipeline import recipe_from_payload


def _merge_leaves(leaves: list[pa.Table]) -> pa.Table:
    """A cell's stream from its leaves' streams: each leaf spread over the whole cell at its share of the tokens.

    The leaves' virtual midpoints (``curate.mix.core._midpoint_keys``), sorted stably (ties to the lower range):
    a leaf keeps its selection order, so a document's repeats stay as far apart as its leaf has them, over the
    whole cell instead of one stretch of it. One leaf: its stream as is (the single-task mixer's cell).
    """
    from curate.mix.core import _midpoint_keys

    if len(leaves) == 1:
        return leaves[0]
    every = pa.concat_tables(leaves)
    lens = [t["tokens"].to_numpy() for t in leaves]
    total = sum(int(x.sum()) for x in lens)
    keys = [(_midpoint_keys(x, int(x.sum()) / total) if x.size else np.zeros(0)) for x in lens]
    return every.take(pa.array(np.argsort(np.concatenate(keys), kind="stable")))


def write_orders(payload: dict[str, Any], run_dir: str, leaves: list[dict[str, Any]]) -> dict[str, Any]:
    """Interleave the leaves' streams and write the shard order files; return the plan's shard fields.

    ``leaves``: the leaf entries of :func:`curate.mix.select.select_leaf` ordered by (cell, range): ``cell``,
    ``range``, ``group`` (index in ``recipe.mixture`` order), ``sequences``, ``tokens``, ``longest``. Returns
    ``{"n_shards", "tokens", "sequences", "shard_tokens"}`` (plan.json's fields of the same names).
    """
    import pyarrow.parquet as pq

    from curate.mix.core import interleave

    recipe = recipe_from_payload(payload)
    layout = RunLayout(Path(run_dir))
    cells: dict[int, list[pa.Table]] = {}
    groups: dict[int, int] = {}
    for lf in leaves:
        cells.setdefault(lf["cell"], []).append(pq.read_table(layout.mix_stream(lf["cell"], lf["range"])))
        groups[lf["cell"]] = lf["group"]
    order_cells = sorted(cells)
    tables = [_merge_leaves(cells[c]) for c in order_cells]
    streams = [t["tokens"].to_numpy() for t in tables]
    order = np.asarray(interleave(streams, [groups[c] for c in order_cells], seed=recipe.seed))
    m_idx, pos = order[:, 0].astype(np.int64), order[:, 1].astype(np.int64)
    starts = np.concatenate([[0], np.cumsum([t.num_rows for t in tables])]).astype(np.int64)
    every = pa.concat_tables(tables) if tables else None
    at = starts[m_idx] + pos
    order_t = every.take(pa.array(at)).combine_chunks() if every is not None else None
    if order_t is None:
        from curate.schema import ORDER_SCHEMA

        order_t = ORDER_SCHEMA.empty_table().drop_columns(["seq"])
    order_t = order_t.add_column(0, "seq", pa.array(np.arange(order_t.num_rows, dtype=np.int64)))

    # ---- cut into shards
    seq_tokens = order_t["tokens"].to_numpy()
    if recipe.shards.single_file or len(seq_tokens) == 0:
        bounds = [0, len(seq_tokens)]
    else:
        cum = np.cumsum(seq_tokens)
        bounds = [0]
        limit = recipe.shards.max_tokens
        base = 0
        while bounds[-1] < len(seq_tokens):
            # the largest prefix within max_tokens, at least one sequence
            j = int(np.searchsorted(cum, base + limit, side="right"))
            j = max(j, bounds[-1] + 1)
            bounds.append(j)
            base = int(cum[j - 1])
    for i in range(len(bounds) - 1):
        atomic_write_parquet(layout.order(i), order_t.slice(bounds[i], bounds[i + 1] - bounds[i]))
    return {"n_shards": len(bounds) - 1, "tokens": int(seq_tokens.sum()), "sequences": int(len(seq_tokens)),
            "shard_tokens": [int(seq_tokens[bounds[i]:bounds[i + 1]].sum()) for i in range(len(bounds) - 1)]}
