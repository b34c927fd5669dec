"""The shard writer: one Ray task per shard writes it from its order file in every format.

``write_shard`` (one Ray task per shard) gathers the token ids from the partitions' memory-mapped ``.tok``
files and writes the shard in every format of ``shards.format`` (``shards/<name>_NNNNN.{bin,idx}`` for Megatron,
the others' files as :mod:`curate.shard_formats` lays them out), ``.lineage.parquet`` and ``.json`` (the shard's
manifest entry with a ``formats`` entry per format, written last: its presence means the shard is complete; it
records the size and sha256 of every file of every format, and ``lineage_bytes``, against which a resume checks
them and rewrites a damaged shard). Its input, ``work/mix/shard_NNNNN.order.parquet``, is written by the mix task
(:mod:`curate.mix.task`, which documents its schema).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from curate.io_utils import atomic_write_json, atomic_write_parquet, read_json
from curate.layout import RunLayout
from curate.recipe import Recipe
from curate.pipeline import recipe_from_payload


def shard_name(recipe: Recipe, i: int) -> str:
    return f"{recipe.shards.name}_{i:05d}"


def shard_json_path(run_dir: Path, recipe: Recipe, i: int) -> Path:
    return RunLayout(run_dir).shard_json(shard_name(recipe, i))


def write_shard(payload: dict[str, Any], run_dir: str, i: int) -> dict:
    """Write shard ``i`` from its order file in every format of ``shards.format``; return its manifest entry.

    Each batch of sequences is gathered once and handed to every format's writer (curate.shard_formats), so the
    formats hold the same token stream. On any error every writer aborts: no format's final files appear.
    """
    from curate.shard_formats import ShardWriters, lineage_table, write_sequences

    recipe = recipe_from_payload(payload)
    run_dir = Path(run_dir)
    layout = RunLayout(run_dir)
    plan = read_json(layout.mix_plan)
    order = pq.read_table(layout.order(i))
    name = shard_name(recipe, i)
    shard_dir = layout.shards_dir
    shard_dir.mkdir(parents=True, exist_ok=True)
    formats = recipe.shards.formats
    # on an error (disk full) every format's writer deletes its temporary files: a failed task leaves nothing behind
    try:
        with ShardWriters(formats, shard_dir, name, vocab_size=plan["vocab_size"],
                          tokenizer=plan["tokenizer"]) as ws:
            write_sequences(ws, run_dir, order, plan, where=f"shard {shard_dir / name}")
            fentries = ws.finalize()
    except OSError as e:
        if e.filename is None and e.errno is not None:  # not a writer's (they name their file): name the shard
            raise OSError(e.errno, e.strerror, f"{shard_dir / name}") from e
        raise
    mega = ws.get("megatron")
    # with Megatron among the formats the entry keeps its .bin/.idx keys; else the counts the formats agree on
    info = mega.info if mega is not None else {k: fentries[formats[0]][k] for k in ("sequences", "tokens")}
    lineage = lineage_table(order, name)
    lineage_path = layout.lineage(name)
    atomic_write_parquet(lineage_path, lineage)

    def agg(keys: list[str]) -> list[dict]:
        if lineage.num_rows == 0:
            return []
        g = lineage.group_by(keys).aggregate([("tokens", "sum"), ("seq", "count")])
        return sorted(({**{k: r[k] for k in keys}, "tokens": r["tokens_sum"], "sequences": r["seq_count"]}
                       for r in g.to_pylist()), key=lambda r: tuple(str(r[k]) for k in keys))

    files = {"bin": f"{name}.bin", "idx": f"{name}.idx"} if "megatron" in fentries else {}
    entry = {"name": name, "index": i, **files,
             "lineage": f"{name}.lineage.parquet", "lineage_bytes": lineage_path.stat().st_size, **info,
             "formats": fentries,
             "by_group": agg(["group"]), "by_source": agg(["source", "subset"]),
             "by_license": [{k: r[k] for k in ("source", "subset", "group", "license", "tokens")}
                            for r in agg(["source", "subset", "group", "license"])]}
    atomic_write_json(shard_json_path(run_dir, recipe, i), entry)
    return entry
