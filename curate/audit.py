"""``curate audit RUN_DIR``: what is really in the shards, against the recipe.

The audit trusts only the shards' own truth: each shard's lineage (one row per sequence) is joined with its
``.idx`` sequence sizes; a lineage token count that differs from the index is a violation. Shares are then
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
     "tolerance_pp": f, "members": [{key, group, source, subset, share, available, target, epochs}],
     "timings": [{phase, wall_s, driver_cpu_s, worker_cpu_s}], "scores": {"hist": ..., "thresholds": ...},
     "samples": {rows, bytes, k, ...} | None,                                 # see report_sections
     "flags": [...], "violations": [{"kind", "where", "message"}], "trainer_view": {...}}

Violation kinds: ``missing_source``, ``missing_subset``, ``missing_group``, ``share_out_of_tolerance``,
``shard_missing``, ``shard_not_in_manifest``, ``shard_checksum``, ``lineage_mismatch``,
``ledger_conservation``, ``source_emptied``.

Mid-run: only shards whose ``.json`` entry exists (written last, atomically) count, and the report says how
many of the planned shards are done; share tolerance is then the stream tolerance (1 percentage point), since
a prefix of the stream is only guaranteed to hold the recipe within the interleaver's window bound.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curate.errors import CurateError
from curate.io_utils import read_json, sha256_file
from curate.ledger import Ledger
from curate.recipe import Recipe
from curate.schema import STAGES

STREAM_TOLERANCE_PP = 1.0


class AuditUsageError(CurateError):
    exit_code = 2


# ---------------------------------------------------------------------------- loading
def _load(run_dir: Path) -> tuple[Recipe, dict | None, dict | None, list[dict]]:
    from curate.runner import load_run_recipe

    if not (run_dir / "recipe.json").exists():
        msg = f"{run_dir} is not a curate run directory (no recipe.json); pass the folder `curate run` wrote"
        raise AuditUsageError(msg)
    recipe = load_run_recipe(run_dir)
    manifest = read_json(run_dir / "manifest.json") if (run_dir / "manifest.json").exists() else None
    plan_p = run_dir / "work" / "mix" / "plan.json"
    plan = read_json(plan_p) if plan_p.exists() else None
    if manifest is not None:
        entries = manifest["shards"]
    else:
        entries = sorted((read_json(p) for p in (run_dir / "shards").glob("*.json")), key=lambda e: e["index"]) \
            if (run_dir / "shards").is_dir() else []
    return recipe, manifest, plan, entries


def _ledger(run_dir: Path) -> Ledger:
    if (run_dir / "ledger.json").exists():
        return Ledger.read(run_dir / "ledger.json")
    paths = list((run_dir / "work" / "parts").glob("*.ledger.json")) if (run_dir / "work" / "parts").is_dir() else []
    led = Ledger.read_many(paths)
    for extra in ("dedup", "mix"):
        p = run_dir / "work" / extra / "ledger.json"
        if p.exists():
            led.merge(Ledger.read(p))
    return led


def read_shard_lineage(run_dir: Path, entries: list[dict], violations: list[dict], *, verify: bool) -> pa.Table:
    """Lineage of every complete shard, checked against its .idx; violations are appended."""
    from curate.shards import read_index

    tables = []
    shard_dir = run_dir / "shards"
    listed = {e["name"] for e in entries}
    if shard_dir.is_dir():
        for idx in sorted(shard_dir.glob("*.idx")):
            if idx.stem not in listed:
                violations.append({"kind": "shard_not_in_manifest", "where": idx.name,
                                   "message": f"shard {idx.name} is in shards/ but not in the manifest"})
    for e in entries:
        bin_p, idx_p, lin_p = shard_dir / e["bin"], shard_dir / e["idx"], shard_dir / e["lineage"]
        missing = [p.name for p in (bin_p, idx_p, lin_p) if not p.exists()]
        if missing:
            violations.append({"kind": "shard_missing", "where": e["name"],
                               "message": f"shard {e['name']} is in the manifest but {missing} are missing"})
            continue
        if verify:
            for p, key in ((bin_p, "bin_sha256"), (idx_p, "idx_sha256")):
                if sha256_file(p) != e[key]:
                    violations.append({"kind": "shard_checksum", "where": p.name,
                                       "message": f"{p.name}: sha256 does not match the manifest (truncated or "
                                                  "modified); rewrite it by rerunning with --force"})
        try:
            info = read_index(idx_p)
        except CurateError as ex:
            violations.append({"kind": "shard_checksum", "where": idx_p.name, "message": str(ex)})
            continue
        lin = pq.read_table(lin_p)
        sizes = np.asarray(info.sizes, dtype=np.int64)
        lt = lin["tokens"].to_numpy()
        if len(lt) != len(sizes) or not np.array_equal(lt, sizes):
            n_bad = int(np.sum(lt[: len(sizes)] != sizes[: len(lt)])) + abs(len(lt) - len(sizes))
            violations.append({"kind": "lineage_mismatch", "where": e["name"],
                               "message": f"shard {e['name']}: lineage disagrees with the .idx on {n_bad} sequence(s) "
                                          f"(lineage {len(lt)} rows / {int(lt.sum())} tokens, idx {len(sizes)} "
                                          f"sequences / {int(sizes.sum())} tokens)"})
        else:
            expected = int(bin_p.stat().st_size) // np.dtype(info.dtype).itemsize
            if expected != int(sizes.sum()):
                violations.append({"kind": "shard_checksum", "where": bin_p.name,
                                   "message": f"{bin_p.name}: {expected} tokens on disk, index says {int(sizes.sum())}"})
        tables.append(lin.append_column("idx_tokens", pa.array(sizes[: lin.num_rows]) if len(sizes) >= lin.num_rows
                                        else lin["tokens"]))
    if not tables:
        return pa.table({c: pa.array([], t) for c, t in (("shard", pa.string()), ("seq", pa.int64()),
                         ("source", pa.string()), ("subset", pa.string()), ("group", pa.string()),
                         ("tokens", pa.int64()), ("lang", pa.string()), ("license", pa.string()),
                         ("idx_tokens", pa.int64()))})
    return pa.concat_tables(tables, promote_options="permissive")


# ---------------------------------------------------------------------------- composition
def targets(recipe: Recipe) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    groups = {g: gc.share for g, gc in recipe.mixture.items()}
    sources: dict[str, float] = {s: 0.0 for s in recipe.sources}
    subsets: dict[str, float] = {}
    for _g, s, sub, share in recipe.members():
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


def composition(lineage: pa.Table, recipe: Recipe) -> dict[str, Any]:
    total = int(np.sum(lineage["tokens"].to_numpy())) if lineage.num_rows else 0
    tg, ts, tsub = targets(recipe)
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


# ---------------------------------------------------------------------------- funnel and ledger checks
def funnel(led: Ledger, recipe: Recipe) -> dict[str, dict[str, dict]]:
    out: dict[str, dict[str, dict]] = {}
    for src in recipe.sources:
        out[src] = {}
        for st in STAGES:
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
    for st in STAGES:
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


def dedup_matrix(run_dir: Path) -> dict[str, dict[str, int]]:
    p = run_dir / "work" / "dedup" / "done.json"
    if not p.exists():
        return {}
    return read_json(p).get("matrix", {})


def report_sections(run_dir: Path, plan: dict | None, tolerance_pp: float) -> dict[str, Any]:
    """What the report draws besides the composition (each key is empty or None until the run produces it).

    ``tolerance_pp`` (the share tolerance applied), ``members`` (per mixture member: key, group, source,
    subset, share, available and target tokens, epochs; from the mix plan), ``timings`` (per phase: wall and CPU
    seconds, ``RUN_DIR/stats.json``), ``scores`` (per source and score column: a two-significant-digit
    histogram and the thresholds, see ``curate.samples``), ``samples`` (rows, bytes and k of the merged document
    sample, None before finalize).
    """
    from curate.samples import load_scores, samples_info
    from curate.timings import read_timings

    members = ((plan or {}).get("members") or {}).get("members") or []
    return {"tolerance_pp": tolerance_pp, "members": members, "timings": read_timings(run_dir),
            "scores": load_scores(run_dir), "samples": samples_info(run_dir)}


# ---------------------------------------------------------------------------- trainer views
def _stream_index(lineage: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative token ends of sequences in stream order (shards by index, then seq)."""
    sizes = lineage["idx_tokens"].to_numpy().astype(np.int64)
    return np.cumsum(sizes), sizes


def consumed_view(lineage: pa.Table, recipe: Recipe, n_tokens: int) -> dict[str, Any]:
    """Composition of the first ``n_tokens`` a trainer reading the shards in order has seen."""
    ends, sizes = _stream_index(lineage)
    total = int(ends[-1]) if len(ends) else 0
    n = min(int(n_tokens), total)
    k = int(np.searchsorted(ends, n, side="left"))  # sequences fully or partly consumed: 0..k
    w = np.zeros(len(sizes), np.int64)
    if n > 0:
        w[:k] = sizes[:k]
        start_k = int(ends[k - 1]) if k > 0 else 0
        if k < len(sizes):
            w[k] = n - start_k
    t = lineage.select(["group", "source", "subset"]).append_column("tokens", pa.array(w))
    comp = composition(t, recipe)
    comp["consumed_tokens"] = n
    comp["requested_tokens"] = int(n_tokens)
    comp["stream_tokens"] = total
    return comp


def rwkv_view(lineage: pa.Table, recipe: Recipe, *, magic_prime: int, ctx_len: int, samples: int,
              epoch: int = 0, samples_per_epoch: int | None = None, world_size: int = 1) -> dict[str, Any]:
    """Composition of the tokens RWKV-LM's sampler reads for global samples 0..samples-1.

    RWKV-LM (``src/dataset.py``): ``ii = 1 + epoch*samples_per_epoch + idx*world_size + rank``,
    ``factor = int(magic_prime * (sqrt(5)-1)/2)``, ``i = ((factor * ii**3) % magic_prime) * ctx_len``, and it reads
    ``ctx_len + 1`` tokens of the flat stream at offset ``i``. Global sample ``g`` = ``idx*world_size + rank``.
    """
    ends, sizes = _stream_index(lineage)
    starts = ends - sizes
    factor = int(magic_prime * (math.sqrt(5) - 1) / 2)
    spe = samples_per_epoch or samples
    w = np.zeros(len(sizes), np.int64)
    for g in range(samples):
        ii = 1 + epoch * spe + g
        off = ((factor * ii * ii * ii) % magic_prime) * ctx_len
        lo, hi = off, off + ctx_len + 1
        a = int(np.searchsorted(ends, lo, side="right"))
        b = int(np.searchsorted(starts, hi, side="left"))
        if a >= b:
            continue
        ov = np.minimum(ends[a:b], hi) - np.maximum(starts[a:b], lo)
        w[a:b] += np.maximum(ov, 0)
    t = lineage.select(["group", "source", "subset"]).append_column("tokens", pa.array(w))
    comp = composition(t, recipe)
    comp.update({"samples": samples, "magic_prime": magic_prime, "ctx_len": ctx_len,
                 "read_tokens": int(w.sum())})
    return comp


def stream_check(lineage: pa.Table, recipe: Recipe) -> dict[str, Any] | None:
    """Largest deviation of a group's share over windows of W = max(1% of tokens, 100 × longest sequence).

    Measured on the sequences in stream order, against the achieved whole-mixture shares.
    """
    from curate.mixer import default_window, window_max_deviation

    if lineage.num_rows == 0:
        return None
    lens = lineage["idx_tokens"].to_numpy().astype(np.int64)
    names = list(recipe.mixture)
    idx = {g: i for i, g in enumerate(names)}
    grp = np.array([idx.get(g, 0) for g in lineage["group"].to_pylist()], dtype=np.int64)
    total = lens.sum()
    shares = [float(lens[grp == i].sum() / total) for i in range(len(names))]
    w = default_window(lens)
    return {"window_tokens": int(w), "max_deviation_pp": window_max_deviation(lens, grp, shares, w)}


# ---------------------------------------------------------------------------- the audit
def audit(run_dir: str | Path, *, verify: bool = False, consumed_tokens: int | None = None,
          rwkv: dict[str, int] | None = None, against: str | Path | None = None) -> dict[str, Any]:
    """Audit a (possibly still running) run directory. See the module docstring for the result."""
    run_dir = Path(run_dir)
    recipe, manifest, plan, entries = _load(run_dir)
    violations: list[dict] = []
    lineage = read_shard_lineage(run_dir, entries, violations, verify=verify)
    comp = composition(lineage, recipe)
    led = _ledger(run_dir)
    fun = funnel(led, recipe)
    complete = manifest is not None
    planned = plan["n_shards"] if plan else None
    run_info = {"run_dir": str(run_dir), "name": recipe.name, "complete": complete, "shards_done": len(entries),
                "shards_planned": planned,
                "planned_tokens": plan["tokens"] if plan else None,
                "progress": (len(entries) / planned if planned else (1.0 if complete else 0.0))}
    violations.extend(led.conservation_violations())
    flags, v2 = ledger_flags(led, recipe, fun)
    violations.extend(v2)

    tol = (recipe.tolerance_pp if complete else STREAM_TOLERANCE_PP) / 100.0
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
    stream = stream_check(lineage, recipe)
    if stream and stream["max_deviation_pp"] > STREAM_TOLERANCE_PP:
        flags.append({"kind": "stream_composition", "where": "stream",
                      "message": f"a window of {stream['window_tokens']:,} tokens deviates "
                                 f"{stream['max_deviation_pp']:.2f} pp from a group's share (bound "
                                 f"{STREAM_TOLERANCE_PP} pp): a trainer stopped there saw a skewed mixture"})
    result: dict[str, Any] = {"run": run_info, **comp, "stream": stream, "funnel": fun, "dedup_matrix": dedup_matrix(run_dir),
                              "flags": flags, "violations": violations}
    result.update(report_sections(run_dir, plan, tol * 100))
    if manifest and "rwkv" in manifest:
        result["rwkv"] = manifest["rwkv"]
    if consumed_tokens is not None:
        result["trainer_view"] = consumed_view(lineage, recipe, consumed_tokens)
    if rwkv:
        result["rwkv_view"] = rwkv_view(lineage, recipe, **rwkv)
    if against is not None:
        other = audit(against)
        result["against"] = diff(other, result)
    return result


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


def exit_code(result: dict) -> int:
    return 1 if result["violations"] else 0


# ---------------------------------------------------------------------------- rendering
def render_table(result: dict, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console(width=max(Console().width, 140))
    r = result["run"]
    state = "complete" if r["complete"] else (f"in progress: {r['shards_done']}/{r['shards_planned'] or '?'} shards")
    console.print(f"[bold]curate audit[/bold] {r['name']} — {state}, {result['total_tokens']:,} tokens")
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
    t = Table(title="funnel (documents)", title_justify="left")
    t.add_column("source")
    for st in STAGES:
        t.add_column(st, justify="right")
    t.add_column("top drop reasons")
    for src, stages in result["funnel"].items():
        cells = [f"{stages[st]['docs_out']:,}" if st in stages else "-" for st in STAGES]
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
    if result.get("licenses"):
        console.print("licenses: " + ", ".join(f"{k} {v:,}" for k, v in list(result["licenses"].items())[:8]))
    for f in result["flags"]:
        console.print(f"[yellow]flag[/yellow] {f['message']}")
    if result["violations"]:
        for v in result["violations"]:
            console.print(f"[red]VIOLATION[/red] {v['kind']} {v['where']}: {v['message']}")
    else:
        console.print("[green]audit passed[/green]: every group, source and subset is within tolerance")


def to_json(result: dict) -> str:
    return json.dumps(result, indent=1, sort_keys=False, default=str)
