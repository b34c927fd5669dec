"""Held-out validation sets per mixture member, carved before mixing and disjoint from train by near-duplicates.

Recipe (validated by :func:`check_validation`; errors name the YAML path)::

    validation: {tokens: N}                    # top level: every leaf member holds out N tokens
    sources.<s>.validation: {tokens: N}|false  # a source's members (more specific: overrides the top level)
    sources.<s>.subsets.<b>.validation: ...    # a subset that is a member of its own (overrides its source)

A leaf member is a member of the mixer (``Recipe.members``: ``source`` or ``source/subset``, group-qualified
when listed in several groups, so a ``route_by_lang`` target is a member of its own; a balanced member is one
member, its values are split after the carve).

**Carve** (:func:`carve`, a pure function called by the mix task, :func:`carve_for_mix`). The candidates of
a member are its documents that survived the filters and dedup. Each document belongs to a *dedup component*
(:func:`component_labels`): the connected components of dedup's LSH candidate edges (``work/dedup/edges``)
united with every removal's ``uid → dup_of`` link (``work/dedup/removed/``), so exact copies across
sources and the near-duplicates dedup verified or merely proposed are one component; a document in none is its
own. Candidates are ranked by a seeded 64-bit hash of (recipe seed, member, component label), ties by uid, and
taken in that order, **whole documents**, until the member's held-out tokens reach N (at least N, overshoot
less than one document). Tokens count as the training shards count them: ``max_doc_tokens`` chunks, each
sequence with exactly one EOS (the ``tokens`` column of the kept tables). Unlike train, whose closing sequence
per member is trimmed to its target (``trim_to_target``, :func:`curate.mix.core.trim_selection`), a held-out
document is never trimmed: the rest of it could go to neither side (train would then hold the text the set was
held out of), so the set overshoots N by less than a document instead; its order's ``trimmed`` column, kept
for the shard order's schema, is false throughout.

**Disjointness.** Every kept document of a component that has a validation document and is not itself one is
removed from train with the drop reason ``validation_near_duplicate`` (mix ledger, ``documents/``), so a whole
component lies on one side. Validation documents are recorded in the mix ledger as dropped with reason
``validation`` (the ledger still conserves: mix in = out + dropped) and get ``status = validation`` in
``documents/``. The mixer then plans and selects train from the rest, with all its share and window guarantees.
A member whose supply cannot cover its N tokens (and leave some for train) is a ``ShortfallError`` naming the
member and the YAML path of its setting. Without ``dedup.minhash`` there are no near-duplicate components, so
``validation:`` requires it (a recipe error otherwise).

**Files.** The mix task writes ``work/mix/validation.order.parquet`` (the shard order columns plus ``member``)
and ``work/mix/validation.components.parquet`` (``uid, component`` of every kept document in a non-singleton
component); ``plan.json`` gets a ``validation`` entry per member. Then :func:`write_validation` (Ray tasks, one
per member) writes, under ``RUN_DIR/validation/`` (or any folder: a sweep writes them once, shared)::

    <member>_00000.bin / .idx            MMIDIDX, the training shards' writer (curate.shard_formats.MegatronWriter)
    <member>_00000.lineage.parquet       the training lineage's columns
    <member>_00000.json                  the set's entry (member, label, files with sha256), written last: done marker
    components.parquet                   uid, component (the audit's near-duplicate check)

``<member>`` is the member key with every character outside ``[A-Za-z0-9._-]`` replaced by ``-``.

**Trainer configs** (:func:`write_trainer_files`, beside ``megatron_data_args.*``): the ``valid`` list of
``megatron_data_args.json`` (``--per-split-data-args-path``; one prefix per set, for
``--multiple-validation-sets``), ``megatron_validation_sets.txt`` (the set labels in that order) and
``validation_sets.csv`` (``label,path``).

**Audit** (:func:`read_held_out`, then :func:`audit_validation`): tokens per member read back from each ``.idx``
against the lineage, and disjointness from the lineage of both sides: a ``doc_id`` or ``uid`` in both is a
``validation_overlap`` violation, a dedup component in both a ``validation_near_duplicate_in_train`` violation.
The sets are small, the training lineage is not: the sets' ``doc_id``/``uid`` (and the uids of the dedup
components they touch) go to every shard task of the audit (``curate.shard_summary``), which returns the ones its
shard holds; the driver never reads the training lineage.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.errors import CurateError
from curate.io_utils import atomic_write_json, atomic_write_parquet, atomic_write_text, read_json
from curate.layout import RunLayout
from curate.validation_rules import (
    DIR, RUN_FILES, check_validation, file_stem, member_settings, valid_prefixes, write_trainer_files)

HELD_OUT = "validation"
NEAR_DUP = "validation_near_duplicate"
COMPONENTS = "components.parquet"
#: names of the files a run writes in validation/
FILE_PATTERN = re.compile(r"[A-Za-z0-9._-]+_\d{5}\.(?:bin|idx|lineage\.parquet|json)|components\.parquet")


# ---------------------------------------------------------------------------- recipe
# the recipe-level rules (member_settings, check_validation) and the trainer files live in curate.validation_rules,
# which curate.recipe imports: config, not implementation


# ---------------------------------------------------------------------------- carve (pure)
def _fmix64(h: np.ndarray) -> np.ndarray:
    from curate.dedup.signatures import _fmix64 as f

    return f(h)


def component_labels(uids: np.ndarray, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The dedup component of each of ``uids``: the smallest uid of its connected component in the graph of
    edges ``src``-``dst`` (LSH candidates and removal links), or the uid itself when it is in no edge."""
    from curate.dedup import connected_components

    uids = np.asarray(uids, dtype=np.int64)
    labels = uids.copy()
    if len(src):
        nodes, lab = connected_components(np.asarray(src, np.int64), np.asarray(dst, np.int64))
        at = np.searchsorted(nodes, uids)
        at_c = np.minimum(at, len(nodes) - 1)
        hit = nodes[at_c] == uids
        labels[hit] = lab[at_c[hit]]
    return labels


def carve(members: np.ndarray, tokens: np.ndarray, uids: np.ndarray, labels: np.ndarray,
          wanted: dict[str, int], *, seed: int) -> tuple[np.ndarray, np.ndarray, dict[str, dict]]:
    """Choose the validation documents (pure, vectorized per member).

    ``members``: member key per document ("" = in no member); ``tokens``: sequence tokens per document (eos
    included); ``labels``: dedup component per document; ``wanted``: tokens per member. Returns
    ``(validation mask, near-duplicate mask, {member: {"tokens", "documents", "supply"}})``; a member's
    supply that cannot cover its tokens and leave some for train is reported as ``supply <= tokens`` for the
    caller to refuse.
    """
    from curate.mix.core import member_seed

    members = np.asarray(members, dtype=object)
    tokens = np.asarray(tokens, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    held = np.zeros(len(members), dtype=bool)
    info: dict[str, dict] = {}
    for m, n in wanted.items():
        rows = np.flatnonzero(members == m)
        supply = int(tokens[rows].sum())
        info[m] = {"requested": int(n), "supply": supply, "tokens": 0, "documents": 0}
        if supply <= n:
            continue
        salt = np.uint64(member_seed(seed, f"validation\x1f{m}"))
        key = _fmix64(labels[rows].astype(np.uint64) ^ salt)
        order = rows[np.lexsort((uids[rows], key))]
        cum = np.cumsum(tokens[order])
        j = int(np.searchsorted(cum, n, side="left")) + 1  # first prefix reaching n
        take = order[:j]
        held[take] = True
        info[m].update(tokens=int(cum[j - 1]), documents=int(j))
    near = np.isin(labels, labels[held]) & ~held & (members != "")
    return held, near, info


# ---------------------------------------------------------------------------- the mix task's hook
def _dedup_edges(run_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The dedup graph: the LSH candidate edges (``work/dedup/edges/``) and every removal's ``uid -> dup_of``."""
    from curate.dedup import has_removed, read_removed

    layout = RunLayout(run_dir)
    src, dst = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for f in sorted(layout.dedup_edges.glob("b*.parquet")):
        t = pq.read_table(f, columns=["src", "dst"])
        src.append(t["src"].to_numpy())
        dst.append(t["dst"].to_numpy())
    if has_removed(layout.dedup_dir):
        t = read_removed(layout.dedup_dir, columns=["uid", "dup_of"]).filter(pc.is_valid(pc.field("dup_of")))
        src.append(t["uid"].to_numpy())
        dst.append(t["dup_of"].to_numpy())
    return np.concatenate(src), np.concatenate(dst)


def carve_for_mix(recipe, run_dir: Path, kept: pa.Table, doc_member: np.ndarray, led, group_of: dict[str, str],
                  ) -> tuple[pa.Table, np.ndarray, pa.Table | None, dict | None]:
    """Carve the validation sets out of ``kept`` (post-dedup, sorted by uid); called by ``curate.mix.task.mix``.

    Records the held-out documents in the mix ledger, writes the validation order and components files under
    ``work/mix/`` and returns ``(kept for train, its members, held rows as (uid, selected, reason) for
    the per-partition selected files, the plan's validation entry)``; without validation sets, the inputs unchanged and None.
    """
    from curate.mix.core import ShortfallError, chunk_documents

    settings = member_settings(recipe)
    if not settings:
        return kept, doc_member, None, None
    layout = RunLayout(run_dir)
    uids = kept["uid"].to_numpy()
    src, dst = _dedup_edges(run_dir)
    labels = component_labels(uids, src, dst)
    held, near, info = carve(doc_member, kept["tokens"].to_numpy(), uids, labels,
                             {m: n for m, (n, _p) in settings.items()}, seed=recipe.seed)
    short = [(m, i) for m, i in info.items() if i["supply"] <= i["requested"]]
    if short:
        lines = [f"{m}: {settings[m][1]} asks for {i['requested']:,} tokens but the member has {i['supply']:,} "
                 "after filters and dedup (validation must leave some for train)" for m, i in short]
        raise ShortfallError("validation set larger than its member's supply:\n  " + "\n  ".join(lines),
                             short=[{"key": m, "group": group_of.get(m), "available": i["supply"],
                                     "needed": i["requested"], "epochs": None} for m, i in short])
    for mask, reason in ((held, HELD_OUT), (near, NEAR_DUP)):
        if mask.any():
            led.record_table("mix", kept.filter(pa.array(mask)), what="dropped", reason=reason, tokens_col="tokens")
    # the order: members in recipe order, documents by uid, chunked like the training sequences
    pieces = []
    ntok_all = kept["ntok"].to_numpy()
    for m in settings:
        rows = np.flatnonzero(held & (doc_member == m))
        d_i, c_i, c_len = chunk_documents(ntok_all[rows], recipe.max_doc_tokens)
        r = rows[np.asarray(d_i, dtype=np.int64)]
        c_len = np.asarray(c_len, dtype=np.int64)
        t = kept.take(pa.array(r))
        pieces.append(pa.table({
            "member": pa.array([m] * len(r), pa.string()),
            "seq": pa.array(np.arange(len(r), dtype=np.int64)), "uid": t["uid"],
            "pid": pa.array(t["uid"].to_numpy() >> 32),
            "tok_offset": pa.array(t["tok_offset"].to_numpy() + np.asarray(c_i, np.int64) * (recipe.max_doc_tokens or 0)),
            "ntok": pa.array(c_len), "tokens": pa.array(c_len + 1),
            "epoch": pa.array(np.zeros(len(r), np.int32)), "chunk": pa.array(np.asarray(c_i, np.int32)),
            "source": t["source"], "subset": t["subset"], "group": pa.array([group_of[m]] * len(r), pa.string()),
            "doc_id": t["doc_id"], "lang": t["lang"], "license": t["license"],
            # a held-out document is never trimmed: its rest could not go to train without leaking it
            "trimmed": pa.array(np.zeros(len(r), bool))}))
        if recipe.balance_scopes():  # the training lineage's columns: a set is balanced under no value
            pieces[-1] = pieces[-1].append_column("balance", pa.nulls(len(r), pa.string()))
        info[m].update(sequences=len(r), file=file_stem(m), yaml_path=settings[m][1],
                       near_duplicates_removed=int((near & np.isin(labels, labels[rows])).sum()))
    atomic_write_parquet(layout.mix_validation_order, pa.concat_tables(pieces))
    in_graph = np.isin(uids, np.concatenate([src, dst]))
    atomic_write_parquet(layout.mix_validation_components, pa.table({
        "uid": pa.array(uids[in_graph], pa.int64()), "component": pa.array(labels[in_graph], pa.int64())}))
    gone = held | near
    reason = np.where(held[gone], HELD_OUT, NEAR_DUP)
    held_t = pa.table({"uid": pa.array(uids[gone]), "selected": pa.array(np.zeros(int(gone.sum()), np.int64)),
                       "reason": pa.array(reason.astype(str), pa.string())})
    return kept.filter(pa.array(~gone)), doc_member[~gone], held_t, {"members": info}


# ---------------------------------------------------------------------------- writing the sets
def write_member_set(run_dir: str, member: str, out_dir: str) -> dict:
    """Write ``member``'s validation set from ``run_dir``'s mix into ``out_dir`` (one Ray task); return its entry.

    MMIDIDX through the training shards' writer, the training lineage's columns; the ``.json`` entry last.
    """
    from curate.shard_formats import ShardWriters, lineage_table, write_sequences

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    layout = RunLayout(run_dir)
    plan = read_json(layout.mix_plan)
    order = pq.read_table(layout.mix_validation_order,
                          filters=[("member", "=", member)]).drop_columns(["member"])
    name = file_stem(member)
    out_dir.mkdir(parents=True, exist_ok=True)
    with ShardWriters(("megatron",), out_dir, name, vocab_size=plan["vocab_size"], tokenizer=plan["tokenizer"]) as ws:
        write_sequences(ws, run_dir, order, plan, where=f"validation set {out_dir / name}")
        fentries = ws.finalize()
    lineage = lineage_table(order, name)
    lin_p = out_dir / f"{name}.lineage.parquet"
    atomic_write_parquet(lin_p, lineage)
    mega = ws.get("megatron")
    entry = {"name": name, "member": member, "label": member, "bin": f"{name}.bin", "idx": f"{name}.idx",
             "lineage": lin_p.name, "lineage_bytes": lin_p.stat().st_size, **mega.info, "formats": fentries,
             "documents": int(pc.count_distinct(order["uid"]).as_py()) if order.num_rows else 0}
    atomic_write_json(out_dir / f"{name}.json", entry)
    return entry


def trusted_files(run_dir: Path, entries: list[dict]) -> list[str]:
    """The validation files (relative to ``run_dir``) whose sizes and sha256 the manifest records."""
    rels = [f"{DIR}/{f['path']}" for e in entries for f in e["formats"]["megatron"]["files"]]
    rels += [f"{DIR}/{e['lineage']}" for e in entries] + [f"{DIR}/{COMPONENTS}"]
    return [r for r in rels if (run_dir / r).is_file()]


# ---------------------------------------------------------------------------- trainer configs
# ---------------------------------------------------------------------------- audit
@dataclass
class HeldOut:
    """The validation sets as the audit reads them (small: ``validation.tokens`` per member), before the shards.

    ``val``: ``doc_id, uid, member`` of every held-out sequence; ``near``: ``uid`` of every row of
    ``validation/components.parquet`` whose component holds a validation document (None without the file);
    ``violations``: what reading the sets found, appended to the audit's after the shards' own.
    """

    members: dict[str, dict]
    val: pa.Table
    near: pa.Table | None
    violations: list[dict]

    def probe(self) -> dict[str, pa.Array | None]:
        """What each shard task of the audit looks up in its lineage (``curate.shard_summary.summarize``)."""
        if not self.val.num_rows:
            return {"doc_id": None, "uid": None, "near": None}
        return {"doc_id": pc.unique(self.val["doc_id"]), "uid": pc.unique(self.val["uid"]),
                "near": pc.unique(self.near["uid"]) if self.near is not None else None}


def _components_near(comp_p: Path, val_uids: pa.Array) -> pa.Table:
    """Rows (``uid``) of the components file whose component holds one of ``val_uids``: two passes over it in
    record batches, so the driver holds the validation sets' components, never the whole file."""
    f = pq.ParquetFile(comp_p)
    val_c = [pc.unique(b["component"].filter(pc.is_in(b["uid"], value_set=val_uids)))
             for b in f.iter_batches(columns=["uid", "component"])]
    comps = pc.unique(pa.chunked_array(val_c, pa.int64())) if val_c else pa.array([], pa.int64())
    rows = [b["uid"].filter(pc.is_in(b["component"], value_set=comps))
            for b in pq.ParquetFile(comp_p).iter_batches(columns=["uid", "component"])]
    return pa.table({"uid": pa.chunked_array(rows, pa.int64()) if rows else pa.array([], pa.int64())})


def read_held_out(run_dir: Path, manifest: dict | None) -> HeldOut | None:
    """The audit's first look at the validation sets: per member, tokens and sequences read back from the
    ``.idx`` (checked against the lineage) and documents; None when the run has no validation sets."""
    from curate.shard_formats import MegatronWriter

    d = RunLayout(run_dir).validation_dir
    if manifest is not None:
        entries = (manifest.get("validation") or {}).get("sets") or []
        requested = {m: i.get("requested") for m, i in ((manifest.get("validation") or {}).get("members") or {}).items()}
    else:
        entries = [read_json(p) for p in sorted(d.glob("*_00000.json"))] if d.is_dir() else []
        requested = {}
    if not entries:
        return None
    violations: list[dict] = []
    members, lins = {}, []
    for e in entries:
        lin_p = d / e["lineage"]
        try:
            lin = pq.read_table(lin_p)
            sizes = MegatronWriter.read_sizes(d, e["formats"]["megatron"])
        except FileNotFoundError as ex:
            violations.append({"kind": "shard_missing", "where": f"{DIR}/{e['name']}", "message": str(ex)})
            continue
        except Exception as ex:  # noqa: BLE001 - a damaged file is a named violation, never a traceback
            violations.append({"kind": "corrupt_file", "where": f"{DIR}/{e['name']}",
                               "message": f"{type(ex).__name__}: {ex}"})
            continue
        lt = lin["tokens"].to_numpy()
        if len(lt) != len(sizes) or not np.array_equal(lt, sizes):
            violations.append({"kind": "lineage_mismatch", "where": f"{DIR}/{e['name']}",
                               "message": f"validation set {e['name']}: lineage ({len(lt)} sequences, "
                                          f"{int(lt.sum()):,} tokens) disagrees with its .idx ({len(sizes)} "
                                          f"sequences, {int(sizes.sum()):,} tokens)"})
        members[e["member"]] = {"tokens": int(sizes.sum()), "sequences": int(len(sizes)),
                                "documents": int(pc.count_distinct(lin["doc_id"]).as_py()) if lin.num_rows else 0,
                                "requested": requested.get(e["member"]), "file": e["name"]}
        lins.append(lin.select(["doc_id", "uid"]).append_column("member", pa.array([e["member"]] * lin.num_rows,
                                                                                    pa.string())))
    val = pa.concat_tables(lins) if lins else pa.table({"doc_id": pa.array([], pa.string()),
                                                       "uid": pa.array([], pa.int64()),
                                                       "member": pa.array([], pa.string())})
    comp_p = d / COMPONENTS
    near = _components_near(comp_p, val["uid"].combine_chunks()) if val.num_rows and comp_p.is_file() else None
    return HeldOut(members=members, val=val, near=near, violations=violations)


def audit_validation(held: HeldOut | None, train, violations: list[dict]) -> dict | None:
    """The audit's ``validation`` section, and its violations appended to ``violations``.

    ``held``: :func:`read_held_out`; ``train``: the training shards' summaries
    (:class:`curate.shard_summary.Summaries`), whose tasks looked up ``held.probe()`` in every shard's lineage.
    Disjointness: ``doc_id``/``uid`` in both the train lineage and a validation lineage is a
    ``validation_overlap``; a dedup component (``validation/components.parquet``) on both sides a
    ``validation_near_duplicate_in_train``.
    """
    if held is None:
        return None
    violations.extend(held.violations)
    val = held.val
    overlap = 0
    if train.rows and val.num_rows:
        for col in ("doc_id", "uid"):
            if col not in train.columns:
                continue
            found = pa.array(train.hits(col), val[col].type)
            both = val.filter(pc.is_in(val[col], value_set=found))
            for r in both.group_by("member").aggregate([(col, "count_distinct"), (col, "min")]).to_pylist():
                overlap += r[f"{col}_count_distinct"]
                violations.append({"kind": "validation_overlap", "where": f"{DIR}/{r['member']}",
                                   "message": f"{r[f'{col}_count_distinct']} document(s) of validation set "
                                              f"{r['member']} are also in the training shards (by {col}, e.g. "
                                              f"{r[f'{col}_min']})"})
        if held.near is not None and "uid" in train.columns:
            shared = held.near.filter(pc.is_in(held.near["uid"], value_set=pa.array(train.hits("near"), pa.int64())))
            if shared.num_rows:
                violations.append({"kind": "validation_near_duplicate_in_train", "where": DIR,
                                   "message": f"{shared.num_rows} training document(s) share a dedup component with "
                                              f"a validation document (e.g. uid {pc.min(shared['uid']).as_py()})"})
    members = held.members
    return {"members": members, "tokens": sum(m["tokens"] for m in members.values()), "overlap": overlap}


def render(section: dict | None, console) -> None:
    """The audit's validation table (``curate audit``)."""
    if not section:
        return
    from rich.table import Table

    t = Table(title="validation sets (held out, disjoint from train)", title_justify="left")
    for c in ("member", "requested", "tokens", "sequences", "documents", "file"):
        t.add_column(c, justify="left" if c in ("member", "file") else "right")
    for m, e in section["members"].items():
        t.add_row(m, f"{e['requested']:,}" if e.get("requested") else "-", f"{e['tokens']:,}",
                  f"{e['sequences']:,}", f"{e['documents']:,}", e["file"])
    console.print(t)


__all__ = ["HELD_OUT", "NEAR_DUP", "HeldOut", "audit_validation", "carve", "carve_for_mix", "check_validation",
           "component_labels", "member_settings", "read_held_out", "write_trainer_files"]
