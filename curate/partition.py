"""Partition processing: ingest → license → langid → quality → decontaminate → tokenize, one partition at a time.

A :class:`PartitionProcessor` holds the stages and the tokenizer, built from the recipe and set up once
per Ray worker process (the runner submits :func:`process_partition` tasks, which keep the worker's processor
for its next partitions). ``process(part)`` streams the
partition's input in Arrow batches through the stages and writes, under ``<run>/work/parts/``:

=================== ==========================================================================================
file                content
=================== ==========================================================================================
``<key>.docs``      Parquet, one row per input document (no text): ``uid, doc_id, native_id, source, subset,
                    url, nbytes, status`` (``kept`` / ``dropped``), ``stage``, ``reason`` and every annotation
                    a stage added (``lang, lang_score, license, license_raw, q_*, decont_*``). Quarantined records are
                    in ``<run>/quarantine/<key>.parquet`` instead.
``<key>.kept``      Parquet, one row per surviving document: ``uid, doc_id, source, subset, nbytes, ntok``
                    (tokens without the end-of-document token), ``tok_offset`` (into ``<key>.tok``),
                    ``lang, license``, and for dedup ``content_hash`` and ``band_keys``.
``<key>.text``      Parquet ``uid, text`` of the kept documents (zstd), only with ``dedup.minhash.verify_jaccard``
                    (the default): the dedup's verify step reads the texts of its candidates from it.
``<key>.tok``       raw little-endian token ids of the kept documents, concatenated (uint16 when the vocab
                    fits, else uint32); memory-mapped by the shard writer.
``<key>.ledger``    JSON ledger counters of this partition (see ``curate.ledger``).
``<key>.samples``   Parquet, a bounded deterministic sample of dropped (per reason) and kept documents with
                    their first characters and scores, and ``<key>.stats.json`` the histograms of every score a
                    stage added (see ``curate.samples``).
``<key>.done``      completion record, written last: counts and ``input`` (the input file's path, row-group
                    range and identity, see ``curate.runner.input_records``); a resumed run skips a partition
                    whose marker exists and records the input as it is now.
=================== ==========================================================================================

Why one fused pass per partition: each stage is still its own small class over Arrow tables, but running
them back to back on a batch in one worker avoids materializing the corpus between stages; the only global
steps (dedup, mixing) read the small ``.kept`` tables, never the text.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.io_utils import atomic_write_json, atomic_write_parquet, temp_path
from curate.layout import RunLayout
from curate.ledger import Ledger
from curate.pipeline import BuildContext, StageEntry, build_stages, check_stage_output, recipe_from_payload
from curate.recipe import Recipe
from curate.schema import DROP_REASON, QUARANTINE_SCHEMA, kept_schema, token_dtype
from curate.sources.base import Partition, ReadContext

DOCS_DROP_COLS = ("text", "meta")


def part_paths(run_dir: Path, part: Partition) -> dict[str, Path]:
    """The files of ``part`` (``curate.layout.PartFiles``) by name."""
    return RunLayout(run_dir).part(part.key).as_dict()


class PartitionProcessor:
    """Runs every per-document stage of one partition; one instance per Ray worker process
    (:func:`process_partition`)."""

    def __init__(self, payload: dict[str, Any], run_dir: str, *, num_threads: int = 1, decont_index: Any = None,
                 gate: list[dict[str, Any]] | None = None) -> None:
        self.payload = payload
        self.gate = gate or []  # the driver's tokenizer-gate decisions (curate.tokenizer_gate.decisions)
        self.decont_index = decont_index
        self.run_dir = Path(run_dir)
        self.num_threads = num_threads
        self._recipe: Recipe | None = None
        self._stages: dict[str, list[tuple[StageEntry, Any]]] = {}
        self._tokenizer = None

    # -------------------------------------------------------------- lazy, once per worker process
    @property
    def recipe(self) -> Recipe:
        if self._recipe is None:
            self._recipe = recipe_from_payload(self.payload)
        return self._recipe

    def stages(self, source: str) -> list[tuple[StageEntry, Any]]:
        """The registry's stages of ``source`` with their entries, set up once per processor."""
        if source not in self._stages:
            stages = build_stages(self.recipe, source, ctx=BuildContext(check_paths=False,
                                                                        decont_index=self.decont_index))
            for _, st in stages:
                st.setup()
            self._stages[source] = stages
        return self._stages[source]

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from curate.tokenizer_gate import adopt
            from curate.tokenizers import load_tokenizer

            adopt(self.gate)
            self._tokenizer = load_tokenizer(self.recipe.tokenizer, base_dir=self.recipe.base_dir)
        return self._tokenizer

    # -------------------------------------------------------------- the work
    def process(self, part: Partition, input_record: dict | None = None) -> dict[str, Any]:
        from curate.dedup import dedup_columns
        from curate.samples import PartitionProfile
        from curate.sources import read_partition

        cpu0 = time.process_time()

        paths = part_paths(self.run_dir, part)
        for name in ("docs", "quarantine"):
            paths[name].parent.mkdir(parents=True, exist_ok=True)
        recipe = self.recipe
        src = recipe.sources[part.source]
        entries = self.stages(part.source)
        stages = [st for _, st in entries]
        tok = self.tokenizer
        tok_dtype = token_dtype(tok.vocab_size)
        dedup = recipe.dedup
        mh = dedup.minhash if dedup else None

        ledger = Ledger()
        for st in ("ingest", *[s.name for s in stages]):
            ledger.touch(st, part.source, part.subset)
        # input files per source/subset: a file split into row-group ranges counts once, on its first range
        if part.row_groups is None or part.row_groups[0] == 0:
            ledger.get("ingest", part.source, part.subset).counters["files"] = 1
        docs_tables: list[pa.Table] = []
        kept_tables: list[pa.Table] = []
        text_tables: list[pa.Table] = []  # only for dedup.minhash.verify_jaccard: true Jaccard needs the text
        quarantine: list[pa.Table] = []
        profile = PartitionProfile(part.source)
        tok_offset = 0
        records = 0
        in_bytes = 0
        tmp_tok = temp_path(paths["tok"])
        ctx = ReadContext(resolve_path=recipe.resolve_path)
        # CPU seconds per step of this partition (curate.timings): reading counts as "ingest"
        cpu = dict.fromkeys(("ingest", *[st.name for st in stages], "tokenize", "sign", "write"), 0.0)
        clock = time.process_time
        with open(tmp_tok, "wb") as tok_f:
            ingest_counters = ledger.get("ingest", part.source, part.subset).counters
            batches = iter(read_partition(part, src, ctx))
            while True:
                c0 = clock()
                batch = next(batches, None)
                cpu["ingest"] += clock() - c0
                if batch is None:
                    break
                records += batch.records
                for k, v in batch.counters.items():
                    if v:
                        ingest_counters[k] = ingest_counters.get(k, 0) + v
                q = batch.quarantine
                t = batch.docs
                in_bytes += int(pc.sum(t["nbytes"]).as_py() or 0) + int(pc.sum(q["nbytes"]).as_py() or 0)
                # ingest: every record is in; documents are out; the rest is quarantined
                ledger.record_table("ingest", t, what="in")
                ledger.record_table("ingest", t, what="out")
                if q.num_rows:
                    qn = q.set_column(q.schema.get_field_index("nbytes"), "nbytes",
                                      pc.fill_null(q["nbytes"], 0))
                    ledger.record_table("ingest", qn, what="in")
                    ledger.record_table("ingest", qn, what="quarantined", reason_col="reason")
                    quarantine.append(q)
                for entry, st in entries:
                    if t.num_rows == 0:
                        break
                    st.check_columns(t, where=part.path)
                    ledger.record_table(st.name, t, what="in")
                    c0 = clock()
                    uids = t["uid"]
                    t = st.process(t)
                    cpu[st.name] += clock() - c0
                    check_stage_output(st, uids, t, where=part.path)
                    profile.scored(st, t)
                    reasons = t[DROP_REASON]
                    keep = pc.is_null(reasons)
                    dropped = t.filter(pc.invert(keep))
                    if entry.counters is not None:
                        c = ledger.get(st.name, part.source, part.subset).counters
                        for k, v in entry.counters(st, t).items():
                            c[k] = c.get(k, 0) + v
                    if dropped.num_rows:
                        tokens_col = None
                        if st.count_dropped_tokens:
                            # few rows (contaminated documents): their tokens tell the audit what the stage cost
                            _, n = tok.encode_batch(dropped["text"].to_pylist(), num_threads=self.num_threads)
                            n = np.asarray(n, dtype=np.int64)
                            dropped = dropped.append_column("ntok", pa.array(n)).append_column(
                                "tokens", pa.array(sequence_tokens(n, recipe.max_doc_tokens)))
                            tokens_col = "tokens"
                        ledger.record_table(st.name, dropped, what="dropped", reason_col=DROP_REASON,
                                            tokens_col=tokens_col)
                        if tokens_col:
                            dropped = dropped.drop_columns([tokens_col])
                        docs_tables.append(_docs_rows(dropped, status="dropped", stage=st.name))
                        profile.dropped(st.name, dropped, dropped[DROP_REASON])
                    t = t.filter(keep).drop_columns([DROP_REASON])
                    ledger.record_table(st.name, t, what="out")
                if t.num_rows == 0:
                    continue
                # survivors: tokenize, hash, sign
                profile.kept(t)
                c0 = clock()
                texts = t["text"].to_pylist()
                flat, lengths = tok.encode_batch(texts, num_threads=self.num_threads)
                if flat.size and int(flat.max()) > np.iinfo(tok_dtype).max:
                    msg = f"token id {int(flat.max())} does not fit {np.dtype(tok_dtype).name}"
                    raise ValueError(msg)
                tok_f.write(np.ascontiguousarray(flat, dtype=tok_dtype).tobytes())
                lengths = np.asarray(lengths, dtype=np.int64)
                offsets = tok_offset + np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
                tok_offset += int(lengths.sum())
                c1 = clock()
                cpu["tokenize"] += c1 - c0
                cols = {
                    "uid": t["uid"], "doc_id": t["doc_id"], "source": t["source"], "subset": t["subset"],
                    "nbytes": t["nbytes"], "ntok": pa.array(lengths), "tok_offset": pa.array(offsets),
                    "tokens": pa.array(sequence_tokens(lengths, recipe.max_doc_tokens)),
                    "lang": t["lang"], "license": t["license"],
                }
                for mk in recipe.balance_meta_keys():  # balance: {by: meta.<key>} reads the value in the mix task
                    cols[f"meta.{mk}"] = meta_value(t["meta"], mk)
                if dedup is not None:  # content_hash, and band_keys with minhash
                    cols.update(dedup_columns(t["text"], minhash=mh))
                kept_tables.append(pa.table(cols))
                cpu["sign"] += clock() - c1
                if mh is not None and mh.verify_jaccard:
                    text_tables.append(pa.table({"uid": t["uid"], "text": t["text"]}))
                docs_tables.append(_docs_rows(t.append_column("ntok", pa.array(lengths)), status="kept", stage=None))
        os.replace(tmp_tok, paths["tok"])

        c0 = clock()
        docs_all = _concat(docs_tables)
        for (src_name, sub), n in duplicate_doc_ids(docs_all).items():
            ledger.get("ingest", src_name, sub).counters["duplicate_doc_ids"] = n
        atomic_write_parquet(paths["docs"], docs_all)
        atomic_write_parquet(paths["kept"], _concat(kept_tables) if kept_tables else kept_schema(
            recipe.balance_meta_keys(), dedup=dedup is not None, bands=mh.bands if mh else None).empty_table())
        atomic_write_parquet(paths["quarantine"], _concat(quarantine) if quarantine else QUARANTINE_SCHEMA.empty_table())
        if mh is not None and mh.verify_jaccard:
            atomic_write_parquet(paths["text"],
                                 _concat(text_tables) if text_tables else pa.table(
                                     {"uid": pa.array([], pa.int64()), "text": pa.array([], pa.large_string())}))
        profile.write(paths["samples"], paths["stats"])
        ledger.write(paths["ledger"])
        cpu["write"] += clock() - c0
        summary = {"pid": part.pid, "records": records, "bytes": in_bytes,
                   "kept": sum(x.num_rows for x in kept_tables), "tokens": tok_offset, "input": input_record,
                   "cpu_s": round(time.process_time() - cpu0, 3)}
        summary["tokenizer_engine"] = tok.engine.engine  # the library that encoded this partition
        summary["stage_cpu_s"] = {k: round(v, 4) for k, v in cpu.items()}
        atomic_write_json(paths["done"], summary)
        return summary


def duplicate_doc_ids(docs: pa.Table) -> dict[tuple[str, str], int]:
    """Documents per (source, subset) whose native-id ``doc_id`` repeats an earlier one of the partition.

    Only documents with a native id count: a text-hash id repeats exactly when the text does, which dedup
    handles. The count is per partition (one input file, or a row-group range of one).
    """
    if docs.num_rows == 0 or "native_id" not in docs.column_names:
        return {}
    t = docs.select(["source", "subset", "doc_id", "native_id"]).filter(pc.is_valid(docs["native_id"]))
    t = t.filter(pc.not_equal(t["native_id"], ""))
    if t.num_rows == 0:
        return {}
    g = t.group_by(["source", "subset"]).aggregate([("doc_id", "count"), ("doc_id", "count_distinct")])
    return {(r["source"], r["subset"]): int(r["doc_id_count"] - r["doc_id_count_distinct"])
            for r in g.to_pylist() if r["doc_id_count"] > r["doc_id_count_distinct"]}


def _docs_rows(t: pa.Table, *, status: str, stage: str | None) -> pa.Table:
    """Documents-table rows for ``t`` (no text, no meta): ``status``, ``stage`` and ``reason`` last.

    Dropped rows keep their ``drop_reason`` as ``reason``; kept rows get a null reason.
    """
    t = t.drop_columns([c for c in DOCS_DROP_COLS if c in t.column_names])
    n = t.num_rows
    reason = pa.nulls(n, type=pa.string())
    if DROP_REASON in t.column_names:
        if status == "dropped":
            reason = t[DROP_REASON]
        t = t.drop_columns([DROP_REASON])
    return (t.append_column("status", pa.array([status] * n, type=pa.string()))
            .append_column("stage", pa.array([stage] * n, type=pa.string()))
            .append_column("reason", reason))


def _concat(tables: list[pa.Table]) -> pa.Table:
    if not tables:
        return pa.table({"uid": pa.array([], pa.int64())})
    return pa.concat_tables(tables, promote_options="permissive").combine_chunks()


def meta_value(meta: pa.ChunkedArray | pa.Array, key: str) -> pa.Array:
    """The value of ``key`` in each document's ``meta`` JSON object, as a string (null when absent), vectorized."""
    import polars as pl

    s = pl.from_arrow(pa.chunked_array(meta).combine_chunks() if isinstance(meta, pa.ChunkedArray) else meta)
    path = "$." + key if key.isidentifier() else "$[" + json.dumps(key) + "]"
    return s.cast(pl.String).str.json_path_match(path).to_arrow().cast(pa.string())


def sequence_tokens(ntok: np.ndarray, max_doc_tokens: int | None) -> np.ndarray:
    """Tokens a document occupies in the shards: its ids plus one end-of-document token per sequence.

    With ``max_doc_tokens`` a long document is split into ``ceil(ntok / max_doc_tokens)`` sequences, each
    ending with its own end-of-document token.
    """
    ntok = np.asarray(ntok, dtype=np.int64)
    if not max_doc_tokens:
        return ntok + 1
    chunks = np.maximum(1, -(-ntok // max_doc_tokens))
    return ntok + chunks


# ---------------------------------------------------------------------------- the parts phase's Ray task
#: this worker process's processor, ``[(key, PartitionProcessor)]``: one at a time, so a worker that goes on to
#: serve another run (a test session, a sweep) drops the previous run's models
_cached: list[tuple[str, PartitionProcessor]] = []


def process_partition(payload: dict[str, Any], run_dir: str, decont_refs: list, part: Partition,
                      input_record: dict | None = None, gate: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Ray task body of the parts phase: ``part`` through this worker process's :class:`PartitionProcessor`.

    The processor (the recipe, each source's stages with their models, the tokenizer, the decontamination index)
    is built on a worker's first partition of a run and kept for its next ones: Ray pools its workers, so the
    models load once per worker process, as they did once per partition actor, and the same processes then run
    the dedup and mix tasks instead of exiting with an actor (a fresh worker costs about 1 s on 2 cores). The first
    task of another kind in the worker drops the processor (:func:`curate.raytasks.keep_for_next_task`; measured
    on the demo recipe, it holds 245 MB).
    ``decont_refs``: the index's object-store reference inside a list (Ray resolves only top-level references),
    fetched once per processor; its id is part of the cache key, with the payload and the run directory.
    ``gate``: the driver's tokenizer-gate decisions (:func:`curate.tokenizer_gate.adopt`), so that a worker
    does not probe the same tokenizer file again.
    """
    import hashlib

    ref_ids = [r.hex() for r in decont_refs]
    key = json.dumps([payload, str(run_dir), ref_ids], sort_keys=True, default=str)
    key = hashlib.sha256(key.encode()).hexdigest()
    if not _cached or _cached[0][0] != key:
        _cached.clear()
        index = None
        if decont_refs:
            import ray

            index = ray.get(decont_refs[0])
        _cached.append((key, PartitionProcessor(payload, run_dir, num_threads=1, decont_index=index,
                                                   gate=gate)))
        from curate.raytasks import keep_for_next_task

        keep_for_next_task("process_partition", _cached.clear)
    return _cached[0][1].process(part, input_record)
