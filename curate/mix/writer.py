"""Shard writing: one Ray task per shard turns its order file into the shard's files, memory bounded.

``write_shard`` reads ``work/mix/shard_NNNNN.order.parquet`` (:mod:`curate.mix.task` writes it) in tables of
:data:`curate.shard_formats.ORDER_READ_ROWS` rows, gathers the token ids from the partitions' memory-mapped
``.tok`` files in batches bounded by sequences and tokens (:class:`curate.shard_formats.SequenceGather`; a
document longer than a batch goes in pieces) and hands each batch to one writer per format of
``shards.format`` (``shards/<name>_NNNNN.{bin,idx}`` for Megatron, the others' files as
:mod:`curate.shard_formats` lays them out). The lineage goes to ``shards/<name>_NNNNN.lineage.parquet`` a row
group at a time (:class:`curate.shard_formats.LineageWriter`) and the entry's aggregates are summed per batch.
Then ``shards/<name>_NNNNN.json``, the shard's manifest entry::

    name, index, [bin, idx, bin_sha256, idx_sha256, bin_bytes, idx_bytes: with Megatron among the formats],
    sequences, tokens, lineage, lineage_bytes,
    formats: {<format>: {dtype, sequences, tokens, files: [{path, bytes, sha256}, ...]}},
    by_group: [{group, tokens, sequences}], by_source: [{source, subset, tokens, sequences}],
    by_license: [{source, subset, group, license, tokens}]

written last: its presence means the shard is complete; a resume checks the files against it and rewrites a
damaged shard (``curate.runner.shard_damage``).

Memory of one task, whatever the shard size: a read table of the order, one gather batch (at most
:data:`~curate.shard_formats.GATHER_TOKENS` ids, about 38 bytes a token while written), one lineage row group
(:data:`~curate.shard_formats.LINEAGE_ROW_GROUP` rows), and the per-sequence index arrays the formats hold until
their index is written: 4 bytes a sequence for Megatron's int32 sizes and for MDS's uint32 sample lengths
(olmo-npy and datatrove write their index as they go). 10**8 sequences in one shard: 800 MB with both.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from curate.io_utils import atomic_write_json, read_json
from curate.layout import RunLayout
from curate.pipeline import recipe_from_payload
from curate.shard_formats import LineageWriter, SequenceGather, ShardWriters, iter_order

if TYPE_CHECKING:
    from curate.recipe import Recipe


def shard_name(recipe: Recipe, i: int) -> str:
    """``<shards.name>_NNNNN``: the file-name stem of shard ``i``."""
    return f"{recipe.shards.name}_{i:05d}"


def shard_json_path(run_dir: Path, recipe: Recipe, i: int) -> Path:
    """Shard ``i``'s ``.json`` entry (its done marker)."""
    return RunLayout(run_dir).shard_json(shard_name(recipe, i))


def write_shard(payload: dict[str, Any], run_dir: str, i: int) -> dict:
    """Write shard ``i`` from its order file in every format of ``shards.format``; return its manifest entry.

    Each batch of sequences is gathered once and handed to every format's writer (curate.shard_formats), so the
    formats hold the same token stream. On any error every writer aborts: no format's final files appear.
    """
    recipe = recipe_from_payload(payload)
    run_dir = Path(run_dir)
    layout = RunLayout(run_dir)
    plan = read_json(layout.mix_plan)
    name = shard_name(recipe, i)
    shard_dir = layout.shards_dir
    shard_dir.mkdir(parents=True, exist_ok=True)
    formats = recipe.shards.formats
    lineage_path = layout.lineage(name)
    lineage = LineageWriter(lineage_path, name)
    # on an error (disk full) every format's writer deletes its temporary files: a failed task leaves nothing behind
    try:
        with ShardWriters(formats, shard_dir, name, vocab_size=plan["vocab_size"],
                          tokenizer=plan["tokenizer"]) as ws:
            gather = SequenceGather(ws, run_dir, plan, where=f"shard {shard_dir / name}")
            for order in iter_order(layout.order(i)):
                gather.add(order)
                lineage.add(order)
            gather.finish()
            fentries = ws.finalize()
    except OSError as e:
        lineage.abort()
        if e.filename is None and e.errno is not None:  # not a writer's (they name their file): name the shard
            raise OSError(e.errno, e.strerror, f"{shard_dir / name}") from e
        raise
    except BaseException:
        lineage.abort()
        raise
    mega = ws.get("megatron")
    # with Megatron among the formats the entry keeps its .bin/.idx keys; else the counts the formats agree on
    info = mega.info if mega is not None else {k: fentries[formats[0]][k] for k in ("sequences", "tokens")}
    lineage.close()

    files = {"bin": f"{name}.bin", "idx": f"{name}.idx"} if "megatron" in fentries else {}
    entry = {"name": name, "index": i, **files,
             "lineage": f"{name}.lineage.parquet", "lineage_bytes": lineage_path.stat().st_size, **info,
             "formats": fentries, **lineage.aggregates()}
    atomic_write_json(shard_json_path(run_dir, recipe, i), entry)
    return entry
