"""Tiny runs for the reliability tests of issue 22: one JSON-lines source, a few seconds a run, several shards.

``cli`` runs ``python -m curate.cli`` as a user does; ``cli_on_session`` connects it to the test session's Ray
(``ray_session``), so no second local Ray has to start. Output comparison (``output_hashes``,
``assert_same_outputs``) and the kill -9 harness come from ``tests.test_reliability``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
WORDS = "river stone market garden window paper music light winter harbor".split()


def record(i: int) -> str:
    """One JSON-lines record, distinct per ``i`` (so dedup keeps it)."""
    return json.dumps({"id": f"d{i}", "text": " ".join(WORDS[(i * 7 + k * (i % 5 + 1)) % 10] for k in range(30))
                       + f" number {i}"})


def write_jsonl(path: Path, n: int, *, start: int = 0, malformed: tuple[int, ...] = ()) -> Path:
    """``n`` records; the lines at the indices in ``malformed`` are broken JSON."""
    lines = ['{"id": "broken", "text": "unterminated' if i in malformed else record(start + i) for i in range(n)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def write_recipe(root: Path, paths: list[str], *, name: str = "tiny", **overrides) -> Path:
    """A recipe over ``paths`` (globs allowed): budget 400 tokens, shards of at most 100 tokens."""
    d = {"name": name, "seed": 1, "budget_tokens": 400, "max_doc_tokens": 64,
         "sources": {"s": {"format": "jsonl", "paths": paths, "text_column": "text", "id_column": "id"}},
         "mixture": {"all": {"share": 1.0, "sources": {"s": 1}}}, "shards": {"max_tokens": 100}, **overrides}
    f = root / f"{name}.yaml"
    f.write_text(yaml.safe_dump(d, sort_keys=False))
    return f


def cli(*args: str, env: dict | None = None, timeout: int = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "curate.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env, check=False, cwd=REPO)


def cli_on_session(ray_session, *args: str) -> subprocess.CompletedProcess:
    """``curate ARGS --ray-address <the test session's Ray>``."""
    address = ray_session.get_runtime_context().gcs_address
    return cli(*args, "--ray-address", address)


def run_args(recipe: Path, out: Path, *extra: str) -> list[str]:
    return ["run", str(recipe), "--out", str(out), "--quiet", "--no-audit", *extra]


def tiny_with_clean(root: Path, n: int = 60) -> tuple[Path, Path]:
    """A tiny recipe over ``n`` records, and a clean, uninterrupted run of it (in this process's Ray)."""
    from curate.pipeline import load_recipe
    from curate.runner import run

    recipe = write_recipe(root, [str(write_jsonl(root / "docs.jsonl", n))])
    run(load_recipe(recipe), out=str(root / "clean"), quiet=True)
    return recipe, root / "clean"


def wait_until(proc: subprocess.Popen, ready, log: Path, *, timeout: float = 240) -> None:
    """Poll ``ready()`` every 10 ms while ``proc`` runs; fail if it ends or ``timeout`` passes first."""
    import time

    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"the run ended first:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"not reached in {timeout}s:\n{log.read_text()[-3000:]}"
        time.sleep(0.01)
