"""The demo recipe, pointed at a generated corpus in a temp dir (shared by the end-to-end tests)."""

from __future__ import annotations

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def demo_recipe(data_dir: Path, run_dir: Path, **overrides) -> dict:
    """recipes/demo.yaml as data, reading ``data_dir`` (from ``curate.demo.generate``) and writing ``run_dir``."""
    d = yaml.safe_load((REPO / "recipes" / "demo.yaml").read_text())
    for s in d["sources"].values():
        s["paths"] = [str(data_dir / Path(p).parent.name / Path(p).name) for p in s["paths"]]
    d["output"] = str(run_dir)
    d.update(overrides)
    return d
