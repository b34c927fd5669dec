"""Mixture sweeps (``curate sweep``) and recipes from an optimizer's weights (``curate recipe-from-weights``).

**Sweep.** RegMix / Olmix / DoReMi fit a mixture from many small proxy runs. ``curate sweep RECIPE --n K``
draws K mixtures around the recipe's member shares, RegMix style: a Dirichlet over the recipe's *units* with
``alpha = concentration × base share``. A unit is one member (``source`` or ``source/subset``; ``group:…``
when listed in several groups) of a group, or a whole group with ``balance:`` (its members must keep equal
weights, see ``curate.recipe._check_balance``, so they move together). Higher ``concentration`` keeps draws
closer to the base recipe. A unit with share 0 stays 0. Draws are deterministic for ``--seed``.

Each draw becomes a recipe with the same hierarchy: a group's ``share`` is the sum of its units' draws and a
member's weight its draw divided by that share (the weights within a group sum to 1). A draw is kept when
``curate plan`` finds no shortfall (``curate.planner.plan``: every member within ``max_epochs`` of its
estimated supply); otherwise it is redrawn and counted, and after ``max_redraws`` redraws in all the sweep
gives up (:class:`curate.errors.SweepError`).

Layout of ``SWEEP_DIR``::

    sweep.json            arguments, the draws kept and the redraws, per mixture its recipe, run dir, audit exit
    mix-000.yaml          the recipe of mixture 0 (paths absolute, ``output`` dropped), and so on
    mix-000/              the first run: processes the corpus (parts, dedup) and writes its own shards
    mix-001/ ...          remixes from mix-000 (``curate run --from``, see ``curate.remix``): mix, shards,
                          documents and audit only, partitions and dedup hard-linked from mix-000
    mixtures.csv          one row per mixture (below)
    validation/           the validation sets, once for all mixtures (:func:`write_shared_validation`)

``mixtures.csv`` columns: ``mixture`` (``mix-000``), then one column per member named by its key holding its
target token share (the weight RegMix and Olmix read as a domain ratio: one row per run, one column per
domain, summing to 1), then ``achieved:<member>`` (its share of the tokens in the mixture's shards, summed
from the shards' own lineage), ``epochs:<member>`` (tokens in the shards / the member's supply after dedup, as
the mix planned it, ``manifest.json`` ``mix.members[].available``) and ``tokens`` (all tokens in the shards).
A sweep rerun with the same arguments resumes: the same draws, the same recipes, finished runs are kept.

**recipe-from-weights.** ``weights.json`` maps member keys (the CSV's columns) to weights (any scale; they are
normalized to sum 1). Every member of the base recipe must be given and no other; a group with ``balance:``
needs equal weights for its members. The output is the base recipe with new group shares and member weights,
validated by ``curate.recipe.load_recipe``.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from curate.errors import SweepError
from curate.io_utils import atomic_write_json, atomic_write_text, read_json
from curate.layout import RunLayout
from curate.pipeline import load_recipe, parse_recipe
from curate.recipe import Recipe

#: Redraws allowed per mixture asked for, before the sweep gives up.
REDRAWS_PER_MIXTURE = 25


@dataclass(frozen=True)
class Unit:
    """What one Dirichlet coordinate moves: one member of a group, or every member of a balanced group."""

    group: str
    entries: tuple[str, ...]  # mixture entries (``source`` / ``source/subset``) of the group
    share: float  # base share of the whole budget


def units(recipe: Recipe) -> list[Unit]:
    out = []
    for g, gc in recipe.mixture.items():
        w = gc.weights()
        total = sum(w.values())
        if gc.balance is not None:
            out.append(Unit(g, tuple(gc.sources), gc.share))
            continue
        for e, x in w.items():
            out.append(Unit(g, (e,), gc.share * (x / total) if total > 0 else 0.0))
    return out


def member_keys(recipe: Recipe) -> list[str]:
    return [recipe.member_key(g, s, sub) for g, s, sub, _ in recipe.members()]


def _absolute_data(recipe: Recipe) -> dict[str, Any]:
    """The recipe as YAML data (the keys it sets), every path absolute, ``output`` dropped."""
    d = recipe.model_dump(mode="json", by_alias=True, exclude_unset=True)
    d.pop("output", None)
    r = recipe.resolve_path
    for s in d["sources"].values():
        if "paths" in s:
            s["paths"] = [r(p) for p in s["paths"]]
        for sub in (s.get("subsets") or {}).values():
            sub["paths"] = [r(p) for p in sub["paths"]]
        if s.get("blob_dir"):
            s["blob_dir"] = r(s["blob_dir"])
        q = s.get("quality")
        if isinstance(q, dict) and isinstance(q.get("fasttext"), dict) and "model" in q["fasttext"]:
            q["fasttext"]["model"] = r(str(q["fasttext"]["model"]))
    if isinstance(d.get("tokenizer"), dict):
        d["tokenizer"]["hf"] = r(d["tokenizer"]["hf"])
    if (d.get("langid") or {}).get("model"):
        d["langid"]["model"] = r(d["langid"]["model"])
    for ev in ((d.get("decontaminate") or {}).get("evals") or {}).values():
        ev["paths"] = [r(p) for p in ev["paths"]]
    return d


def with_shares(recipe: Recipe, shares: dict[tuple[str, tuple[str, ...]], float], *, name: str | None = None
                ) -> dict[str, Any]:
    """Recipe data of ``recipe`` with each unit's share of the budget (keyed ``(group, entries)``) replaced."""
    d = _absolute_data(recipe)
    if name:
        d["name"] = name
    for g, gc in recipe.mixture.items():
        group = {k: v for (gg, k), v in shares.items() if gg == g}
        total = sum(group.values())
        d["mixture"][g]["share"] = total
        if gc.balance is not None or total <= 0:
            continue  # balanced: equal weights stay; share 0: the base weights stay
        for (entry,), v in group.items():
            cur = d["mixture"][g]["sources"][entry]
            w = v / total
            if isinstance(cur, dict):
                cur["weight"] = w
            else:
                d["mixture"][g]["sources"][entry] = w
    # the group shares sum to 1 up to float error; make it exact to the validator's 1e-6 without drift
    gs = [g for g in d["mixture"]]
    s = sum(d["mixture"][g]["share"] for g in gs)
    for g in gs:
        d["mixture"][g]["share"] = d["mixture"][g]["share"] / s
    return d


def _write_recipe(path: Path, data: dict[str, Any]) -> None:
    # keep key order: the order of `sources` numbers the partitions
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def feasible(recipe: Recipe) -> tuple[bool, list[dict]]:
    """Whether ``curate plan`` finds the recipe feasible (no member short within ``max_epochs``), and why not."""
    from curate.planner import plan

    short = plan(recipe)["shortfall"]
    return not short, short


def draw_mixtures(recipe: Recipe, n: int, *, concentration: float, seed: int, max_redraws: int | None = None,
                  base_dir: Path, check=feasible) -> tuple[list[dict[str, Any]], int]:
    """``n`` feasible recipe data dicts drawn around ``recipe``, and how many draws were rejected."""
    import numpy as np

    if n < 1:
        raise SweepError(f"--n must be at least 1, got {n}")
    if not concentration > 0 or not math.isfinite(concentration):
        raise SweepError(f"--concentration must be a positive number, got {concentration}")
    us = units(recipe)
    live = [i for i, u in enumerate(us) if u.share > 0]
    alpha = np.array([concentration * us[i].share for i in live])
    rng = np.random.default_rng(seed)
    limit = REDRAWS_PER_MIXTURE * n if max_redraws is None else max_redraws
    out, redraws, reasons = [], 0, []
    while len(out) < n:
        x = rng.dirichlet(alpha)
        shares = {(u.group, u.entries): 0.0 for u in us}
        for i, v in zip(live, x):
            shares[(us[i].group, us[i].entries)] = float(v)
        data = with_shares(recipe, shares, name=f"{recipe.name}-mix-{len(out):03d}")
        ok, short = check(parse_recipe(data, base_dir=base_dir, check_paths=False))
        if ok:
            out.append(data)
            continue
        redraws += 1
        reasons.append(", ".join(f"{s['member']} needs {s['epochs_needed']:.2f} epochs" for s in short))
        if redraws > limit:
            msg = (f"gave up after {redraws} infeasible draws for {n} mixture(s) ({len(out)} kept): every draw "
                   f"asks some member for more than max_epochs {recipe.max_epochs} of its supply (last: "
                   f"{reasons[-1]}); raise --concentration (draws closer to the recipe), lower budget_tokens or "
                   "raise max_epochs")
            raise SweepError(msg)
    return out, redraws


def write_shared_validation(recipe: Recipe, corpus_run: Path, sweep_dir: Path) -> Path | None:
    """The seam for the validation sets, written once into ``sweep_dir/validation`` and shared by all mixtures.

    A no-op (None) for a recipe without a ``validation`` key. Validation sets are carved from the processed
    corpus (``corpus_run``'s partitions and dedup components) before mixing, so they do not depend on the
    mixture and one set serves every mixture of the sweep.
    """
    from curate.runner import write_validation
    from curate.validation import member_settings

    if not member_settings(recipe):
        return None
    out = sweep_dir / "validation"
    write_validation(corpus_run, recipe, out)
    return out


def achieved(run_dir: Path, recipe: Recipe) -> dict[str, Any]:
    """Tokens per member in a run's shards, summed from the shards' own lineage, and epochs against supply."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    layout = RunLayout(run_dir)
    manifest = read_json(layout.manifest)
    tables = [pq.read_table(layout.shard_file(s["lineage"]), columns=["group", "source", "subset", "tokens"])
              for s in manifest["shards"]]
    t = pa.concat_tables(tables).group_by(["group", "source", "subset"]).aggregate([("tokens", "sum")])
    tokens = dict.fromkeys(member_keys(recipe), 0)
    for r in t.to_pylist():
        k = recipe.member_key(r["group"], r["source"], r["subset"] or None)
        tokens[k] = tokens.get(k, 0) + int(r["tokens_sum"])
    supply = {m["key"]: m.get("available") for m in manifest["mix"]["members"]}
    total = sum(tokens.values())
    return {"tokens": total, "members": {
        k: {"tokens": v, "share": v / total if total else 0.0,
            "epochs": v / supply[k] if supply.get(k) else (0.0 if v == 0 else math.inf)} for k, v in tokens.items()}}


def mixtures_csv(rows: list[dict[str, Any]], members: list[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["mixture", *members, *(f"achieved:{m}" for m in members), *(f"epochs:{m}" for m in members),
                "tokens"])
    for r in rows:
        w.writerow([r["mixture"], *(repr(r["weights"][m]) for m in members),
                    *(repr(r["achieved"]["members"][m]["share"]) for m in members),
                    *(repr(r["achieved"]["members"][m]["epochs"]) for m in members), r["achieved"]["tokens"]])
    return buf.getvalue()


def sweep(recipe_path: str | Path, *, n: int, out: str | Path, concentration: float = 10.0, seed: int = 0,
          max_redraws: int | None = None, ray_address: str | None = None, num_cpus: int | None = None,
          quiet: bool = False) -> dict[str, Any]:
    """Draw ``n`` mixtures, run the first from scratch and remix the others from it, audit each, write the CSV."""
    from curate import audit as audit_mod
    from curate.runner import run

    base = load_recipe(recipe_path)
    sweep_dir = Path(out).resolve()
    sweep_dir.mkdir(parents=True, exist_ok=True)
    draws, redraws = draw_mixtures(base, n, concentration=concentration, seed=seed, max_redraws=max_redraws,
                                   base_dir=sweep_dir)
    info: dict[str, Any] = {"recipe": str(Path(recipe_path).resolve()), "n": n, "concentration": concentration,
                            "seed": seed, "redraws": redraws, "mixtures": []}
    rows = []
    first = None
    for i, data in enumerate(draws):
        mid = f"mix-{i:03d}"
        rpath = sweep_dir / f"{mid}.yaml"
        _write_recipe(rpath, data)
        recipe = load_recipe(rpath)
        run_dir = sweep_dir / mid
        res = run(recipe, out=str(run_dir), ray_address=ray_address, num_cpus=num_cpus, quiet=quiet,
                  reuse_from=first)
        if first is None:
            first = run_dir
            write_shared_validation(recipe, run_dir, sweep_dir)
        result = audit_mod.audit(run_dir)
        atomic_write_text(RunLayout(run_dir).audit_json, audit_mod.to_json(result))
        code = audit_mod.exit_code(result)
        weights = {recipe.member_key(g, s, sub): share for g, s, sub, share in recipe.members()}
        rows.append({"mixture": mid, "weights": weights, "achieved": achieved(run_dir, recipe)})
        info["mixtures"].append({"id": mid, "recipe": rpath.name, "run_dir": mid, "tokens": res.manifest["tokens"],
                                 "audit_exit": code, "remix_of": None if i == 0 else "mix-000"})
    members = member_keys(base)
    atomic_write_text(sweep_dir / "mixtures.csv", mixtures_csv(rows, members))
    atomic_write_json(sweep_dir / "sweep.json", info)
    return info


# ---------------------------------------------------------------------------- recipe-from-weights
def recipe_from_weights(weights: dict[str, float], base_path: str | Path, out: str | Path | None = None) -> str:
    """The base recipe with the member weights of an optimizer (member key → weight); returns the YAML text.

    Written to ``out`` when given, after validation by :func:`curate.recipe.load_recipe`.
    """
    base = load_recipe(base_path)
    if not isinstance(weights, dict) or not weights:
        raise SweepError("the weights file must be a JSON object mapping member keys to weights")
    keys = member_keys(base)
    unknown = sorted(set(weights) - set(keys))
    missing = [k for k in keys if k not in weights]
    if unknown or missing:
        msg = (f"the weights do not name the members of {base_path}: "
               + (f"unknown {unknown}; " if unknown else "") + (f"missing {missing}; " if missing else "")
               + f"its members are {keys}")
        raise SweepError(msg)
    bad = {k: v for k, v in weights.items() if not isinstance(v, (int, float)) or isinstance(v, bool)
           or not math.isfinite(v) or v < 0}
    if bad:
        raise SweepError(f"weights must be finite numbers >= 0: {bad}")
    total = float(sum(weights.values()))
    if total <= 0:
        raise SweepError("the weights sum to 0")
    shares: dict[tuple[str, tuple[str, ...]], float] = {}
    by_key = {base.member_key(g, s, sub): (g, f"{s}/{sub}" if sub else s) for g, s, sub, _ in base.members()}
    for u in units(base):
        ks = [k for k, (g, e) in by_key.items() if g == u.group and e in u.entries]
        vals = [weights[k] / total for k in ks]
        if len(vals) > 1 and not all(math.isclose(v, vals[0], rel_tol=1e-9, abs_tol=1e-12) for v in vals):
            msg = (f"mixture.{u.group} has `balance:` over its members' pooled documents, so their weights must be "
                   f"equal; got {dict(zip(ks, [weights[k] for k in ks]))}")
            raise SweepError(msg)
        shares[(u.group, u.entries)] = sum(vals)
    data = with_shares(base, shares)
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    if out is not None:
        out = Path(out)
        atomic_write_text(out, text)
        load_recipe(out)
    else:
        parse_recipe(data, base_dir=Path(base_path).resolve().parent)
    return text


def read_weights(path: str | Path) -> dict[str, float]:
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise SweepError(f"{p}: cannot read the weights JSON: {e}") from None
    if not isinstance(data, dict):
        raise SweepError(f"{p}: must be a JSON object mapping member keys to weights, got {type(data).__name__}")
    return data


__all__ = ["Unit", "achieved", "draw_mixtures", "feasible", "member_keys", "mixtures_csv", "read_weights",
           "recipe_from_weights", "sweep", "units", "with_shares", "write_shared_validation"]
