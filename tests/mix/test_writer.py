"""curate.mix.writer: a shard is written in bounded batches, and the bytes are those of writing it whole (#16).

A fake run directory (three partitions' ``.tok`` files, an order file, ``plan.json``) is written by hand, so the
module constants can be made tiny: batches of a few sequences and tokens, order tables of a few rows, lineage row
groups of a few rows, documents longer than a batch. The reference is the unbatched write: every sequence in one
``SeqBatch`` and the lineage written whole.
"""

from __future__ import annotations

import hashlib
import json
import weakref
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import curate.shard_formats as sf
from curate.errors import ShardError
from curate.io_utils import atomic_write_json, atomic_write_parquet
from curate.layout import RunLayout
from curate.mix.writer import shard_name, write_shard
from curate.shard_formats import FORMATS, SeqBatch, ShardWriters, lineage_table

VOCAB = 65536
EOS = 0
#: lengths with an empty document and several longer than the test's 64-token batch bound
NTOK = [3, 0, 200, 5, 64, 65, 1, 7, 130, 2, 2, 9, 300, 4, 11, 0, 6, 63, 8, 1, 90, 3, 3]


def _payload(tmp: Path, formats) -> dict:
    recipe = {"name": "t", "tokenizer": "rwkv-world", "budget_tokens": 1000,
              "sources": {"s": {"format": "jsonl", "paths": ["x.jsonl"], "text_column": "text"}},
              "mixture": {"all": {"share": 1.0, "sources": {"s": 1}}}, "shards": {"format": list(formats)}}
    return {"recipe": recipe, "base_dir": str(tmp)}


def _fake_run(run: Path, ntok: list[int], *, seed: int = 0,
              tok_len: int = 2000) -> tuple[pa.Table, dict[int, np.ndarray]]:
    """Three partitions of random ids, and shard 0's order drawing from all of them in a shuffled order."""
    rng = np.random.default_rng(seed)
    layout = RunLayout(run)
    toks = {}
    for pid in range(3):
        toks[pid] = rng.integers(1, VOCAB, size=tok_len, dtype=np.uint16)
        f = layout.part(pid).tok
        f.parent.mkdir(parents=True, exist_ok=True)
        toks[pid].tofile(f)
    n = len(ntok)
    ntok_a = np.asarray(ntok, np.int64)
    pid = rng.integers(0, 3, size=n)
    off = np.array([rng.integers(0, tok_len - k + 1) for k in ntok_a], dtype=np.int64)
    order = pa.table({
        "seq": pa.array(np.arange(n, dtype=np.int64)), "uid": pa.array((pid << 32) + np.arange(n)),
        "pid": pa.array(pid), "tok_offset": pa.array(off), "ntok": pa.array(ntok_a), "tokens": pa.array(ntok_a + 1),
        "epoch": pa.array(np.zeros(n, np.int32)), "chunk": pa.array(np.zeros(n, np.int32)),
        "source": pa.array(["web" if i % 3 else "books" for i in range(n)]),
        "subset": pa.array(["en" if i % 2 else "" for i in range(n)]),
        "group": pa.array(["g1" if i % 4 else "g2" for i in range(n)]),
        "doc_id": pa.array([f"d{i},x" for i in range(n)]), "lang": pa.array(["en"] * n),
        "license": pa.array([None if i % 5 == 0 else "MIT" for i in range(n)], pa.string())})
    atomic_write_parquet(layout.order(0), order)
    atomic_write_json(layout.mix_plan, {"vocab_size": VOCAB, "eos_id": EOS, "tokenizer": "test-tok", "n_shards": 1})
    return order, toks


def _hashes(d: Path) -> dict[str, str]:
    return {p.relative_to(d).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(d.rglob("*")) if p.is_file() and not p.name.endswith(".json")}


def _unbatched(out: Path, order: pa.Table, toks: dict, formats, *, row_group: int) -> dict[str, dict]:
    """The reference: every sequence gathered by plain slicing, one batch, the lineage written whole."""
    name = "mix_00000"
    pid, off, ntok = (order[c].to_numpy() for c in ("pid", "tok_offset", "ntok"))
    flat = np.concatenate([toks[p][o:o + k] for p, o, k in zip(pid, off, ntok)])
    out.mkdir(parents=True)
    with ShardWriters(formats, out, name, vocab_size=VOCAB, tokenizer="test-tok") as ws:
        ws.add(SeqBatch(flat, ntok, eos_id=EOS, vocab_size=VOCAB, meta=order.select(["doc_id", "source", "subset"]),
                        where="ref", first_seq=0))
        entries = ws.finalize()
    pq.write_table(lineage_table(order, name), out / f"{name}.lineage.parquet", compression="zstd",
                   row_group_size=row_group)
    return entries


def _agg(lin: pa.Table, keys: list[str]) -> list[dict]:
    g = lin.group_by(keys).aggregate([("tokens", "sum"), ("seq", "count")])
    return sorted(({**{k: r[k] for k in keys}, "tokens": r["tokens_sum"], "sequences": r["seq_count"]}
                   for r in g.to_pylist()), key=lambda r: tuple(str(r[k]) for k in keys))


@pytest.mark.parametrize("read_rows", [1, 7, 1000])
def test_a_shard_in_bounded_batches_is_the_shard_written_whole_16(tmp_path, monkeypatch, read_rows) -> None:
    monkeypatch.setattr(sf, "GATHER_ROWS", 5)
    monkeypatch.setattr(sf, "GATHER_TOKENS", 64)
    monkeypatch.setattr(sf, "ORDER_READ_ROWS", read_rows)
    monkeypatch.setattr(sf, "LINEAGE_ROW_GROUP", 4)
    seen: list[tuple[int, int, bool]] = []
    add = ShardWriters.add

    def recording(self, batch: SeqBatch) -> None:
        seen.append((int(batch.flat.size), int(batch.lens.size), batch.piece is not None))
        add(self, batch)

    monkeypatch.setattr(ShardWriters, "add", recording)
    run = tmp_path / "run"
    order, toks = _fake_run(run, NTOK)
    entry = write_shard(_payload(tmp_path, FORMATS), str(run), 0)

    # the gather never held more than the bounds, and the long documents went in pieces
    assert max(t for t, _, _ in seen) <= 64 and max(r for _, r, _ in seen) <= 5
    assert sum(p for _, _, p in seen) == sum(-(-k // 64) for k in NTOK if k > 64)
    assert sum(t for t, _, _ in seen) == sum(NTOK)

    ref = tmp_path / "ref"
    want = _unbatched(ref, order, toks, FORMATS, row_group=4)
    got = _hashes(run / "shards")
    assert got == _hashes(ref) and len(got) == 9  # 2 megatron, 2 olmo-npy, 3 datatrove, 1 mds, the lineage
    assert entry["formats"] == want
    lin = pq.read_table(run / "shards" / "mix_00000.lineage.parquet")
    assert pq.ParquetFile(run / "shards" / "mix_00000.lineage.parquet").metadata.num_row_groups == -(-len(NTOK) // 4)
    assert entry["by_group"] == _agg(lin, ["group"]) and entry["by_source"] == _agg(lin, ["source", "subset"])
    assert entry["by_license"] == [{k: r[k] for k in ("source", "subset", "group", "license", "tokens")}
                                   for r in _agg(lin, ["source", "subset", "group", "license"])]
    assert (entry["sequences"], entry["tokens"]) == (len(NTOK), sum(NTOK) + len(NTOK))
    assert not list(run.rglob("*.tmp"))


def test_the_default_bounds_give_the_same_bytes_as_tiny_ones_16(tmp_path, monkeypatch) -> None:
    a, _ = _fake_run(tmp_path / "a", NTOK)
    write_shard(_payload(tmp_path, FORMATS), str(tmp_path / "a"), 0)
    monkeypatch.setattr(sf, "GATHER_ROWS", 2)
    monkeypatch.setattr(sf, "GATHER_TOKENS", 10)
    monkeypatch.setattr(sf, "ORDER_READ_ROWS", 3)
    _fake_run(tmp_path / "b", NTOK)
    write_shard(_payload(tmp_path, FORMATS), str(tmp_path / "b"), 0)
    assert _hashes(tmp_path / "a" / "shards") == _hashes(tmp_path / "b" / "shards")
    assert a.num_rows == len(NTOK)
    ja, jb = (json.loads((tmp_path / d / "shards" / "mix_00000.json").read_text()) for d in "ab")
    assert ja == jb


def test_an_empty_shard_is_written_as_before_16(tmp_path) -> None:
    order, _ = _fake_run(tmp_path / "run", [])
    entry = write_shard(_payload(tmp_path, FORMATS), str(tmp_path / "run"), 0)
    atomic_write_parquet(tmp_path / "ref" / "l.parquet", lineage_table(order, "mix_00000"))
    assert (tmp_path / "run" / "shards" / "mix_00000.lineage.parquet").read_bytes() == \
        (tmp_path / "ref" / "l.parquet").read_bytes()
    assert (entry["sequences"], entry["tokens"], entry["by_group"]) == (0, 0, [])


def test_an_id_over_the_vocab_in_a_later_piece_names_the_document_16(tmp_path) -> None:
    meta = pa.table({"doc_id": ["a", "b"], "source": ["web"] * 2, "subset": [""] * 2})
    kw = {"eos_id": EOS, "vocab_size": VOCAB, "where": "shard t"}
    with pytest.raises(ShardError, match=r"token id 70000 \(document 1 of the shard\) does not fit uint16"), \
            ShardWriters(FORMATS, tmp_path, "mix_00000", vocab_size=VOCAB, tokenizer="t") as ws:
        ws.add(SeqBatch(np.array([1, 2], np.uint32), np.array([2]), meta=meta.slice(0, 1), first_seq=0, **kw))
        ws.add(SeqBatch.of_piece(np.array([3, 4], np.uint32), ntok=4, start=0, meta=meta.slice(1, 1), seq=1, **kw))
        ws.add(SeqBatch.of_piece(np.array([5, 70_000], np.uint32), ntok=4, start=2, meta=meta.slice(1, 1), seq=1,
                                 **kw))
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_pieces_of_a_document_are_the_document_written_whole_16(tmp_path) -> None:
    meta = pa.table({"doc_id": ["a", "b", "c"], "source": ["web"] * 3, "subset": ["", "en", ""]})
    kw = {"eos_id": EOS, "vocab_size": VOCAB, "where": "shard t"}
    ids = np.arange(1, 301, dtype=np.uint32)
    with ShardWriters(FORMATS, tmp_path / "whole", "mix_00000", vocab_size=VOCAB, tokenizer="t") as ws:
        ws.add(SeqBatch(np.concatenate([ids[:2], ids, ids[:1]]), np.array([2, 300, 1]), meta=meta, first_seq=0, **kw))
        whole = ws.finalize()
    with ShardWriters(FORMATS, tmp_path / "pieces", "mix_00000", vocab_size=VOCAB, tokenizer="t") as ws:
        ws.add(SeqBatch(ids[:2], np.array([2]), meta=meta.slice(0, 1), first_seq=0, **kw))
        for a in range(0, 300, 128):
            ws.add(SeqBatch.of_piece(ids[a:a + 128], ntok=300, start=a, meta=meta.slice(1, 1), seq=1, **kw))
        ws.add(SeqBatch(ids[:1], np.array([1]), meta=meta.slice(2, 1), first_seq=2, **kw))
        pieces = ws.finalize()
    assert whole == pieces
    assert _hashes(tmp_path / "whole") == _hashes(tmp_path / "pieces")


def _peak_bytes(run: Path, payload: dict) -> int:
    import tracemalloc

    write_shard(payload, str(run), 0)  # warm: imports, the recipe model
    tracemalloc.start()
    try:
        write_shard(payload, str(run), 0)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_follows_the_batch_bound_not_the_shard_16(tmp_path, monkeypatch) -> None:
    """Peak Python/numpy allocations (tracemalloc) while writing a shard in every format, with 8k-token batches:
    the same for a shard four times the size (before #16 a batch of 4096 sequences held both shards whole)."""
    monkeypatch.setattr(sf, "GATHER_TOKENS", 8192)
    payload = _payload(tmp_path, FORMATS)
    peaks = []
    for n_docs in (20, 80):
        run = tmp_path / f"run{n_docs}"
        _fake_run(run, [60_000] * n_docs, tok_len=200_000)  # every document far longer than a batch: in pieces
        peaks.append(_peak_bytes(run, payload))
    small, big = peaks
    assert big < 1.1 * small + (256 << 10), f"peak {big:,} bytes for 4.8M tokens vs {small:,} for 1.2M"
    assert big < 80 * 60_000 * 2 / 2  # and under half the shard's ids


@pytest.mark.parametrize("long", [False, True])
def test_an_order_past_its_partitions_tokens_is_a_shard_error_16(tmp_path, monkeypatch, long) -> None:
    monkeypatch.setattr(sf, "GATHER_TOKENS", 64)
    run = tmp_path / "run"
    order, _ = _fake_run(run, [5, 200 if long else 20, 3])
    tok = RunLayout(run).part(int(order["pid"][1].as_py())).tok
    tok.write_bytes(tok.read_bytes()[:2 * int(order["tok_offset"][1].as_py())])  # cut before the second document
    with pytest.raises(ShardError, match=r"the order reads token \d+ of .*\.tok, which holds"):
        write_shard(_payload(tmp_path, FORMATS), str(run), 0)
    assert [p for p in (run / "shards").rglob("*") if p.is_file()] == []


def test_a_shard_maps_the_tok_files_one_batch_at_a_time_16(tmp_path, monkeypatch) -> None:
    """The pages a map of a ``.tok`` file has read count in the task's RSS until it is unmapped, and a shard reads
    documents of every partition: the gather drops its maps after every batch and piece, so at most the
    partitions of one batch are mapped at a time (before #16 every partition the shard read stayed mapped to
    its end: 314 MB of file-backed RSS in a 1M-document scale-bench shard)."""
    monkeypatch.setattr(sf, "GATHER_ROWS", 1)  # one sequence a batch: one partition at a time
    monkeypatch.setattr(sf, "GATHER_TOKENS", 64)  # and the long documents in pieces
    live: list[int] = []  # maps alive each time one is opened
    alive: set[int] = set()
    opened = np.memmap.__new__

    def spy(cls, *a, **k):
        mm = opened(cls, *a, **k)
        alive.add(id(mm))
        weakref.finalize(mm, alive.discard, id(mm))
        live.append(len(alive))
        return mm

    monkeypatch.setattr(np.memmap, "__new__", spy)
    run = tmp_path / "run"
    order, _ = _fake_run(run, NTOK)
    write_shard(_payload(tmp_path, FORMATS), str(run), 0)
    monkeypatch.undo()
    assert max(live) == 1, live
    assert len(set(order["pid"].to_pylist())) == 3 and len(live) >= len(NTOK) - 2  # mapped again for each batch
