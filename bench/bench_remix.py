"""Remix against a full run (issue 19): ``python -m bench remix --size-mb 1000``.

On the ``mixed`` bench corpus (``bench.corpus``) with the bench recipe (``bench.corpus.write_recipe``,
RWKV World tokenizer): one full ``curate run``, then a remix of another mixture from it (``curate run
--from``: code 0.25 / multilingual 0.10 / soup 0.65, another seed; see ``curate.remix``), each in a child
process (``bench.pipeline.run_curate``). Target: the remix takes at most 10% of the full run's wall time.

Result ``bench/results/remix.json``::

    {"machine", "size_mb", "input_mb", "cores", "date", "load_before", "load_after",
     "full": {run_curate timings}, "remix": {run_curate timings, "reused": run.json's record, no part list},
     "ratio_wall": remix wall / full wall, "ratio_run": the same without interpreter import and Ray start,
     "target": 0.10}

``wall_s`` is the child's whole life (import, Ray start, run, exit); ``run_s`` the run itself. Each run starts
Ray itself (``run_curate(ray_in_run=True)``), as ``curate run`` does: ``ray_start_s`` is the part of Ray's start
that the driver's own work (checks, the linking of a remix) did not cover. On a tiny corpus the
fixed costs (Ray start, the report) dominate both, so only a large corpus measures the claim.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import yaml

from bench import corpus as bc
from bench import pipeline as bp

TARGET = 0.10


def remix_recipe(recipe: Path) -> Path:
    """The bench recipe with another mixture (same processing): the remix's input."""
    d = yaml.safe_load(recipe.read_text())
    shares = {"code": 0.25, "multilingual": 0.10, "soup": 0.65}
    present = {g: shares[g] for g in d["mixture"]}
    norm = sum(present.values())
    for g, v in present.items():
        d["mixture"][g]["share"] = v / norm
    if "soup" in d["mixture"]:
        d["mixture"]["soup"]["sources"] = {s: (3 if s == "refinedweb" else 1) for s in d["mixture"]["soup"]["sources"]}
    d["seed"] = int(d.get("seed", 0)) + 1
    d["name"] = f"{d['name']}-remix"
    out = recipe.with_name(recipe.stem + "-remix.yaml")
    out.write_text(yaml.safe_dump(d, sort_keys=False))
    return out


def bench_remix(size_mb: float, *, cores: int = 2, seed: int = 0, root: Path | None = None,
                work: Path = bp.WORK, timeout: float | None = None) -> dict[str, Any]:
    cdir = bc.build("mixed", size_mb, seed=seed, **({"root": root} if root else {}))
    info = json.loads((cdir / "corpus.json").read_text())
    recipe = bc.write_recipe(cdir, list(bc.VARIANTS["mixed"]), tokenizer="rwkv-world",
                             budget_tokens=max(1000, int(info["text_bytes"] / 8)), seed=seed)
    new = remix_recipe(recipe)
    w = work / f"remix-{size_mb:g}-{cores}"
    out: dict[str, Any] = {"machine": bp.machine(), "size_mb": size_mb, "input_mb": round(info["text_bytes"] / 1e6, 2),
                           "cores": cores, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                           "load_before": os.getloadavg()}
    # Ray started by the run itself, as `curate run` does: in the background while the driver checks and links
    full = bp.run_curate(recipe, cores=cores, work=w, timeout=timeout, name="full", ray_in_run=True)
    out["load_between"] = os.getloadavg()
    remix = bp.run_curate(new, cores=cores, work=w, timeout=timeout, name="remix", reuse_from=w / "full_run",
                          ray_in_run=True)
    out["load_after"] = os.getloadavg()
    # the audit report of each run (issue 20: under 5 MB on the 1 GB bench run)
    for name, r in (("full", full), ("remix", remix)):
        page = w / f"{name}_run" / "report.html"
        r["report_bytes"] = page.stat().st_size if page.is_file() else None
    reused = json.loads((w / "remix_run" / "run.json").read_text())["reused"]
    remix["reused"] = {k: (len(v) if k == "parts" else v) for k, v in reused.items()}
    out.update(full=full, remix=remix, target=TARGET,
               ratio_wall=round(remix["wall_s"] / max(full["wall_s"], 1e-9), 4),
               ratio_run=round(remix["run_s"] / max(full["run_s"], 1e-9), 4))
    return out
