"""An independent MMIDIDX reader for tests: plain ``struct`` + numpy, sharing no code with curate.shards."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

DTYPES = {1: np.uint8, 2: np.int8, 3: np.int16, 4: np.int32, 5: np.int64, 6: np.float64, 7: np.float32, 8: np.uint16}


def read_idx(path: Path) -> dict:
    data = Path(path).read_bytes()
    assert data[:9] == b"MMIDIDX\x00\x00", "bad magic"
    (version,) = struct.unpack("<Q", data[9:17])
    assert version == 1
    (code,) = struct.unpack("<B", data[17:18])
    n_seq, n_doc = struct.unpack("<QQ", data[18:34])
    off = 34
    sizes = np.frombuffer(data, np.int32, n_seq, off)
    off += 4 * n_seq
    pointers = np.frombuffer(data, np.int64, n_seq, off)
    off += 8 * n_seq
    doc_idx = np.frombuffer(data, np.int64, n_doc, off)
    off += 8 * n_doc
    assert off == len(data), "trailing bytes in .idx"
    return {"dtype": DTYPES[code], "code": code, "sizes": sizes, "pointers": pointers, "doc_idx": doc_idx}


def read_tokens(prefix: Path) -> tuple[dict, list[np.ndarray]]:
    idx = read_idx(Path(str(prefix) + ".idx"))
    flat = np.fromfile(Path(str(prefix) + ".bin"), dtype=idx["dtype"])
    item = np.dtype(idx["dtype"]).itemsize
    seqs = [flat[p // item: p // item + s] for p, s in zip(idx["pointers"], idx["sizes"])]
    return idx, seqs
