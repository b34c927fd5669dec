"""The mix's per-partition step: one Ray task per partition turns its kept table into the rows selection reads.

``prepare_partition`` reads one partition's ``work/parts/<key>.kept.parquet`` (and the ``meta.*`` columns a
``balance:`` needs), drops its dedup losers, assigns every document its mixture member and balance value, and
writes::

    work/mix/prepared/<key>.parquet   uid, member (index into recipe.members(), -1: in no member), value (the
                                      balance value, null outside a balanced scope), bucket (RANGE_BUCKETS
                                      hash buckets of the uid: the select tasks' hash ranges are contiguous runs
                                      of them), ntok, tokens, tok_offset, nbytes, source, subset, doc_id, lang,
                                      license; sorted by (member, value, bucket, uid) in row groups of
                                      PREPARED_ROW_GROUP rows, so a select task reads its leaf with row-group
                                      filters

It returns what the driver needs, all small: the partition's dedup ledger and the mix ledger's ``in`` and
``not_in_mixture``, and its supply per (member, value, bucket): tokens and documents. Memory: one partition.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.io_utils import atomic_write_parquet
from curate.layout import RunLayout
from curate.ledger import Ledger
from curate.pipeline import recipe_from_payload
from curate.schema import KEPT_COLUMNS

#: Hash buckets of the uid (a power of two): a cell selected in R hash ranges takes R contiguous runs of them,
#: so R is at most this (with 4M rows per select task, cells of up to 4e9 documents)
RANGE_BUCKETS = 1024
#: Rows per row group of a prepared file: a select task's filtered read skips the groups of other leaves
PREPARED_ROW_GROUP = 65_536

#: the prepared file's columns after the kept ones it copies
PREPARED_COLUMNS = ["uid", "member", "value", "bucket", "ntok", "tokens", "tok_offset", "nbytes", "source", "subset",
                    "doc_id", "lang", "license"]


def splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finalizer of each value (uint64 in, uint64 out): a uid's position in hash order."""
    z = np.asarray(x).astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def uid_bucket(uid: np.ndarray) -> np.ndarray:
    """The hash bucket (``0 .. RANGE_BUCKETS - 1``) of each uid: the top bits of its splitmix64."""
    shift = np.uint64(64 - int(RANGE_BUCKETS).bit_length() + 1)
    return (splitmix64(uid) >> shift).astype(np.int32)


def member_keys(recipe) -> list[str]:
    """The member keys in ``recipe.members()`` order (the ``member`` column indexes this list)."""
    return [recipe.member_key(g, s, sub) for (g, s, sub, _sh) in recipe.members()]


def member_index(keys: list[str], doc_member: np.ndarray) -> np.ndarray:
    """Index of each document's member key in ``keys`` (int32; -1 for "", in no member), vectorized."""
    if len(doc_member) == 0:
        return np.zeros(0, np.int32)
    index = {k: i for i, k in enumerate(keys)}
    uniq, inv = np.unique(np.asarray(doc_member, dtype=str), return_inverse=True)
    return np.array([index.get(str(u), -1) for u in uniq], dtype=np.int32)[inv]


def prepare_partition(payload: dict[str, Any], run_dir: str, pid: int) -> dict[str, Any]:
    """Write partition ``pid``'s prepared rows; return its ledger (``to_list``) and its supply (:func:`supply_of`)."""
    from curate.dedup import has_removed, read_removed
    from curate.mix.members import assign_members, balance_values

    recipe = recipe_from_payload(payload)
    layout = RunLayout(Path(run_dir))
    scopes = recipe.balance_scopes()
    kept = pq.read_table(layout.part(pid).kept,
                         columns=list(KEPT_COLUMNS) + [f"meta.{k}" for k in recipe.balance_meta_keys()]).sort_by("uid")
    led = Ledger()
    led.record_table("dedup", kept, what="in", tokens_col="tokens")
    if recipe.dedup is not None and has_removed(layout.dedup_dir):
        removed = read_removed(layout.dedup_dir, pids=[pid], columns=["uid", "reason"])
        is_removed = pc.is_in(kept["uid"], value_set=removed["uid"])
        gone = kept.filter(is_removed).join(removed, "uid", join_type="left outer").sort_by("uid")
        led.record_table("dedup", gone, what="dropped", reason_col="reason", tokens_col="tokens")
        kept = kept.filter(pc.invert(is_removed))
    led.record_table("dedup", kept, what="out", tokens_col="tokens")

    keys = member_keys(recipe)
    doc_member = assign_members(recipe, kept)
    led.record_table("mix", kept, what="in", tokens_col="tokens")
    unmixed = kept.filter(pa.array(doc_member == ""))
    if unmixed.num_rows:
        led.record_table("mix", unmixed, what="dropped", reason="not_in_mixture", tokens_col="tokens")
    doc_value = balance_values(recipe, kept, doc_member, scopes)
    member = member_index(keys, doc_member)
    t = pa.table({"uid": kept["uid"], "member": pa.array(member), "value": pa.array(doc_value.tolist(), pa.string()),
                  "bucket": pa.array(uid_bucket(kept["uid"].to_numpy()))})
    for c in PREPARED_COLUMNS[4:]:
        t = t.append_column(c, kept[c])
    t = t.sort_by([("member", "ascending"), ("value", "ascending"), ("bucket", "ascending"), ("uid", "ascending")])
    atomic_write_parquet(layout.mix_prepared(pid), t, row_group_size=PREPARED_ROW_GROUP)
    return {"ledger": led.to_list(), "supply": supply_of(t)}


def supply_of(t: pa.Table) -> dict[str, np.ndarray | list]:
    """Tokens and documents per (member, value, bucket) of the rows of ``t`` in a member.

    Columns as numpy arrays (``member``, ``bucket``, ``tokens``, ``docs`` int64; ``value`` int64 codes into the
    short list ``values``, -1 for null), not Python lists: a partition gives up to cells x 1,024 entries, and at
    EagleX size (~6.5 x 10^8 entries in all) lists through the driver cost tens of minutes."""
    t = t.filter(pc.greater_equal(t["member"], 0)).select(["member", "value", "bucket", "tokens"])
    g = t.group_by(["member", "value", "bucket"]).aggregate([("tokens", "sum"), ("tokens", "count")])
    enc = g["value"].combine_chunks().cast(pa.string()).dictionary_encode()
    return {"member": _ints(g["member"]), "bucket": _ints(g["bucket"]), "tokens": _ints(g["tokens_sum"]),
            "docs": _ints(g["tokens_count"]), "values": enc.dictionary.to_pylist(),
            "value": pc.fill_null(enc.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)}


def _ints(col: pa.ChunkedArray) -> np.ndarray:
    return col.combine_chunks().to_numpy(zero_copy_only=False).astype(np.int64)


def read_prepared(run_dir: Path, pids: list[int], columns: list[str] | None = None, filters=None) -> pa.Table | None:
    """The prepared rows of ``pids`` (optionally filtered: a ``pyarrow.dataset`` expression), concatenated."""
    layout = RunLayout(run_dir)
    parts = [pq.read_table(layout.mix_prepared(pid), columns=columns, filters=filters) for pid in pids]
    return pa.concat_tables(parts) if parts else None


def carve_validation(payload: dict[str, Any], run_dir: str, pids: list[int]) -> dict[str, Any]:
    """The validation carve (``curate.validation.carve_for_mix``) over every partition's prepared rows.

    One task, isolated: the carve needs the dedup components over all kept documents, so its input still grows
    with the corpus (the remaining growth of the mix; it reads the prepared files, not the kept tables). Writes
    ``work/mix/validation.held.parquet`` (uid, selected, reason of every held-out document and near-duplicate,
    with its member, value, bucket and tokens) besides the carve's own files; returns the mix ledger's
    held-out entries, the plan's validation entry and the supply it took away per (member, value, bucket).
    """
    from curate.validation import carve_for_mix

    recipe = recipe_from_payload(payload)
    run_dir = Path(run_dir)
    layout = RunLayout(run_dir)
    keys = member_keys(recipe)
    kept = read_prepared(run_dir, pids).sort_by("uid")
    member = kept["member"].to_numpy()
    doc_member = np.where(member >= 0, np.array(keys + [""], dtype=object)[member], "").astype(object)
    members = recipe.members()
    group_of = {k: g for k, (g, *_rest) in zip(keys, members)}
    led = Ledger()
    _kept, _dm, held, val_plan = carve_for_mix(recipe, run_dir, kept, doc_member, led, group_of)
    if held is None:
        held = pa.table({"uid": pa.array([], pa.int64()), "selected": pa.array([], pa.int64()),
                         "reason": pa.array([], pa.string())})
    at = pc.index_in(held["uid"], value_set=kept["uid"])
    for c in ("member", "value", "bucket", "tokens"):
        held = held.append_column(c, kept[c].take(at))
    held = held.sort_by("uid")
    atomic_write_parquet(layout.mix_held, held)
    return {"ledger": led.to_list(), "plan": val_plan, "supply": supply_of(held)}
