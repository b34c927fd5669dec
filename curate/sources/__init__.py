"""Source readers: recipe sources -> numbered partitions -> normalized document batches.

The runner uses three functions:

- :func:`plan_partitions` expands each source's path globs (recipe order of sources, declared order of
  subsets, sorted files) into :class:`~curate.sources.base.Partition` objects numbered ``0..``: one per file,
  one per row-group range of a Parquet file over :data:`PARQUET_SPLIT_BYTES` (ranges of about that size, cut
  at row-group boundaries, so the split is the same on every run), and one per shard of an ``hf://`` dataset.
- :func:`read_partition` dispatches to the reader registered for the partition's ``format`` and yields
  :class:`~curate.sources.base.ReadBatch` objects (``docs`` in ``DOC_SCHEMA``, ``quarantine`` records).
- :func:`count_records` counts a partition's records cheaply for ``curate plan``: Parquet metadata, non-blank
  lines of JSON lines, 0/1 for one-document files; other formats are counted by reading them.

Readers (by module): :mod:`~curate.sources.code` (``the-stack-v1``, ``the-stack-v2``),
:mod:`~curate.sources.web` (``culturax``, ``madlad``, ``refinedweb``), :mod:`~curate.sources.math`
(``open-web-math``, ``proof-pile-2``), :mod:`~curate.sources.generic` (``jsonl``, ``parquet``, ``text``),
:mod:`~curate.sources.books` (``pg19``, ``gutenberg-txt``) and :mod:`~curate.sources.wiki` (``wikipedia``,
``mediawiki-xml``). Shared plumbing: :mod:`~curate.sources.rows` (the row-reader driver),
:mod:`~curate.sources.decompress` (file types, decompression, lines), :mod:`~curate.sources.jsonl` (JSON lines),
:mod:`~curate.sources.rawbatch` (column specs, raw batches, quarantine records), :mod:`~curate.sources.arrow_utils`
(the normalizers' Arrow helpers), :mod:`~curate.sources.assemble` (documents, ids, text hygiene); ``hf://``
handling in :mod:`~curate.sources.hf`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from curate.errors import CurateError, RecipeError
from curate.recipe import HF_PREFIX, Recipe, SourceConfig, expand_globs
from curate.sources.base import FORMATS, READERS, FormatInfo, Partition, ReadBatch, ReadContext, register

__all__ = [
    "PARQUET_SPLIT_BYTES",
    "Partition",
    "ReadBatch",
    "ReadContext",
    "FormatInfo",
    "check_formats",
    "count_records",
    "format_info",
    "plan_partitions",
    "read_partition",
    "register",
]

#: A Parquet file larger than this (with more than one row group) is split into row-group ranges of about
#: this many compressed bytes, so one huge file does not become one long task.
PARQUET_SPLIT_BYTES = 64 << 20



def format_info(fmt: str) -> FormatInfo:
    """The capabilities a format's reader registered (see :func:`~curate.sources.base.register`)."""
    try:
        return FORMATS[fmt]
    except KeyError:
        msg = (f"no reader is registered for format {fmt!r} (registered: {sorted(READERS)}); the module that "
               "provides it is missing from this installation, or the recipe's `plugins` do not import it")
        raise CurateError(msg) from None


def check_formats(recipe: Recipe) -> None:
    """Every source's ``format`` is a registered reader (after the plugins loaded); the error lists them."""
    for name, src in recipe.sources.items():
        if src.format not in READERS:
            msg = (f"unknown format, got {src.format!r}; registered readers: {sorted(READERS)} (a plugin named "
                   "in `plugins` can register more)")
            raise RecipeError(msg, path=f"sources.{name}.format")


# ---------------------------------------------------------------------------- planning
def _row_group_ranges(path: str, *, target: int) -> list[tuple[tuple[int, int], int]]:
    """Cut a Parquet file into consecutive row-group ranges of about ``target`` compressed bytes."""
    from curate.sources.rows import open_parquet

    md = open_parquet(path).metadata
    ranges: list[tuple[tuple[int, int], int]] = []
    start, acc = 0, 0
    for i in range(md.num_row_groups):
        rg = md.row_group(i)
        acc += sum(rg.column(j).total_compressed_size for j in range(rg.num_columns))
        if acc >= target:
            ranges.append(((start, i + 1), acc))
            start, acc = i + 1, 0
    if start < md.num_row_groups:
        ranges.append(((start, md.num_row_groups), acc))
    return ranges


def _file_partitions(src: SourceConfig, path: str) -> list[tuple[str, int, tuple[int, int] | None]]:
    if path.startswith(HF_PREFIX):
        from curate.sources import hf

        return [(p, nb, None) for p, nb in hf.expand(path)]
    size = os.path.getsize(path)
    if format_info(src.format).row_groups and size > PARQUET_SPLIT_BYTES:
        from curate.sources.decompress import compression_of, is_parquet

        if compression_of(path) is None and is_parquet(path):
            try:
                ranges = _row_group_ranges(path, target=PARQUET_SPLIT_BYTES)
            except CurateError:
                return [(path, size, None)]  # unreadable footer: one partition, which the reader quarantines
            if len(ranges) > 1:
                return [(path, nb, rg) for rg, nb in ranges]
    return [(path, size, None)]


def plan_partitions(recipe: Recipe) -> list[Partition]:
    """Number the recipe's input work: one partition per file, Parquet row-group range, or ``hf://`` shard.

    Sources are taken in recipe order, subsets in declared order (``""`` when a source has none), files in
    sorted order; ``pid`` counts from 0 in that order, so the same inputs always get the same numbers.

    Raises
    ------
    RecipeError
        A path glob matches no file (the error names the YAML path).
    InputError
        A large Parquet file's footer cannot be read, or an ``hf://`` dataset cannot be loaded.
    """
    parts: list[Partition] = []
    for name, src in recipe.sources.items():
        for sub, patterns in src.subset_paths().items():
            yp = f"sources.{name}.subsets.{sub}.paths" if sub else f"sources.{name}.paths"
            for path in expand_globs(recipe, name, sub, patterns, yaml_path=yp):
                for p, nbytes, rg in _file_partitions(src, path):
                    parts.append(Partition(pid=len(parts), source=name, subset=sub, format=src.format, path=p,
                                           nbytes=nbytes, row_groups=rg))
    return parts


# ---------------------------------------------------------------------------- reading
def _reader(part: Partition, src: SourceConfig):
    if part.format != src.format:
        msg = f"partition {part.key} has format {part.format!r} but its source says {src.format!r}"
        raise RecipeError(msg, path=f"sources.{part.source}.format")
    format_info(part.format)
    return READERS[part.format]


def read_partition(part: Partition, src: SourceConfig, ctx: ReadContext) -> Iterator[ReadBatch]:
    """Yield the normalized batches of one partition, by the reader registered for ``part.format``.

    Every input record ends up in exactly one of ``batch.docs`` and ``batch.quarantine``; see
    :mod:`curate.sources.base` for the contract and :mod:`curate.sources.rawbatch` for the reason codes.
    """
    yield from _reader(part, src)(part, src, ctx)


def count_records(part: Partition, src: SourceConfig) -> int:
    """Count the records of a partition without normalizing them (for ``curate plan``).

    Parquet: the footer's row counts (of the partition's row-group range). JSON lines: non-blank lines
    (plus one for a truncated compressed stream, as the reader counts it). One-document formats: 0 for an
    empty file, else 1. ``hf://``: the split metadata, else a streaming count. Anything else (MediaWiki XML)
    is read through its reader and its records summed.
    """
    from curate.sources import hf
    from curate.sources.generic import text_file_records
    from curate.sources.decompress import compression_of, count_lines, is_parquet
    from curate.sources.rows import open_parquet

    from curate.errors import InputError
    from curate.sources.decompress import file_type_problem

    path = part.path
    if path.startswith(HF_PREFIX):
        return hf.count(path)
    if os.path.getsize(path) == 0:
        return 0
    info = format_info(part.format)
    kind = "text" if info.one_doc else (info.file_kind if info.file_kind in ("jsonl", "parquet") else "auto")
    cheap = info.one_doc or info.row_groups or info.file_kind == "jsonl"
    if cheap and file_type_problem(path, kind) is not None:
        return 1  # the reader makes the whole file one quarantine record
    if info.one_doc:
        return text_file_records(path)
    parquet = info.file_kind == "parquet" or (info.file_kind != "jsonl" and compression_of(path) is None
                                              and is_parquet(path))
    if parquet:
        try:
            md = open_parquet(path).metadata
        except InputError:
            return 1  # an unreadable footer: the reader quarantines the file as one record
        groups = range(*part.row_groups) if part.row_groups else range(md.num_row_groups)
        return sum(md.row_group(i).num_rows for i in groups)
    if cheap:
        return count_lines(path)
    return sum(b.records for b in read_partition(part, src, ReadContext()))


# The built-in readers register themselves on import (after everything above is defined: they import
# curate.sources.rows and its helpers, whose imports of curate.sources.* need this package initialised only as far
# as this line).
from curate.sources import books, code, generic, math, web, wiki  # noqa: E402, F401
