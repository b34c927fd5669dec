"""The global steps after the per-partition pass: mixing, shard writing, and the documents table.

``mix`` (one Ray task) reads the small ``work/parts/<key>.kept.parquet`` tables (no text, no tokens), removes
dedup losers, maps every document to its mixture member (``source`` or ``source/subset``), asks
``curate.mixer`` for a token-exact selection per member and an interleaved order, and writes one order
file per shard::

    work/mix/shard_NNNNN.order.parquet   seq, uid, pid, tok_offset, ntok (ids, no eos), tokens (with eos),
                                         epoch, chunk, source, subset, group, doc_id, lang, license
    work/mix/selected.parquet            uid, selected (times a document was written), sorted by uid
    work/mix/ledger.json                 dedup and mix ledger entries
    work/mix/plan.json                   members, n_shards, tokenizer facts; written last (done marker)

``write_shard`` (one Ray task per shard) gathers the token ids from the partitions' memory-mapped ``.tok``
files and writes ``shards/<name>_NNNNN.{bin,idx}``, ``.lineage.parquet`` and ``.json`` (the shard's manifest
entry, written last: its presence means the shard is complete). ``write_documents`` writes the final status of
every input record of a partition to ``documents/<key>.parquet``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.io_utils import atomic_write_json, atomic_write_parquet, read_json
from curate.ledger import Ledger
from curate.recipe import Recipe
from curate.worker import recipe_from_payload

KEPT_COLUMNS = ["uid", "doc_id", "source", "subset", "nbytes", "ntok", "tokens", "tok_offset", "lang", "license"]


def shard_name(recipe: Recipe, i: int) -> str:
    return f"{recipe.shards.name}_{i:05d}"


def shard_json_path(run_dir: Path, recipe: Recipe, i: int) -> Path:
    return Path(run_dir) / "shards" / f"{shard_name(recipe, i)}.json"


def member_of(source: str, subset: str, members: set[str]) -> str | None:
    """The mixture member a document counts toward: ``source/subset`` if named, else ``source``, else None."""
    if subset and f"{source}/{subset}" in members:
        return f"{source}/{subset}"
    if source in members:
        return source
    return None


def _read_kept(run_dir: Path, pids: list[int]) -> pa.Table:
    tables = []
    for pid in pids:
        p = run_dir / "work" / "parts" / f"p{pid:06d}.kept.parquet"
        t = pq.read_table(p, columns=KEPT_COLUMNS)
        tables.append(t)
    t = pa.concat_tables(tables) if tables else None
    return t.sort_by("uid") if t is not None else None


def mix(payload: dict[str, Any], run_dir: str, pids: list[int]) -> dict:
    """Select and interleave documents; write per-shard order files. Raises ShortfallError if infeasible."""
    from curate.mixer import chunk_documents, interleave, member_seed, plan_member_targets, select_documents
    from curate.tokenizers import load_tokenizer

    recipe = recipe_from_payload(payload)
    run_dir = Path(run_dir)
    out = run_dir / "work" / "mix"
    kept = _read_kept(run_dir, pids)
    led = Ledger()

    # ---- dedup ledger: survivors of the filters in, duplicates dropped
    removed_path = run_dir / "work" / "dedup" / "removed.parquet"
    for src, scfg in recipe.sources.items():
        for sub in (scfg.subsets or {"": None}):
            led.touch("dedup", src, sub)
            led.touch("mix", src, sub)
    kept_t = kept.append_column("_tok", kept["tokens"])
    led.record_table("dedup", kept_t, what="in", tokens_col="tokens")
    if recipe.dedup is not None and removed_path.exists():
        removed = pq.read_table(removed_path, columns=["uid", "reason"])
        is_removed = pc.is_in(kept["uid"], value_set=removed["uid"])
        gone = kept.filter(is_removed).join(removed, "uid", join_type="left outer").sort_by("uid")
        led.record_table("dedup", gone, what="dropped", reason_col="reason", tokens_col="tokens")
        kept = kept.filter(pc.invert(is_removed))
    led.record_table("dedup", kept, what="out", tokens_col="tokens")

    # ---- members
    members = recipe.members()
    keys = [(f"{s}/{sub}" if sub else s) for (_g, s, sub, _sh) in members]
    key_set = set(keys)
    doc_member = np.array([member_of(s, b, key_set) or "" for s, b in
                           zip(kept["source"].to_pylist(), kept["subset"].to_pylist())], dtype=object)
    led.record_table("mix", kept, what="in", tokens_col="tokens")
    unmixed = kept.filter(pa.array(doc_member == ""))
    if unmixed.num_rows:
        led.record_table("mix", unmixed, what="dropped", reason="not_in_mixture", tokens_col="tokens")
    tokens = kept["tokens"].to_numpy()
    available = {k: int(tokens[doc_member == k].sum()) for k in keys}
    plan = plan_member_targets(recipe, available)
    plan_d = plan.as_dict()

    streams, member_groups, seq_parts = [], [], []
    groups = list(recipe.mixture)
    group_of = {k: g for k, (g, *_rest) in zip(keys, members)}
    ntok_all = kept["ntok"].to_numpy()
    for k in keys:
        idx_all = np.nonzero(doc_member == k)[0]
        # the unit of selection is the sequence: a whole document, or a chunk of one with max_doc_tokens, so
        # long books do not make a member's share coarser than the tolerance
        d_i, c_i, c_len = chunk_documents(ntok_all[idx_all], recipe.max_doc_tokens)
        c_len = np.asarray(c_len, dtype=np.int64)
        target = int(plan.target(k))
        if target <= 0 or len(d_i) == 0:
            sel, ep = np.zeros(0, np.int64), np.zeros(0, np.int32)
        else:
            sel, ep = select_documents(c_len + 1, target, seed=member_seed(recipe.seed, k),
                                       max_epochs=recipe.max_epochs)
        seq_rows = idx_all[np.asarray(d_i)[sel]]
        c_start = np.asarray(c_i, dtype=np.int64)[sel] * (recipe.max_doc_tokens or 0)
        seq_parts.append({"row": seq_rows, "epoch": np.asarray(ep), "chunk": np.asarray(c_i)[sel],
                          "ntok": c_len[sel], "start": c_start})
        streams.append(c_len[sel] + 1)
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

    order = interleave(streams, member_groups, seed=recipe.seed)
    order = np.asarray(order)
    m_idx, pos = order[:, 0].astype(np.int64), order[:, 1].astype(np.int64)

    # ---- assemble the global order (columnar, by member)
    row = np.empty(len(m_idx), np.int64)
    epoch = np.empty(len(m_idx), np.int32)
    chunk = np.empty(len(m_idx), np.int32)
    ntok = np.empty(len(m_idx), np.int64)
    start = np.empty(len(m_idx), np.int64)
    for mi, sp in enumerate(seq_parts):
        sel = m_idx == mi
        p = pos[sel]
        row[sel], epoch[sel], chunk[sel] = sp["row"][p], sp["epoch"][p], sp["chunk"][p]
        ntok[sel], start[sel] = sp["ntok"][p], sp["start"][p]
    tok_offset = kept["tok_offset"].to_numpy()[row] + start
    uid = kept["uid"].to_numpy()[row]
    key_arr = np.array(keys, dtype=object)[m_idx]
    order_t = pa.table({
        "seq": pa.array(np.arange(len(row), dtype=np.int64)),
        "uid": pa.array(uid), "pid": pa.array(uid >> 32), "tok_offset": pa.array(tok_offset),
        "ntok": pa.array(ntok), "tokens": pa.array(ntok + 1), "epoch": pa.array(epoch), "chunk": pa.array(chunk),
        "source": kept["source"].take(pa.array(row)), "subset": kept["subset"].take(pa.array(row)),
        "group": pa.array([group_of[k] for k in key_arr], pa.string()),
        "doc_id": kept["doc_id"].take(pa.array(row)), "lang": kept["lang"].take(pa.array(row)),
        "license": kept["license"].take(pa.array(row)),
    })

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
        atomic_write_parquet(out / f"shard_{i:05d}.order.parquet", order_t.slice(bounds[i], bounds[i + 1] - bounds[i]))
    sel_uid, sel_n = np.unique(uid, return_counts=True)
    atomic_write_parquet(out / "selected.parquet", pa.table({"uid": pa.array(sel_uid), "selected": pa.array(sel_n)}))
    led.write(out / "ledger.json")
    tok = load_tokenizer(recipe.tokenizer, base_dir=recipe.base_dir)
    from curate.shards import dtype_for_vocab

    plan_out = {"n_shards": len(bounds) - 1, "members": plan_d, "rescaled": plan_d.get("rescaled"),
                "tokens": int(seq_tokens.sum()), "sequences": int(len(seq_tokens)),
                "tokenizer": tok.name, "vocab_size": tok.vocab_size, "eos_id": tok.eos_id,
                "dtype": np.dtype(dtype_for_vocab(tok.vocab_size)).name,
                "shard_tokens": [int(seq_tokens[bounds[i]:bounds[i + 1]].sum()) for i in range(len(bounds) - 1)]}
    atomic_write_json(out / "plan.json", plan_out)
    return {"n_shards": plan_out["n_shards"], "tokens": plan_out["tokens"]}


def _tokens_by_source(kept: pa.Table, rows: np.ndarray, seq_tokens: np.ndarray) -> dict[tuple[str, str], tuple[int, int]]:
    """Tokens and sequences written per (source, subset) for the sequences drawn from ``kept`` rows."""
    if rows.size == 0:
        return {}
    t = pa.table({"source": kept["source"].take(pa.array(rows)), "subset": kept["subset"].take(pa.array(rows)),
                  "t": pa.array(seq_tokens)})
    g = t.group_by(["source", "subset"]).aggregate([("t", "sum"), ("t", "count")])
    return {(r["source"], r["subset"]): (int(r["t_sum"]), int(r["t_count"])) for r in g.to_pylist()}


def write_shard(payload: dict[str, Any], run_dir: str, i: int) -> dict:
    """Write shard ``i`` from its order file; return its manifest entry."""
    from curate.shards import IndexedDatasetWriter
    from curate.tokenizers import load_tokenizer

    recipe = recipe_from_payload(payload)
    run_dir = Path(run_dir)
    plan = read_json(run_dir / "work" / "mix" / "plan.json")
    order = pq.read_table(run_dir / "work" / "mix" / f"shard_{i:05d}.order.parquet")
    name = shard_name(recipe, i)
    prefix = run_dir / "shards" / name
    prefix.parent.mkdir(parents=True, exist_ok=True)
    tok_dtype = np.uint16 if plan["vocab_size"] <= 65536 else np.uint32
    maps: dict[int, np.ndarray] = {}
    writer = IndexedDatasetWriter(prefix, vocab_size=plan["vocab_size"])
    pid = order["pid"].to_numpy()
    off = order["tok_offset"].to_numpy()
    ntok = order["ntok"].to_numpy()
    batch = 4096
    for s in range(0, order.num_rows, batch):
        pieces = []
        for j in range(s, min(s + batch, order.num_rows)):
            p = int(pid[j])
            if p not in maps:
                f = run_dir / "work" / "parts" / f"p{p:06d}.tok"
                maps[p] = np.memmap(f, dtype=tok_dtype, mode="r") if f.stat().st_size else np.zeros(0, tok_dtype)
            pieces.append(maps[p][off[j]:off[j] + ntok[j]])
        flat = np.concatenate(pieces) if pieces else np.zeros(0, tok_dtype)
        writer.add_batch(flat, ntok[s:s + batch], eos_id=plan["eos_id"])
    info = writer.finalize()
    lineage = order.select(["seq", "source", "subset", "group", "doc_id", "uid", "tokens", "epoch", "chunk", "lang",
                            "license"])
    lineage = lineage.add_column(0, "shard", pa.array([name] * lineage.num_rows, pa.string()))
    atomic_write_parquet(run_dir / "shards" / f"{name}.lineage.parquet", lineage)

    def agg(keys: list[str]) -> list[dict]:
        if lineage.num_rows == 0:
            return []
        g = lineage.group_by(keys).aggregate([("tokens", "sum"), ("seq", "count")])
        return sorted(({**{k: r[k] for k in keys}, "tokens": r["tokens_sum"], "sequences": r["seq_count"]}
                       for r in g.to_pylist()), key=lambda r: tuple(str(r[k]) for k in keys))

    entry = {"name": name, "index": i, "bin": f"{name}.bin", "idx": f"{name}.idx",
             "lineage": f"{name}.lineage.parquet", **info,
             "by_group": agg(["group"]), "by_source": agg(["source", "subset"]),
             "by_license": [{k: r[k] for k in ("source", "subset", "group", "license", "tokens")}
                            for r in agg(["source", "subset", "group", "license"])]}
    atomic_write_json(shard_json_path(run_dir, recipe, i), entry)
    return entry


def write_documents(run_dir: str, key: str, pid: int) -> int:
    """Final status of every input record of partition ``key`` (no text) → ``documents/<key>.parquet``."""
    run_dir = Path(run_dir)
    docs = pq.read_table(run_dir / "work" / "parts" / f"{key}.docs.parquet")
    n = docs.num_rows
    lo, hi = pid << 32, (pid + 1) << 32
    if n and "status" in docs.column_names:
        kept_mask = pc.equal(docs["status"], "kept")
        removed_path = run_dir / "work" / "dedup" / "removed.parquet"
        status = docs["status"].to_pylist()
        stage = docs["stage"].to_pylist()
        reason = docs["reason"].to_pylist()
        dup_of: list[int | None] = [None] * n
        uid = docs["uid"].to_numpy()
        pos = {int(u): i for i, u in enumerate(uid)}
        if removed_path.exists():
            rem = pq.read_table(removed_path, columns=["uid", "reason", "dup_of"],
                                filters=[("uid", ">=", lo), ("uid", "<", hi)])
            for u, r, d in zip(rem["uid"].to_pylist(), rem["reason"].to_pylist(), rem["dup_of"].to_pylist()):
                i = pos[u]
                status[i], stage[i], reason[i], dup_of[i] = "dropped", "dedup", r, d
        sel = pq.read_table(run_dir / "work" / "mix" / "selected.parquet",
                            filters=[("uid", ">=", lo), ("uid", "<", hi)])
        selected = np.zeros(n, np.int64)
        for u, c in zip(sel["uid"].to_pylist(), sel["selected"].to_pylist()):
            selected[pos[u]] = c
        km = kept_mask.to_numpy(zero_copy_only=False)
        for i in np.nonzero(km)[0]:
            if status[i] == "kept" and selected[i] == 0:
                status[i], stage[i], reason[i] = "dropped", "mix", "downsampled"
        docs = docs.drop_columns(["status", "stage", "reason"])
        docs = docs.append_column("status", pa.array(status, pa.string()))
        docs = docs.append_column("stage", pa.array(stage, pa.string()))
        docs = docs.append_column("reason", pa.array(reason, pa.string()))
        docs = docs.append_column("dup_of", pa.array(dup_of, pa.int64()))
        docs = docs.append_column("selected", pa.array(selected))
    q = pq.read_table(run_dir / "quarantine" / f"{key}.parquet")
    if q.num_rows:
        qd = pa.table({"source": q["source"], "subset": q["subset"], "status": pa.array(["quarantined"] * q.num_rows),
                       "stage": pa.array(["ingest"] * q.num_rows), "reason": q["reason"], "file": q["file"],
                       "row": q["row"], "nbytes": q["nbytes"]})
        docs = pa.concat_tables([docs, qd], promote_options="permissive") if n else qd
    atomic_write_parquet(run_dir / "documents" / f"{key}.parquet", docs)
    return docs.num_rows
