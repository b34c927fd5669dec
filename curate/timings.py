"""Per-phase and per-stage statistics of a run: ``RUN_DIR/stats.json``, as datatrove's ``stats.json`` gives.

Shown at the end of ``curate run``, by the audit (``timings``, ``stages``) and its report. Schema::

    {"phases": {phase: {"wall_s": float, "driver_cpu_s": float, "worker_cpu_s": float | null,
                        "finished": "YYYY-MM-DDTHH:MM:SSZ"}},
     "order": [phase, ...],
     "stages": [{"stage", "cpu_s", "docs_in", "docs_out", "bytes_in", "bytes_out", "tokens_in", "tokens_out"},
                ...]}

``stages`` (written at finalize) are the steps of the per-partition pass in pipeline order: ``ingest`` (reading
and parsing), every filter stage of the recipe, ``tokenize`` (encode and append to the ``.tok`` file),
``sign`` (content hash and MinHash band keys), ``write`` (the partition's Parquet files); then ``dedup`` and
``mix``. ``cpu_s`` is summed over the partitions (each worker measures ``time.process_time`` around its step;
null for the global steps, whose time is their phase's); documents, bytes and tokens come from the ledger
(tokens include the end-of-document token; the filters run before tokenization, so they carry none).

``wall_s`` is the driver's wall clock around the phase; ``driver_cpu_s`` the driver process's CPU time in it
(scheduling, merging small files); ``worker_cpu_s`` the CPU time the Ray workers report for their work where
they report it (the parts phase: ``time.process_time`` around each partition), else null. A resumed run
rewrites the phases it ran again; a skipped phase then shows its (short) resume time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from curate.io_utils import atomic_write_json, read_json
from curate.layout import RunLayout


class PhaseTimer:
    """Times the phases of one run and rewrites ``RUN_DIR/stats.json`` as each one finishes."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = RunLayout(run_dir).stats
        self.data: dict[str, Any] = {"phases": {}, "order": []}
        if self.path.exists():
            try:
                old = read_json(self.path)
                self.data = {"phases": dict(old.get("phases", {})), "order": list(old.get("order", []))}
            except ValueError:
                pass  # a stats file from another version is rewritten

    @contextmanager
    def phase(self, name: str) -> Iterator[dict[str, Any]]:
        """Time the block; the yielded dict may receive ``worker_cpu_s``. Written also when the block raises."""
        rec: dict[str, Any] = {"worker_cpu_s": None}
        w, c = time.perf_counter(), time.process_time()
        try:
            yield rec
        finally:
            rec["wall_s"] = round(time.perf_counter() - w, 3)
            rec["driver_cpu_s"] = round(time.process_time() - c, 3)
            rec["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            self.data["phases"][name] = rec
            if name not in self.data["order"]:
                self.data["order"].append(name)
            # keep what others added to the file meanwhile (write_stage_rows' ``stages``)
            try:
                extra = {k: v for k, v in read_json(self.path).items() if k not in self.data}
            except (OSError, ValueError):
                extra = {}
            atomic_write_json(self.path, {**self.data, **extra})


def read_timings(run_dir: str | Path) -> list[dict[str, Any]]:
    """Rows ``{phase, wall_s, driver_cpu_s, worker_cpu_s}`` in run order (empty before the first phase ends)."""
    p = RunLayout(run_dir).stats
    if not p.exists():
        return []
    d = read_json(p)
    return [{"phase": name, **{k: d["phases"][name].get(k) for k in ("wall_s", "driver_cpu_s", "worker_cpu_s")}}
            for name in d.get("order", []) if name in d.get("phases", {})]


def render_timings(rows: list[dict[str, Any]], console=None) -> None:
    """The timings as a rich table (for ``curate run`` and ``curate audit``)."""
    from rich.console import Console
    from rich.table import Table

    if not rows:
        return
    console = console or Console()
    t = Table(title="phases (seconds)", title_justify="left")
    for c in ("phase", "wall", "driver CPU", "worker CPU"):
        t.add_column(c, justify="left" if c == "phase" else "right")
    for r in rows:
        t.add_row(r["phase"], f"{r['wall_s']:.1f}", f"{r['driver_cpu_s']:.1f}",
                  "-" if r["worker_cpu_s"] is None else f"{r['worker_cpu_s']:.1f}")
    console.print(t)


def stage_rows(led: Any, stage_cpu: dict[str, float]) -> list[dict[str, Any]]:
    """The ``stages`` rows from the merged ledger and the partitions' summed ``stage_cpu_s``.

    Parameters
    ----------
    led : curate.ledger.Ledger
        The run's merged ledger.
    stage_cpu : dict
        CPU seconds per per-partition step (``ingest``, the filters, ``tokenize``, ``sign``, ``write``).
    """
    from curate.pipeline import stage_names

    def totals(stage: str) -> dict[str, Any]:
        rows = list(led.by_source(stage).values())
        t_in = [c.tokens_in for c in rows if c.tokens_in is not None]
        t_out = [c.tokens_out for c in rows if c.tokens_out is not None]
        return {"docs_in": sum(c.docs_in for c in rows), "docs_out": sum(c.docs_out for c in rows),
                "bytes_in": sum(c.bytes_in for c in rows), "bytes_out": sum(c.bytes_out for c in rows),
                "tokens_in": sum(t_in) if t_in else None, "tokens_out": sum(t_out) if t_out else None}

    filters = [s for s in stage_names() if s not in ("ingest", "dedup", "mix") and s in stage_cpu]
    out = [{"stage": "ingest", "cpu_s": stage_cpu.get("ingest"), **totals("ingest")}]
    out += [{"stage": s, "cpu_s": stage_cpu.get(s), **totals(s)} for s in filters]
    # every document that survived its source's filters, as the first global step receives it (a filter that
    # a source does not configure is skipped by that source, so the last filter row is not the survivors)
    first_global = totals("dedup") if led.by_source("dedup") else totals("mix")
    kept = {"docs_in": first_global["docs_in"], "docs_out": first_global["docs_in"],
            "bytes_in": first_global["bytes_in"], "bytes_out": first_global["bytes_in"], "tokens_in": None}
    for s in ("tokenize", "sign", "write"):
        out.append({"stage": s, "cpu_s": stage_cpu.get(s), **kept,
                    "tokens_out": first_global["tokens_in"] if s == "tokenize" else None})
    for s in ("dedup", "mix"):
        if led.by_source(s):
            out.append({"stage": s, "cpu_s": None, **totals(s)})
    return [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()} for r in out]


def write_stage_rows(run_dir: str | Path, rows: list[dict[str, Any]]) -> None:
    """Add ``stages`` to ``RUN_DIR/stats.json`` (keeping the phases)."""
    p = RunLayout(run_dir).stats
    data = read_json(p) if p.exists() else {"phases": {}, "order": []}
    data["stages"] = rows
    atomic_write_json(p, data)


def read_stage_rows(run_dir: str | Path) -> list[dict[str, Any]]:
    """The ``stages`` rows of ``RUN_DIR/stats.json`` (empty before finalize)."""
    p = RunLayout(run_dir).stats
    try:
        return list(read_json(p).get("stages") or []) if p.exists() else []
    except (OSError, ValueError):
        return []


def render_stages(rows: list[dict[str, Any]], console=None) -> None:
    """The per-stage table (CPU seconds, documents, bytes, tokens) with rich."""
    from rich.console import Console
    from rich.table import Table

    if not rows:
        return
    console = console or Console()
    t = Table(title="stages (CPU seconds summed over partitions; documents, MB and tokens out)", title_justify="left")
    for c in ("stage", "CPU s", "docs in", "docs out", "MB in", "MB out", "tokens out"):
        t.add_column(c, justify="left" if c == "stage" else "right")

    def n(v: Any, fmt: str = ",") -> str:
        return "-" if v is None else format(v, fmt)

    for r in rows:
        t.add_row(r["stage"], n(r.get("cpu_s"), ".2f"), n(r.get("docs_in")), n(r.get("docs_out")),
                  n(None if r.get("bytes_in") is None else r["bytes_in"] / 1e6, ",.1f"),
                  n(None if r.get("bytes_out") is None else r["bytes_out"] / 1e6, ",.1f"), n(r.get("tokens_out")))
    console.print(t)
