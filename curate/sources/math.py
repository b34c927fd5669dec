"""Mathematical text: ``open-web-math`` (open-web-math/open-web-math) and ``proof-pile-2`` (EleutherAI/proof-pile-2).

Both read Parquet (by magic bytes) or JSON lines (``.jsonl[.gz|.zst|.bz2]``; proof-pile-2 ships
``.jsonl.zst``) and ``hf://`` paths. ``lang`` is null (the langid stage labels the text).

open-web-math
-------------
Native columns ``text`` (required), ``url``, ``date``, ``metadata`` (a JSON string; in JSON lines also an
object).

=========== ===================================================================================================
text        ``text``
native_id   ``url`` (null -> text hash)
url         ``url``
license     ``metadata``'s top-level ``license`` field when present (arXiv-derived rows), else null
meta        the ``metadata`` object with ``"date"`` merged in as its first key; when ``metadata`` already has
            a ``date`` key it wins and is kept as is; when ``metadata`` is not a JSON object it is kept as a
            string: ``{"date": ..., "metadata_raw": "..."}``
=========== ===================================================================================================

The metadata column is parsed once per batch (``io.json_fields``: one polars ``json_decode`` pass for the
``date`` and ``license`` fields and the is-an-object check); the merge then splices JSON text (``{"date":"..."`` + the
object's members) with polars string expressions: the metadata object is kept byte for byte, and no per-row
Python runs.

proof-pile-2
------------
Native columns ``text`` (required) and ``meta`` (an object in JSON lines, a struct or a JSON string in
Parquet). ``meta`` is kept as JSON (a Parquet struct is encoded with every field of the struct type, so
fields a row lacks appear as ``null``); ``url`` and ``native_id`` are its ``url`` field (arXiv and open-web-math
rows have one; algebraic-stack rows do not and get a text-hash ``doc_id``); ``license`` is its ``license``
field when present, else null.
"""

from __future__ import annotations

from collections.abc import Iterator

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from curate.recipe import SourceConfig
from curate.sources.base import Partition, ReadBatch, ReadContext, register
from curate.sources.arrow_utils import column, json_fields, json_text, to_string
from curate.sources.rawbatch import Col, Normalized, NormContext
from curate.sources.rows import read_rows


def merge_date(metadata: pa.Array, date: pa.Array, *, fields: tuple[pa.Array, dict[str, pa.Array]] | None = None
               ) -> pa.Array:
    """Merge a ``date`` column into a column of JSON-object strings (see the module docstring).

    ``fields`` is ``json_fields(metadata, ["date", ...])`` when the caller already parsed the column.
    """
    if len(metadata) == 0:
        return pa.array([], pa.string())
    is_obj, parsed = fields if fields is not None else json_fields(metadata, ["date"])
    df = pl.DataFrame({"m": pl.from_arrow(to_string(metadata)), "d": pl.from_arrow(to_string(date)),
                       "obj": pl.from_arrow(is_obj), "has": pl.from_arrow(pc.is_valid(parsed["date"]))})
    m = pl.col("m").str.strip_chars()
    date_obj = pl.struct(pl.col("d").alias("date")).struct.json_encode()
    inner = m.str.slice(1).str.strip_suffix("}")
    merged = (
        pl.when(pl.col("m").is_null()).then(date_obj)
        .when(~pl.col("obj")).then(
            pl.struct(pl.col("d").alias("date"), pl.col("m").alias("metadata_raw")).struct.json_encode())
        .when(pl.col("has")).then(m)
        .when(inner.str.strip_chars() == "").then(date_obj)
        .otherwise(pl.concat_str([date_obj.str.strip_suffix("}"), pl.lit(","), inner, pl.lit("}")]))
    )
    return pc.cast(df.select(merged.alias("meta")).to_series().to_arrow(), pa.string())


# ---------------------------------------------------------------------------- open-web-math
OWM_COLUMNS = [
    Col("text", "text", required=True),
    Col("url"),
    Col("date", "any", jtype=pa.string()),
    Col("metadata", "json", jtype=pa.string()),
]


def normalize_open_web_math(t: pa.Table, nctx: NormContext) -> Normalized:
    """Map open-web-math columns to document columns (see the module docstring)."""
    url = column(t, "url")
    metadata = json_text(column(t, "metadata"))
    is_obj, fields = json_fields(metadata, ["date", "license"])
    return Normalized(
        text=column(t, "text"),
        text_field="text",
        native_id=url,
        url=url,
        lang=None,
        license=fields["license"],
        meta=merge_date(metadata, column(t, "date"), fields=(is_obj, fields)),
    )


@register("open-web-math", row_groups=True)
def read_open_web_math(part: Partition, src: SourceConfig, ctx: ReadContext) -> Iterator[ReadBatch]:
    """Read open-web-math files; see the module docstring."""
    yield from read_rows(part, src, ctx, columns=OWM_COLUMNS, text_col="text", normalize=normalize_open_web_math)


# ---------------------------------------------------------------------------- proof-pile-2
PROOF_PILE_2_COLUMNS = [Col("text", "text", required=True), Col("meta", "json")]


def normalize_proof_pile_2(t: pa.Table, nctx: NormContext) -> Normalized:
    """Map proof-pile-2 columns to document columns (see the module docstring)."""
    meta = json_text(column(t, "meta"))
    _, fields = json_fields(meta, ["url", "license"])
    return Normalized(
        text=column(t, "text"),
        text_field="text",
        native_id=fields["url"],
        url=fields["url"],
        lang=None,
        license=fields["license"],
        meta=meta,
    )


@register("proof-pile-2", row_groups=True)
def read_proof_pile_2(part: Partition, src: SourceConfig, ctx: ReadContext) -> Iterator[ReadBatch]:
    """Read EleutherAI/proof-pile-2 files; see the module docstring."""
    yield from read_rows(part, src, ctx, columns=PROOF_PILE_2_COLUMNS, text_col="text",
                         normalize=normalize_proof_pile_2)
