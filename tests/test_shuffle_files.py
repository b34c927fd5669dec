"""The split files the dedup shuffles and the order files write: one data file and one index per writer, whatever the targets."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pytest

from curate.shuffle_files import read_split, read_split_one, split_writers, write_split
from curate.errors import InputError


def _table(rng: np.random.Generator, n: int, writer: int) -> pa.Table:
    return pa.table({"uid": pa.array((writer << 32) + np.arange(n, dtype=np.int64)),
                     "key": pa.array(rng.integers(0, 1 << 62, n, dtype=np.uint64)),
                     "text": pa.array([f"w{writer}-{k}" for k in range(n)], pa.large_string()),
                     "band": pa.array(rng.integers(0, 14, n).astype(np.int16))})


def test_each_target_gets_its_rows_from_every_writer_in_writer_order_and_two_files_a_writer(tmp_path):
    rng = np.random.default_rng(0)
    step, nparts = str(tmp_path / "step"), 300
    written = {}
    for w in (2, 0, 1):  # written out of order: read in name order
        t = _table(rng, 5_000, w)
        part = rng.integers(0, nparts, t.num_rows)
        part[part == 7] = 8  # target 7 is empty everywhere
        write_split(t, part, nparts, step, f"f{w:06d}")
        written[w] = (t, part)
    assert sorted(os.listdir(step)) == [f"f{w:06d}.{x}" for w in range(3) for x in ("idx", "split")]
    assert split_writers(step) == ["f000000", "f000001", "f000002"]
    for q in (0, 8, 299):
        want = pa.concat_tables([t.filter(pa.array(p == q)) for _w, (t, p) in sorted(written.items())])
        got = read_split(step, q)
        assert got.equals(want), q  # the rows, their order and their Arrow types
    assert read_split(step, 7) is None and read_split(step, 300) is None
    assert read_split(step, 5, columns=["uid"]).column_names == ["uid"]
    assert read_split_one(step, "f000001", 5).equals(written[1][0].filter(pa.array(written[1][1] == 5)))


def test_an_empty_writer_writes_nothing_and_a_short_data_file_names_itself(tmp_path):
    step = str(tmp_path / "step")
    write_split(_table(np.random.default_rng(1), 0, 0), np.zeros(0, np.int64), 4, step, "f000000")
    assert not os.path.exists(step)
    write_split(_table(np.random.default_rng(1), 100, 0), np.arange(100) % 4, 4, step, "f000000")
    data = tmp_path / "step" / "f000000.split"
    data.write_bytes(data.read_bytes()[:-10])
    with pytest.raises(InputError, match="shorter than its index") as e:
        read_split(step, 3)
    assert str(data) in str(e.value)
