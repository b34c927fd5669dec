"""Web text: ``culturax`` (uonlp/CulturaX), ``madlad`` (allenai/MADLAD-400), ``refinedweb`` (tiiuae/falcon-refinedweb).

Each reads Parquet (by magic bytes) or JSON lines (``.jsonl[.gz|.zst|.bz2]``) in the dataset's own columns, and
``hf://`` paths. The license of crawled pages is unknown: every document gets the tag ``web-unknown``, which
the license stage keeps or drops by the source's ``license.unknown`` policy.

culturax
--------
Native columns ``text`` (required), ``timestamp``, ``url``, ``source`` (the crawl: ``mC4`` or ``OSCAR-2019``
...). CulturaX files carry no language column: the language is the folder/file name of the published layout
(``en/en_part_00000.parquet``), so ``lang`` is taken from a ``lang`` or ``language`` column when the file has
one, else from a file name of the form ``<lang>_part_<n>.<ext>``, else null (the langid stage fills it).

=========== =======================================================================
text        ``text``
native_id   ``url`` (null -> ``doc_id`` from the text hash)
url         ``url``
lang        as above
license     ``web-unknown``
meta        ``{"timestamp", "source"}``
=========== =======================================================================

madlad
------
MADLAD-400 ships ``<lang>/<lang>_<clean|noisy>_<n>.jsonl.gz`` files of ``{"text": ...}``. Native columns:
``text`` (required) and, when present, ``url``, ``lang``/``language``. ``lang`` comes from the column, else
from the file name (``de_clean_0000.jsonl.gz`` -> ``de``; ``zh_Latn_noisy_0001`` -> ``zh_Latn``), else null;
``meta`` is ``{"split": "clean"|"noisy"|null}`` from the file name. ``native_id`` is ``url`` (mostly absent, so
``doc_id`` uses the text hash). License ``web-unknown``.

refinedweb
----------
Native columns ``content`` (required), ``url``, ``timestamp``, ``dump``, ``segment``, ``image_urls``
(a list of ``[src, alt]`` pairs).

=========== =======================================================================
text        ``content``
native_id   ``url`` (null -> text hash)
url         ``url``
lang        null (RefinedWeb is English by construction; the langid stage labels it)
license     ``web-unknown``
meta        ``{"timestamp", "dump", "segment", "n_image_urls"}``; timestamps as ISO-8601 strings
=========== =======================================================================
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import pyarrow as pa

from curate.recipe import SourceConfig
from curate.sources.base import Partition, ReadBatch, ReadContext, register
from curate.sources.arrow_utils import coalesce, column, constant, json_objects, list_lengths
from curate.sources.rawbatch import Col, Normalized, NormContext
from curate.sources.rows import read_rows

WEB_LICENSE = "web-unknown"
_CULTURAX_NAME = re.compile(r"^(?P<lang>[A-Za-z]{2,3}(?:[_-][A-Za-z0-9]+)?)_part_\d+\.")
_MADLAD_NAME = re.compile(r"^(?P<lang>[A-Za-z]{2,3}(?:[_-][A-Za-z0-9]+)*)_(?P<split>clean|noisy)_\d+\.")


def _from_name(pattern: re.Pattern, path: str, group: str) -> str | None:
    m = pattern.match(os.path.basename(path))
    return m.group(group) if m else None


def _lang(t: pa.Table, nctx: NormContext, pattern: re.Pattern) -> pa.Array:
    by_name = _from_name(pattern, nctx.file, "lang")
    return coalesce(column(t, "lang"), column(t, "language"), constant(t.num_rows, by_name))


# ---------------------------------------------------------------------------- culturax
CULTURAX_COLUMNS = [
    Col("text", "text", required=True),
    Col("timestamp", "any", jtype=pa.string()),
    Col("url"),
    Col("source"),
    Col("lang"),
    Col("language"),
]


def normalize_culturax(t: pa.Table, nctx: NormContext) -> Normalized:
    """Map CulturaX columns to document columns (see the module docstring)."""
    url = column(t, "url")
    return Normalized(
        text=column(t, "text"),
        text_field="text",
        native_id=url,
        url=url,
        lang=_lang(t, nctx, _CULTURAX_NAME),
        license=WEB_LICENSE,
        meta=json_objects({"timestamp": column(t, "timestamp"), "source": column(t, "source")}),
    )


@register("culturax", row_groups=True)
def read_culturax(part: Partition, src: SourceConfig, ctx: ReadContext) -> Iterator[ReadBatch]:
    """Read uonlp/CulturaX files; see the module docstring."""
    yield from read_rows(part, src, ctx, columns=CULTURAX_COLUMNS, text_col="text", normalize=normalize_culturax)


# ---------------------------------------------------------------------------- madlad
MADLAD_COLUMNS = [Col("text", "text", required=True), Col("url"), Col("lang"), Col("language")]


def normalize_madlad(t: pa.Table, nctx: NormContext) -> Normalized:
    """Map MADLAD-400 columns (and file name) to document columns (see the module docstring)."""
    url = column(t, "url")
    split = _from_name(_MADLAD_NAME, nctx.file, "split")
    return Normalized(
        text=column(t, "text"),
        text_field="text",
        native_id=url,
        url=url,
        lang=_lang(t, nctx, _MADLAD_NAME),
        license=WEB_LICENSE,
        meta=json_objects({"split": constant(t.num_rows, split)}),
    )


@register("madlad", row_groups=True)
def read_madlad(part: Partition, src: SourceConfig, ctx: ReadContext) -> Iterator[ReadBatch]:
    """Read allenai/MADLAD-400 files; see the module docstring."""
    yield from read_rows(part, src, ctx, columns=MADLAD_COLUMNS, text_col="text", normalize=normalize_madlad)


# ---------------------------------------------------------------------------- refinedweb
REFINEDWEB_COLUMNS = [
    Col("content", "text", required=True),
    Col("url"),
    Col("timestamp", "any", jtype=pa.string()),
    Col("dump"),
    Col("segment"),
    Col("image_urls", "any", jtype=pa.list_(pa.list_(pa.string()))),
]


def normalize_refinedweb(t: pa.Table, nctx: NormContext) -> Normalized:
    """Map RefinedWeb columns to document columns (see the module docstring)."""
    url = column(t, "url")
    return Normalized(
        text=column(t, "content"),
        text_field="content",
        native_id=url,
        url=url,
        lang=None,
        license=WEB_LICENSE,
        meta=json_objects({
            "timestamp": column(t, "timestamp"),
            "dump": column(t, "dump"),
            "segment": column(t, "segment"),
            "n_image_urls": list_lengths(column(t, "image_urls")),
        }),
    )


@register("refinedweb", row_groups=True)
def read_refinedweb(part: Partition, src: SourceConfig, ctx: ReadContext) -> Iterator[ReadBatch]:
    """Read tiiuae/falcon-refinedweb files; see the module docstring."""
    yield from read_rows(part, src, ctx, columns=REFINEDWEB_COLUMNS, text_col="content",
                         normalize=normalize_refinedweb)
