"""Connected components of the LSH candidate graph, distributed: rounds of large-star / small-star over
hash-bucketed edge files, then the keeper ranking per component bucket.

The algorithm is Kiveris et al. 2014, "Connected Components in MapReduce and Beyond": alternate

- **large-star**: for each node ``u`` with ``m = min(u, neighbours(u))``, replace every edge to a larger
  neighbour ``v > u`` by ``(v, m)``;
- **small-star**: for each node ``u`` with ``m = min(u, smaller neighbours(u))``, replace the edges to its
  smaller neighbours ``v`` by ``(v, m)`` and add ``(u, m)``.

Neither step changes the components nor adds edges (each edge is re-emitted once). A round that changes
nothing in both steps leaves a forest of stars, each centred on its component's smallest node, so a node's
label is ``min(u, neighbours(u))``: the smallest uid of its component, as the in-memory
:func:`connected_components` (kept as the reference, used by the tests) gives. On a path of ``n`` nodes a
round halves the distances; rounds grow like ``log n`` (the paper bounds them by ``O(log^2 n)``).

Files under ``out_dir/cc/`` (``C`` component buckets, ``key = node_bucket(uid, C)``, about ``BUCKET_BYTES``
of edge rows each, chosen from the LSH edge count):

- ``s<k>/e<j>[q]``: ``u int64, v int64`` edge rows of step ``k`` keyed by ``u``'s bucket ``q``,
  written by task ``j`` of the step before. Even ``k`` (large-star input) holds both directions of every
  edge; odd ``k`` (small-star input) one row per edge, keyed by its larger end (``v < u``). A step's task
  reads only its own bucket and returns how many edges it changed; the driver stops when a round changed
  none (:data:`MAX_ROUNDS` at most).
- ``nodes/e<r>[q]``: ``uid int64, file int32``, the partition file of each node.
- ``labels/b<q>[i]``: ``uid int64, label int64`` of file ``i``'s nodes.
- ``meta/f<i>.parquet``: those nodes' ``uid, doc_id, source, subset, nbytes, tokens, label, prio int32,
  file int32`` (read once from file ``i``).
- ``rank/f<i>[q]``: the same rows in rank bucket ``node_bucket(label, Q)``: every component lands
  whole in one bucket.

Rank task ``q`` sorts its bucket by (label, priority, doc_id, uid). Without ``verify_jaccard`` the first
member of each component keeps and the others are removed (``near/b<q>[i]``, per originating
file); with it the ranked members go to the verify shuffle (:mod:`curate.dedup.verify`):
``verify/meta/b<q>.parquet`` and ``verify/want/b<q>[i]`` (``uid, label`` of file ``i``'s members).

Memory: a component step holds one edge bucket; a bucket exceeds ``BUCKET_BYTES`` only by a node's own
edges (after convergence a component's centre holds all of the component's edges). A rank task holds one
bucket of members, more only by its largest component.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.dedup.files import (
    _META_COLUMNS,
    REMOVED_SCHEMA,
    _priorities,
    _sorted,
    _write_parquet,
    bucket_count,
    node_bucket,
)
from curate.dedup.removed import write_near
from curate.shuffle_files import read_split, write_split

#: Large-star/small-star rounds before the driver gives up (a path of 2^40 nodes needs about 40).
MAX_ROUNDS = 200

#: In-memory bytes of one edge row (u, v int64) in a component step.
EDGE_ROW_BYTES = 16


# ---------------------------------------------------------------------------- the in-memory reference
def connected_components(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Connected components of an undirected graph given as edge arrays, vectorized, in one process.

    Each round hooks the larger root of every edge whose endpoints have different roots under the
    smaller one (``np.minimum.at``), then jumps pointers until every node points at a root. Parents
    only decrease, so there are no cycles, and the root of a component ends as its smallest node. The
    distributed dedup does not use it (its memory grows with the graph); it is the reference the
    distributed components are tested against.

    Returns
    -------
    nodes, labels
        Sorted unique node ids and, per node, the smallest node id of its component.
    """
    src = np.asarray(src)
    dst = np.asarray(dst)
    nodes, inv = np.unique(np.concatenate([src, dst]), return_inverse=True)
    u, v = inv[: len(src)], inv[len(src):]
    parent = np.arange(len(nodes))
    while True:
        pu, pv = parent[u], parent[v]
        diff = pu != pv
        if not diff.any():
            break
        u, v, pu, pv = u[diff], v[diff], pu[diff], pv[diff]
        np.minimum.at(parent, np.maximum(pu, pv), np.minimum(pu, pv))
        while True:
            pp = parent[parent]
            if np.array_equal(pp, parent):
                break
            parent = pp
    return nodes, nodes[parent]


# ---------------------------------------------------------------------------- component steps (Ray tasks)
def _step_dir(out_dir: str, k: int) -> str:
    return f"{out_dir}/cc/s{k:04d}"


def _pairs(step_dir: str, q: int) -> tuple[np.ndarray, np.ndarray]:
    """The unique ``(u, v)`` rows of bucket ``q`` of a step, sorted by (u, v)."""
    t = read_split(step_dir, q)
    if t is None or t.num_rows == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    u = np.asarray(t.column("u").combine_chunks())
    v = np.asarray(t.column("v").combine_chunks())
    o = np.lexsort((v, u))
    u, v = u[o], v[o]
    keep = np.ones(len(u), bool)
    keep[1:] = (u[1:] != u[:-1]) | (v[1:] != v[:-1])
    return u[keep], v[keep]


def _group_min(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For rows sorted by (u, v): the first row index of each row's ``u`` group, and whether a row starts one."""
    first = np.ones(len(u), bool)
    first[1:] = u[1:] != u[:-1]
    head = np.maximum.accumulate(np.where(first, np.arange(len(u)), 0))
    return head, first


def _write_edges(a: np.ndarray, b: np.ndarray, out_dir: str, k: int, j: int, nc: int) -> None:
    t = pa.table({"u": pa.array(a, pa.int64()), "v": pa.array(b, pa.int64())})
    write_split(t, node_bucket(a, nc), nc, _step_dir(out_dir, k), f"e{j:05d}")


def cc_start(r: int, out_dir: str, nc: int) -> int:
    """Step 0's input from LSH edge file ``r`` (both directions) and its nodes' files; returns its edges."""
    p = f"{out_dir}/edges/b{r:05d}.parquet"
    if not os.path.isfile(p):
        return 0
    e = pq.read_table(p)
    e = e.filter(pc.not_equal(e.column("src"), e.column("dst")))  # a self-loop joins nothing
    src = np.asarray(e.column("src").combine_chunks())
    dst = np.asarray(e.column("dst").combine_chunks())
    _write_edges(np.concatenate([src, dst]), np.concatenate([dst, src]), out_dir, 0, r, nc)
    uid = np.concatenate([src, dst])
    fil = np.concatenate([np.asarray(e.column("src_file").combine_chunks()),
                          np.asarray(e.column("dst_file").combine_chunks())])
    uid, at = np.unique(uid, return_index=True)
    nodes = pa.table({"uid": pa.array(uid, pa.int64()), "file": pa.array(fil[at].astype(np.int32))})
    write_split(nodes, node_bucket(uid, nc), nc, f"{out_dir}/cc/nodes", f"e{r:05d}")
    return len(src)


def large_star(k: int, q: int, out_dir: str, nc: int) -> int:
    """Large-star on bucket ``q`` of step ``k`` (both directions); writes step ``k + 1`` (keyed by the larger
    end). Returns the number of edges it moved (0 when every node with a larger neighbour is a local min)."""
    u, v = _pairs(_step_dir(out_dir, k), q)
    if len(u) == 0:
        return 0
    head, _ = _group_min(u, v)
    m = np.minimum(u, v[head])  # v is sorted within u: the group's first v is u's smallest neighbour
    up = v > u
    _write_edges(v[up], m[up], out_dir, k + 1, q, nc)
    return int(np.count_nonzero(m[up] < u[up]))


def small_star(k: int, q: int, out_dir: str, nc: int) -> int:
    """Small-star on bucket ``q`` of step ``k`` (rows ``u > v``); writes step ``k + 1`` (both directions).
    Returns the number of nodes with more than one smaller neighbour (whose edges it moved)."""
    u, v = _pairs(_step_dir(out_dir, k), q)
    if len(u) == 0:
        return 0
    head, first = _group_min(u, v)
    m = v[head]
    other = v != m
    a = np.concatenate([u[first], v[other]])  # (u, m) once per node, (v, m) for its other smaller neighbours
    b = np.concatenate([m[first], m[other]])
    _write_edges(np.concatenate([a, b]), np.concatenate([b, a]), out_dir, k + 1, q, nc)
    sizes = np.diff(np.flatnonzero(np.append(first, True)))
    return int(np.count_nonzero(sizes > 1))


def cc_labels(k: int, q: int, out_dir: str) -> int:
    """Labels of bucket ``q``'s nodes from the converged step ``k`` (stars): ``min(u, neighbours(u))``,
    written per partition file (``cc/labels/b<q>[i]``). Returns the node count."""
    u, v = _pairs(_step_dir(out_dir, k), q)
    nodes = read_split(f"{out_dir}/cc/nodes", q)
    if nodes is None or nodes.num_rows == 0:
        return 0
    uid, at = np.unique(np.asarray(nodes.column("uid").combine_chunks()), return_index=True)
    fil = np.asarray(nodes.column("file").combine_chunks())[at]
    _, first = _group_min(u, v)
    gu, gl = u[first], np.minimum(u[first], v[first])
    pos = np.searchsorted(gu, uid)
    ok = (pos < len(gu)) & (gu[np.minimum(pos, len(gu) - 1)] == uid) if len(gu) else np.zeros(len(uid), bool)
    if not ok.all():
        msg = (f"component bucket {q}: {int((~ok).sum())} node(s) lost their edges in step {k} "
               f"(e.g. uid {int(uid[~ok][0])}); rerun the dedup")
        raise RuntimeError(msg)
    labels = pa.table({"uid": pa.array(uid, pa.int64()), "label": pa.array(gl[pos], pa.int64())})
    write_split(labels, fil.astype(np.int64), int(fil.max()) + 1, f"{out_dir}/cc/labels", f"b{q:05d}")
    return len(uid)


_MEMBER_SCHEMA = pa.schema([REMOVED_SCHEMA.field(c) if c != "uid" else pa.field("uid", pa.int64())
                            for c in _META_COLUMNS])


def cc_meta(i: int, path: str, out_dir: str, priority: dict[str, int]) -> tuple[int, int, int]:
    """The metadata of file ``i``'s component members with their label, priority and file
    (``cc/meta/f<i>.parquet``). Returns (rows, in-memory bytes, text bytes)."""
    lab = read_split(f"{out_dir}/cc/labels", i)
    if lab is None or lab.num_rows == 0:
        return 0, 0, 0
    lab = _sorted(lab, ["uid"])
    lu = np.asarray(lab.column("uid").combine_chunks())
    t = pq.read_table(path, columns=list(_META_COLUMNS))
    t = t.filter(pc.is_in(t.column("uid"), pa.array(lu))).cast(_MEMBER_SCHEMA)
    mu = np.asarray(t.column("uid").combine_chunks())
    t = t.append_column("label", lab.column("label").take(pa.array(np.searchsorted(lu, mu))))
    t = t.append_column("prio", _priorities(t.column("source"), priority))
    t = t.append_column("file", pa.array(np.full(t.num_rows, i, np.int32)))
    _write_parquet(t, f"{out_dir}/cc/meta/f{i:06d}.parquet")
    return t.num_rows, int(t.nbytes), int(pc.sum(t.column("nbytes")).as_py() or 0)


def rank_map(i: int, out_dir: str, nr: int) -> int:
    """Send file ``i``'s members to their component's rank bucket."""
    p = f"{out_dir}/cc/meta/f{i:06d}.parquet"
    if not os.path.isfile(p):
        return 0
    t = pq.read_table(p)
    lab = np.asarray(t.column("label").combine_chunks())
    write_split(t, node_bucket(lab, nr), nr, f"{out_dir}/cc/rank", f"f{i:06d}")
    return t.num_rows


def rank_bucket(q: int, out_dir: str, verify: bool) -> int:
    """Rank bucket ``q``'s members by (label, priority, doc_id, uid). Without ``verify`` the first of each
    component keeps and the others' removals are written per file (returns their count); with it the ranked
    members go to ``verify/meta/b<q>.parquet`` and ``verify/want/b<q>[i]`` (returns the rows)."""
    meta = read_split(f"{out_dir}/cc/rank", q)
    if meta is None or meta.num_rows == 0:
        return 0
    meta = _sorted(meta, ["label", "prio", "doc_id", "uid"])
    lab = np.asarray(meta.column("label").combine_chunks())
    files = np.asarray(meta.column("file").combine_chunks()).astype(np.int64)
    if verify:
        _write_parquet(meta, f"{out_dir}/verify/meta/b{q:05d}.parquet")
        want = pa.table({"uid": meta.column("uid"), "label": meta.column("label")})
        write_split(want, files, int(files.max()) + 1, f"{out_dir}/verify/want", f"b{q:05d}")
        return meta.num_rows
    n = len(lab)
    first = np.ones(n, bool)
    first[1:] = lab[1:] != lab[:-1]
    keeper = np.maximum.accumulate(np.where(first, np.arange(n), 0))
    return write_near(meta, keeper, out_dir, q)


# ---------------------------------------------------------------------------- the steps in order
Wave = Callable[[Callable, list[tuple]], list]


def run_components(out_dir: str, paths: list[str], priority: dict[str, int], *, verify: bool, min_buckets: int,
                   bucket_bytes: int, n_edges: int, wave: Wave, per_file: Wave,
                   verify_bucket_bytes: int, fixed: int = 0) -> dict[str, Any]:
    """Run the component steps: ``wave(fn, calls)`` runs one task per call (Ray, or in process), ``per_file``
    the same for per-file calls (grouped). ``n_edges``: the LSH edge count (sizes the component buckets);
    ``fixed``: a bucket count forced by the caller (0: from the sizes). Returns ``rounds``, ``components``
    and ``rank`` bucket counts and ``verify_buckets`` (the rank bucket count with ``verify``, else 0)."""
    edge_files = sorted(glob.glob(f"{out_dir}/edges/b*.parquet"))
    info = {"rounds": 0, "components": 0, "rank": 0, "verify_buckets": 0}
    if not edge_files:
        return info
    nc = fixed or bucket_count(2 * n_edges * EDGE_ROW_BYTES, min_buckets, bucket_bytes)
    info["components"] = nc
    info["rounds"] = label_graph(out_dir, [int(os.path.basename(f)[1:6]) for f in edge_files], nc, wave)
    got = per_file(cc_meta, [(i, p, out_dir, priority) for i, p in enumerate(paths)])
    _drop(f"{out_dir}/cc/labels")
    mem, text = sum(g[1] for g in got), sum(g[2] for g in got)
    nr = fixed or bucket_count(mem, min_buckets, bucket_bytes)
    if verify:  # and enough buckets that no verify task holds more than its share of candidate text
        nr = max(nr, bucket_count(text, 1 if fixed else min_buckets, verify_bucket_bytes))
    info["rank"] = nr
    per_file(rank_map, [(i, out_dir, nr) for i in range(len(paths))])
    _drop(f"{out_dir}/cc/meta")
    wave(rank_bucket, [(q, out_dir, verify) for q in range(nr)])
    _drop(f"{out_dir}/cc")
    info["verify_buckets"] = nr if verify else 0
    return info


def label_graph(out_dir: str, edge_buckets: list[int], nc: int, wave: Wave) -> int:
    """Label every node of the LSH edge files ``edges/b<r>.parquet`` (``r`` in ``edge_buckets``) with its
    component's smallest uid, in ``nc`` buckets: writes ``cc/labels/b<q>[i]``; returns the rounds."""
    wave(cc_start, [(r, out_dir, nc) for r in edge_buckets])
    k, rounds = 0, 0
    while True:
        if rounds >= MAX_ROUNDS:
            msg = (f"connected components did not converge in {MAX_ROUNDS} rounds of large-star/small-star "
                   f"(under {out_dir}/cc); this is a bug: report it with the edges/ folder")
            raise RuntimeError(msg)
        moved = sum(wave(large_star, [(k, q, out_dir, nc) for q in range(nc)]))
        _drop(_step_dir(out_dir, k))
        moved += sum(wave(small_star, [(k + 1, q, out_dir, nc) for q in range(nc)]))
        _drop(_step_dir(out_dir, k + 1))
        k += 2
        rounds += 1
        if moved == 0:
            break
    wave(cc_labels, [(k, q, out_dir) for q in range(nc)])
    _drop(f"{out_dir}/cc/nodes")
    return rounds


def _drop(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
