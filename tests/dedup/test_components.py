"""Tests of curate.dedup.components: the distributed large-star/small-star labels against the in-memory
reference (connected_components) on random graphs, chains, stars, cliques and many small components, for
several bucket counts; convergence on long chains in O(log n) rounds."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.dedup import components, connected_components
from curate.shuffle_files import read_split_one, split_writers


def _local(fn, calls):
    return [fn(*c) for c in calls]


def _distributed(tmp: Path, src: np.ndarray, dst: np.ndarray, *, nc: int, edge_files: int = 3) -> tuple[dict, int]:
    """Write ``src -> dst`` as LSH edge files (split into ``edge_files`` buckets), label them in ``nc``
    component buckets in process; return ({uid: label}, rounds)."""
    out = str(tmp)
    part = np.arange(len(src)) % edge_files
    for r in range(edge_files):
        m = part == r
        pq.write_table(pa.table({"src": pa.array(src[m], pa.int64()), "dst": pa.array(dst[m], pa.int64()),
                                 "src_file": pa.array((src[m] % 5).astype(np.int32)),
                                 "dst_file": pa.array((dst[m] % 5).astype(np.int32))}),
                       (tmp / "edges").mkdir(parents=True, exist_ok=True) or tmp / "edges" / f"b{r:05d}.parquet")
    rounds = components.label_graph(out, list(range(edge_files)), nc, _local)
    labels = str(tmp / "cc" / "labels")
    writers = split_writers(labels)  # one per component bucket, a target per partition file
    pieces = {(i, w): t for w in writers for i in range(5) if (t := read_split_one(labels, w, i)) is not None}
    t = pa.concat_tables(list(pieces.values()))
    uid, lab = t["uid"].to_numpy(), t["label"].to_numpy()
    assert len(np.unique(uid)) == len(uid), "a node is labelled in two buckets"
    # each label piece holds only the nodes of its partition file, and only its bucket's nodes
    for (i, w), ft in pieces.items():
        assert (ft["uid"].to_numpy() % 5 == i).all()
        assert (components.node_bucket(ft["uid"].to_numpy(), nc) == int(w[1:])).all()
    return dict(zip(uid.tolist(), lab.tolist())), rounds


def _reference(src: np.ndarray, dst: np.ndarray) -> dict:
    keep = src != dst
    nodes, labels = connected_components(src[keep], dst[keep])
    return dict(zip(nodes.tolist(), labels.tolist()))


def _graphs(rng: np.random.Generator) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    ids = rng.choice(np.int64(1) << 40, size=20_000, replace=False).astype(np.int64)  # sparse uids like pid<<32|row
    g = {}
    n = 3000  # a long path in random id order: diameter n - 1
    g["chain"] = (ids[:n - 1], ids[1:n])
    g["sorted_chain"] = (np.arange(1, 2000, dtype=np.int64), np.arange(0, 1999, dtype=np.int64))
    hubs = ids[:5]  # stars, edges in both orientations
    leaves = ids[5:2005]
    h = hubs[np.arange(len(leaves)) % 5]
    flip = rng.random(len(leaves)) < 0.5
    g["stars"] = (np.where(flip, h, leaves), np.where(flip, leaves, h))
    c = ids[:40]  # a clique
    a, b = np.triu_indices(len(c), 1)
    g["clique"] = (c[a], c[b])
    pairs = ids[:6000].reshape(-1, 3)  # many small components: triangles and pairs
    g["small"] = (np.concatenate([pairs[:, 0], pairs[:, 1]]), np.concatenate([pairs[:, 1], pairs[:, 2]]))
    k = 4000  # random sparse graph: a giant component plus small ones, with duplicates and self-loops
    s, d = ids[rng.integers(0, k, 5000)], ids[rng.integers(0, k, 5000)]
    g["random"] = (np.concatenate([s, s[:50]]), np.concatenate([d, d[:50]]))
    # everything at once, as one graph
    g["mixed"] = (np.concatenate([v[0] + (i << 41) for i, v in enumerate(g.values())]),
                  np.concatenate([v[1] + (i << 41) for i, v in enumerate(g.values())]))
    return g


@pytest.mark.parametrize("nc", [1, 3, 8])
def test_distributed_labels_equal_the_in_memory_union_find(tmp_path, nc):
    rng = np.random.default_rng(nc)
    for name, (src, dst) in _graphs(rng).items():
        got, rounds = _distributed(tmp_path / name, src, dst, nc=nc)
        want = _reference(src, dst)
        assert got == want, name
        assert rounds >= 1


def test_long_chain_converges_in_logarithmic_rounds(tmp_path):
    rng = np.random.default_rng(7)
    for n in (1_000, 16_000):
        ids = rng.permutation(n).astype(np.int64) * 977 + 13  # random order along the path
        got, rounds = _distributed(tmp_path / f"n{n}", ids[:-1], ids[1:], nc=4)
        assert set(got.values()) == {int(ids.min())}
        assert rounds <= 3 * math.ceil(math.log2(n)), (n, rounds)
    rounds_sorted = _distributed(tmp_path / "sorted", np.arange(1, 16_000), np.arange(0, 15_999), nc=4)[1]
    assert rounds_sorted <= 3 * math.ceil(math.log2(16_000))


def test_each_step_reads_only_its_bucket(tmp_path, monkeypatch):
    """A component step's task opens only the files of its own bucket (no task sees the whole graph)."""
    rng = np.random.default_rng(3)
    src, dst = _graphs(rng)["random"]
    seen: list[tuple[str, int]] = []
    real = components.read_split

    def spy(step_dir, q, columns=None, writers=None):
        seen.append((step_dir, q))
        return real(step_dir, q, columns, writers)

    monkeypatch.setattr(components, "read_split", spy)
    _distributed(tmp_path, src, dst, nc=4)
    step_reads = [(d, q) for d, q in seen if "/cc/s" in d or d.endswith("/cc/nodes")]
    assert step_reads and all(re.search(r"/cc/(s\d{4}|nodes)$", d) and 0 <= q < 4 for d, q in step_reads), step_reads
