"""``curate plan``: pre-flight without compute.

Validates the recipe (the same checks as ``curate run``), lists every resolved input root and partitions, counts
records and bytes per source/subset from file metadata (Parquet footers, line counts), and estimates tokens by
tokenizing a small sample of each subset's first partition (up to ``SAMPLE_DOCS`` documents). From these it
predicts, per mixture member, the planned tokens and the epochs needed, and says why the recipe cannot run when a
member would need more than ``max_epochs`` passes over its (pre-filter) supply.

Estimates are *before* filters and dedup: a source that passes the plan can still fall short at run time, in
which case ``curate run`` stops before writing shards and prints the shortfall.
"""

from __future__ import annotations

import math
import os
from typing import Any

from curate.recipe import HF_PREFIX, Recipe
from curate.sources.base import ReadContext

SAMPLE_DOCS = 200
SAMPLE_BYTES = 4_000_000


def plan(recipe: Recipe) -> dict[str, Any]:
    from curate.sources import count_records, plan_partitions, read_partition
    from curate.tokenizers import load_tokenizer

    parts = plan_partitions(recipe)
    tok = load_tokenizer(recipe.tokenizer, base_dir=recipe.base_dir)
    rows: dict[str, dict[str, Any]] = {}
    for p in parts:
        key = f"{p.source}/{p.subset}" if p.subset else p.source
        r = rows.setdefault(key, {"source": p.source, "subset": p.subset, "files": 0, "records": 0, "bytes": 0,
                                  "_sample_docs": 0, "_sample_tokens": 0, "_sample_max": 0})
        r["files"] += 1
        r["bytes"] += p.nbytes
        r["records"] += count_records(p, recipe.sources[p.source])
        if r["_sample_docs"] < SAMPLE_DOCS:
            ctx = ReadContext(batch_rows=SAMPLE_DOCS, resolve_path=recipe.resolve_path)
            taken = 0
            for b in read_partition(p, recipe.sources[p.source], ctx):
                texts = b.docs["text"].to_pylist()[: SAMPLE_DOCS - r["_sample_docs"]]
                budget, acc = SAMPLE_BYTES, []
                for t in texts:
                    acc.append(t)
                    budget -= len(t)
                    if budget <= 0:
                        break
                _, lengths = tok.encode_batch(acc)
                r["_sample_docs"] += len(acc)
                r["_sample_tokens"] += int(lengths.sum()) + len(acc)
                r["_sample_max"] = max(r["_sample_max"], int(lengths.max()) + 1 if len(lengths) else 0)
                taken += len(acc)
                break
    # est tokens: mean sampled tokens per record × records
    for r in rows.values():
        mean = r["_sample_tokens"] / r["_sample_docs"] if r["_sample_docs"] else 0.0
        r["est_tokens"] = int(mean * r["records"])
        r["max_doc_tokens_seen"] = r.pop("_sample_max")
        r.pop("_sample_docs")
        r.pop("_sample_tokens")
    # planned tokens per member, spread over its subsets by their estimated supply
    problems, warnings = [], []
    tol_tokens = recipe.tolerance_pp / 100 * recipe.budget_tokens
    for g, src, sub, share in recipe.members():
        target = share * recipe.budget_tokens
        keys = [k for k, r in rows.items() if r["source"] == src and (sub is None or r["subset"] == sub)]
        supply = sum(rows[k]["est_tokens"] for k in keys)
        for k in keys:
            r = rows[k]
            # a source routed by language can count toward several groups: its plan is the sum
            r["group"] = g if "group" not in r else f"{r['group']}+{g}"
            r["planned_tokens"] = r.get("planned_tokens", 0) + (
                int(round(target * (r["est_tokens"] / supply))) if supply else int(target))
            r["epochs"] = (r["planned_tokens"] / r["est_tokens"]) if r["est_tokens"] else math.inf
            if not recipe.max_doc_tokens and r["max_doc_tokens_seen"] > tol_tokens and r["planned_tokens"] > 0:
                warnings.append(f"{k}: documents of up to {r['max_doc_tokens_seen']:,} tokens are coarser than the "
                                f"tolerance ({tol_tokens:,.0f} tokens = {recipe.tolerance_pp} pp of the budget); "
                                "set `max_doc_tokens` to split long documents")
        name = f"{src}/{sub}" if sub else src
        if target > 0 and supply * recipe.max_epochs < target:
            epochs = target / supply if supply else math.inf
            problems.append({"member": name, "group": g, "available_tokens": supply, "needed_tokens": int(round(target)),
                             "epochs_needed": epochs, "max_epochs": recipe.max_epochs})
    for p in parts:
        if p.nbytes == 0 and not p.path.startswith(HF_PREFIX):
            warnings.append(f"{p.source}: input file {p.path} is empty (0 bytes); it adds no record")
    return {"recipe": recipe.name, "budget_tokens": recipe.budget_tokens, "partitions": len(parts),
            "input_roots": input_roots(recipe), "sources": rows, "shortfall": problems, "warnings": warnings,
            "on_shortfall": recipe.on_shortfall}


def input_roots(recipe: Recipe) -> dict[str, list[str]]:
    """Every resolved path glob of every source (``source`` or ``source/subset`` → patterns), for review.

    A recipe is trusted configuration: its paths may be absolute or climb out with ``..`` (docs/recipes.md,
    "What a recipe may read"), so ``plan`` shows where each one really points.
    """
    out: dict[str, list[str]] = {}
    for name, src in recipe.sources.items():
        for sub, patterns in src.subset_paths().items():
            key = f"{name}/{sub}" if sub else name
            out[key] = [p if p.startswith(HF_PREFIX) else os.path.normpath(p)
                        for p in (recipe.resolve_path(x) for x in patterns)]
    return out


def render(result: dict[str, Any], console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console(width=max(Console().width, 140))
    t = Table(title=f"plan: {result['recipe']} — budget {result['budget_tokens']:,} tokens, "
                    f"{result['partitions']} partitions (estimates before filters)", title_justify="left")
    for c in ("source", "group", "files", "records", "bytes", "est_tokens", "planned_tokens", "epochs"):
        t.add_column(c, justify="left" if c in ("source", "group") else "right")
    for k, r in result["sources"].items():
        t.add_row(k, r.get("group", "-"), f"{r['files']:,}", f"{r['records']:,}", f"{r['bytes']:,}",
                  f"{r['est_tokens']:,}", f"{r.get('planned_tokens', 0):,}", f"{r.get('epochs', 0):.2f}")
    console.print(t)
    for key, roots in result.get("input_roots", {}).items():
        console.print(f"input {key}: " + ", ".join(roots))
    for w in result["warnings"]:
        console.print(f"[yellow]warning[/yellow] {w}")
    for p in result["shortfall"]:
        console.print(f"[red]shortfall[/red] {p['member']} ({p['group']}): {p['available_tokens']:,} tokens available, "
                      f"{p['needed_tokens']:,} needed = {p['epochs_needed']:.2f} epochs > max_epochs "
                      f"{p['max_epochs']}")
