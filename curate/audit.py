"""``curate audit RUN_DIR``: what is really in the shards, against the recipe.

The audit trusts only the shards' own truth: each shard's lineage (one row per sequence) is joined with the
sequence sizes of each of its formats' own index (Megatron ``.idx``, OLMo ``.csv.gz``, datatrove ``.ds.index``,
MDS sample headers; see :mod:`curate.shard_formats`); a lineage token count that differs from an index is a
violation, and so is an MDS ``index.json`` or a Megatron data-args file that leaves a shard out. Shares are then
computed from those tokens and compared with the recipe. The ledger explains *where* something went missing
("math: target 20.0% of soup, found 0 tokens — dropped at stage quality (quality:gopher_word_count 812)").

Result (``--json``)::

    {"run": {...progress...}, "total_tokens": int,
     "groups":  {name: {"target": f, "actual": f, "tokens": int}},            # shares of the whole mixture
     "sources": {name: {"target": f, "actual": f, "tokens": int}},
     "subsets": {"source/subset": {...}},
     "languages": {lang: tokens}, "licenses": {license: tokens},
     "funnel": {source: {stage: {docs_in, docs_out, tokens_in, tokens_out, dropped: {reason: n},
                                 quarantined: {reason: n}}}},
     "dedup_matrix": {removed_from: {kept_in: docs}},
     "text_hygiene": {source: {"text_bom_stripped": n, ...}},           # what the text-hygiene policy changed
     "status": "complete" | "incomplete", "progress": {...}, "tolerance": {...},   # see "Complete or not"
     "balance": {scope: {value: {"supply_tokens", "target", "actual", "epochs", "target_tokens", "tokens",
                                 "deviation_pp", "capped"}}},                  # shares of the scope's tokens
     "balance_dropped": {scope: [{"value", "supply", "reason"}]},
     "decontamination": {"mode", "ngram", "evals", "table": {eval: {source: {docs, tokens, matched}}},
                         "sources": {source: {docs_in, docs_removed, tokens_removed, share_removed}},
                         "index": {...}},                                   # only with `decontaminate:`
     "tolerance_pp": f, "members": [{key, group, source, subset, share, available, target, epochs}],
     "timings": [{phase, wall_s, driver_cpu_s, worker_cpu_s}],
     "stages": [{stage, cpu_s, docs_in, docs_out, bytes_in, bytes_out, tokens_in, tokens_out}], "scores": {"hist": ..., "thresholds": ...},
     "samples": {rows, bytes, k, ...} | None,                                 # see report_sections
     "flags": [...], "violations": [{"kind", "where", "message"}], "trainer_view": {...}}

Flag kinds include ``high_drop_share``, ``stream_composition``, ``empty_input_file``, ``duplicate_doc_ids``,
``invalid_utf8_replaced``, ``budget_rescaled`` and ``budget_undershoot`` (a gap above the tolerance but within
1% of the budget).

Violation kinds: ``missing_source``, ``missing_subset``, ``missing_group``, ``share_out_of_tolerance``,
``shard_missing``, ``shard_not_in_manifest``, ``shard_checksum``, ``lineage_mismatch``, ``trainer_config``,
``ledger_conservation``, ``source_emptied``, ``file_missing``, ``file_size``, ``file_checksum``,
``corrupt_file``, ``budget_undershoot``, ``balance_out_of_tolerance``, ``missing_balance_value``.

Balance (``balance:`` in the recipe): the plan's per-value supply and target (``work/mix/plan.json``) against the
tokens the lineage holds per value, where the value comes from the lineage's own ``lang`` / ``subset`` column (or
its ``balance`` column for ``meta.<key>``) and the scope from its ``group`` (and ``source``/``subset`` for a
member's balance). A value more than ``tolerance_pp`` of its scope off its target is a violation.

Complete or not
---------------
``status`` is ``"complete"`` only when ``manifest.json`` exists (finalize ran: every partition, the dedup, the
mix plan, every shard and the documents table were written first). Anything else is ``"incomplete"``, and
``progress`` says what is missing::

    "status": "complete" | "incomplete",
    "progress": {"phase": "parts"|"dedup"|"mix"|"shards"|"documents"|"finalize"|"complete",
                 "partitions_done": int, "partitions_total": int|None, "dedup_done": bool|None,
                 "mix_done": bool, "shards_done": int, "shards_planned": int|None,
                 "documents_done": int, "manifest": bool,
                 "shards": [{"name", "tokens", "sequences", "by_group": {group: tokens}}],
                 "missing": ["3 of 10 partitions not processed (p000007, ...)", ...]},
    "tolerance": {"applied_pp": float, "recipe_pp": float, "partial": bool, "why": str}

An incomplete run is never reported as passed: ``exit_code`` returns 3 for it (1 when it also has
violations) unless ``partial=True`` (``curate audit --partial``), which audits what was written so far. A
partial view holds shares to the stream tolerance (1 percentage point, since a prefix of the stream is only
guaranteed to hold the recipe within the interleaver's window bound), says so in ``tolerance``, and reads
"partial view", never "passed". Mid-run only shards whose ``.json`` entry exists (written last, atomically)
count. A file that appears or disappears while the audit reads the run directory is skipped, never an error.

File checks
-----------
``manifest.json`` lists every other file the audit trusts under ``files`` (``{relpath: {"bytes", "sha256"}}``:
each shard's lineage, ``documents/*.parquet``, ``quarantine/*.parquet`` and ``ledger.json``). The audit checks
their sizes always and their sha256 with ``verify``; a Parquet or JSON file that cannot be read is a
``corrupt_file`` violation naming it, never a traceback.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.errors import CurateError
from curate.io_utils import read_json, sha256_file
from curate.layout import RunLayout, part_key
from curate.ledger import Ledger
from curate.recipe import Recipe
from curate.pipeline import stage_names
from curate.shard_summary import READ_ERRORS, Summaries, corrupt, summarize_shards, weighted_keys, window_check

STREAM_TOLERANCE_PP = 1.0
#: ``exit_code`` of an incomplete run audited without ``partial``.
EXIT_INCOMPLETE = 3
#: Errors that mean a file under its final name cannot be read as what it should be.
_READ_ERRORS = READ_ERRORS


class AuditUsageError(CurateError):
    exit_code = 2


_corrupt = corrupt


def _json_or_none(path: Path, run_dir: Path, violations: list[dict], what: str) -> Any:
    """``read_json`` that tolerates a file vanishing mid-read (None) and reports a damaged one."""
    try:
        return read_json(path)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        _corrupt(violations, path, run_dir, e, what)
        return None


# ---------------------------------------------------------------------------- loading
def _load(run_dir: Path, violations: list[dict]) -> tuple[Recipe, dict | None, dict | None, list[dict]]:
    from curate.pipeline import load_run_recipe

    layout = RunLayout(run_dir)
    if not layout.recipe_json.exists():
        msg = f"{run_dir} is not a curate run directory (no recipe.json); pass the folder `curate run` wrote"
        raise AuditUsageError(msg)
    try:
        recipe = load_run_recipe(run_dir)
    except (CurateError, ValueError, OSError, KeyError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        msg = f"{layout.recipe_json} cannot be read as a recipe ({first}); the run directory is damaged"
        raise AuditUsageError(msg) from None
    manifest = _json_or_none(layout.manifest, run_dir, violations, "manifest")
    if manifest is not None and not isinstance(manifest.get("shards"), list):
        _corrupt(violations, layout.manifest, run_dir, ValueError("no `shards` list"), "manifest")
        manifest = None
    plan = _json_or_none(layout.mix_plan, run_dir, violations, "mix plan")
    if manifest is not None:
        entries = manifest["shards"]
    else:
        entries = []
        shard_dir = layout.shards_dir
        for p in sorted(shard_dir.glob("*.json")) if shard_dir.is_dir() else []:
            e = _json_or_none(p, run_dir, violations, "shard entry")
            if isinstance(e, dict) and "index" in e:
                entries.append(e)
        entries.sort(key=lambda e: e["index"])
    return recipe, manifest, plan, entries


def _read_ledger(path: Path, run_dir: Path, violations: list[dict]) -> Ledger | None:
    try:
        return Ledger.read(path)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as e:
        _corrupt(violations, path, run_dir, e, "ledger")
        return None


def _ledger(run_dir: Path, violations: list[dict] | None = None) -> Ledger:
    violations = [] if violations is None else violations
    layout = RunLayout(run_dir)
    if layout.ledger.exists():
        led = _read_ledger(layout.ledger, run_dir, violations)
        if led is not None:
            return led
    paths = list(layout.parts_dir.glob("*.ledger.json")) if layout.parts_dir.is_dir() else []
    led = Ledger()
    for p in sorted(paths) + [layout.step_ledger(extra) for extra in ("dedup", "mix")]:
        one = _read_ledger(p, run_dir, violations)
        if one is not None:
            led.merge(one)
    return led


# ---------------------------------------------------------------------------- progress and file checks
def run_progress(run_dir: Path, recipe: Recipe, manifest: dict | None, plan: dict | None,
                 entries: list[dict]) -> dict[str, Any]:
    """Which phase a run directory reached and what is still missing (see the module docstring)."""
    layout = RunLayout(run_dir)
    parts_dir = layout.parts_dir
    try:
        parts = read_json(layout.partitions_json)
        keys = [part_key(int(p["pid"])) for p in parts]
    except (OSError, ValueError, KeyError, TypeError):
        keys = None
    done = {p.name[: -len(".done")] for p in parts_dir.glob("*.done")} if parts_dir.is_dir() else set()
    docs_dir = layout.documents_dir
    docs = {p.stem for p in docs_dir.glob("*.parquet")} if docs_dir.is_dir() else set()
    dedup_done = None if recipe.dedup is None else layout.dedup_done.exists()
    complete = manifest is not None
    planned = plan.get("n_shards") if isinstance(plan, dict) else (len(entries) if complete else None)
    n_total = len(keys) if keys is not None else None
    n_done = len(done & set(keys)) if keys is not None else len(done)
    missing: list[str] = []

    def few(names: list[str]) -> str:
        return ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")

    if complete:
        phase = "complete"  # finalize ran (work/ may have been cleaned up since: it is scratch)
    elif keys is None:
        phase = "parts"
        missing.append("work/partitions.json: the run has not listed its partitions yet")
    elif n_done < n_total:
        phase = "parts"
        todo = [k for k in keys if k not in done]
        missing.append(f"{len(todo)} of {n_total} partitions not processed ({few(todo)})")
    elif dedup_done is False:
        phase = "dedup"
    elif plan is None:
        phase = "mix"
    elif len(entries) < (planned or 0):
        phase = "shards"
    elif len(docs & set(keys)) < n_total:
        phase = "documents"
    else:
        phase = "finalize"
    if not complete:
        if dedup_done is False:
            missing.append("work/dedup/done.json: dedup has not finished")
        if plan is None:
            missing.append("work/mix/plan.json: the mix has not been planned (no shard can exist yet)")
        elif planned is not None and len(entries) < planned:
            have = {int(e["index"]) for e in entries}
            names = [f"{recipe.shards.name}_{i:05d}" for i in range(planned) if i not in have]
            missing.append(f"{len(names)} of {planned} shards not written ({few(names)})")
        if keys is not None and len(docs & set(keys)) < n_total:
            missing.append(f"{n_total - len(docs & set(keys))} of {n_total} documents/ tables not written")
        missing.append("manifest.json: finalize has not run (ledger.json, manifest.json and LICENSES.md are "
                       "written last)")
    shards = [{"name": e.get("name"), "tokens": e.get("tokens"), "sequences": e.get("sequences"),
               "by_group": {r.get("group"): r.get("tokens") for r in e.get("by_group", [])}} for e in entries]
    return {"phase": phase, "partitions_done": n_done, "partitions_total": n_total, "dedup_done": dedup_done,
            "mix_done": plan is not None, "shards_done": len(entries), "shards_planned": planned,
            "documents_done": len(docs), "manifest": complete, "shards": shards, "missing": missing}


#: What each kind of file listed in the manifest is, for messages.
_FILE_WHAT = (("shards/", "lineage"), ("documents/", "documents table"), ("quarantine/", "quarantine table"),
              ("ledger.json", "ledger"))


def check_files(run_dir: Path, manifest: dict, violations: list[dict], *, verify: bool) -> None:
    """Sizes (always) and sha256 (``verify``) of the files the manifest lists under ``files``."""
    for rel, want in sorted((manifest.get("files") or {}).items()):
        what = next((w for prefix, w in _FILE_WHAT if rel.startswith(prefix)), "file")
        p = run_dir / rel
        try:
            size = p.stat().st_size
        except FileNotFoundError:
            violations.append({"kind": "file_missing", "where": rel,
                               "message": f"{rel}: the {what} listed in the manifest is missing"})
            continue
        if size != want.get("bytes"):
            violations.append({"kind": "file_size", "where": rel,
                               "message": f"{rel}: the {what} has {size:,} bytes, the manifest says "
                                          f"{want.get('bytes'):,} (truncated or modified)"})
        elif verify and sha256_file(p) != want.get("sha256"):
            violations.append({"kind": "file_checksum", "where": rel,
                               "message": f"{rel}: the {what}'s sha256 does not match the manifest (modified or "
                                          "damaged); rerun `curate run` with --force to rewrite the run"})


def empty_inputs(run_dir: Path) -> list[dict]:
    """A flag per 0-byte input file (it adds no record, which is rarely what was meant)."""
    try:
        parts = read_json(RunLayout(run_dir).partitions_json)
    except (OSError, ValueError):
        return []
    out = []
    for p in parts if isinstance(parts, list) else []:
        if isinstance(p, dict) and p.get("nbytes") == 0 and not str(p.get("path", "")).startswith("hf://"):
            out.append({"kind": "empty_input_file", "where": str(p.get("source")),
                        "message": f"{p.get('source')}: input file {p.get('path')} is empty (0 bytes) and added "
                                   "no record"})
    return out


def text_hygiene(led: Ledger) -> tuple[dict[str, dict[str, int]], list[dict]]:
    """Ingest ``text_*`` counters per source (what the text-hygiene policy changed), and a flag per source
    whose UTF-8 books held invalid bytes (replaced by U+FFFD)."""
    out: dict[str, dict[str, int]] = {}
    flags = []
    for src, c in sorted(led.by_source("ingest").items()):
        fixes = {k: v for k, v in sorted(c.counters.items()) if k.startswith("text_") and v}
        if fixes:
            out[src] = fixes
        if fixes.get("text_invalid_utf8_replaced"):
            flags.append({"kind": "invalid_utf8_replaced", "where": src,
                          "message": f"{src}: {fixes['text_invalid_utf8_replaced']:,} document(s) declared UTF-8 "
                                     f"held {fixes.get('text_invalid_utf8_sequences', 0):,} invalid byte "
                                     "sequence(s), kept as U+FFFD"})
    return out, flags


def duplicate_id_flags(led: Ledger) -> list[dict]:
    """A flag per source whose input has documents sharing a ``doc_id`` (ledger counter ``duplicate_doc_ids``)."""
    out = []
    for src, c in sorted(led.by_source("ingest").items()):
        n = c.counters.get("duplicate_doc_ids", 0)
        if n:
            out.append({"kind": "duplicate_doc_ids", "where": src,
                        "message": f"{src}: {n:,} document(s) share their doc_id with an earlier document of the "
                                   "same input file (repeated native ids); lineage rows of those ids are ambiguous"})
    return out


def read_shard_summaries(run_dir: Path, recipe: Recipe, entries: list[dict], violations: list[dict], *,
                         verify: bool, probe: dict | None = None) -> Summaries:
    """Per-shard summaries of every complete shard, each checked against each format's own index (one Ray task
    per shard, :func:`curate.shard_summary.summarize`); violations are appended, a shard's in entry order.

    Every format of a shard (its manifest entry's ``formats``) is read back by its reader in
    :mod:`curate.shard_formats`: the sequence sizes of its index, checked against its data file's size, must
    equal the lineage's token counts; ``verify`` rehashes every file. ``probe``: the validation sets' ids, which
    each task looks up in its lineage.
    """
    from curate.shard_formats import WRITERS, shard_formats

    shard_dir = RunLayout(run_dir).shards_dir
    listed = {x["path"] for e in entries for f in shard_formats(e).values() for x in f["files"]}
    if shard_dir.is_dir():
        for fmt, cls in WRITERS.items():
            for p in sorted(shard_dir.glob(cls.glob)):
                rel = p.relative_to(shard_dir).as_posix()
                if rel not in listed:
                    violations.append({"kind": "shard_not_in_manifest", "where": rel,
                                       "message": f"shard {rel} ({fmt}) is in shards/ but not in the manifest"})
    summaries, found = summarize_shards(run_dir, entries, verify=verify, group_names=list(recipe.mixture),
                                        probe=probe)
    violations.extend(found)
    return summaries


# ---------------------------------------------------------------------------- composition
def targets(recipe: Recipe, plan: dict | None = None) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """Target shares per group, source and subset; members of a balanced group that pools several members
    take their planned share (it follows their supply of each value, not a weight)."""
    groups = {g: gc.share for g, gc in recipe.mixture.items()}
    sources: dict[str, float] = {s: 0.0 for s in recipe.sources}
    subsets: dict[str, float] = {}
    pooled = {m for _s, _g, mk, _b in recipe.balance_scopes() if len(mk) > 1 for m in mk}
    planned = {m["key"]: m["share"] for m in ((plan or {}).get("members") or {}).get("members", [])}
    for g, s, sub, share in recipe.members():
        k = recipe.member_key(g, s, sub)
        if k in pooled and k in planned:
            share = planned[k]
        sources[s] = sources.get(s, 0.0) + share
        if sub:
            subsets[f"{s}/{sub}"] = subsets.get(f"{s}/{sub}", 0.0) + share
    return groups, sources, subsets


def _sum_by(t: pa.Table, keys: list[str], col: str = "tokens") -> dict[tuple, int]:
    if t.num_rows == 0:
        return {}
    g = t.group_by(keys).aggregate([(col, "sum")])
    return {tuple(r[k] for k in keys): int(r[f"{col}_sum"]) for r in g.to_pylist()}


def _ranked(t: pa.Table, col: str) -> dict[str, int]:
    """Tokens per value of ``col``, largest first (empty when the table has no such column)."""
    if col not in t.column_names:
        return {}
    return {str(k[0]): v for k, v in sorted(_sum_by(t, [col]).items(), key=lambda kv: -kv[1])}


def composition(lineage: pa.Table, recipe: Recipe, plan: dict | None = None) -> dict[str, Any]:
    total = int(np.sum(lineage["tokens"].to_numpy())) if lineage.num_rows else 0
    tg, ts, tsub = targets(recipe, plan)
    by_g = _sum_by(lineage, ["group"])
    by_s = _sum_by(lineage, ["source"])
    by_sub = _sum_by(lineage, ["source", "subset"])

    def entry(target: float, tokens: int) -> dict:
        return {"target": round(target, 8), "actual": (tokens / total if total else 0.0), "tokens": tokens}

    subsets = {}
    for (s, b), tok in by_sub.items():
        if b:
            subsets[f"{s}/{b}"] = entry(tsub.get(f"{s}/{b}", float("nan")), tok)
    for k, v in tsub.items():
        subsets.setdefault(k, entry(v, 0))
    return {
        "total_tokens": total,
        "groups": {g: entry(t, by_g.get((g,), 0)) for g, t in tg.items()},
        "sources": {s: entry(t, by_s.get((s,), 0)) for s, t in ts.items()},
        "subsets": {k: subsets[k] for k in sorted(subsets)},
        "languages": _ranked(lineage, "lang"),
        "licenses": _ranked(lineage, "license"),
    }


def balance_section(lineage: pa.Table, recipe: Recipe, plan: dict | None) -> tuple[dict, dict]:
    """Per balanced scope and value: planned supply and target against what the lineage holds.

    Returns ``(balance, dropped)``: ``balance[scope][value] = {supply_tokens, target, actual, epochs, ...}`` with
    ``target``/``actual`` shares of the scope's tokens and ``epochs = tokens / supply_tokens``; ``dropped``
    lists the values ``min_tokens`` removed, with their reasons.
    """
    from curate.balance import null_value

    planned = (plan or {}).get("members", {}).get("balance") or {}
    out, dropped = {}, {}
    for scope, g, mkeys, b in recipe.balance_scopes():
        sp = planned.get(scope)
        if sp is None:
            continue
        mask = pc.equal(lineage["group"], g) if lineage.num_rows else None
        if mask is not None and len(mkeys) == 1 and ":" in scope:  # a member's balance: that entry only
            src, _, sub = scope.split(":", 1)[1].partition("/")
            mask = pc.and_(mask, pc.equal(lineage["source"], src))
            if sub:
                mask = pc.and_(mask, pc.equal(lineage["subset"], sub))
        rows = lineage.filter(mask) if mask is not None else lineage.slice(0, 0)
        col = {"lang": "lang", "subset": "subset"}.get(b.by, "balance")
        got: dict[str, int] = {}
        if rows.num_rows and col in rows.column_names:
            vals = pc.fill_null(rows[col].cast(pa.string()), null_value(b.by))
            if b.by == "subset":
                vals = pc.if_else(pc.equal(vals, ""), null_value(b.by), vals)
            got = {k[0]: v for k, v in _sum_by(pa.table({"v": vals, "tokens": rows["tokens"]}), ["v"]).items()}
        total = sum(got.values())
        entry = {}
        for v in sp["values"]:
            tok = got.pop(v["value"], 0)
            entry[v["value"]] = {"supply_tokens": v["supply"], "target": v["share"],
                                 "actual": tok / total if total else 0.0,
                                 "epochs": tok / v["supply"] if v["supply"] else 0.0, "target_tokens": v["target"],
                                 "tokens": tok, "capped": v["capped"]}
        for value, tok in got.items():  # a value the plan did not give tokens to (should not happen)
            entry[value] = {"supply_tokens": None, "target": 0.0, "actual": tok / total if total else 0.0,
                            "epochs": None, "target_tokens": 0, "tokens": tok, "capped": False}
        for e in entry.values():
            e["deviation_pp"] = 100 * (e["actual"] - e["target"])
        out[scope] = entry
        dropped[scope] = list(sp.get("dropped", []))
    return out, dropped


def balance_violations(bal: dict, tol_pp: float) -> list[dict]:
    viol = []
    for scope, values in bal.items():
        for v, e in values.items():
            if e["target"] > 0 and e["tokens"] == 0:
                viol.append({"kind": "missing_balance_value", "where": f"{scope}/{v}",
                             "message": f"{scope}: value {v!r} has target {e['target']:.2%} of the scope, found 0 "
                                        "tokens"})
            elif abs(e["deviation_pp"]) > tol_pp + 1e-9:
                viol.append({"kind": "balance_out_of_tolerance", "where": f"{scope}/{v}",
                             "message": f"{scope}: value {v!r} is {e['actual']:.3%} of the scope vs target "
                                        f"{e['target']:.3%} (tolerance {tol_pp:.2f} pp of the scope)"})
    return viol


# ---------------------------------------------------------------------------- funnel and ledger checks
def funnel(led: Ledger, recipe: Recipe) -> dict[str, dict[str, dict]]:
    out: dict[str, dict[str, dict]] = {}
    for src in recipe.sources:
        out[src] = {}
        for st in stage_names():
            c = led.by_source(st).get(src)
            if c is None:
                continue
            out[src][st] = {"docs_in": c.docs_in, "docs_out": c.docs_out, "bytes_in": c.bytes_in,
                            "bytes_out": c.bytes_out, "tokens_in": c.tokens_in, "tokens_out": c.tokens_out,
                            "dropped": dict(sorted(c.dropped.items(), key=lambda kv: -kv[1])),
                            "quarantined": dict(c.quarantined)}
    return out


def where_lost(fun: dict[str, dict], source: str) -> str:
    """Name the stage where ``source`` lost its documents, with its top drop reasons."""
    stages = fun.get(source, {})
    if not stages:
        return "before ingest (no partition of this source was processed)"
    for st in stage_names():
        c = stages.get(st)
        if c is None:
            continue
        if c["docs_in"] > 0 and c["docs_out"] == 0:
            reasons = {**c["dropped"], **{f"quarantined:{k}": v for k, v in c["quarantined"].items()}}
            top = ", ".join(f"{k} {v}" for k, v in list(reasons.items())[:3])
            return f"stage {st}" + (f" ({top})" if top else "")
        if c["docs_in"] == 0:
            return f"stage {st} (received no documents)" if st != "ingest" else "ingest (the source's files hold no records)"
    return "mix (the mixer wrote none of its documents)"


def ledger_flags(led: Ledger, recipe: Recipe, fun: dict) -> tuple[list[dict], list[dict]]:
    flags, violations = [], []
    for src, stages in fun.items():
        scfg = recipe.sources[src]
        limit = scfg.max_drop_share if scfg.max_drop_share is not None else recipe.max_drop_share
        for st, c in stages.items():
            if st == "mix" or c["docs_in"] == 0:
                continue
            removed = c["docs_in"] - c["docs_out"]
            share = removed / c["docs_in"]
            if c["docs_out"] == 0 and not scfg.allow_drop_all:
                violations.append({"kind": "source_emptied", "where": f"{st}/{src}",
                                   "message": f"{src}: stage {st} removed all {c['docs_in']} documents "
                                              f"({', '.join(f'{k} {v}' for k, v in list(c['dropped'].items())[:3])}); "
                                              "if intended, set `allow_drop_all: true` on the source"})
            elif share > limit:
                flags.append({"kind": "high_drop_share", "where": f"{st}/{src}",
                              "message": f"{src}: stage {st} removed {share:.1%} of documents (limit {limit:.0%})"})
    return flags, violations


def decontamination(led: Ledger, recipe: Recipe, run_dir: Path) -> tuple[dict[str, Any] | None, list[dict]]:
    """Benchmark × source table of what the ``decontaminate`` stage removed (or, with ``annotate``, matched).

    Returns ``({"mode", "evals", "table": {eval: {source: {docs, tokens, matched}}}, "sources": {source:
    {docs_in, docs_removed, tokens_removed, share_removed}}, "index": {...}}, flags)``; None without the block.
    Flags: ``decontamination_expected`` (an eval set named in ``expect`` matched nothing where expected) and
    ``decontamination_drop_share`` (a source lost more than ``decontaminate.max_drop_share`` of its documents).
    """
    d = recipe.decontaminate
    if d is None:
        return None, []
    from curate.stages.decontaminate import REASON_PREFIX

    by_src = led.by_source("decontaminate")
    table: dict[str, dict[str, dict[str, int]]] = {e: {} for e in d.evals}
    sources: dict[str, dict[str, Any]] = {}
    flags: list[dict] = []
    for src in recipe.sources:
        c = by_src.get(src)
        if c is None:
            continue
        removed = tokens = 0
        for e in d.evals:
            n = c.dropped.get(REASON_PREFIX + e, 0)
            t = c.dropped_tokens.get(REASON_PREFIX + e, 0)
            table[e][src] = {"docs": n, "tokens": t, "matched": c.counters.get(f"matched:{e}", 0)}
            removed += n
            tokens += t
        share = removed / c.docs_in if c.docs_in else 0.0
        sources[src] = {"docs_in": c.docs_in, "docs_removed": removed, "tokens_removed": tokens,
                        "share_removed": share}
        if share > d.max_drop_share:
            flags.append({"kind": "decontamination_drop_share", "where": f"decontaminate/{src}",
                          "message": f"{src}: decontamination removed {share:.1%} of its documents ({removed:,}; "
                                     f"limit decontaminate.max_drop_share {d.max_drop_share:.0%}): the source holds "
                                     "benchmark copies, or an eval set indexes boilerplate"})
    for src, evs in d.expected(list(recipe.sources)).items():
        for e in evs:
            where = list(sources) if src == "*" else [src]
            hits = sum(table[e].get(s, {}).get("matched", 0) for s in where)
            if hits == 0:
                scope = "any source" if src == "*" else src
                flags.append({"kind": "decontamination_expected", "where": f"decontaminate/{e}",
                              "message": f"eval set {e!r} matched nothing in {scope}, which the recipe expects to "
                                         "contain it (`decontaminate.expect`): check its paths and fields"})
    p = RunLayout(run_dir).decont_index
    index = read_json(p) if p.exists() else None
    return {"mode": d.mode, "ngram": d.ngram, "evals": list(d.evals), "table": table, "sources": sources,
            "index": index}, flags


def dedup_matrix(run_dir: Path) -> dict[str, dict[str, int]]:
    p = RunLayout(run_dir).dedup_done
    try:
        return read_json(p).get("matrix", {})
    except (OSError, ValueError, AttributeError):
        return {}  # not written yet, or damaged: the matrix is informative only


def report_sections(run_dir: Path, plan: dict | None, tolerance_pp: float) -> dict[str, Any]:
    """What the report draws besides the composition (each key is empty or None until the run produces it).

    ``tolerance_pp`` (the share tolerance applied), ``members`` (per mixture member: key, group, source,
    subset, share, available and target tokens, epochs; from the mix plan), ``timings`` (per phase: wall and CPU
    seconds, ``RUN_DIR/stats.json``), ``scores`` (per source and score column: a two-significant-digit
    histogram and the thresholds, see ``curate.samples``), ``samples`` (rows, bytes and k of the merged document
    sample, None before finalize).
    """
    from curate.samples import load_scores, samples_info
    from curate.timings import read_stage_rows, read_timings

    members = ((plan or {}).get("members") or {}).get("members") or []
    return {"tolerance_pp": tolerance_pp, "members": members, "timings": read_timings(run_dir),
            "stages": read_stage_rows(run_dir),
            "scores": load_scores(run_dir), "samples": samples_info(run_dir)}


# ---------------------------------------------------------------------------- trainer views
def _view_table(summ: Summaries, weights: dict[tuple, int]) -> pa.Table:
    """``group, source, subset, tokens``: the tokens a view reads per key (every key of the stream listed)."""
    ks = list(weights)
    return pa.table({"group": pa.array([k[0] for k in ks], pa.string()),
                     "source": pa.array([k[1] for k in ks], pa.string()),
                     "subset": pa.array([k[2] for k in ks], pa.string()),
                     "tokens": pa.array([weights[k] for k in ks], pa.int64())})


def consumed_view(summ: Summaries, recipe: Recipe, n_tokens: int, plan: dict | None = None) -> dict[str, Any]:
    """Composition of the first ``n_tokens`` a trainer reading the shards in order has seen (the shards that
    overlap them, a task each: :func:`curate.shard_summary.weighted_keys`)."""
    total = summ.idx_total
    n = min(int(n_tokens), total)
    w = weighted_keys(summ, np.array([0]), np.array([n]))
    comp = composition(_view_table(summ, w), recipe, plan)
    comp["consumed_tokens"] = n
    comp["requested_tokens"] = int(n_tokens)
    comp["stream_tokens"] = total
    return comp


def rwkv_view(summ: Summaries, recipe: Recipe, *, magic_prime: int, ctx_len: int, samples: int,
              epoch: int = 0, samples_per_epoch: int | None = None, world_size: int = 1,
              plan: dict | None = None) -> dict[str, Any]:
    """Composition of the tokens RWKV-LM's sampler reads for global samples 0..samples-1.

    RWKV-LM (``src/dataset.py``): ``ii = 1 + epoch*samples_per_epoch + idx*world_size + rank``,
    ``factor = int(magic_prime * (sqrt(5)-1)/2)``, ``i = ((factor * ii**3) % magic_prime) * ctx_len``, and it reads
    ``ctx_len + 1`` tokens of the flat stream at offset ``i``. Global sample ``g`` = ``idx*world_size + rank``.
    Each shard sums the samples' tokens that fall in it (:func:`curate.shard_summary.weighted_keys`).
    """
    factor = int(magic_prime * (math.sqrt(5) - 1) / 2)
    spe = samples_per_epoch or samples
    offs = [((factor * (1 + epoch * spe + g) ** 3) % magic_prime) * ctx_len for g in range(samples)]
    lo = np.array(offs, dtype=np.int64)
    w = weighted_keys(summ, lo, lo + (ctx_len + 1))
    comp = composition(_view_table(summ, w), recipe, plan)
    comp.update({"samples": samples, "magic_prime": magic_prime, "ctx_len": ctx_len,
                 "read_tokens": int(sum(w.values()))})
    return comp


def stream_check(summ: Summaries, recipe: Recipe) -> dict[str, Any] | None:
    """Largest deviation of a group's share over windows of W = max(1% of tokens, 100 × longest sequence).

    Measured on the sequences in stream order, against the achieved whole-mixture shares: exactly
    :func:`curate.mix.core.window_max_deviation` over the whole stream, computed per shard
    (:func:`curate.shard_summary.window_check`).
    """
    out = window_check(summ)
    if out is not None:
        out.pop("_at")
    return out


# ---------------------------------------------------------------------------- the audit
def audit(run_dir: str | Path, *, verify: bool = False, consumed_tokens: int | None = None,
          rwkv: dict[str, int] | None = None, against: str | Path | None = None) -> dict[str, Any]:
    """Audit a (possibly still running) run directory. See the module docstring for the result."""
    run_dir = Path(run_dir)
    violations: list[dict] = []
    recipe, manifest, plan, entries = _load(run_dir, violations)
    from curate.validation import audit_validation, read_held_out

    held = read_held_out(run_dir, manifest)
    summ = read_shard_summaries(run_dir, recipe, entries, violations, verify=verify,
                                probe=held.probe() if held is not None else None)
    keys = summ.key_table()
    if manifest is not None:
        check_files(run_dir, manifest, violations, verify=verify)
        from curate.shard_formats import check_run_files

        violations.extend(check_run_files(run_dir, manifest))
    validation = audit_validation(held, summ, violations)
    comp = composition(keys, recipe, plan)
    led = _ledger(run_dir, violations)
    fun = funnel(led, recipe)
    complete = manifest is not None
    prog = run_progress(run_dir, recipe, manifest, plan, entries)
    planned = prog["shards_planned"]
    run_info = {"run_dir": str(run_dir), "name": recipe.name, "complete": complete, "shards_done": len(entries),
                "shards_planned": planned,
                "planned_tokens": plan.get("tokens") if plan else None,
                "progress": (len(entries) / planned if planned else (1.0 if complete else 0.0))}
    violations.extend(led.conservation_violations())
    flags, v2 = ledger_flags(led, recipe, fun)
    violations.extend(v2)
    flags.extend(empty_inputs(run_dir))
    flags.extend(duplicate_id_flags(led))
    hygiene, hygiene_flags = text_hygiene(led)
    flags.extend(hygiene_flags)
    decont, decont_flags = decontamination(led, recipe, run_dir)
    flags.extend(decont_flags)

    tol = (recipe.tolerance_pp if complete else STREAM_TOLERANCE_PP) / 100.0
    tolerance = {"applied_pp": tol * 100, "recipe_pp": recipe.tolerance_pp, "partial": not complete,
                 "why": ("the finished run is held to the recipe's tolerance_pp" if complete else
                         f"a prefix of the stream is only held to the interleaver's window bound "
                         f"({STREAM_TOLERANCE_PP} pp), not to the recipe's {recipe.tolerance_pp} pp")}
    total = comp["total_tokens"]
    # a source the filters emptied is missing whether or not shards exist yet: say so mid-run
    emptied = {s for s in recipe.sources if fun.get(s) and any(
        c["docs_in"] > 0 and c["docs_out"] == 0 for st, c in fun[s].items() if st != "mix")}
    if not (entries or complete):
        for name in sorted(emptied):
            e = comp["sources"].get(name)
            if e and e["target"] > 0:
                grp = next((g for g, s, _sub, _ in recipe.members() if s == name), "?")
                gshare = recipe.mixture[grp].share if grp in recipe.mixture else 1.0
                violations.append({"kind": "missing_source", "where": name,
                                   "message": f"{name}: target {e['target'] / gshare:.1%} of {grp}, found 0 tokens — "
                                              f"dropped at {where_lost(fun, name)}"})
    if entries or complete:
        for kind, level in (("group", "groups"), ("source", "sources"), ("subset", "subsets")):
            for name, e in comp[level].items():
                if not (e["target"] > 0):
                    continue
                if e["tokens"] == 0:
                    if kind == "group":
                        msg = f"{name}: target {e['target']:.1%} of the mixture, found 0 tokens"
                    else:
                        src = name.split("/")[0]
                        grp = next((g for g, s, sub, _ in recipe.members() if s == src), "?")
                        gshare = recipe.mixture[grp].share if grp in recipe.mixture else 1.0
                        msg = (f"{name}: target {e['target'] / gshare:.1%} of {grp}, found 0 tokens — dropped at "
                               f"{where_lost(fun, src)}")
                    violations.append({"kind": f"missing_{kind}", "where": name, "message": msg})
                elif total and abs(e["actual"] - e["target"]) > tol + 1e-12:
                    violations.append({"kind": "share_out_of_tolerance", "where": name,
                                       "message": f"{name}: share {e['actual']:.3%} vs target {e['target']:.3%} "
                                                  f"(tolerance {tol * 100:.2f} pp)"})
    bal, bal_dropped = balance_section(keys, recipe, plan)
    if entries or complete:
        violations.extend(balance_violations(bal, tol * 100))
    stream = stream_check(summ, recipe)
    if stream and stream["max_deviation_pp"] > STREAM_TOLERANCE_PP:
        flags.append({"kind": "stream_composition", "where": "stream",
                      "message": f"a window of {stream['window_tokens']:,} tokens deviates "
                                 f"{stream['max_deviation_pp']:.2f} pp from a group's share (bound "
                                 f"{STREAM_TOLERANCE_PP} pp): a trainer stopped there saw a skewed mixture"})
    damaged = any(v["kind"].startswith(("shard_", "file_", "lineage_", "corrupt_")) for v in violations)
    if complete and not damaged:  # a missing or damaged shard already explains a shortfall
        longest = summ.idx_max
        budget_check(run_dir, recipe, plan, manifest, comp, longest, flags, violations)
    result: dict[str, Any] = {"status": "complete" if complete else "incomplete", "progress": prog,
                              "tolerance": tolerance, "run": run_info, **comp, "stream": stream, "funnel": fun,
                              "dedup_matrix": dedup_matrix(run_dir), "text_hygiene": hygiene,
                              "balance": bal, "balance_dropped": bal_dropped, "flags": flags,
                              "violations": violations}
    result["trims"] = trim_notes(plan)
    if decont is not None:
        result["decontamination"] = decont
    if validation is not None:
        result["validation"] = validation
    result.update(report_sections(run_dir, plan, tol * 100))
    if manifest and "rwkv" in manifest:
        result["rwkv"] = manifest["rwkv"]
    if consumed_tokens is not None:
        result["trainer_view"] = consumed_view(summ, recipe, consumed_tokens, plan)
    if rwkv:
        result["rwkv_view"] = rwkv_view(summ, recipe, **rwkv, plan=plan)
    if against is not None:
        other = audit(against)
        result["against"] = diff(other, result)
    return result


def _longest_kept(run_dir: Path, sources: list[str]) -> dict[str, int]:
    """Longest sequence (tokens with eos) each of ``sources`` had after the filters, from ``work/parts``."""
    parts = RunLayout(run_dir).parts_dir
    best: dict[str, int] = {}
    for p in sorted(parts.glob("*.kept.parquet")) if parts.is_dir() else []:
        try:
            t = pq.read_table(p, columns=["source", "tokens"])
        except _READ_ERRORS:
            continue
        if t.num_rows == 0:
            continue
        for r in t.group_by("source").aggregate([("tokens", "max")]).to_pylist():
            if r["source"] in sources:
                best[r["source"]] = max(best.get(r["source"], 0), int(r["tokens_max"]))
    return best


def trim_notes(plan: dict | None) -> list[dict]:
    """The sequences the mixer trimmed to hit a member's target exactly (``plan.json``'s ``trims``), explained.

    Whole sequences fill a target within one sequence; the mixer cuts the closing one to its first tokens
    (:func:`curate.mix.core.trim_selection`), so the member's share is exact to the token with or without
    ``max_doc_tokens``. Not a flag: a trim is how the share is met. The lineage row of the sequence holds its
    trimmed ``tokens``; the order file marks it ``trimmed``.
    """
    out = []
    for t in (plan or {}).get("trims") or []:
        where = t["member"] + (f" (balance value {t['balance']!r})" if t.get("balance") is not None else "")
        out.append({**t, "message": f"{where}: {t['doc_id']} chunk {t['chunk']} keeps {t['tokens']:,} of its "
                                    f"{t['of']:,} tokens (eos included) so the member gives exactly its target"})
    return out


def budget_check(run_dir: Path, recipe: Recipe, plan: dict | None, manifest: dict, comp: dict,
                 longest_written: int, flags: list[dict], violations: list[dict]) -> None:
    """Say when the shards hold fewer tokens than the budget, by how much, and why.

    ``on_shortfall: rescale`` lowers the budget on purpose (the manifest's ``rescaled``). The mixer trims each
    member's closing sequence to its target (``trim_to_target``, on by default: :func:`trim_notes`), so a member is
    exact to the token whatever its document lengths; a gap then comes only from ``trim_to_target: false`` (the
    unit of selection is a whole sequence: a member whose documents are longer than its target, one huge
    document and no ``max_doc_tokens``, cannot be filled) or a member whose unused sequences are all shorter than
    its gap. A gap above the recipe's tolerance is a flag; above the stream tolerance (1% of the budget) it is a
    ``budget_undershoot`` violation. A gap no longer than the longest sequence written (``longest_written``) is
    the selection's granularity and is not reported.
    """
    requested = int(recipe.budget_tokens)
    total = comp["total_tokens"]
    members = (plan or {}).get("members") or manifest.get("mix") or {}
    planned = int(members.get("budget_tokens") or requested)
    if manifest.get("rescaled") or members.get("rescaled"):
        flags.append({"kind": "budget_rescaled", "where": "budget",
                      "message": f"on_shortfall: rescale lowered the budget from {requested:,} to {planned:,} "
                                 f"tokens ({planned / requested:.2%}): {members.get('note') or 'see the manifest'}"})
    short = planned - total
    # the mixer fills each target to within one sequence: a gap no longer than the longest sequence written
    # is the selection's granularity, not a loss
    if short <= max(recipe.tolerance_pp / 100.0 * planned, 1.0, longest_written):
        return
    # members furthest below their targets, and the longest document each had
    want: dict[str, int] = {}
    for m in members.get("members", []):
        want[m["source"]] = want.get(m["source"], 0) + int(m.get("target", 0))
    comp_sources = {s: e["tokens"] for s, e in comp["sources"].items()}
    gaps = sorted(((s, t - comp_sources.get(s, 0)) for s, t in want.items() if t - comp_sources.get(s, 0) > 0),
                  key=lambda kv: -kv[1])
    longest = _longest_kept(run_dir, [s for s, _ in gaps[:3]])
    causes = []
    for s, gap in gaps[:3]:
        why = f"{s} wrote {comp_sources.get(s, 0):,} of its {want[s]:,} target tokens"
        if recipe.max_doc_tokens and s in longest:
            longest[s] = min(longest[s], recipe.max_doc_tokens + 1)
        if s in longest and longest[s] > gap:
            why += (f"; its longest document is {longest[s]:,} tokens, longer than the {gap:,} left to fill, and "
                    + ("`max_doc_tokens` is not set: set it to split long documents into sequences"
                       if not recipe.max_doc_tokens else "no shorter document was left")
                    + ("" if recipe.trim_to_target else
                       " (or drop `trim_to_target: false`: the mixer then trims the closing sequence to the target)"))
        causes.append(why)
    msg = (f"the shards hold {total:,} tokens, {short:,} ({short / planned:.2%}) short of the budget of "
           f"{planned:,}" + (f" (rescaled from {requested:,})" if planned != requested else "")
           + ": " + ("; ".join(causes) if causes else "the unit of selection is coarser than the gap"))
    entry = {"kind": "budget_undershoot", "where": "budget", "message": msg, "tokens": total, "budget": planned,
             "short_by": short}
    if short > STREAM_TOLERANCE_PP / 100.0 * planned:
        violations.append(entry)
    else:
        flags.append(entry)


def diff(old: dict, new: dict) -> dict[str, Any]:
    """Share changes between two audits (``--against``): per group/source/subset, old → new."""
    out: dict[str, Any] = {"total_tokens": {"old": old["total_tokens"], "new": new["total_tokens"]}}
    for level in ("groups", "sources", "subsets"):
        names = sorted(set(old[level]) | set(new[level]))
        rows = {}
        for n in names:
            o, w = old[level].get(n, {}), new[level].get(n, {})
            rows[n] = {"old_actual": o.get("actual"), "new_actual": w.get("actual"), "old_tokens": o.get("tokens"),
                       "new_tokens": w.get("tokens"),
                       "delta_pp": (None if o.get("actual") is None or w.get("actual") is None
                                    else (w["actual"] - o["actual"]) * 100)}
        out[level] = rows
    return out


def exit_code(result: dict, *, partial: bool = False) -> int:
    """1 on a violation; :data:`EXIT_INCOMPLETE` (3) on an incomplete run unless ``partial``; else 0."""
    if result["violations"]:
        return 1
    if result.get("status") == "incomplete" and not partial:
        return EXIT_INCOMPLETE
    return 0


# ---------------------------------------------------------------------------- rendering
def render_table(result: dict, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console(width=max(Console().width, 140))
    r = result["run"]
    prog = result.get("progress") or {}
    if r["complete"]:
        state = "complete"
    else:
        state = (f"[bold yellow]INCOMPLETE[/bold yellow] (phase {prog.get('phase', '?')}: partitions "
                 f"{prog.get('partitions_done', '?')}/{prog.get('partitions_total') or '?'}, shards "
                 f"{r['shards_done']}/{r['shards_planned'] or '?'})")
    console.print(f"[bold]curate audit[/bold] {r['name']} — {state}, {result['total_tokens']:,} tokens")
    for m in prog.get("missing", []):
        console.print(f"[yellow]missing[/yellow] {m}")
    tol = result.get("tolerance") or {}
    if tol.get("partial"):
        console.print(f"[yellow]partial view[/yellow]: shares are held to {tol['applied_pp']:g} pp, not the recipe's "
                      f"{tol['recipe_pp']:g} pp ({tol['why']})")
    for level in ("groups", "sources", "subsets"):
        if not result[level]:
            continue
        t = Table(title=level, title_justify="left")
        for c in ("name", "target", "actual", "Δ pp", "tokens"):
            t.add_column(c, justify="right" if c != "name" else "left")
        for name, e in result[level].items():
            d = (e["actual"] - e["target"]) * 100 if e["target"] == e["target"] else float("nan")
            t.add_row(name, f"{e['target']:.2%}", f"{e['actual']:.2%}", f"{d:+.3f}", f"{e['tokens']:,}")
        console.print(t)
    for scope, values in (result.get("balance") or {}).items():
        t = Table(title=f"balance: {scope} (shares of the scope)", title_justify="left")
        for c in ("value", "supply", "target", "actual", "Δ pp", "tokens", "epochs", "capped"):
            t.add_column(c, justify="right" if c != "value" else "left")
        for v, e in values.items():
            sup = f"{e['supply_tokens']:,}" if e["supply_tokens"] is not None else "-"
            t.add_row(v, sup, f"{e['target']:.2%}", f"{e['actual']:.2%}", f"{e['deviation_pp']:+.3f}",
                      f"{e['tokens']:,}", f"{e['epochs']:.2f}" if e["epochs"] is not None else "-",
                      "yes" if e["capped"] else "")
        console.print(t)
        for d in (result.get("balance_dropped") or {}).get(scope, []):
            console.print(f"balance: {scope}: value {d['value']!r} dropped: {d['reason']}")
    t = Table(title="funnel (documents)", title_justify="left")
    t.add_column("source")
    for st in stage_names():
        t.add_column(st, justify="right")
    t.add_column("top drop reasons")
    for src, stages in result["funnel"].items():
        cells = [f"{stages[st]['docs_out']:,}" if st in stages else "-" for st in stage_names()]
        reasons: dict[str, int] = {}
        for c in stages.values():
            for k, v in c["dropped"].items():
                reasons[k] = reasons.get(k, 0) + v
            for k, v in c["quarantined"].items():
                reasons[f"quarantined:{k}"] = reasons.get(f"quarantined:{k}", 0) + v
        top = ", ".join(f"{k} {v}" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1])[:3])
        t.add_row(src, *cells, top)
    console.print(t)
    if result.get("dedup_matrix"):
        t = Table(title="dedup: documents removed from (row) whose kept copy is in (column)", title_justify="left")
        cols = sorted({k for row in result["dedup_matrix"].values() for k in row})
        t.add_column("removed from")
        for c in cols:
            t.add_column(c, justify="right")
        for src, row in sorted(result["dedup_matrix"].items()):
            t.add_row(src, *[f"{row.get(c, 0):,}" if row.get(c) else "" for c in cols])
        console.print(t)
    dc = result.get("decontamination")
    if dc:
        t = Table(title=f"decontamination ({dc['mode']}, {dc['ngram']}-grams): documents / tokens removed "
                        "(matched)", title_justify="left")
        srcs = list(dc["sources"])
        t.add_column("benchmark")
        for c in srcs:
            t.add_column(c, justify="right")
        for ev, row in dc["table"].items():
            t.add_row(ev, *[f"{row[c]['docs']:,} / {row[c]['tokens']:,} ({row[c]['matched']:,})" if c in row else "-"
                            for c in srcs])
        console.print(t)
    if result.get("licenses"):
        console.print("licenses: " + ", ".join(f"{k} {v:,}" for k, v in list(result["licenses"].items())[:8]))
    from curate.validation import render as render_validation

    render_validation(result.get("validation"), console)
    for t in result.get("trims") or []:
        console.print(f"trim: {t['message']}")
    for f in result["flags"]:
        console.print(f"[yellow]flag[/yellow] {f['message']}")
    if result["violations"]:
        for v in result["violations"]:
            console.print(f"[red]VIOLATION[/red] {v['kind']} {v['where']}: {v['message']}")
    elif result.get("status") == "incomplete":
        console.print(f"[yellow]partial view, not a pass[/yellow]: the run is incomplete; what is written so far "
                      f"({r['shards_done']} shard(s)) has no violation at "
                      f"{tol.get('applied_pp', STREAM_TOLERANCE_PP):g} pp. Audit again when `curate run` has finished")
    else:
        console.print("[green]audit passed[/green]: every group, source and subset is within tolerance")


def to_json(result: dict) -> str:
    return json.dumps(result, indent=1, sort_keys=False, default=str)
