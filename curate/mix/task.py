"""The ``mix`` Ray task: read the kept tables, assign members, select and interleave, write the order files.

``mix`` (one Ray task) reads the small ``work/parts/<key>.kept.parquet`` tables (no text, no tokens), removes
dedup losers, maps every document to its mixture member (``source`` or ``source/subset``), asks
:mod:`curate.mix.core` for a token-exact selection per member and an interleaved order, and writes one order
file per shard. A balanced member (``balance:``, :mod:`curate.balance`) is selected per value instead: each
(member, value) cell has its own target and seed and is one stream of the interleaving::

    work/mix/shard_NNNNN.order.parquet   seq, uid, pid, tok_offset, ntok (ids, no eos), tokens (with eos),
                                         epoch, chunk, source, subset, group, doc_id, lang, license,
                                         trimmed (true for the one sequence of a member, or of a balance cell,
                                         cut to its first ntok content tokens + eos so the member gives exactly
                                         its target: ntok is then less than the chunk's; curate.mix.core.
                                         trim_selection) [, balance: the value a balanced member's sequence was selected
                                         under, null elsewhere; only when the recipe has a `balance:`]
    work/mix/selected.parquet            uid, selected (times a document was written), reason (why a kept
                                         document was never written, null when it was), sorted by uid
    work/mix/ledger.json                 dedup and mix ledger entries
    work/mix/validation.{order,components}.parquet   with `validation:`: the held-out sets (curate.validation)
    work/mix/plan.json                   members (and under members.balance, per balanced scope, the value plan
                                         of curate.balance), n_shards, tokenizer facts, and `trims` when a
                                         sequence was trimmed: one {member, balance, uid, doc_id, chunk, tokens
                                         (kept, eos included), of (the whole sequence's)} each; written last
                                         (done marker)

The shard writer (``curate.mix.writer.write_shard``) reads the order files; :mod:`curate.mix.documents` reads
``selected``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.io_utils import atomic_write_json, atomic_write_parquet
from curate.layout import RunLayout
from curate.schema import KEPT_COLUMNS as SCHEMA_KEPT_COLUMNS
from curate.ledger import Ledger
from curate.recipe import Recipe
from curate.pipeline import recipe_from_payload

#: Why a kept document of a balanced member was never selected: its value's supply is under ``min_tokens``.
BALANCE_DROP = "balance_min_tokens"

#: the columns of a ``.kept.parquet`` file (``curate.schema.KEPT_FIELDS``), all of which the mix reads
KEPT_COLUMNS = list(SCHEMA_KEPT_COLUMNS)


def _read_kept(run_dir: Path, pids: list[int], extra: list[str] | None = None) -> pa.Table:
    tables = []
    for pid in pids:
        p = RunLayout(run_dir).part(pid).kept
        t = pq.read_table(p, columns=KEPT_COLUMNS + list(extra or []))
        tables.append(t)
    t = pa.concat_tables(tables) if tables else None
    return t.sort_by("uid") if t is not None else None


def mix(payload: dict[str, Any], run_dir: str, pids: list[int]) -> dict:
    """Select and interleave documents; write per-shard order files. Raises ShortfallError if infeasible."""
    from curate.balance import refine_selection, scope_caps
    from curate.mix.core import (chunk_documents, interleave, member_seed, plan_member_targets, select_documents,
                                  trim_selection)
    from curate.tokenizers import load_tokenizer

    recipe = recipe_from_payload(payload)
    run_dir = Path(run_dir)
    layout = RunLayout(run_dir)
    out = layout.mix_dir
    scopes = recipe.balance_scopes()
    kept = _read_kept(run_dir, pids, [f"meta.{k}" for k in recipe.balance_meta_keys()])
    led = Ledger()

    # ---- dedup ledger: survivors of the filters in, duplicates dropped
    for src, scfg in recipe.sources.items():
        for sub in (scfg.subsets or {"": None}):
            led.touch("dedup", src, sub)
            led.touch("mix", src, sub)
    led.record_table("dedup", kept, what="in", tokens_col="tokens")
    from curate.dedup import has_removed, read_removed

    if recipe.dedup is not None and has_removed(layout.dedup_dir):
        removed = read_removed(layout.dedup_dir, columns=["uid", "reason"])
        is_removed = pc.is_in(kept["uid"], value_set=removed["uid"])
        gone = kept.filter(is_removed).join(removed, "uid", join_type="left outer").sort_by("uid")
        led.record_table("dedup", gone, what="dropped", reason_col="reason", tokens_col="tokens")
        kept = kept.filter(pc.invert(is_removed))
    led.record_table("dedup", kept, what="out", tokens_col="tokens")

    # ---- members: every document counts toward one (group, source[/subset]) member
    members = recipe.members()
    keys = [recipe.member_key(g, s, sub) for (g, s, sub, _sh) in members]
    group_of = {k: g for k, (g, *_rest) in zip(keys, members)}
    doc_member = assign_members(recipe, kept)
    led.record_table("mix", kept, what="in", tokens_col="tokens")
    unmixed = kept.filter(pa.array(doc_member == ""))
    if unmixed.num_rows:
        led.record_table("mix", unmixed, what="dropped", reason="not_in_mixture", tokens_col="tokens")
    # ---- validation sets: held out before mixing, whole dedup components on one side (curate.validation)
    from curate.validation import carve_for_mix

    kept, doc_member, held, val_plan = carve_for_mix(recipe, run_dir, kept, doc_member, led, group_of)
    tokens = kept["tokens"].to_numpy()
    available = {k: int(tokens[doc_member == k].sum()) for k in keys}
    # ---- balance: a balanced member's tokens are split over the values of a column (curate.balance)
    doc_value, bal_caps, bal_cells = balance_values(recipe, kept, doc_member, scopes), {}, {}
    for scope, _g, mkeys, b in scopes:
        cells = {m: _value_supply(tokens, doc_member == m, doc_value) for m in mkeys}
        supply, caps = scope_caps(cells, min_tokens=b.min_tokens, max_epochs=b.max_epochs or recipe.max_epochs)
        available.update(supply)
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

    streams, member_groups, seq_parts, cell_values = [], [], [], []
    groups = list(recipe.mixture)
    ntok_all = kept["ntok"].to_numpy()
    bal_dropped = np.zeros(len(doc_member), dtype=bool)
    trims: list[dict] = []  # the sequences trimmed to hit a target exactly (plan.json `trims`)
    for k in keys:
        in_k = doc_member == k
        if k in cell_targets:
            max_ep, vals = cell_targets[k]
            rows_k = np.nonzero(in_k)[0]
            by_value = _rows_by_value(rows_k, doc_value[rows_k].astype(str))
            bal_dropped[np.concatenate([r for v, r in by_value.items() if v not in vals] or [rows_k[:0]])] = True
            cells = [(v, by_value[v], int(t), member_seed(recipe.seed, f"{k}\x1f{v}")) for v, t in sorted(vals.items())]
        else:
            max_ep = recipe.max_epochs
            cells = [(None, np.nonzero(in_k)[0], int(plan.target(k)), member_seed(recipe.seed, k))]
        for value, idx_all, target, seed in cells:
            # the unit of selection is the sequence: a whole document, or a chunk of one with max_doc_tokens, so
            # long books do not make a member's share coarser than the tolerance
            d_i, c_i, c_len = chunk_documents(ntok_all[idx_all], recipe.max_doc_tokens)
            c_len = np.asarray(c_len, dtype=np.int64)
            if target <= 0 or len(d_i) == 0:
                sel, ep = np.zeros(0, np.int64), np.zeros(0, np.int32)
                take = np.zeros(0, np.int64)
            else:
                sel, ep = select_documents(c_len + 1, target, seed=seed, max_epochs=max_ep)
                if value is not None:  # a value's tolerance is a share of its scope: close the last gap too
                    sel, ep = refine_selection(c_len + 1, sel, ep, target)
                if recipe.trim_to_target:  # whole sequences miss by up to one: trim the closing one (core.trim_selection)
                    sel, ep, take = trim_selection(c_len + 1, sel, ep, target)
                else:
                    take = c_len[sel] + 1
            seq_rows = idx_all[np.asarray(d_i)[sel]]
            c_start = np.asarray(c_i, dtype=np.int64)[sel] * (recipe.max_doc_tokens or 0)
            cut = take < c_len[sel] + 1
            seq_parts.append({"row": seq_rows, "epoch": np.asarray(ep), "chunk": np.asarray(c_i)[sel],
                              "ntok": take - 1, "start": c_start, "key": k, "trimmed": cut})
            for at in np.flatnonzero(cut):
                trims.append({"member": k, "balance": value, "uid": int(kept["uid"][int(seq_rows[at])].as_py()),
                              "doc_id": kept["doc_id"][int(seq_rows[at])].as_py(), "chunk": int(c_i[sel[at]]),
                              "tokens": int(take[at]), "of": int(c_len[sel[at]] + 1)})
            cell_values.append(value)
            streams.append(take)
            # a value of a balanced member is a member of the interleaving (its share of the group holds everywhere)
            member_groups.append(groups.index(group_of[k]))
            # mix ledger: documents never selected were downsampled away
            sub_t = kept.take(pa.array(idx_all))
            chosen = np.isin(idx_all, seq_rows)
            led.record_table("mix", sub_t.filter(pa.array(~chosen)), what="dropped", reason="downsampled",
                             tokens_col="tokens")
            out_t = sub_t.filter(pa.array(chosen))
            led.record_table("mix", out_t, what="out")
            for (s, b), (tok_sum, n_seq) in _tokens_by_source(kept, seq_rows, streams[-1]).items():
                c = led.get("mix", s, b)
                c.tokens_out = (c.tokens_out or 0) + tok_sum
                c.counters["sequences"] = c.counters.get("sequences", 0) + n_seq
    if bal_dropped.any():
        led.record_table("mix", kept.filter(pa.array(bal_dropped)), what="dropped", reason=BALANCE_DROP,
                         tokens_col="tokens")

    order = interleave(streams, member_groups, seed=recipe.seed)
    order = np.asarray(order)
    m_idx, pos = order[:, 0].astype(np.int64), order[:, 1].astype(np.int64)

    # ---- assemble the global order (columnar, by member)
    row = np.empty(len(m_idx), np.int64)
    epoch = np.empty(len(m_idx), np.int32)
    chunk = np.empty(len(m_idx), np.int32)
    ntok = np.empty(len(m_idx), np.int64)
    start = np.empty(len(m_idx), np.int64)
    trimmed = np.empty(len(m_idx), bool)
    for mi, sp in enumerate(seq_parts):
        sel = m_idx == mi
        p = pos[sel]
        row[sel], epoch[sel], chunk[sel] = sp["row"][p], sp["epoch"][p], sp["chunk"][p]
        ntok[sel], start[sel], trimmed[sel] = sp["ntok"][p], sp["start"][p], sp["trimmed"][p]
    tok_offset = kept["tok_offset"].to_numpy()[row] + start
    uid = kept["uid"].to_numpy()[row]
    key_arr = np.array([sp["key"] for sp in seq_parts], dtype=object)[m_idx]
    order_t = pa.table({
        "seq": pa.array(np.arange(len(row), dtype=np.int64)),
        "uid": pa.array(uid), "pid": pa.array(uid >> 32), "tok_offset": pa.array(tok_offset),
        "ntok": pa.array(ntok), "tokens": pa.array(ntok + 1), "epoch": pa.array(epoch), "chunk": pa.array(chunk),
        "source": kept["source"].take(pa.array(row)), "subset": kept["subset"].take(pa.array(row)),
        "group": pa.array([group_of[k] for k in key_arr], pa.string()),
        "doc_id": kept["doc_id"].take(pa.array(row)), "lang": kept["lang"].take(pa.array(row)),
        "license": kept["license"].take(pa.array(row)), "trimmed": pa.array(trimmed),
    })
    if scopes:  # the value each sequence was balanced under (null outside a balanced scope)
        order_t = order_t.append_column("balance", pa.array(np.array(cell_values, dtype=object)[m_idx], pa.string()))

    # ---- cut into shards
    seq_tokens = ntok + 1
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
    # every document that survived dedup: how often it was written, and why not when never (kept is sorted by uid)
    kept_uid = kept["uid"].to_numpy()
    sel_uid, sel_n = np.unique(uid, return_counts=True)
    times = np.zeros(kept_uid.size, np.int64)
    times[np.searchsorted(kept_uid, sel_uid)] = sel_n
    why = np.where(doc_member == "", "not_in_mixture",
                   np.where(bal_dropped, BALANCE_DROP, np.where(times == 0, "downsampled", "")))
    selected = pa.table({
        "uid": pa.array(kept_uid), "selected": pa.array(times),
        "reason": pc.if_else(pa.array(why == ""), pa.nulls(len(why), pa.string()), pa.array(why.astype(str)))})
    if held is not None:  # the validation documents and their near-duplicates
        selected = pa.concat_tables([selected, held.cast(selected.schema)]).sort_by("uid")
    atomic_write_parquet(layout.mix_selected, selected)
    led.write(layout.step_ledger("mix"))
    tok = load_tokenizer(recipe.tokenizer, base_dir=recipe.base_dir)
    from curate.schema import token_dtype

    plan_out = {"n_shards": len(bounds) - 1, "members": plan_d, "rescaled": plan_d.get("rescaled"),
                "tokens": int(seq_tokens.sum()), "sequences": int(len(seq_tokens)),
                "tokenizer": tok.name, "vocab_size": tok.vocab_size, "eos_id": tok.eos_id,
                "tokenizer_engine": tok.engine.as_dict(),
                "dtype": np.dtype(token_dtype(tok.vocab_size, "megatron")).name,
                "shard_tokens": [int(seq_tokens[bounds[i]:bounds[i + 1]].sum()) for i in range(len(bounds) - 1)]}
    if trims:
        plan_out["trims"] = trims
    if val_plan is not None:
        plan_out["validation"] = val_plan
    atomic_write_json(layout.mix_plan, plan_out)
    return {"n_shards": plan_out["n_shards"], "tokens": plan_out["tokens"]}


def balance_values(recipe: Recipe, kept: pa.Table, doc_member: np.ndarray,
                   scopes: list | None = None) -> np.ndarray:
    """The value each document is balanced under (None outside a balanced scope), vectorized.

    A document counts toward its member first (``assign_members``, so ``route_by_lang`` applies), then its
    scope's ``by`` column gives its value: ``lang`` (null = ``und``), ``subset`` or ``meta.<key>`` (null = ``-``).
    """
    from curate.balance import null_value

    out = np.full(len(doc_member), None, dtype=object)
    for _scope, _g, mkeys, b in (recipe.balance_scopes() if scopes is None else scopes):
        col = b.by if b.meta_key is None else f"meta.{b.meta_key}"
        vals = pc.fill_null(kept[col].cast(pa.string()), null_value(b.by))
        if b.by == "subset":
            vals = pc.if_else(pc.equal(vals, ""), null_value(b.by), vals)
        at = np.isin(doc_member, mkeys)
        out[at] = np.asarray(vals.to_numpy(zero_copy_only=False), dtype=object)[at]
    return out


def _value_supply(tokens: np.ndarray, mask: np.ndarray, doc_value: np.ndarray) -> dict[str, int]:
    """Tokens per value among the documents of ``mask`` (sorted by value)."""
    if not mask.any():
        return {}
    vals, inv = np.unique(doc_value[mask].astype(str), return_inverse=True)
    return {str(v): int(n) for v, n in zip(vals, np.bincount(inv, weights=tokens[mask]).astype(np.int64))}


def _rows_by_value(rows: np.ndarray, values: np.ndarray) -> dict[str, np.ndarray]:
    """Split ``rows`` by their value (one sort, not one scan per value); rows stay ascending within a value."""
    uniq, inv = np.unique(values, return_inverse=True)
    order = np.argsort(inv, kind="stable")
    return {str(v): part for v, part in zip(uniq, np.split(rows[order], np.cumsum(np.bincount(inv))[:-1]))}


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


def assign_members(recipe: Recipe, kept: pa.Table) -> np.ndarray:
    """Member key of each document ("" when it counts toward no member), vectorized over the table.

    A document's entry is ``source/subset`` when the mixture names it, else ``source``. It counts toward the
    entry's home group, unless a ``route_by_lang`` rule matches its language and that rule's group lists the
    entry too (e.g. non-English Wikipedia articles counted as multilingual).
    """
    named = {e for gc in recipe.mixture.values() for e in gc.sources}
    src = np.asarray(kept["source"].to_pylist(), dtype=object)
    sub = np.asarray(kept["subset"].to_pylist(), dtype=object)
    with_sub = np.char.add(np.char.add(src.astype(str), "/"), sub.astype(str)).astype(object)
    entry = np.where(np.isin(with_sub, list(named)) & (sub != ""), with_sub, src)
    entry = np.where(np.isin(entry, list(named)), entry, "").astype(str)
    if len(entry) == 0:
        return np.zeros(0, dtype=object)
    # few distinct entries: decide per distinct value, then broadcast
    uniq, inv = np.unique(entry, return_inverse=True)
    home = np.array([recipe.member_key(recipe.home_group(e), *_split(e)) if e else "" for e in uniq], dtype=object)
    member = home[inv]
    if recipe.route_by_lang:
        from curate.lid_model import lang_group

        routed = np.asarray(lang_group(kept["lang"], [r.as_rule() for r in recipe.route_by_lang]).to_pylist(),
                            dtype=object)
        for g, gc in recipe.mixture.items():
            listed = np.array([u in gc.sources for u in uniq], dtype=bool)[inv]
            hit = (routed == g) & listed
            if hit.any():
                keys = np.array([recipe.member_key(g, *_split(e)) if e in gc.sources else "" for e in uniq],
                                dtype=object)
                member[hit] = keys[inv[hit]]
    return member


def _split(entry: str) -> tuple[str, str | None]:
    s, _, b = entry.partition("/")
    return s, (b or None)


def _tokens_by_source(kept: pa.Table, rows: np.ndarray, seq_tokens: np.ndarray) -> dict[tuple[str, str], tuple[int, int]]:
    """Tokens and sequences written per (source, subset) for the sequences drawn from ``kept`` rows."""
    if rows.size == 0:
        return {}
    t = pa.table({"source": kept["source"].take(pa.array(rows)), "subset": kept["subset"].take(pa.array(rows)),
                  "t": pa.array(seq_tokens)})
    g = t.group_by(["source", "subset"]).aggregate([("t", "sum"), ("t", "count")])
    return {(r["source"], r["subset"]): (int(r["t_sum"]), int(r["t_count"])) for r in g.to_pylist()}

