"""``curate plan``: pre-flight without compute.

Validates the recipe (the same checks as ``curate run``), lists every resolved input root and partitions, counts
records and bytes per source/subset from file metadata (Parquet footers, line counts), and estimates tokens by
tokenizing a small sample of each subset's first partition (up to ``SAMPLE_DOCS`` documents). From these it
predicts, per mixture member, the planned tokens and the epochs needed, and says why the recipe cannot run when a
member would need more than ``max_epochs`` passes over its (pre-filter) supply.

Estimates are *before* filters and dedup: a source that passes the plan can still fall short at run time, in
which case ``curate run`` stops before writing shards and prints the shortfall.

Balanced groups and members (``balance:``) get a per-value table (``result["balance"][scope]``: the
``curate.balance`` plan of the scope on estimated supplies, plus ``basis``, one line saying where the values
came from). The sources of a balanced scope are sampled deeper (``BALANCE_SAMPLE_DOCS`` documents from the
start of each file). ``by: lang`` values are what the run will use: the source's language-ID stage is run on
the sample (its keep/drop policy applied) unless the source skips language ID, in which case the values are
the reader's declared ``lang``. Each value's supply is its share of the sample's tokens times the subset's
estimated tokens: an estimate from the files' first documents, before quality filters and dedup.
"""

from __future__ import annotations

import math
import os
from typing import Any

from curate.recipe import HF_PREFIX, Recipe
from curate.sources.base import ReadContext

SAMPLE_DOCS = 200
SAMPLE_BYTES = 4_000_000
#: Documents sampled per file of a source that a ``balance:`` covers (values need more than a mean length).
BALANCE_SAMPLE_DOCS = 2000


def plan(recipe: Recipe) -> dict[str, Any]:
    from curate.sources import count_records, plan_partitions, read_partition
    from curate.tokenizers import load_tokenizer

    from curate.pipeline import describe

    parts = plan_partitions(recipe)
    tok = load_tokenizer(recipe.tokenizer, base_dir=recipe.base_dir)
    rows: dict[str, dict[str, Any]] = {}
    scopes = recipe.balance_scopes()
    balanced = {k.split(":")[-1].split("/")[0] for *_x, keys, _b in scopes for k in keys}
    samples: list = []  # per sampled batch of a balanced source: source, subset, lang, meta.<key>, tokens, row
    for p in parts:
        key = f"{p.source}/{p.subset}" if p.subset else p.source
        r = rows.setdefault(key, {"source": p.source, "subset": p.subset, "files": 0, "records": 0, "bytes": 0,
                                  "_sample_docs": 0, "_sample_tokens": 0, "_sample_max": 0})
        r["files"] += 1
        r["bytes"] += p.nbytes
        r["records"] += count_records(p, recipe.sources[p.source])
        if p.source in balanced:
            samples.append(_balance_sample(recipe, p, tok, key))
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
    problems, warnings, notes = [], [], []
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
                if recipe.trim_to_target:  # the mixer trims the member's closing sequence: exact all the same
                    notes.append(f"{k}: documents of up to {r['max_doc_tokens_seen']:,} tokens are coarser than the "
                                 f"tolerance ({tol_tokens:,.0f} tokens = {recipe.tolerance_pp} pp of the budget): "
                                 "the mixer trims the member's last selected sequence to its first tokens so the "
                                 "share is exact (the audit lists the trim); set `max_doc_tokens` to spread long "
                                 "documents over the mixture instead")
                else:
                    warnings.append(f"{k}: documents of up to {r['max_doc_tokens_seen']:,} tokens are coarser than "
                                    f"the tolerance ({tol_tokens:,.0f} tokens = {recipe.tolerance_pp} pp of the "
                                    "budget) and `trim_to_target` is false; set `max_doc_tokens` to split long "
                                    "documents, or drop `trim_to_target: false`")
        name = f"{src}/{sub}" if sub else src
        if target > 0 and supply * recipe.max_epochs < target:
            epochs = target / supply if supply else math.inf
            problems.append({"member": name, "group": g, "available_tokens": supply, "needed_tokens": int(round(target)),
                             "epochs_needed": epochs, "max_epochs": recipe.max_epochs})
    for p in parts:
        if p.nbytes == 0 and not p.path.startswith(HF_PREFIX):
            warnings.append(f"{p.source}: input file {p.path} is empty (0 bytes); it adds no record")
    balance = _plan_balance(recipe, scopes, rows, samples, problems)
    return {"recipe": recipe.name, "budget_tokens": recipe.budget_tokens, "partitions": len(parts),
            "input_roots": input_roots(recipe), "sources": rows, "balance": balance, "shortfall": problems,
            "warnings": warnings, "notes": notes, "on_shortfall": recipe.on_shortfall, "stages": describe(recipe)}


def _balance_sample(recipe: Recipe, p, tok, key: str):
    """The first ``BALANCE_SAMPLE_DOCS`` documents of partition ``p``, labeled as the run will label them.

    Returns a small table (no text): ``source, subset, lang, meta.<key>..., tokens, row, alive`` where ``alive``
    is False for a document the source's language-ID policy drops, and a note on where ``lang`` came from.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from curate.stages.langid import LangIdStage
    from curate.partition import meta_value, sequence_tokens

    scfg = recipe.sources[p.source]
    ctx = ReadContext(batch_rows=BALANCE_SAMPLE_DOCS, resolve_path=recipe.resolve_path)
    from curate.sources import read_partition

    docs = None
    for b in read_partition(p, scfg, ctx):
        docs = b.docs.slice(0, BALANCE_SAMPLE_DOCS)
        break
    if docs is None or docs.num_rows == 0:
        return None, "no documents"
    stage = LangIdStage.from_source(p.source, scfg, recipe)
    alive = pa.array([True] * docs.num_rows)
    how = "the reader's declared lang"
    if stage is not None:
        from curate.schema import DROP_REASON

        labeled = stage.process(docs)
        docs = labeled
        alive = pc.is_null(labeled[DROP_REASON])
        how = "language ID on the sample" + (" (its keep/drop policy applied)" if stage.filters else "")
    _, lengths = tok.encode_batch(docs["text"].to_pylist())
    cols = {"source": docs["source"], "subset": docs["subset"], "lang": docs["lang"],
            "tokens": pa.array(sequence_tokens(lengths, recipe.max_doc_tokens)),
            "row": pa.array([key] * docs.num_rows), "alive": alive}
    for mk in recipe.balance_meta_keys():
        cols[f"meta.{mk}"] = meta_value(docs["meta"], mk)
    return pa.table(cols), how


def _plan_balance(recipe: Recipe, scopes: list, rows: dict, samples: list, problems: list) -> dict[str, Any]:
    """Per balanced scope: value supplies estimated from the samples, then ``curate.balance.plan_scope``."""
    if not scopes:
        return {}
    import numpy as np
    import pyarrow as pa

    from curate.balance import plan_scope
    from curate.mix.members import assign_members, balance_values

    got = [t for t, _ in samples if t is not None]
    hows = sorted({h for t, h in samples if t is not None})
    if not got:
        return {sc: {"basis": "no sampled documents: values unknown until the run", "values": [], "dropped": []}
                for sc, *_ in scopes}
    sample = pa.concat_tables(got, promote_options="permissive")
    member = assign_members(recipe, sample)
    value = balance_values(recipe, sample, member, scopes)
    tokens = sample["tokens"].to_numpy()
    alive = sample["alive"].to_numpy(zero_copy_only=False)
    row = np.asarray(sample["row"].to_pylist(), dtype=object)
    # a sampled token stands for est_tokens / sampled tokens of its subset (dropped documents count as sampled)
    scale = {k: (rows[k]["est_tokens"] / t if t else 0.0)
             for k in set(row.tolist()) for t in [int(tokens[row == k].sum())]}
    weight = tokens * np.array([scale[k] for k in row], dtype=np.float64)
    planned = {recipe.member_key(g, s, sub): share * recipe.budget_tokens for g, s, sub, share in recipe.members()}
    out = {}
    for sc, g, mkeys, b in scopes:
        cells = {}
        for m in mkeys:
            at = (member == m) & alive
            vals = value[at].astype(str)
            cells[m] = {str(v): int(round(weight[at][vals == v].sum())) for v in sorted(set(vals.tolist()))}
        target = int(round(sum(planned[m] for m in mkeys)))
        sp = plan_scope(sc, g, by=b.by, temperature=b.temperature, min_tokens=b.min_tokens,
                        max_epochs=b.max_epochs or recipe.max_epochs, target=target, cells=cells)
        d = sp.as_dict()
        n_docs = int(np.isin(member, mkeys).sum())
        src = "values from " + (", ".join(hows) if b.by == "lang" else f"the `{b.by}` column")
        d["basis"] = (f"estimated: {src}, over {n_docs:,} sampled documents (the first {BALANCE_SAMPLE_DOCS:,} of "
                      "each file), scaled to each subset's estimated tokens; before quality filters and dedup")
        if not sp.feasible and not {m.split(":")[-1] for m in mkeys} & {x["member"] for x in problems}:
            # short only because of the values (a dropped or capped value), not already short as a member
            cap = sum(int(v.supply * sp.max_epochs) for v in sp.values)
            problems.append({"member": sc, "group": g, "available_tokens": sp.supply, "needed_tokens": target,
                             "epochs_needed": target / sp.supply if sp.supply else float("inf"),
                             "max_epochs": sp.max_epochs, "note": f"its values give at most {cap:,}"})
        out[sc] = d
    return out


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
    for src, stages in (result.get("stages") or {}).items():
        console.print(f"stages {src}: " + " → ".join(d.get("stage", "?") for d in stages))
    for sc, d in (result.get("balance") or {}).items():
        bt = Table(title=f"balance: {sc} by {d.get('by', '?')}, temperature {d.get('temperature', '?')} — "
                         f"{d.get('target', 0):,} tokens", title_justify="left", caption=d["basis"],
                   caption_justify="left")
        for c in ("value", "supply", "n^α share", "target share", "tokens", "epochs", "capped"):
            bt.add_column(c, justify="left" if c == "value" else "right")
        for v in d["values"]:
            bt.add_row(v["value"], f"{v['supply']:,}", f"{v['temperature_share']:.2%}", f"{v['share']:.2%}",
                       f"{v['target']:,}", f"{v['epochs']:.2f}", "yes" if v["capped"] else "no")
        console.print(bt)
        for x in d["dropped"]:
            console.print(f"balance: {sc}: value {x['value']!r} dropped: {x['reason']}")
    for n in result.get("notes", []):
        console.print(f"note: {n}")
    for w in result["warnings"]:
        console.print(f"[yellow]warning[/yellow] {w}")
    for p in result["shortfall"]:
        console.print(f"[red]shortfall[/red] {p['member']} ({p['group']}): {p['available_tokens']:,} tokens available, "
                      f"{p['needed_tokens']:,} needed = {p['epochs_needed']:.2f} epochs > max_epochs "
                      f"{p['max_epochs']}")
