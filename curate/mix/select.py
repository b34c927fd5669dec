"""The mix's selection: one Ray task per leaf (cell x hash range), then one per partition for ``selected``.

A *cell* is one stream of the interleaving: a mixture member, or one value of a balanced member (members in
``recipe.members()`` order, a balanced member's values sorted). The driver (:func:`curate.mix.task.mix`)
selects a cell in ``R >= 1`` hash ranges of its uids (``R = ceil(cell documents / ROWS_PER_TASK)``): range r
takes the prepared rows whose ``bucket`` (:func:`curate.mix.prepare.uid_bucket`) lies in its contiguous run,
gets its share of the cell's target in proportion to its supply (largest remainder) and is selected and trimmed
to it exactly as a whole cell is with ``R = 1`` (then seed and rows are those of a cell, so the result is the
single-task mixer's, byte for byte). A *leaf* is (cell, range). :func:`select_leaf` writes::

    work/mix/streams/c<CCCCC>_r<RRRRR>.parquet   the leaf's sequences in selection order: the order file's
                                                 columns without ``seq`` (uid, pid, tok_offset, ntok, tokens,
                                                 epoch, chunk, source, subset, group, doc_id, lang, license,
                                                 trimmed [, balance])
    work/mix/counts/c<CCCCC>_r<RRRRR>.parquet    uid, selected: times each uid was written (selected ones only)

and returns its leaf entry ``{cell, range, group, sequences, tokens, longest}``, its trims and its mix ledger
(downsampled, out, tokens_out, sequences). :func:`write_selected` (one task per partition) then writes::

    work/mix/selected/<key>.parquet   uid, selected (times written), reason (why never: not_in_mixture,
                                      balance_min_tokens, downsampled, validation, validation_near_duplicate;
                                      null when written); every kept document of the partition after dedup,
                                      sorted by uid

Memory: a select task holds its leaf (at most about ``ROWS_PER_TASK`` documents), a ``selected`` task one
partition and the counts of its uid window.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from curate.io_utils import atomic_write_parquet
from curate.mix.interleave import LEAF_ROW_GROUP
from curate.layout import RunLayout
from curate.ledger import Ledger
from curate.pipeline import recipe_from_payload

#: Most documents one select task reads (a cell with more is split into hash ranges). Measured peak RSS of one
#: select task on a synthetic leaf (lognormal lengths, ~36-byte doc_ids, max_doc_tokens 512, half the supply
#: selected): 572 MB at 1M rows, 917 MB at 2M, 1,695 MB at 4M (about 390 B per row: the Parquet read and the
#: uid sort hold the leaf twice). 1M keeps a select task near the size of a partition task, and with the 1,024
#: hash buckets of ``curate.mix.prepare`` it holds for cells of up to 1e9 documents (at 2M, ``bench scale``'s
#: select task grew 1.35x from 1M to 4M documents: the 1M corpus's one leaf was half the cap). Each range trims
#: at most one sequence to its exact target. Read by the driver at run time (tests lower it).
ROWS_PER_TASK = 1_000_000

#: Why a kept document of a balanced member was never selected: its value's supply is under ``min_tokens``.
BALANCE_DROP = "balance_min_tokens"

#: the stream file's columns (the order file's without ``seq``; ``balance`` is appended when the recipe balances)
STREAM_COLUMNS = ["uid", "pid", "tok_offset", "ntok", "tokens", "epoch", "chunk", "source", "subset", "group",
                  "doc_id", "lang", "license", "trimmed"]


def leaf_filter(member: int, value: str | None, lo: int, hi: int) -> ds.Expression:
    """The prepared rows of one leaf: its member, its balance value (null outside a balanced scope), its buckets."""
    f = (ds.field("member") == member) & (ds.field("bucket") >= lo) & (ds.field("bucket") < hi)
    return f & (ds.field("value").is_null() if value is None else ds.field("value") == value)


def read_leaf(run_dir: Path, pids: list[int], leaf: dict[str, Any]) -> pa.Table:
    """A leaf's prepared rows from every partition, without held-out documents, sorted by uid."""
    from curate.mix.prepare import read_prepared

    flt = leaf_filter(leaf["member"], leaf["value"], leaf["lo"], leaf["hi"])
    rows = read_prepared(run_dir, pids, filters=flt).sort_by("uid")
    held_p = RunLayout(run_dir).mix_held
    if held_p.exists():
        held = pq.read_table(held_p, columns=["uid"], filters=flt)
        if held.num_rows:
            rows = rows.filter(pc.invert(pc.is_in(rows["uid"], value_set=held["uid"])))
    return rows


def select_leaf(payload: dict[str, Any], run_dir: str, pids: list[int], leaf: dict[str, Any]) -> dict[str, Any]:
    """Select one leaf to its target; write its stream and counts files; return its entry, trims and ledger.

    ``leaf``: ``cell``, ``range``, ``key`` (member key), ``member`` (its index), ``value`` (balance value or None),
    ``lo``/``hi`` (its buckets), ``target``, ``seed``, ``max_epochs``, ``group`` (name), ``group_index``;
    ``drop``: the cell is a balance value under ``min_tokens``: its documents are recorded as dropped
    (``balance_min_tokens``) and nothing is selected (no stream file, no entry).
    """
    from curate.balance import refine_selection
    from curate.mix.core import chunk_documents, select_documents, trim_selection

    recipe = recipe_from_payload(payload)
    run_dir = Path(run_dir)
    layout = RunLayout(run_dir)
    rows = read_leaf(run_dir, pids, leaf)
    led = Ledger()
    if leaf.get("drop"):
        led.record_table("mix", rows, what="dropped", reason=BALANCE_DROP, tokens_col="tokens")
        return {"ledger": led.to_list()}
    value, target, max_ep = leaf["value"], int(leaf["target"]), leaf["max_epochs"]
    ntok_all = rows["ntok"].to_numpy()
    # the unit of selection is the sequence: a whole document, or a chunk of one with max_doc_tokens, so long
    # books do not make a member's share coarser than the tolerance
    d_i, c_i, c_len = chunk_documents(ntok_all, recipe.max_doc_tokens)
    c_len = np.asarray(c_len, dtype=np.int64)
    if target <= 0 or len(d_i) == 0:
        sel, ep, take = np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.int64)
    else:
        sel, ep = select_documents(c_len + 1, target, seed=int(leaf["seed"]), max_epochs=max_ep)
        if value is not None:  # a value's tolerance is a share of its scope: close the last gap too
            sel, ep = refine_selection(c_len + 1, sel, ep, target)
        if recipe.trim_to_target:  # whole sequences miss by up to one: trim the closing one (core.trim_selection)
            sel, ep, take = trim_selection(c_len + 1, sel, ep, target)
        else:
            take = c_len[sel] + 1
    take = np.asarray(take, dtype=np.int64)
    seq_rows = np.asarray(d_i, dtype=np.int64)[sel]
    chunk = np.asarray(c_i, dtype=np.int64)[sel]
    c_start = chunk * (recipe.max_doc_tokens or 0)
    cut = take < c_len[sel] + 1
    n = len(seq_rows)
    sr = pa.array(seq_rows, pa.int64())
    uid = rows["uid"].to_numpy()[seq_rows]
    stream = pa.table({
        "uid": pa.array(uid, pa.int64()), "pid": pa.array(uid >> 32, pa.int64()),
        "tok_offset": pa.array(rows["tok_offset"].to_numpy()[seq_rows] + c_start, pa.int64()),
        "ntok": pa.array(take - 1, pa.int64()), "tokens": pa.array(take, pa.int64()),
        "epoch": pa.array(np.asarray(ep).astype(np.int32)), "chunk": pa.array(chunk.astype(np.int32)),
        "source": rows["source"].take(sr), "subset": rows["subset"].take(sr),
        "group": pa.repeat(pa.scalar(leaf["group"], pa.string()), n),
        "doc_id": rows["doc_id"].take(sr), "lang": rows["lang"].take(sr), "license": rows["license"].take(sr),
        "trimmed": pa.array(cut, pa.bool_())})
    if recipe.balance_scopes():  # the value each sequence was balanced under (null outside a balanced scope)
        stream = stream.append_column("balance", pa.repeat(pa.scalar(value, pa.string()), n))
    # small row groups: a shard's order task reads only the rows of each leaf it needs (curate.mix.interleave)
    atomic_write_parquet(layout.mix_stream(leaf["cell"], leaf["range"]), stream.combine_chunks(),
                         row_group_size=LEAF_ROW_GROUP)
    sel_uid, sel_n = np.unique(uid, return_counts=True)
    atomic_write_parquet(layout.mix_counts(leaf["cell"], leaf["range"]),
                         pa.table({"uid": pa.array(sel_uid, pa.int64()), "selected": pa.array(sel_n, pa.int64())}))
    trims = [{"member": leaf["key"], "balance": value, "uid": int(uid[at]),
              "doc_id": rows["doc_id"][int(seq_rows[at])].as_py(), "chunk": int(chunk[at]), "tokens": int(take[at]),
              "of": int(c_len[sel[at]] + 1)} for at in np.flatnonzero(cut)]  # at most one
    # mix ledger: documents never selected were downsampled away
    chosen = np.zeros(rows.num_rows, dtype=bool)
    chosen[seq_rows] = True
    counted = rows.select(["source", "subset", "nbytes", "tokens"])  # the ledger's columns only: no copy of doc_id
    del rows, stream
    led.record_table("mix", counted.filter(pa.array(~chosen)), what="dropped", reason="downsampled",
                     tokens_col="tokens")
    led.record_table("mix", counted.filter(pa.array(chosen)), what="out")
    for (s, b), (tok_sum, n_seq) in _tokens_by_source(counted, seq_rows, take).items():
        c = led.get("mix", s, b)
        c.tokens_out = (c.tokens_out or 0) + tok_sum
        c.counters["sequences"] = c.counters.get("sequences", 0) + n_seq
    entry = {"cell": leaf["cell"], "range": leaf["range"], "group": leaf["group_index"], "sequences": n,
             "tokens": int(take.sum()), "longest": int(take.max()) if n else 0}
    return {"leaf": entry, "trims": trims, "ledger": led.to_list()}


def _tokens_by_source(rows: pa.Table, seq_rows: np.ndarray,
                      seq_tokens: np.ndarray) -> dict[tuple[str, str], tuple[int, int]]:
    """Tokens and sequences written per (source, subset) for the sequences drawn from ``rows``."""
    if seq_rows.size == 0:
        return {}
    t = pa.table({"source": rows["source"].take(pa.array(seq_rows)), "subset": rows["subset"].take(pa.array(seq_rows)),
                  "t": pa.array(seq_tokens)})
    g = t.group_by(["source", "subset"]).aggregate([("t", "sum"), ("t", "count")])
    return {(r["source"], r["subset"]): (int(r["t_sum"]), int(r["t_count"])) for r in g.to_pylist()}


def write_selected(run_dir: str, pid: int, leaves: list[tuple[int, int]], dropped: list[tuple[int, str]]) -> int:
    """Partition ``pid``'s ``work/mix/selected/<key>.parquet``: every kept document's times written, or why never.

    ``leaves``: every (cell, range) selected (their counts files are read for this partition's uid window only);
    ``dropped``: the (member index, value) cells under a balance ``min_tokens``. Returns the rows written.
    """
    run_dir = Path(run_dir)
    layout = RunLayout(run_dir)
    prep = pq.read_table(layout.mix_prepared(pid), columns=["uid", "member", "value"]).sort_by("uid")
    window = (ds.field("uid") >= (pid << 32)) & (ds.field("uid") < ((pid + 1) << 32))
    counts = [pq.read_table(layout.mix_counts(c, r), filters=window) for c, r in leaves]
    counts = [t for t in counts if t.num_rows]
    uid = prep["uid"].to_numpy()
    times = np.zeros(uid.size, np.int64)
    if counts:
        ct = pa.concat_tables(counts)  # a uid lies in one leaf only (one cell, one range)
        times[np.searchsorted(uid, ct["uid"].to_numpy())] = ct["selected"].to_numpy()
    member = prep["member"].to_numpy()
    bal = np.zeros(uid.size, dtype=bool)
    for m, v in dropped:
        bal |= (member == m) & pc.fill_null(pc.equal(prep["value"], v), False).to_numpy(zero_copy_only=False)
    why = np.where(member < 0, "not_in_mixture", np.where(bal, BALANCE_DROP, np.where(times == 0, "downsampled", "")))
    reason = pc.if_else(pa.array(why == ""), pa.nulls(len(why), pa.string()), pa.array(why.astype(str), pa.string()))
    if layout.mix_held.exists():  # the validation documents and their near-duplicates
        held = pq.read_table(layout.mix_held, columns=["uid", "reason"], filters=window)
        if held.num_rows:
            at = pc.index_in(prep["uid"], value_set=held["uid"])
            reason = pc.if_else(pc.is_valid(at), held["reason"].take(at), reason)
    selected = pa.table({"uid": prep["uid"], "selected": pa.array(times), "reason": reason})
    atomic_write_parquet(layout.mix_selected(pid), selected)
    return selected.num_rows
