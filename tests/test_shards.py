"""Megatron MMIDIDX shards, checked with an independent ``struct`` reader, and RWKV-LM's magic prime."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest

from curate.errors import ShardError
from curate.io_utils import sha256_file, temp_path
from curate.schema import token_dtype
from curate.shards import (
    IndexedDatasetWriter,
    iter_sequences,
    read_index,
    read_sequence,
    rwkv_magic_prime,
)

DOCS = [[5, 6, 7], [], [65535], [1, 2], [300] * 10]


def independent_read(prefix: Path) -> dict:
    """Parse .idx/.bin by hand with struct, following Megatron-LM's layout (not curate.shards)."""
    raw = Path(f"{prefix}.idx").read_bytes()
    magic = raw[:9]
    version, = struct.unpack("<Q", raw[9:17])
    code = raw[17]
    n_seq, n_doc = struct.unpack("<QQ", raw[18:34])
    off = 34
    sizes = list(struct.unpack(f"<{n_seq}i", raw[off:off + 4 * n_seq]))
    off += 4 * n_seq
    pointers = list(struct.unpack(f"<{n_seq}q", raw[off:off + 8 * n_seq]))
    off += 8 * n_seq
    doc_idx = list(struct.unpack(f"<{n_doc}q", raw[off:off + 8 * n_doc]))
    off += 8 * n_doc
    fmt, width = {8: ("H", 2), 4: ("i", 4)}[code]
    data = Path(f"{prefix}.bin").read_bytes()
    seqs = [list(struct.unpack(f"<{s}{fmt}", data[p:p + s * width])) for p, s in zip(pointers, sizes)]
    return {"magic": magic, "version": version, "code": code, "n_seq": n_seq, "n_doc": n_doc, "sizes": sizes,
            "pointers": pointers, "doc_idx": doc_idx, "seqs": seqs, "idx_len": len(raw), "idx_end": off,
            "bin_len": len(data)}


def write(prefix: Path, docs: list[list[int]], *, vocab_size: int, eos_id: int, batches: int = 2) -> dict:
    w = IndexedDatasetWriter(prefix, vocab_size=vocab_size)
    for part in np.array_split(np.arange(len(docs)), batches):
        chunk = [docs[i] for i in part]
        flat = np.array([t for d in chunk for t in d], dtype=np.uint32)
        w.add_batch(flat, np.array([len(d) for d in chunk], dtype=np.int64), eos_id=eos_id)
    return w.finalize()


def test_layout_matches_megatron(tmp_path):
    prefix = tmp_path / "mix_00000"
    stats = write(prefix, DOCS, vocab_size=65536, eos_id=0)
    got = independent_read(prefix)
    assert got["magic"] == b"MMIDIDX\x00\x00" and got["version"] == 1 and got["code"] == 8
    assert (got["n_seq"], got["n_doc"]) == (5, 6)
    assert got["sizes"] == [4, 1, 2, 3, 11]
    assert got["pointers"] == [0, 8, 10, 14, 20]  # byte offsets: 2 bytes per uint16 token
    assert got["doc_idx"] == [0, 1, 2, 3, 4, 5]
    assert got["seqs"] == [d + [0] for d in DOCS]
    assert got["idx_len"] == got["idx_end"] and got["bin_len"] == 2 * 21
    assert stats["sequences"] == 5 and stats["tokens"] == 21
    assert stats["bin_bytes"] == got["bin_len"] and stats["idx_bytes"] == got["idx_len"]
    assert stats["bin_sha256"] == hashlib.sha256(Path(f"{prefix}.bin").read_bytes()).hexdigest()
    assert stats["idx_sha256"] == sha256_file(f"{prefix}.idx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mix_00000.bin", "mix_00000.idx"]  # no .tmp left

    info = read_index(f"{prefix}.idx")
    assert info.dtype == np.uint16 and info.sizes.tolist() == got["sizes"] and len(info) == 5
    assert info.pointers.tolist() == got["pointers"] and info.doc_idx.tolist() == got["doc_idx"]
    assert [s.tolist() for s in iter_sequences(prefix)] == got["seqs"]
    assert read_sequence(prefix, 4).tolist() == [300] * 10 + [0]
    assert read_sequence(prefix, -4).tolist() == [0]


def test_int32_layout_and_add_sequences(tmp_path):
    prefix = tmp_path / "big"
    w = IndexedDatasetWriter(prefix, vocab_size=100_000)
    w.add_sequences([[70_000, 1], [99_999]], eos_id=99_998)
    w.add_sequences([], eos_id=99_998)
    assert (w.sequences, w.tokens) == (2, 5)
    w.finalize()
    got = independent_read(prefix)
    assert got["code"] == 4 and got["pointers"] == [0, 12] and got["seqs"] == [[70_000, 1, 99_998], [99_999, 99_998]]


@pytest.mark.parametrize(("vocab", "dtype", "code"), [(256, np.uint16, 8), (65536, np.uint16, 8),
                                                      (65537, np.int32, 4), (50280, np.uint16, 8)])
def test_dtype_boundary(tmp_path, vocab, dtype, code):
    assert token_dtype(vocab, "megatron") == np.dtype(dtype)
    write(tmp_path / "s", [[vocab - 1]], vocab_size=vocab, eos_id=0, batches=1)
    got = independent_read(tmp_path / "s")
    assert got["code"] == code and got["seqs"] == [[vocab - 1, 0]]


def test_writer_rejects_ids_that_do_not_fit(tmp_path):
    w = IndexedDatasetWriter(tmp_path / "s", vocab_size=65536)
    w.add_batch(np.array([1, 2], np.uint32), np.array([2]), eos_id=0)
    with pytest.raises(ShardError, match=r"token id 65536 \(document 2 of the shard\) does not fit uint16"):
        w.add_batch(np.array([3, 4, 65536], np.uint32), np.array([2, 1]), eos_id=0)
    with pytest.raises(ShardError, match="eos id 70000 does not fit"):
        w.add_batch(np.array([3], np.uint32), np.array([1]), eos_id=70_000)
    with pytest.raises(ShardError, match="token id -1"):
        w.add_batch(np.array([-1], np.int64), np.array([1]), eos_id=0)
    with pytest.raises(ShardError, match="lengths sum to 3 but 2 ids"):
        w.add_batch(np.array([1, 2], np.uint32), np.array([3]), eos_id=0)
    assert w.finalize()["sequences"] == 1  # the rejected batches wrote nothing
    assert independent_read(tmp_path / "s")["seqs"] == [[1, 2, 0]]


def test_no_final_file_until_finalize(tmp_path):
    prefix = tmp_path / "shard"
    w = IndexedDatasetWriter(prefix, vocab_size=65536)
    w.add_batch(np.arange(100_000, dtype=np.uint32) % 60_000 + 1, np.array([50_000, 50_000]), eos_id=0)
    assert not Path(f"{prefix}.bin").exists() and not Path(f"{prefix}.idx").exists()
    assert temp_path(f"{prefix}.bin").stat().st_size == 2 * 100_002  # streamed, not held in memory
    w.finalize()
    assert Path(f"{prefix}.bin").exists() and Path(f"{prefix}.idx").exists()

    with pytest.raises(RuntimeError), IndexedDatasetWriter(tmp_path / "aborted", vocab_size=65536) as w2:
        w2.add_batch(np.array([1], np.uint32), np.array([1]), eos_id=0)
        raise RuntimeError
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shard.bin", "shard.idx"]


def test_empty_shard(tmp_path):
    stats = IndexedDatasetWriter(tmp_path / "e", vocab_size=65536).finalize()
    assert stats["sequences"] == 0 and stats["bin_bytes"] == 0
    got = independent_read(tmp_path / "e")
    assert (got["n_seq"], got["n_doc"], got["doc_idx"]) == (0, 1, [0])
    assert list(iter_sequences(tmp_path / "e")) == []


@pytest.fixture
def shard(tmp_path) -> Path:
    prefix = tmp_path / "s"
    write(prefix, DOCS, vocab_size=65536, eos_id=0)
    return prefix


@pytest.mark.parametrize(("what", "mutate", "match"), [
    ("truncated", lambda b: b[:-3], "bytes, but 5 sequences"),
    ("header only", lambda b: b[:20], "shorter than the 34-byte"),
    ("trailing bytes", lambda b: b + b"\x00", "bytes, but 5 sequences"),
    ("magic", lambda b: b"X" + b[1:], "magic is"),
    ("version", lambda b: b[:9] + struct.pack("<Q", 2) + b[17:], "version is 2"),
    ("dtype", lambda b: b[:17] + b"\x09" + b[18:], "dtype code is 9"),
    ("size flipped", lambda b: b[:34] + bytes([b[34] ^ 0x01]) + b[35:], "pointer of sequence 1"),
    ("pointer flipped", lambda b: b[:34 + 20 + 8] + bytes([b[62] ^ 0x10]) + b[63:], "pointer of sequence 1"),
    ("doc_idx flipped", lambda b: b[:-1] + b"\x01", "doc_idx must rise"),
])
def test_corrupt_index_is_a_shard_error(shard, what, mutate, match):
    idx = Path(f"{shard}.idx")
    idx.write_bytes(mutate(idx.read_bytes()))
    with pytest.raises(ShardError, match=match) as e:
        read_index(idx)
    assert str(idx) in str(e.value)


def test_missing_or_short_bin_is_a_shard_error(shard):
    bin_ = Path(f"{shard}.bin")
    bin_.write_bytes(bin_.read_bytes()[:-2])
    with pytest.raises(ShardError, match="truncated or mismatched"):
        read_sequence(shard, 0)
    bin_.unlink()
    with pytest.raises(ShardError, match="data file missing"):
        list(iter_sequences(shard))
    Path(f"{shard}.idx").unlink()
    with pytest.raises(ShardError, match="index file missing"):
        read_index(f"{shard}.idx")


# ---------------------------------------------------------------------------- RWKV-LM magic prime
@pytest.mark.parametrize(("tokens", "ctx", "prime"), [
    (1_498_226_207, 512, 2_926_181),  # MiniPile, as in RWKV-LM's demo-training scripts
    (1_498_226_207, 2048, 731_531),
    (1_498_226_207, 4096, 365_759),
    (100, 10, 5),  # 100 // 10 - 1 = 9: 8 is not prime, 5 is (and 5 % 3 == 2)
    (240, 10, 23),  # 23 = 3*7 + 2 is prime
    (130, 10, 11),  # 12 -> 11 = 3*3 + 2
    (30, 10, 2),  # 2 % 3 == 2 and prime
])
def test_magic_prime(tokens, ctx, prime):
    assert rwkv_magic_prime(tokens, ctx) == prime
    assert prime % 3 == 2 and all(prime % d for d in range(2, int(prime ** 0.5) + 1))


def test_magic_prime_too_little_data():
    with pytest.raises(ValueError, match="too few for ctx_len 10"):
        rwkv_magic_prime(29, 10)
