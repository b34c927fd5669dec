"""The mix's driver: per-partition prepare tasks, the plan, per-leaf select tasks, the order, ``selected``.

``mix`` runs in the driver and holds per-partition and per-leaf summaries only; every step that reads documents
is a Ray task bounded by one partition or one leaf (``curate.mix.prepare``, ``curate.mix.select``), except the
validation carve (its components span the corpus). The order is :mod:`curate.mix.interleave`'s, computed in key
windows of bounded items, so no process holds it::

    prepare_partition  per partition   kept table - dedup losers -> work/mix/prepared/<key>.parquet; returns
                                       its ledger and supply per (member, balance value, hash bucket)
    carve_validation   one task        with `validation:`: the held-out sets (curate.validation) and
                                       work/mix/validation.held.parquet; returns the supply it took
    (driver)                           sums the supplies, plans targets per member and per balance value
                                       exactly as the single-task mixer (ShortfallError before any selection),
                                       splits each cell's target over its hash ranges
    select_leaf        per leaf        work/mix/streams/c<c>_r<r>.parquet, work/mix/counts/c<c>_r<r>.parquet;
                                       the driver lists the leaves (plan and entry) in work/mix/leaves.json
    write_orders       per window      the leaf streams merged level by level (cells, groups, the mixture) in
                       and per shard   key windows of <= WINDOW_ITEMS items, the shard cut by binary search,
                                       then one task per shard -> work/mix/shard_NNNNN.order.parquet (a run
                                       whose leaves fit one window: all of it in one task)
    write_selected     per partition   work/mix/selected/<key>.parquet

then the driver writes::

    work/mix/shard_NNNNN.order.parquet   seq, uid, pid, tok_offset, ntok (ids, no eos), tokens (with eos),
                                         epoch, chunk, source, subset, group, doc_id, lang, license,
                                         trimmed (true for the one sequence of a leaf cut to its first ntok
                                         content tokens + eos so the leaf gives exactly its target: ntok is
                                         then less than the chunk's; curate.mix.core.trim_selection) [, balance:
                                         the value a balanced member's sequence was selected under, null
                                         elsewhere; only when the recipe has a `balance:`]
    work/mix/selected/<key>.parquet      uid, selected (times a document was written), reason (why a kept
                                         document was never written, null when it was), sorted by uid
    work/mix/ledger.json                 dedup and mix ledger entries (the tasks' pieces, merged)
    work/mix/validation.{order,components}.parquet   with `validation:`: the held-out sets (curate.validation)
    work/mix/plan.json                   members (and under members.balance, per balanced scope, the value plan
                                         of curate.balance), n_shards, tokenizer facts, and `trims` when a
                                         sequence was trimmed: one {member, balance, uid, doc_id, chunk, tokens
                                         (kept, eos included), of (the whole sequence's)} each; written last
                                         (done marker: a phase killed before it is redone whole, every file
                                         above is rewritten atomically)

With one range per cell (a cell of at most ``ROWS_PER_TASK`` documents) the rows, seed and target of a leaf are
the cell's, so the order files are those of the single-task mixer byte for byte. The shard writer
(``curate.mix.writer.write_shard``) reads the order files; :mod:`curate.mix.documents` reads ``selected``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.io_utils import atomic_write_json
from curate.layout import RunLayout
from curate.ledger import Ledger
from curate.mix.members import assign_members, balance_values
from curate.mix.select import BALANCE_DROP
from curate.pipeline import recipe_from_payload
from curate.recipe import Recipe
from curate.schema import KEPT_COLUMNS as SCHEMA_KEPT_COLUMNS

#: the columns of a ``.kept.parquet`` file (``curate.schema.KEPT_FIELDS``), all of which the mix reads
KEPT_COLUMNS = list(SCHEMA_KEPT_COLUMNS)
__all__ = ["BALANCE_DROP", "KEPT_COLUMNS", "assign_members", "balance_values", "mix"]


class _Supply:
    """Tokens and documents per (member index, balance value) and hash bucket, summed over partitions."""

    def __init__(self, buckets: int) -> None:
        self.buckets = buckets
        self.cells: dict[tuple[int, str | None], np.ndarray] = {}  # (2, buckets): tokens, docs

    def add(self, s: dict[str, Any], sign: int = 1) -> None:
        """Add (``sign`` -1: take away) one supply of ``curate.mix.prepare.supply_of``; one pass per cell."""
        member, bucket = np.asarray(s["member"], np.int64), np.asarray(s["bucket"], np.int64)
        tokens, docs = np.asarray(s["tokens"], np.int64), np.asarray(s["docs"], np.int64)
        names = list(s["values"])
        code = np.asarray(s["value"], np.int64) + 1  # 0: null
        uniq, inv = np.unique(member * (len(names) + 1) + code, return_inverse=True)
        for j, u in enumerate(uniq.tolist()):
            m, c = divmod(u, len(names) + 1)
            at = inv == j
            a = self.cells.setdefault((m, names[c - 1] if c else None), np.zeros((2, self.buckets), np.int64))
            np.add.at(a[0], bucket[at], sign * tokens[at])
            np.add.at(a[1], bucket[at], sign * docs[at])

    def of(self, m: int, v: str | None) -> np.ndarray:
        return self.cells.get((m, v), np.zeros((2, self.buckets), np.int64))

    def member_tokens(self, m: int) -> int:
        return int(sum(a[0].sum() for (mm, _v), a in self.cells.items() if mm == m))

    def values(self, m: int) -> dict[str, int]:
        """Tokens per balance value of member ``m`` (values with documents, sorted)."""
        return {v: int(a[0].sum()) for (mm, v), a in sorted(self.cells.items(), key=lambda kv: str(kv[0][1]))
                if mm == m and v is not None and a[1].sum() > 0}


def _ranges(docs: np.ndarray, rows_per_task: int) -> list[tuple[int, int]]:
    """The hash ranges of a cell: ``ceil(documents / rows_per_task)`` contiguous runs of buckets (at least one)."""
    nb = docs.size
    r = int(min(nb, max(1, -(-int(docs.sum()) // max(1, int(rows_per_task))))))
    edges = [i * nb // r for i in range(r + 1)]
    return list(zip(edges[:-1], edges[1:]))


def split_target(target: int, supply: np.ndarray, passes: int) -> np.ndarray:
    """A cell's target over its hash ranges: in proportion to their supply tokens (largest remainder), none over
    ``passes`` times its supply (``select_documents`` refuses that). Largest remainder stays within a range's cap
    unless float rounding lifts its exact share above it; the guard gives such excess to the first with room.

    Adds up to ``target`` whenever the cell can give it (``target <= passes * supply.sum()``).
    """
    from curate.mix.core import _split_budget

    supply = np.asarray(supply, dtype=np.int64)
    t = _split_budget(int(target), supply.astype(np.float64))
    cap = supply * int(passes)
    excess = int(np.maximum(t - cap, 0).sum())
    t = np.minimum(t, cap)
    if excess:
        room = cap - t
        t += np.minimum(room, np.maximum(0, excess - (np.cumsum(room) - room)))
    return t


def mix(payload: dict[str, Any], run_dir: str | Path, pids: list[int], *, rows_per_task: int | None = None) -> dict:
    """Select and interleave documents as Ray tasks (module docstring); return ``{n_shards, tokens}``.

    Runs in the driver, which holds per-partition and per-leaf summaries only. ``rows_per_task``: most documents
    one select task reads (default :data:`curate.mix.select.ROWS_PER_TASK`, read at call time). Raises
    ShortfallError, before any select task runs, if the mixture cannot be met.
    """
    from curate.balance import scope_caps
    from curate.mix import select as select_mod
    from curate.mix.core import member_seed, plan_member_targets
    from curate.mix.interleave import write_orders
    from curate.mix.prepare import RANGE_BUCKETS, carve_validation, member_keys, prepare_partition
    from curate.raytasks import get, remote_task, warm_workers
    from curate.schema import token_dtype
    from curate.tokenizers import load_tokenizer
    from curate.validation import member_settings

    recipe = recipe_from_payload(payload)
    run_dir = str(run_dir)
    layout = RunLayout(Path(run_dir))
    rows_per_task = int(rows_per_task or select_mod.ROWS_PER_TASK)
    scopes = recipe.balance_scopes()
    led = Ledger()
    for src, scfg in recipe.sources.items():
        for sub in (scfg.subsets or {"": None}):
            led.touch("dedup", src, sub)
            led.touch("mix", src, sub)

    # ---- prepare: one task per partition; the driver sums their small supplies
    supply = _Supply(RANGE_BUCKETS)
    prep = remote_task(prepare_partition)
    for ref in [prep.remote(payload, run_dir, pid) for pid in pids]:
        res = get(ref)
        led.merge(Ledger.from_list(res["ledger"]))
        supply.add(res["supply"])
    keys = member_keys(recipe)
    members = recipe.members()
    group_of = {k: g for k, (g, *_rest) in zip(keys, members)}
    # ---- validation sets: held out before mixing, whole dedup components on one side (curate.validation)
    val_plan = None
    layout.mix_held.unlink(missing_ok=True)  # select tasks skip the held-out documents this file lists
    if member_settings(recipe):
        ref = remote_task(carve_validation, max_calls=1).remote(payload, run_dir, pids)
        warm_workers(1)  # the carve's worker exits after it (its memory follows the corpus): a warm replacement
        res = get(ref)
        led.merge(Ledger.from_list(res["ledger"]))
        supply.add(res["supply"], sign=-1)
        val_plan = res["plan"]

    # ---- plan: targets per member, per balance value (the single-task mixer's code, on summed supplies)
    available = {k: supply.member_tokens(i) for i, k in enumerate(keys)}
    bal_caps, bal_cells = {}, {}
    for scope, _g, mkeys, b in scopes:
        cells = {m: supply.values(keys.index(m)) for m in mkeys}
        sup, caps = scope_caps(cells, min_tokens=b.min_tokens, max_epochs=b.max_epochs or recipe.max_epochs)
        available.update(sup)
        # a pooled group: each member may give its (equal) weight's part of the group's cap
        pooled = sum(caps.values())
        bal_caps.update({m: (caps[m] if len(mkeys) == 1 else pooled // len(mkeys)) for m in mkeys})
        bal_cells[scope] = cells
    plan = plan_member_targets(recipe, available, caps=bal_caps or None)
    plan, scope_plans = _plan_balance(recipe, plan, scopes, bal_cells)
    plan_d = plan.as_dict()
    if scope_plans:
        plan_d["balance"] = {sp.scope: sp.as_dict() for sp in scope_plans}
    cell_targets = {m: (sp.max_epochs, vals) for sp in scope_plans for m, vals in sp.cells.items()}

    # ---- cells (members, or values of a balanced member, in the interleaving's order) and their hash ranges
    groups = list(recipe.mixture)
    specs, drops = [], []
    cell = 0
    for mi, k in enumerate(keys):
        if k in cell_targets:
            max_ep, vals = cell_targets[k]
            drops += [(mi, v) for v in supply.values(mi) if v not in vals]
            cells = [(v, int(t), f"{k}\x1f{v}") for v, t in sorted(vals.items())]
        else:
            max_ep = recipe.max_epochs
            cells = [(None, int(plan.target(k)), k)]
        for value, target, seed_key in cells:
            have = supply.of(mi, value)
            ranges = _ranges(have[1], rows_per_task)
            tok = np.array([have[0, lo:hi].sum() for lo, hi in ranges], dtype=np.int64)
            targets = [target] if len(ranges) == 1 else split_target(target, tok, math.ceil(max_ep)).tolist()
            for r, ((lo, hi), t) in enumerate(zip(ranges, targets)):
                seed = member_seed(recipe.seed, seed_key if len(ranges) == 1 else f"{seed_key}\x1fr{r}")
                specs.append({"cell": cell, "range": r, "key": k, "member": mi, "value": value, "lo": lo, "hi": hi,
                              "target": int(t), "seed": seed, "max_epochs": max_ep, "group": group_of[k],
                              "group_index": groups.index(group_of[k])})
            cell += 1
    for mi, v in drops:  # a value under min_tokens: its documents are dropped (ledger only), in bounded reads too
        for lo, hi in _ranges(supply.of(mi, v)[1], rows_per_task):
            specs.append({"member": mi, "value": v, "lo": lo, "hi": hi, "drop": True})

    # ---- select: one task per leaf
    sel = remote_task(select_mod.select_leaf)
    leaves, trims, planned = [], [], []
    for sp, ref in zip(specs, [sel.remote(payload, run_dir, pids, sp) for sp in specs]):
        res = get(ref)
        led.merge(Ledger.from_list(res["ledger"]))
        if "leaf" in res:
            leaves.append(res["leaf"])
            trims += res["trims"]
            planned.append({**{k: sp[k] for k in ("key", "value", "lo", "hi", "target", "seed")}, **res["leaf"]})
    atomic_write_json(layout.mix_leaves, planned)  # what each leaf was asked for and gave (tests, debugging)
    # ---- the order files: the interleaving in bounded key windows (curate.mix.interleave)
    shard_fields = write_orders([str(layout.mix_stream(lf["cell"], lf["range"])) for lf in leaves], leaves, run_dir,
                                seed=recipe.seed, max_tokens=recipe.shards.max_tokens,
                                single_file=recipe.shards.single_file)
    # ---- selected, per partition
    ws = remote_task(select_mod.write_selected)
    leaf_ids = [(lf["cell"], lf["range"]) for lf in leaves]
    get([ws.remote(run_dir, pid, leaf_ids, drops) for pid in pids])
    led.write(layout.step_ledger("mix"))
    tok = load_tokenizer(recipe.tokenizer, base_dir=recipe.base_dir)
    plan_out = {"n_shards": shard_fields["n_shards"], "members": plan_d, "rescaled": plan_d.get("rescaled"),
                "tokens": shard_fields["tokens"], "sequences": shard_fields["sequences"],
                "tokenizer": tok.name, "vocab_size": tok.vocab_size, "eos_id": tok.eos_id,
                "tokenizer_engine": tok.engine.as_dict(),
                "dtype": np.dtype(token_dtype(tok.vocab_size, "megatron")).name,
                "shard_tokens": shard_fields["shard_tokens"]}
    if trims:
        plan_out["trims"] = trims
    if val_plan is not None:
        plan_out["validation"] = val_plan
    atomic_write_json(layout.mix_plan, plan_out)
    return {"n_shards": plan_out["n_shards"], "tokens": plan_out["tokens"]}


def _plan_balance(recipe: Recipe, plan, scopes: list, cells: dict) -> tuple:
    """Split each balanced scope's planned tokens over its values; pooled members get their cells' sum."""
    import dataclasses

    from curate.balance import plan_scope
    from curate.mix.core import ShortfallError

    scope_plans, new_target = [], {}
    for scope, g, mkeys, b in scopes:
        total = sum(plan.target(m) for m in mkeys)
        sp = plan_scope(scope, g, by=b.by, temperature=b.temperature, min_tokens=b.min_tokens,
                        max_epochs=b.max_epochs or recipe.max_epochs, target=total, cells=cells[scope])
        if not sp.feasible:
            cap = sum(int(np.floor(v.supply * sp.max_epochs)) for v in sp.values)
            msg = (f"balanced scope `{scope}` needs {total:,} tokens but its values give at most {cap:,} within "
                   f"max_epochs {sp.max_epochs:g}; lower `budget_tokens` or the group's share, or raise `max_epochs`")
            raise ShortfallError(msg, short=[{"key": scope, "group": g, "available": sp.supply, "needed": total,
                                              "epochs": total / sp.supply if sp.supply else None}])
        scope_plans.append(sp)
        if len(mkeys) > 1:
            new_target.update({m: sum(sp.cells[m].values()) for m in mkeys})
    if new_target:
        members = tuple(dataclasses.replace(m, target=new_target[m.key], share=new_target[m.key] / plan.budget_tokens,
                                            epochs=(new_target[m.key] / m.available if m.available else 0.0))
                        if m.key in new_target else m for m in plan.members)
        plan = dataclasses.replace(plan, members=members)
    return plan, scope_plans
