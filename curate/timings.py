"""Per-phase timings of a run: ``RUN_DIR/stats.json``, shown by the audit (``timings``) and its report.

Schema::

    {"phases": {phase: {"wall_s": float, "driver_cpu_s": float, "worker_cpu_s": float | null,
                        "finished": "YYYY-MM-DDTHH:MM:SSZ"}},
     "order": [phase, ...]}

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

STATS_FILE = "stats.json"


class PhaseTimer:
    """Times the phases of one run and rewrites ``RUN_DIR/stats.json`` as each one finishes."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / STATS_FILE
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
            atomic_write_json(self.path, self.data)


def read_timings(run_dir: str | Path) -> list[dict[str, Any]]:
    """Rows ``{phase, wall_s, driver_cpu_s, worker_cpu_s}`` in run order (empty before the first phase ends)."""
    p = Path(run_dir) / STATS_FILE
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
