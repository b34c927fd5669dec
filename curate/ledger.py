"""The ledger: per stage and per source/subset, what went in, what came out and why the rest did not.

Every stage of every partition writes counters; the runner merges them into ``ledger.json`` in the run
directory. One entry per ``(stage, source, subset)``::

    {"stage": "quality", "source": "refinedweb", "subset": "",
     "docs_in": 2036, "bytes_in": 8_123_456, "tokens_in": null,
     "docs_out": 1500, "bytes_out": 6_000_000, "tokens_out": null,
     "dropped": {"quality:gopher_stop_words": 120, ...}, "dropped_bytes": {...}, "dropped_tokens": {...},
     "quarantined": {"invalid_utf8": 2}, "counters": {"fail:c4_lines_terminal_punct": 300}}

Conservation, checked for every entry: ``docs_in == docs_out + sum(dropped) + sum(quarantined)``.
For ``ingest``, ``docs_in`` counts input *records* (a record that cannot become a document is quarantined)
and ``counters["files"]`` the input files read; ``counters["duplicate_doc_ids"]`` counts documents whose
native-id ``doc_id`` repeats an earlier one of the same partition, and ``counters["text_*"]`` the documents the
text-hygiene policy changed (``curate.sources.assemble.clean_text``); the audit flags the first and reports the rest.
``tokens_*`` are filled where known: tokens are counted after the filters (with the end-of-document token),
so ``dedup`` and ``mix`` carry tokens; earlier stages do not.

Why a plain JSON of counters: it is small (sources × stages × reasons), merges by addition, so partitions
can be processed on any worker in any order and resumed, and the audit can replay the whole funnel from it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from curate.io_utils import atomic_write_text
from curate.pipeline import stage_names


@dataclass
class Counts:
    docs_in: int = 0
    bytes_in: int = 0
    tokens_in: int | None = None
    docs_out: int = 0
    bytes_out: int = 0
    tokens_out: int | None = None
    dropped: dict[str, int] = field(default_factory=dict)
    dropped_bytes: dict[str, int] = field(default_factory=dict)
    dropped_tokens: dict[str, int] = field(default_factory=dict)
    quarantined: dict[str, int] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)

    def merge(self, other: Counts) -> None:
        self.docs_in += other.docs_in
        self.bytes_in += other.bytes_in
        self.docs_out += other.docs_out
        self.bytes_out += other.bytes_out
        for name in ("tokens_in", "tokens_out"):
            a, b = getattr(self, name), getattr(other, name)
            if b is not None:
                setattr(self, name, (a or 0) + b)
        for name in ("dropped", "dropped_bytes", "dropped_tokens", "quarantined", "counters"):
            mine = getattr(self, name)
            for k, v in getattr(other, name).items():
                mine[k] = mine.get(k, 0) + v

    @property
    def docs_dropped(self) -> int:
        return sum(self.dropped.values())

    @property
    def docs_quarantined(self) -> int:
        return sum(self.quarantined.values())

    def balanced(self) -> bool:
        return self.docs_in == self.docs_out + self.docs_dropped + self.docs_quarantined

    def to_dict(self) -> dict[str, Any]:
        return {k: (dict(sorted(v.items())) if isinstance(v, dict) else v) for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Counts:
        return cls(**{k: (dict(v) if isinstance(v, dict) else v) for k, v in d.items() if k in cls.__dataclass_fields__})


Key = tuple[str, str, str]  # stage, source, subset


class Ledger:
    """Counters keyed by ``(stage, source, subset)``."""

    def __init__(self) -> None:
        self.entries: dict[Key, Counts] = {}

    def get(self, stage: str, source: str, subset: str) -> Counts:
        key = (stage, source, subset)
        if key not in self.entries:
            self.entries[key] = Counts()
        return self.entries[key]

    # ------------------------------------------------------------------ recording from Arrow tables
    def record_table(self, stage: str, table: pa.Table, *, what: str, reason_col: str | None = None,
                     tokens_col: str | None = None, reason: str | None = None) -> None:
        """Add the rows of ``table`` grouped by source/subset (and reason) to ``what`` of ``stage``.

        ``what`` is one of ``in``, ``out``, ``dropped``, ``quarantined``. Grouping is done with Arrow's
        ``group_by`` so recording costs one aggregation per batch, not a loop per document.
        """
        if table.num_rows == 0:
            return
        keys = ["source", "subset"] + ([reason_col] if reason_col else [])
        aggs = [("nbytes", "sum"), ("source", "count")]
        if tokens_col:
            aggs.append((tokens_col, "sum"))
        g = table.select(list(dict.fromkeys(keys + ["nbytes"] + ([tokens_col] if tokens_col else [])))).group_by(
            keys).aggregate(aggs)
        for row in g.to_pylist():
            c = self.get(stage, row["source"], row["subset"])
            n, b = row["source_count"], row["nbytes_sum"] or 0
            t = row.get(f"{tokens_col}_sum") if tokens_col else None
            r = row[reason_col] if reason_col else reason
            if what == "in":
                c.docs_in += n
                c.bytes_in += b
                if t is not None:
                    c.tokens_in = (c.tokens_in or 0) + t
            elif what == "out":
                c.docs_out += n
                c.bytes_out += b
                if t is not None:
                    c.tokens_out = (c.tokens_out or 0) + t
            elif what == "dropped":
                c.dropped[r] = c.dropped.get(r, 0) + n
                c.dropped_bytes[r] = c.dropped_bytes.get(r, 0) + b
                if t is not None:
                    c.dropped_tokens[r] = c.dropped_tokens.get(r, 0) + t
            elif what == "quarantined":
                c.quarantined[r] = c.quarantined.get(r, 0) + n
            else:  # pragma: no cover - programming error
                msg = f"`what` must be one of {{in, out, dropped, quarantined}}, got {what!r}"
                raise ValueError(msg)

    def touch(self, stage: str, source: str, subset: str) -> None:
        """Make sure an entry exists (a stage that saw no documents still appears in the funnel)."""
        self.get(stage, source, subset)

    # ------------------------------------------------------------------ merging and IO
    def merge(self, other: Ledger) -> None:
        for key, c in other.entries.items():
            self.get(*key).merge(c)

    def to_list(self) -> list[dict[str, Any]]:
        order = {s: i for i, s in enumerate(stage_names())}
        keys = sorted(self.entries, key=lambda k: (order.get(k[0], 99), k[0], k[1], k[2]))
        return [{"stage": k[0], "source": k[1], "subset": k[2], **self.entries[k].to_dict()} for k in keys]

    @classmethod
    def from_list(cls, rows: Iterable[dict[str, Any]]) -> Ledger:
        led = cls()
        for r in rows:
            led.get(r["stage"], r["source"], r["subset"]).merge(Counts.from_dict(r))
        return led

    def write(self, path: Path) -> None:
        atomic_write_text(path, json.dumps(self.to_list(), indent=1, sort_keys=True))

    @classmethod
    def read(cls, path: Path) -> Ledger:
        return cls.from_list(json.loads(Path(path).read_text()))

    @classmethod
    def read_many(cls, paths: Iterable[Path]) -> Ledger:
        led = cls()
        for p in sorted(paths):
            led.merge(cls.read(p))
        return led

    # ------------------------------------------------------------------ checks
    def conservation_violations(self) -> list[dict[str, str]]:
        out = []
        for (stage, source, subset), c in sorted(self.entries.items()):
            if not c.balanced():
                where = f"{stage}/{source}" + (f"/{subset}" if subset else "")
                out.append({
                    "kind": "ledger_conservation",
                    "where": where,
                    "message": (f"stage `{stage}` lost track of documents of {source}{'/' + subset if subset else ''}: "
                                f"in {c.docs_in} != out {c.docs_out} + dropped {c.docs_dropped} + quarantined "
                                f"{c.docs_quarantined}"),
                })
        return out

    def by_source(self, stage: str) -> dict[str, Counts]:
        """Sum the subsets of each source for ``stage``."""
        out: dict[str, Counts] = {}
        for (st, src, _sub), c in self.entries.items():
            if st == stage:
                out.setdefault(src, Counts()).merge(c)
        return out
