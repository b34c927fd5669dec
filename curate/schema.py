"""The document schema that flows between stages, and the run-directory file schemas.

Every source reader normalizes its native rows to ``DOC_SCHEMA``:

=========== ============ ==============================================================
column      type         meaning
=========== ============ ==============================================================
uid         int64        run-internal unique key: ``partition_index << 32 | row``; stable for the
                         same inputs (partitions are numbered over sorted file lists)
doc_id      string       stable public id: ``<source>:<native_id>``, or ``<source>:h<xxh3 of text>``
                         when the source row has no identifier
native_id   string       the source's own identifier (hexsha/blob_id, Wikipedia id, url, ...); may be null
source      string       recipe source name
subset      string       subset name ("" when the source declares none)
text        large_string document text (UTF-8)
url         string       where the document came from (attribution); may be null
lang        string       language label given by the source (CulturaX, Wikipedia) or null; the
                         langid stage overwrites it with the model's label when it runs
license     string       raw license statement from the source (SPDX expression, JSON list, or a
                         tag such as ``web-unknown``); the license stage normalizes it
meta        string       JSON object with the native fields later stages or users need
nbytes      int64        UTF-8 byte length of ``text``
=========== ============ ==============================================================

Stages add columns (``lang_score``, ``license``, ``q_*`` scores, ``decont_eval``/``decont_item``/``decont_ngrams``, ...) and a ``drop_reason`` column
(null = keep). The runner moves dropped rows to the documents table and never loses one.

A quarantine record (``QUARANTINE_SCHEMA``) is written for every input record that could not be turned
into a document: ``file``, ``row`` (0-based row/line index in the file, null for whole-file problems),
``field``, ``reason`` (a short machine-readable code, e.g. ``invalid_utf8``) and ``detail`` (human text).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

DOC_SCHEMA = pa.schema(
    [
        pa.field("uid", pa.int64(), nullable=False),
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("native_id", pa.string()),
        pa.field("source", pa.string(), nullable=False),
        pa.field("subset", pa.string(), nullable=False),
        pa.field("text", pa.large_string(), nullable=False),
        pa.field("url", pa.string()),
        pa.field("lang", pa.string()),
        pa.field("license", pa.string()),
        pa.field("meta", pa.string()),
        pa.field("nbytes", pa.int64(), nullable=False),
    ]
)

DOC_COLUMNS = tuple(DOC_SCHEMA.names)

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("source", pa.string()),
        pa.field("subset", pa.string()),
        pa.field("file", pa.string()),
        pa.field("row", pa.int64()),
        pa.field("field", pa.string()),
        pa.field("reason", pa.string()),
        pa.field("detail", pa.string()),
        pa.field("nbytes", pa.int64()),
    ]
)

#: The columns of a partition's ``work/parts/<key>.kept.parquet`` (one row per surviving document), before the
#: ``meta.<key>`` columns a ``balance: {by: meta.<key>}`` needs and dedup's ``content_hash``/``band_keys``:
#: ``ntok`` its tokens without end-of-document ids, ``tokens`` with them (one per sequence), ``tok_offset`` its
#: first id in ``<key>.tok``.
KEPT_FIELDS = (("uid", pa.int64()), ("doc_id", pa.string()), ("source", pa.string()), ("subset", pa.string()),
               ("nbytes", pa.int64()), ("ntok", pa.int64()), ("tok_offset", pa.int64()), ("tokens", pa.int64()),
               ("lang", pa.string()), ("license", pa.string()))
KEPT_COLUMNS = tuple(name for name, _ in KEPT_FIELDS)


def kept_schema(meta_keys: list[str], *, dedup: bool, bands: int | None) -> pa.Schema:
    """The schema of a ``.kept.parquet`` file of a recipe (see :data:`KEPT_FIELDS`)."""
    fields = [*KEPT_FIELDS, *((f"meta.{mk}", pa.string()) for mk in meta_keys)]
    if dedup:
        fields.append(("content_hash", pa.uint64()))
        if bands:
            fields.append(("band_keys", pa.list_(pa.uint64(), bands)))
    return pa.schema(fields)


#: Column every filter stage adds: null keeps the row, a string is the drop reason code.
DROP_REASON = "drop_reason"

#: The ledger's stage names, in pipeline order, are ``curate.pipeline.stage_names()``: derived from the stage
#: registry, so that a stage a plugin registers is in the ledger, the funnel and the audit.


def empty_docs() -> pa.Table:
    """Return an empty table with ``DOC_SCHEMA``."""
    return DOC_SCHEMA.empty_table()


def quarantine_table(records: list[dict]) -> pa.Table:
    """Build a quarantine table from dicts with the ``QUARANTINE_SCHEMA`` keys."""
    return pa.Table.from_pylist(records, schema=QUARANTINE_SCHEMA)


def token_dtype(vocab_size: int, fmt: str | None = None) -> np.dtype:
    """The one token-id dtype rule: ``uint16`` when every id fits (``vocab_size <= 65536``), else 4 bytes.

    The 4-byte type is ``int32`` for ``megatron`` shards (Megatron's dtype codes have no uint32) and ``uint32``
    for every other shard format and for the partitions' ``work/parts/<key>.tok`` files (``fmt=None``). Both
    hold every id of a vocabulary below 2**31, so the two never disagree on a value; a vocabulary that does not
    fit is a ``ValueError``.
    """
    if vocab_size <= 0:
        msg = f"`vocab_size` must be > 0, got {vocab_size}"
        raise ValueError(msg)
    if vocab_size <= 1 << 16:
        return np.dtype(np.uint16)
    wide = np.dtype(np.int32 if fmt == "megatron" else np.uint32)
    if vocab_size <= int(np.iinfo(wide).max) + 1:
        return wide
    what = "a Megatron shard" if fmt == "megatron" else "the shard"
    msg = f"`vocab_size` {vocab_size} does not fit the {wide.name} token ids of {what}"
    raise ValueError(msg)
