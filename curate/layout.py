"""Every path under a run directory, named once: :class:`RunLayout` and the files of a partition, :class:`PartFiles`.

=========================================== ========================================================================
path                                        content (writer)
=========================================== ========================================================================
``run.json``, ``recipe.json``               the run's identity and its validated recipe payload (runner)
``manifest.json``, ``ledger.json``          the shards and their hashes; the merged ledger (runner)
``LICENSES.md``, ``licenses.json``          the licence report of the mixture (``curate.license_report``)
``audit.json``, ``reports/``                the audit of the run (``curate audit``, the final report)
``stats.json``, ``samples.parquet``,        the report's data and the report (timings, samples, report)
``scores.json``, ``report.html``
``work/partitions.json``                    the numbered partitions of the plan (runner)
``work/parts/<key>.docs.parquet``           per partition: every document without text; ``.kept.parquet`` the
``… .kept.parquet``, ``.text.parquet``,     survivors, ``.text.parquet`` their texts (for the dedup's verify step),
``.tok``, ``.ledger.json``, ``.samples…``,  ``.tok`` their token ids, the ledger, samples, score histograms and the
``.stats.json``, ``.done``                  ``.done`` marker written last (the per-partition processor)
``work/dedup/``                             ``removed/f<i>.parquet`` (one per input file) + ``removed/_index.json``,
                                            ``edges/b<r>.parquet``, ``done.json`` (dedup, :mod:`curate.dedup`)
``work/mix/``                               ``plan.json``, ``ledger.json``, ``shard_<i>.order.parquet`` (the mix
                                            plan); ``prepared/<key>.parquet`` (per partition: the mix's rows),
                                            ``streams/c<c>_r<r>.parquet`` (per leaf: its selected sequences),
                                            ``counts/c<c>_r<r>.parquet`` (per leaf: times each uid was selected),
                                            ``leaves.json`` (every leaf's plan and entry),
                                            ``selected/<key>.parquet`` (per partition: every kept document's
                                            times selected or reason), ``validation.held.parquet``
                                            (:mod:`curate.mix.task`)
``work/decontaminate/index.json``           what the decontamination index was built from (runner)
``shards/<name>.*``                         the shards, their ``.json`` done markers, ``.lineage.parquet``
``documents/<key>.parquet``                 the documents table of a partition (the mix)
``quarantine/<key>.parquet``                input records that could not become documents (the processor)
=========================================== ========================================================================

The schemas of these files are in :mod:`curate.schema`. Every file is written atomically under the one
temporary name of :func:`curate.io_utils.temp_path` (``.<name>.<pid>.tmp`` beside it) and renamed into place.
Why one module: the processor, dedup, the mix, the runner, the audit and the report all read each other's
files; a name built by hand in two places is a name that can drift.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def part_key(pid: int) -> str:
    """File-name key of partition ``pid``: ``p000012``."""
    return f"p{pid:06d}"


@dataclass(frozen=True)
class PartFiles:
    """The files of one partition (see the module docstring)."""

    key: str
    docs: Path
    kept: Path
    text: Path
    tok: Path
    ledger: Path
    done: Path
    samples: Path
    stats: Path
    quarantine: Path
    documents: Path

    def as_dict(self) -> dict[str, Path]:
        return {k: v for k, v in self.__dict__.items() if k != "key"}


def text_of(kept: str | os.PathLike) -> Path:
    """The ``.text.parquet`` beside a partition's ``.kept.parquet`` (or any ``<key>.<kind>.parquet``)."""
    p = Path(kept)
    return p.with_name(p.name.split(".", 1)[0] + ".text.parquet")


class RunLayout:
    """The paths of the run directory ``root``."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    # ------------------------------------------------------------------ top level
    @property
    def run_json(self) -> Path:
        return self.root / "run.json"

    @property
    def recipe_json(self) -> Path:
        return self.root / "recipe.json"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def ledger(self) -> Path:
        return self.root / "ledger.json"

    @property
    def report_html(self) -> Path:
        return self.root / "report.html"

    @property
    def samples(self) -> Path:
        return self.root / "samples.parquet"

    @property
    def scores(self) -> Path:
        return self.root / "scores.json"

    @property
    def audit_json(self) -> Path:
        """``audit.json``: the last ``curate audit`` (or the run's final report) of this run."""
        return self.root / "audit.json"

    @property
    def stats(self) -> Path:
        """``stats.json``: the phases' and stages' timings (``curate.timings``)."""
        return self.root / "stats.json"

    @property
    def licenses_md(self) -> Path:
        """``LICENSES.md``: the licence report for people (``curate.license_report``)."""
        return self.root / "LICENSES.md"

    @property
    def licenses_json(self) -> Path:
        """``licenses.json``: the licence report's payload (``curate.license_report``)."""
        return self.root / "licenses.json"

    # ------------------------------------------------------------------ folders
    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def parts_dir(self) -> Path:
        return self.work / "parts"

    @property
    def partitions_json(self) -> Path:
        return self.work / "partitions.json"

    @property
    def shards_dir(self) -> Path:
        return self.root / "shards"

    @property
    def documents_dir(self) -> Path:
        return self.root / "documents"

    @property
    def quarantine_dir(self) -> Path:
        return self.root / "quarantine"

    @property
    def reports_dir(self) -> Path:
        """``reports/``: the audit's rendered reports (``curate audit``)."""
        return self.root / "reports"

    @property
    def summary_files(self) -> tuple[Path, ...]:
        """The top-level files that summarize a whole run (manifest and audit first: the run stops looking
        complete when they go), stale as soon as any partition or shard is redone."""
        return (self.manifest, self.audit_json, self.ledger, self.licenses_md, self.licenses_json)

    def rel(self, path: str | os.PathLike) -> str:
        """``path`` relative to the run directory, with ``/`` (the manifest's and the audit's keys)."""
        return Path(path).relative_to(self.root).as_posix()

    # ------------------------------------------------------------------ partitions
    def part(self, key: str | int) -> PartFiles:
        """The files of a partition, by key (``p000012``) or pid."""
        k = part_key(key) if isinstance(key, int) else key
        b = self.parts_dir
        return PartFiles(key=k, docs=b / f"{k}.docs.parquet", kept=b / f"{k}.kept.parquet",
                         text=b / f"{k}.text.parquet", tok=b / f"{k}.tok", ledger=b / f"{k}.ledger.json",
                         done=b / f"{k}.done", samples=b / f"{k}.samples.parquet", stats=b / f"{k}.stats.json",
                         quarantine=self.quarantine_dir / f"{k}.parquet", documents=self.documents_dir / f"{k}.parquet")

    # ------------------------------------------------------------------ global steps
    @property
    def dedup_dir(self) -> Path:
        return self.work / "dedup"

    @property
    def dedup_done(self) -> Path:
        return self.dedup_dir / "done.json"

    @property
    def dedup_removed(self) -> Path:
        """The folder of the dedup's removal files (one per input file; read with ``curate.dedup.read_removed``)."""
        return self.dedup_dir / "removed"

    @property
    def dedup_removed_index(self) -> Path:
        return self.dedup_removed / "_index.json"

    @property
    def dedup_edges(self) -> Path:
        """The LSH candidate edges (``b<r>.parquet``: src, dst, src_file, dst_file), kept after the dedup."""
        return self.dedup_dir / "edges"

    @property
    def mix_dir(self) -> Path:
        return self.work / "mix"

    @property
    def mix_plan(self) -> Path:
        return self.mix_dir / "plan.json"

    @property
    def mix_selected_dir(self) -> Path:
        """``work/mix/selected/``: one ``<key>.parquet`` per partition (uid, selected, reason)."""
        return self.mix_dir / "selected"

    def mix_selected(self, key: str | int) -> Path:
        """Partition ``key``'s (or pid's) kept documents: times each was selected, or why never."""
        return self.mix_selected_dir / f"{key if isinstance(key, str) else part_key(key)}.parquet"

    def mix_prepared(self, key: str | int) -> Path:
        """Partition ``key``'s rows as the select tasks read them (``curate.mix.prepare``)."""
        return self.mix_dir / "prepared" / f"{key if isinstance(key, str) else part_key(key)}.parquet"

    def mix_stream(self, cell: int, r: int) -> Path:
        """The selected sequences of leaf (cell, range) in selection order (``curate.mix.select``)."""
        return self.mix_dir / "streams" / f"c{cell:05d}_r{r:05d}.parquet"

    def mix_counts(self, cell: int, r: int) -> Path:
        """Times each uid of leaf (cell, range) was selected (uids selected at least once; sorted by uid)."""
        return self.mix_dir / "counts" / f"c{cell:05d}_r{r:05d}.parquet"

    @property
    def mix_leaves(self) -> Path:
        """Every leaf of the mix: its cell, range, member, value, buckets, target, seed and entry (the driver)."""
        return self.mix_dir / "leaves.json"

    @property
    def mix_held(self) -> Path:
        """The validation documents and their near-duplicates (``curate.mix.task``, with ``validation:``)."""
        return self.mix_dir / "validation.held.parquet"

    def order(self, i: int) -> Path:
        """The documents of shard ``i`` in shard order (written by the mix plan, read by the shard writer)."""
        return self.mix_dir / f"shard_{i:05d}.order.parquet"

    @property
    def mix_validation_order(self) -> Path:
        """The held-out documents of every validation set, in set order (``curate.validation``)."""
        return self.mix_dir / "validation.order.parquet"

    @property
    def mix_validation_components(self) -> Path:
        return self.mix_dir / "validation.components.parquet"

    @property
    def validation_dir(self) -> Path:
        """``validation/``: the held-out sets (``<member>_00000.*``) and ``components.parquet``."""
        return self.root / "validation"

    def step_ledger(self, step: str) -> Path:
        """The ledger of a global step (``dedup``, ``mix``)."""
        return self.work / step / "ledger.json"

    @property
    def decont_index(self) -> Path:
        return self.work / "decontaminate" / "index.json"

    # ------------------------------------------------------------------ shards
    def shard_json(self, name: str) -> Path:
        """The done marker of shard ``name`` (``mix_00003``)."""
        return self.shards_dir / f"{name}.json"

    def shard_file(self, rel: str) -> Path:
        """A file of ``shards/`` by the name a shard's ``.json`` entry records (``lineage``, a format's files)."""
        return self.shards_dir / rel

    def lineage(self, name: str) -> Path:
        return self.shards_dir / f"{name}.lineage.parquet"
