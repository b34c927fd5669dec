"""The documents table: the final status of every input record of one partition (one Ray task per partition).

``write_documents`` starts from the partition's ``work/parts/<key>.docs.parquet`` (status after the filters) and
applies the dedup decision (``work/dedup/removed.parquet``) and the mix decision (``work/mix/selected/<key>.parquet``,
written by :mod:`curate.mix.select`) by uid lookup, then appends the quarantined records::

    documents/<key>.parquet   the docs columns with status (kept / dropped / validation / quarantined), stage,
                              reason, dup_of (the surviving duplicate's uid), selected (times written); sorted
                              by uid, i.e. by input order; quarantined rows last, with file and row
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.io_utils import atomic_write_parquet
from curate.layout import RunLayout


def write_documents(run_dir: str, key: str, pid: int) -> int:
    """Final status of every input record of partition ``key`` (no text) → ``documents/<key>.parquet``.

    Starts from the partition's ``docs`` table (status after the filters) and applies, by uid lookup, the dedup
    decision (``dedup``: exact_duplicate / near_duplicate, with ``dup_of``) and the mix decision (``mix``:
    downsampled / not_in_mixture; ``selected`` = times written). Quarantined records are appended with
    ``status = quarantined``. Rows are sorted by uid, i.e. by input order.
    """
    run_dir = Path(run_dir)
    files = RunLayout(run_dir).part(key)
    docs = pq.read_table(files.docs)
    if docs.num_rows and "status" in docs.column_names:
        docs = docs.sort_by("uid")
        from curate.dedup import has_removed, read_removed

        dedup_dir = RunLayout(run_dir).dedup_dir
        if has_removed(dedup_dir):
            rem = read_removed(dedup_dir, pids=[pid], columns=["uid", "reason", "dup_of"])
        else:
            rem = pa.table({"uid": pa.array([], pa.int64()), "reason": pa.array([], pa.string()),
                            "dup_of": pa.array([], pa.int64())})
        sel = pq.read_table(RunLayout(run_dir).mix_selected(key))
        at_rem = pc.index_in(docs["uid"], value_set=rem["uid"])
        at_sel = pc.index_in(docs["uid"], value_set=sel["uid"])
        kept = pc.equal(docs["status"], "kept")
        dup = pc.and_(kept, pc.is_valid(at_rem))
        mixed_out = pc.and_(pc.and_(kept, pc.invert(dup)), pc.is_valid(sel["reason"].take(at_sel)))
        changed = pc.or_(dup, mixed_out)
        status = pc.if_else(changed, pa.scalar("dropped"), docs["status"])
        # a validation document (curate.validation) is held out, not dropped
        held = pc.fill_null(pc.and_(mixed_out, pc.equal(sel["reason"].take(at_sel), "validation")), False)
        status = pc.if_else(held, pa.scalar("validation"), status)
        stage = pc.if_else(dup, pa.scalar("dedup"), pc.if_else(mixed_out, pa.scalar("mix"), docs["stage"]))
        reason = pc.if_else(dup, rem["reason"].take(at_rem),
                            pc.if_else(mixed_out, sel["reason"].take(at_sel), docs["reason"]))
        docs = docs.drop_columns(["status", "stage", "reason"])
        docs = docs.append_column("status", status).append_column("stage", stage).append_column("reason", reason)
        docs = docs.append_column("dup_of", rem["dup_of"].take(at_rem))
        docs = docs.append_column("selected", pc.fill_null(sel["selected"].take(at_sel), 0))
    q = pq.read_table(files.quarantine)
    # quarantined rows have no uid/doc_id: every column is nullable, in every partition's file alike
    docs = docs.cast(pa.schema([f.with_nullable(True) for f in docs.schema], metadata=docs.schema.metadata))
    if q.num_rows:
        n = q.num_rows
        qd = pa.table({"source": q["source"], "subset": q["subset"], "status": pa.array(["quarantined"] * n),
                       "stage": pa.array(["ingest"] * n), "reason": q["reason"], "file": q["file"],
                       "row": q["row"], "nbytes": q["nbytes"]})
        docs = pa.concat_tables([docs, qd], promote_options="permissive") if docs.num_rows else qd
    atomic_write_parquet(files.documents, docs)
    return docs.num_rows
