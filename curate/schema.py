"""The document schema that flows between stages, and every run-directory file schema.

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

The run-directory tables (paths: :class:`curate.layout.RunLayout`), each defined here with its own comment:
``quarantine/<key>.parquet`` (``QUARANTINE_SCHEMA``), ``work/parts/<key>.kept.parquet`` (``kept_schema``),
``work/mix/shard_NNNNN.order.parquet`` (``ORDER_SCHEMA``), ``shards/<name>.lineage.parquet``
(``LINEAGE_SCHEMA``) and ``documents/<key>.parquet`` (``DOCUMENTS_LEADING_FIELDS`` ...
``DOCUMENTS_STATUS_FIELDS``). :func:`schema_problems` and :func:`documents_problems` say how a file's schema
differs from its definition (``tests/test_schema.py`` checks a demo run's files against them).
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


#: A shard's documents in shard order: ``work/mix/shard_NNNNN.order.parquet``, written by the mix plan
#: (``curate.mix.interleave.write_orders``), read by the shard writer. One row per sequence: ``seq`` its position in the
#: mixture (global, not within the shard),
#: ``uid``/``pid`` the document and its partition, ``tok_offset`` its first id in ``work/parts/<key>.tok``,
#: ``ntok`` the ids of this sequence without the end-of-document id, ``tokens`` with it, ``epoch`` the pass over
#: the member's supply, ``chunk`` the piece of a document cut at ``max_doc_tokens`` (0 otherwise), then the
#: document's labels and its mixture ``group``, and ``trimmed``: true for the (at most one per member or balance
#: cell) sequence the mixer cut short so the member hits its token target exactly (``curate.mix.core.trim_selection``;
#: ``ntok`` is then the kept prefix). With a ``balance:`` in the recipe a last column ``balance``
#: (:data:`BALANCE_FIELD`) holds the value a balanced member's sequence was selected under (null elsewhere).
ORDER_SCHEMA = pa.schema([("seq", pa.int64()), ("uid", pa.int64()), ("pid", pa.int64()), ("tok_offset", pa.int64()),
                          ("ntok", pa.int64()), ("tokens", pa.int64()), ("epoch", pa.int32()), ("chunk", pa.int32()),
                          ("source", pa.string()), ("subset", pa.string()), ("group", pa.string()),
                          ("doc_id", pa.string()), ("lang", pa.string()), ("license", pa.string()),
                          ("trimmed", pa.bool_())])

#: The optional last column of the order and lineage files (only when the recipe balances a member).
BALANCE_FIELD = pa.field("balance", pa.string())

#: A shard's (or validation set's) lineage: ``shards/<name>.lineage.parquet`` (``validation/<member>_00000...``),
#: written by ``curate.shard_formats.lineage_table`` from the order file; the audit's and the LICENSES report's
#: truth. One row per sequence, in shard order: ``shard`` the shard's name, then the order's columns a reader
#: needs (``tokens`` counts the end-of-document id, as the shard's index does; ``trimmed`` marks the sequence the
#: mixer cut to hit its member's target: its ``chunk`` and ``tokens`` say which piece and how much), and
#: :data:`BALANCE_FIELD` when
#: the recipe balances.
LINEAGE_SCHEMA = pa.schema([("shard", pa.string()), ("seq", pa.int64()), ("source", pa.string()),
                            ("subset", pa.string()), ("group", pa.string()), ("doc_id", pa.string()),
                            ("uid", pa.int64()), ("tokens", pa.int64()), ("epoch", pa.int32()),
                            ("chunk", pa.int32()), ("lang", pa.string()), ("license", pa.string()),
                            ("trimmed", pa.bool_())])

#: The documents table, ``documents/<key>.parquet`` (``curate.mix.documents.write_documents``): the final status of
#: every input record of a partition, without text, sorted by uid (input order). It starts with these columns
#: (``DOC_SCHEMA`` less ``text`` and ``meta``; all nullable), then the columns the stages added
#: (``license_raw``, ``lang_score``, ``q_*``, ``quality_fail``, ``decont_*``: they depend on the recipe), then
#: ``ntok`` and :data:`DOCUMENTS_STATUS_FIELDS`.
DOCUMENTS_LEADING_FIELDS = tuple(pa.field(f.name, f.type) for f in DOC_SCHEMA if f.name not in ("text", "meta"))

#: The last columns of the documents table: ``status`` (:data:`DOCUMENT_STATUSES`), ``stage`` (the ledger stage
#: that decided: ``ingest`` for quarantined records, a filter, ``dedup``, ``mix``; null for kept documents),
#: ``reason`` (its reason code), ``dup_of`` (the uid a dedup loser duplicates) and ``selected`` (times the
#: document was written to the shards). Quarantined records (``status = quarantined``) are appended after the
#: documents with :data:`DOCUMENTS_QUARANTINE_FIELDS` set instead of the document columns.
DOCUMENTS_STATUS_FIELDS = (pa.field("ntok", pa.int64()), pa.field("status", pa.string()),
                           pa.field("stage", pa.string()), pa.field("reason", pa.string()),
                           pa.field("dup_of", pa.int64()), pa.field("selected", pa.int64()))

#: The columns a documents table gains when its partition has quarantined records (from ``QUARANTINE_SCHEMA``).
DOCUMENTS_QUARANTINE_FIELDS = (pa.field("file", pa.string()), pa.field("row", pa.int64()))

#: Every value of the documents table's ``status``.
DOCUMENT_STATUSES = frozenset({"kept", "dropped", "validation", "quarantined"})


def schema_problems(actual: pa.Schema, expected: pa.Schema, *, optional: tuple[pa.Field, ...] = ()) -> list[str]:
    """How ``actual`` differs from ``expected`` (same names, order and types; nullability is not compared),
    allowing the fields of ``optional`` after them; an empty list when it conforms."""
    want = [*expected, *optional]
    names = actual.names
    problems = []
    for i, f in enumerate(want):
        if i >= len(names):
            if i < len(expected):
                problems.append(f"column {i} `{f.name}` ({f.type}) is missing")
            break
        got = actual.field(i)
        if got.name != f.name or not got.type.equals(f.type):
            problems.append(f"column {i} is `{got.name}` ({got.type}), expected `{f.name}` ({f.type})")
    if len(names) > len(want):
        problems.append(f"unexpected column(s) {names[len(want):]}")
    return problems


def documents_problems(actual: pa.Schema) -> list[str]:
    """How a documents table's schema differs from the layout above (see :data:`DOCUMENTS_LEADING_FIELDS`)."""
    names = actual.names
    lead = pa.schema([actual.field(i) for i in range(min(len(names), len(DOCUMENTS_LEADING_FIELDS)))])
    problems = schema_problems(lead, pa.schema(DOCUMENTS_LEADING_FIELDS))
    tail = [f for f in DOCUMENTS_QUARANTINE_FIELDS if f.name in names]
    want_tail = [*DOCUMENTS_STATUS_FIELDS, *tail]
    got_tail = [actual.field(i) for i in range(max(0, len(names) - len(want_tail)), len(names))]
    problems += schema_problems(pa.schema(got_tail), pa.schema(want_tail))
    return problems


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
