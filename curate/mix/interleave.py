"""The interleaving, computed in bounded key windows: no task and no driver holds the global order.

:func:`curate.mix.core.interleave` is a sort by virtual time: a sequence's key is the midpoint of the tokens its
stream has given before it, divided by the stream's share, and streams merge level by level (members inside a
group, then groups). Keys only increase along a stream, so the items of any **key window** ``[a, b)`` are one
contiguous slice of every child stream, and merging those slices alone gives exactly that window of the parent:
its first item starts after the tokens of the children's items before the slices (found by binary search), so
every key is the one the single sort computes, bit for bit. This module runs the same hierarchy as that sort,
one window per Ray task, with one level more at the bottom::

    leaf      (cell, hash range) stream of one select task, in selection order: work/mix/streams/*.parquet
    cell      a member or a balance value: its ranges merged at shares tokens_r / tokens_cell (one range: the leaf)
    group     its cells merged, each jittered by a seeded phase (as core.interleave)
    mixture   the groups merged at their shares: the global order

With one range per cell the order is :func:`curate.mix.core.interleave`'s, item for item (tests/mix/
test_interleave.py checks it on random streams with windows of a few items). Each level's output is a list of
chunk files, one per window::

    work/mix/interleave/<stream>_w<WWWWW>.npy   int64 (n, 4): leaf, position in the leaf, tokens, end (the
                                                 stream's tokens up to and including the item)

``end`` makes a position's start token and key computable from one row, so finding a window's slice reads
O(log n) rows of a memory-mapped chunk. A window holds about ``window_items`` items (``ceil(items /
window_items)`` windows per stream, equal in key, i.e. in the stream's tokens: the interleaving spreads every
child evenly over its parent, so windows of equal tokens hold similar counts).

Then the global order is cut into shards (the same greedy rule as before: the longest prefix within
``shards.max_tokens``, at least one sequence) by binary search on ``end``, and one task per shard writes its
order file, ``work/mix/shard_NNNNN.order.parquet`` (``seq`` = global position, then the leaf streams' columns),
a window at a time, decoding each leaf row group the shard needs once (:func:`write_order_file`).
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curate.io_utils import temp_path
from curate.mix.core import interleave_ranks

#: Items per window (and per shard-writing batch): 1M items are 32 MB of (n, 4) int64 rows; a window task peaked
#: at about 160 MB of Python heap over it (tracemalloc, 500k-item windows: 85 MB, whatever the stream's length).
#: 256k: at 1M items a window task's process grew 1.37x (651 -> 892 MB) from 4M to 16M documents in
#: ``bench scale``, as the 4M run's windows (1.6M selected sequences) were not yet full; 256k-item windows are
#: full from about 1M documents on, and hold a quarter of that heap.
WINDOW_ITEMS = 1 << 18

#: Rows per row group of a leaf stream file, so that a shard task reads little more than the rows it needs.
LEAF_ROW_GROUP = 64 << 10

#: The columns of an order row, ``(leaf, pos, len, end)``.
LEAF, POS, LEN, END = range(4)


@dataclass(frozen=True)
class Chunk:
    """One window's items of a stream: ``n`` rows at stream positions ``[start, start + n)``."""

    path: str
    n: int
    start: int
    base: int  # tokens of the stream before the chunk
    first_len: int


@dataclass(frozen=True)
class Stream:
    """A sequence of items in stream order, stored as chunk files (a leaf: its parquet file's ``tokens``)."""

    name: str
    chunks: tuple[Chunk, ...]

    @property
    def n(self) -> int:
        return sum(c.n for c in self.chunks)

    @property
    def tokens(self) -> int:
        return self.chunks[-1].base + _chunk_tokens(self.chunks[-1]) if self.chunks else 0


@dataclass(frozen=True)
class Child:
    """A stream merged into its parent at ``share`` of the parent's tokens, shifted by ``offset`` (jitter)."""

    stream: Stream
    share: float
    offset: float | None = None


@dataclass
class _Plan:
    """What each level merges: small (one entry per leaf, cell and group)."""

    cells: list[tuple[int, list[tuple[int, Any]]]] = field(default_factory=list)  # (cell, [(leaf, share)]) R > 1
    groups: list[list[tuple[int, Any, Any]]] = field(default_factory=list)  # [(cell, share, offset)] in rank order
    top: list[tuple[int, Any]] = field(default_factory=list)  # [(group index in .groups, share)]


def _chunk_tokens(c: Chunk) -> int:
    if c.n == 0:
        return 0
    return int(_rows(c)[c.n - 1, END]) - c.base


def _rows(c: Chunk) -> np.ndarray:
    return np.load(c.path, mmap_mode="r")


def keys(start: np.ndarray, lens: np.ndarray, share: Any, offset: Any) -> np.ndarray:
    """Virtual times, exactly as :func:`curate.mix.core._midpoint_keys` (plus the jitter) computes them."""
    k = (start + 0.5 * lens) / share
    return k if offset is None else k + offset


def _key_at(rows: np.ndarray, i: int, child: Child) -> float:
    r = np.asarray(rows[i:i + 1])
    return float(keys(r[:, END] - r[:, LEN], r[:, LEN], child.share, child.offset)[0])


def first_at_or_after(child: Child, a: float) -> int:
    """Position of the first item of ``child`` whose key is >= ``a`` (its length when there is none)."""
    chunks = [c for c in child.stream.chunks if c.n]
    if not chunks:
        return 0
    firsts = keys(np.array([c.base for c in chunks], np.int64), np.array([c.first_len for c in chunks], np.int64),
                  child.share, child.offset)
    k = int(np.searchsorted(firsts, a, side="left"))  # chunks[:k] start below a
    if k == 0:
        return chunks[0].start
    c = chunks[k - 1]
    rows = _rows(c)
    lo, hi = 0, c.n
    while lo < hi:
        mid = (lo + hi) // 2
        if _key_at(rows, mid, child) < a:
            lo = mid + 1
        else:
            hi = mid
    return c.start + lo


def read_items(stream: Stream, lo: int, hi: int) -> np.ndarray:
    """Rows ``[lo, hi)`` of ``stream`` as an (n, 4) int64 array."""
    parts = []
    for c in stream.chunks:
        a, b = max(lo, c.start), min(hi, c.start + c.n)
        if a < b:
            parts.append(np.asarray(_rows(c)[a - c.start:b - c.start]))
    return np.concatenate(parts) if parts else np.zeros((0, 4), np.int64)


def _end_before(stream: Stream, i: int) -> int:
    """Tokens of ``stream`` before position ``i``."""
    if i <= 0:
        return 0
    r = read_items(stream, i - 1, i)
    return int(r[0, END])


def merge_window(children: Sequence[Child], a: float | None, b: float | None, path: str | Path) -> Chunk:
    """The parent's items with keys in ``[a, b)`` (None: unbounded), merged and written to ``path``.

    The children are in rank order: equal keys go to the earlier child (a stable sort of their concatenation,
    as in :func:`curate.mix.core.interleave`).
    """
    rows, ks, start, base = [], [], 0, 0
    for ch in children:
        lo = 0 if a is None else first_at_or_after(ch, a)
        hi = ch.stream.n if b is None else first_at_or_after(ch, b)
        start += lo
        base += _end_before(ch.stream, lo)
        r = read_items(ch.stream, lo, hi)
        rows.append(r)
        ks.append(keys(r[:, END] - r[:, LEN], r[:, LEN], ch.share, ch.offset))
    r = np.concatenate(rows) if rows else np.zeros((0, 4), np.int64)
    order = np.argsort(np.concatenate(ks) if ks else np.zeros(0), kind="stable")
    out = r[order]
    out[:, END] = base + np.cumsum(out[:, LEN])
    _save(path, out)
    return Chunk(str(path), int(out.shape[0]), start, base, int(out[0, LEN]) if out.shape[0] else 0)


def _save(path: str | Path, arr: np.ndarray) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    with open(tmp, "wb") as f:
        np.save(f, np.ascontiguousarray(arr, dtype=np.int64))
    tmp.replace(path)


def windows(children: Sequence[Child], window_items: int) -> list[tuple[float | None, float | None]]:
    """Key windows of a parent: about ``window_items`` items each, equal in the parent's tokens."""
    n = sum(ch.stream.n for ch in children)
    w = max(1, math.ceil(n / max(1, window_items)))
    if w == 1:
        return [(None, None)]
    # every child's keys run from 0 to about the parent's tokens (its tokens / its share, plus the jitter)
    span = max(ch.stream.tokens / ch.share + (ch.offset or 0.0) for ch in children if ch.stream.n)
    cuts = [span * j / w for j in range(1, w)]
    return list(zip([None, *cuts], [*cuts, None]))


# ---------------------------------------------------------------------------- the plan (as core.interleave)
def plan_levels(leaves: Sequence[dict], *, seed: int, jitter: bool = True) -> _Plan:
    """The merges of every level from the leaf list, drawing the seeded ranks and phases as core.interleave.

    ``leaves``: ``{"cell", "range", "group", "sequences", "tokens"}`` each, every cell at least once (a cell with
    no tokens still counts in its group's ranks, as an empty stream does in core.interleave).
    """
    n_cells = 1 + max(int(lf["cell"]) for lf in leaves) if leaves else 0
    tokens = np.zeros(n_cells, np.int64)
    sizes = np.zeros(n_cells, np.int64)
    groups = np.full(n_cells, -1, np.int64)
    by_cell: dict[int, list[int]] = {}
    for i, lf in enumerate(leaves):
        c = int(lf["cell"])
        tokens[c] += int(lf["tokens"])
        sizes[c] += int(lf["sequences"])
        if groups[c] not in (-1, int(lf["group"])):
            msg = f"cell {c} is given two groups ({groups[c]} and {lf['group']}) by its leaves"
            raise ValueError(msg)
        groups[c] = int(lf["group"])
        by_cell.setdefault(c, []).append(i)
    if (groups < 0).any():
        msg = f"cells {np.flatnonzero(groups < 0).tolist()} have no leaf: every cell needs one, empty or not"
        raise ValueError(msg)
    plan = _Plan()
    for c, ids in sorted(by_cell.items()):
        ids = sorted(ids, key=lambda i: int(leaves[i]["range"]))
        live = [i for i in ids if int(leaves[i]["tokens"]) > 0]
        if len(ids) > 1 and live:
            plan.cells.append((c, [(i, np.int64(leaves[i]["tokens"]) / tokens[c]) for i in live]))
    rng = np.random.default_rng(seed)
    total = int(tokens.sum())
    if total == 0:
        return plan
    for members in interleave_ranks(tokens, sizes, groups, rng, jitter=jitter):
        t_g = int(tokens[[m for m, _s, _o in members]].sum())
        plan.groups.append(members)
        plan.top.append((len(plan.groups) - 1, t_g / total))
    return plan


# ---------------------------------------------------------------------------- leaves
def leaf_stream(path: str | Path, leaf: int, out: str | Path) -> Stream:
    """A leaf stream file's ``tokens`` column as a one-chunk stream (``out``: its .npy)."""
    lens = pq.read_table(path, columns=["tokens"])["tokens"].to_numpy().astype(np.int64)
    arr = np.stack([np.full(lens.size, leaf, np.int64), np.arange(lens.size, dtype=np.int64), lens,
                    np.cumsum(lens)], axis=1) if lens.size else np.zeros((0, 4), np.int64)
    _save(out, arr)
    return Stream(f"leaf{leaf}", (Chunk(str(out), int(lens.size), 0, 0, int(lens[0]) if lens.size else 0),))


# ---------------------------------------------------------------------------- driving the levels
Runner = Callable[[list[tuple[Callable, tuple]]], list[Any]]


def _local(jobs: list[tuple[Callable, tuple]]) -> list[Any]:
    return [fn(*args) for fn, args in jobs]


def global_order(leaf_files: Sequence[str | Path], leaves: Sequence[dict], work: str | Path, *, seed: int,
                 jitter: bool = True, window_items: int = WINDOW_ITEMS, run: Runner = _local) -> Stream:
    """The global order of every leaf's items as a chunked stream under ``work``.

    ``run`` executes a wave of independent jobs ``(fn, args)`` and returns their results in order: in-process by
    default, Ray tasks from :func:`write_orders`.
    """
    work = Path(work)
    plan = plan_levels(leaves, seed=seed, jitter=jitter)
    leaf_streams = run([(leaf_stream, (str(f), i, str(work / f"leaf{i:05d}.npy")))
                        for i, f in enumerate(leaf_files)])
    cell_stream: dict[int, Stream] = {}
    for i, lf in enumerate(leaves):
        cell_stream.setdefault(int(lf["cell"]), leaf_streams[i])  # one range: the cell is its leaf

    def level(parents: list[tuple[str, list[Child]]]) -> list[Stream]:
        jobs, owner = [], []
        for name, children in parents:
            for w, (a, b) in enumerate(windows(children, window_items)):
                jobs.append((merge_window, (children, a, b, str(work / f"{name}_w{w:05d}.npy"))))
                owner.append(name)
        done = run(jobs)
        return [Stream(name, tuple(c for c, o in zip(done, owner) if o == name)) for name, _ in parents]

    if plan.cells:
        merged = level([(f"cell{c:05d}", [Child(leaf_streams[i], s) for i, s in ranges]) for c, ranges in plan.cells])
        cell_stream.update({c: s for (c, _), s in zip(plan.cells, merged)})
    groups = level([(f"group{j:03d}", [Child(cell_stream[m], s, off) for m, s, off in members])
                    for j, members in enumerate(plan.groups)])
    if not plan.top:
        return Stream("order", ())
    (top,) = level([("order", [Child(groups[j], s) for j, s in plan.top])])
    return top


def shard_bounds(order: Stream, *, max_tokens: int, single_file: bool) -> list[int]:
    """Global positions where shards start (and the end): the longest prefix within ``max_tokens``, >= 1 item."""
    n = order.n
    if single_file or n == 0:
        return [0, n]
    chunks = [c for c in order.chunks if c.n]
    last_end = np.array([int(_rows(c)[c.n - 1, END]) for c in chunks], np.int64)
    bounds, base = [0], 0
    while bounds[-1] < n:
        limit = base + max_tokens
        k = int(np.searchsorted(last_end, limit, side="right"))  # chunks[:k] end within the limit
        if k == len(chunks):
            j = n
        else:
            c = chunks[k]
            j = c.start + int(np.searchsorted(np.asarray(_rows(c)[:, END]), limit, side="right"))
        j = max(j, bounds[-1] + 1)
        bounds.append(j)
        base = int(read_items(order, j - 1, j)[0, END])
    return bounds


def _leaf_groups(path: str) -> tuple[pq.ParquetFile, np.ndarray]:
    """A leaf stream file and the first row of each of its row groups (plus the end)."""
    pf = pq.ParquetFile(path)
    sizes = [pf.metadata.row_group(g).num_rows for g in range(pf.metadata.num_row_groups)]
    return pf, np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


def write_order_file(order: Stream, leaf_files: Sequence[str | Path], lo: int, hi: int, path: str | Path, *,
                     batch_items: int = WINDOW_ITEMS) -> int:
    """Write global positions ``[lo, hi)`` as an order file (``seq`` + the leaf columns), a batch at a time.

    A batch of ``batch_items`` positions takes about ``batch_items / L`` rows from each of L leaves, far fewer than
    a leaf row group (``LEAF_ROW_GROUP``), so reading each batch's rows from the leaf files would decode every
    row group once per batch that reads it (``LEAF_ROW_GROUP * L / batch_items`` times in all; 500x at EagleX's
    L ~ 2,000). Instead, in three passes that each hold one batch or one row group, so that a row group is decoded
    once per shard (docs/SCALING.md, point 3, has the measured gains and what is left):

    1. each batch's run of positions in each leaf, from the order (a leaf's items of a window are one run);
    2. each leaf row group that the shard needs is decoded **once** and its rows are sent to their batches as
       split files (``curate.shuffle_files.write_split``: writer ``l<leaf>g<group>``, targets the batches) in
       ``<path>.scatter/``;
    3. each batch reads its rows back (writers in name order: leaf, then position, as the batch wants them), puts
       them in global order and is written.
    """
    from curate.shuffle_files import read_split, write_split

    schema = pq.read_schema(leaf_files[0])
    schema = pa.schema([pa.field("seq", pa.int64()), *schema], metadata=schema.metadata)
    path = Path(path)
    step = Path(f"{path}.scatter")
    batch_items = max(1, batch_items)
    starts = list(range(lo, hi, batch_items))
    runs: list[dict[int, tuple[int, int]]] = []  # per batch: leaf -> its run [p0, p1)
    for a in starts:
        items = read_items(order, a, min(hi, a + batch_items))
        runs.append(_leaf_runs(items[:, LEAF], items[:, POS]))
    shutil.rmtree(step, ignore_errors=True)  # a retried task starts over
    for lf in sorted({lf for r in runs for lf in r}):
        _scatter_leaf(str(leaf_files[lf]), lf, [r.get(lf) for r in runs], str(step), write_split)
    tmp = temp_path(path)
    try:
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            for k, a in enumerate(starts):
                writer.write_table(_order_batch(order, runs[k], read_split(str(step), k), a,
                                                min(hi, a + batch_items), schema))
            if hi <= lo:
                writer.write_table(schema.empty_table())
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
        shutil.rmtree(step, ignore_errors=True)
    return hi - lo


def _leaf_runs(leaf: np.ndarray, pos: np.ndarray) -> dict[int, tuple[int, int]]:
    """Each leaf's run ``[p0, p1)`` of positions in a batch, in one pass (not one mask per leaf)."""
    o = np.lexsort((pos, leaf))
    lf, p = leaf[o], pos[o]
    first = np.flatnonzero(np.r_[True, lf[1:] != lf[:-1]])
    last = np.r_[first[1:], len(lf)] - 1
    return {int(a): (int(b), int(c) + 1) for a, b, c in zip(lf[first], p[first], p[last], strict=True)}


def _scatter_leaf(file: str, lf: int, runs: list[tuple[int, int] | None], step: str, write_split: Callable) -> None:
    """Decode each row group of leaf ``lf`` that the batches' ``runs`` need once; send its rows to their batches."""
    pf, gstart = _leaf_groups(file)
    want = [(k, r) for k, r in enumerate(runs) if r is not None]
    p_lo, p_hi = min(r[0] for _k, r in want), max(r[1] for _k, r in want)
    g0 = int(np.searchsorted(gstart, p_lo, side="right")) - 1
    g1 = int(np.searchsorted(gstart, p_hi, side="left"))
    for g in range(g0, g1):
        a, b = max(p_lo, int(gstart[g])), min(p_hi, int(gstart[g + 1]))
        parts = np.full(b - a, -1, np.int64)
        for k, (p0, p1) in want:
            s, e = max(p0, a), min(p1, b)
            if s < e:
                parts[s - a: e - a] = k
        keep = np.flatnonzero(parts >= 0)
        if len(keep) == 0:
            continue
        rows = pf.read_row_group(g).slice(a - int(gstart[g]), b - a).take(pa.array(keep))
        write_split(rows, parts[keep], len(runs), step, f"l{lf:05d}g{g:06d}")


def _order_batch(order: Stream, runs: dict[int, tuple[int, int]], pieces: pa.Table | None, a: int, b: int,
                 schema: pa.Schema) -> pa.Table:
    """Batch ``[a, b)`` in global order from its leaf rows ``pieces`` (leaf by leaf, each run in position order)."""
    items = read_items(order, a, b)
    leaf, pos = items[:, LEAF], items[:, POS]
    shift, at = np.zeros(int(leaf.max()) + 1, np.int64), 0
    for lf in sorted(runs):
        p0, p1 = runs[lf]
        shift[lf] = at - p0
        at += p1 - p0
    if pieces is None or pieces.num_rows != at:
        msg = f"order batch [{a}, {b}) got {0 if pieces is None else pieces.num_rows} leaf rows of {at}; rerun the mix"
        raise RuntimeError(msg)
    table = pieces.take(pa.array(pos + shift[leaf]))
    table = table.add_column(0, "seq", pa.array(np.arange(a, b, dtype=np.int64)))
    return table.cast(schema)


def orders_in_process(leaf_files: Sequence[str], leaves: Sequence[dict], run_dir: str, *, seed: int,
                      max_tokens: int, single_file: bool, window_items: int = WINDOW_ITEMS) -> dict:
    """Every level, the cut and every order file in this process: the path of a run that fits one window."""
    from curate.layout import RunLayout

    layout = RunLayout(run_dir)
    order = global_order(leaf_files, leaves, layout.mix_dir / "interleave", seed=seed, window_items=window_items)
    bounds = shard_bounds(order, max_tokens=max_tokens, single_file=single_file)
    for i in range(len(bounds) - 1):
        write_order_file(order, leaf_files, bounds[i], bounds[i + 1], layout.order(i), batch_items=window_items)
    return _summary(order, bounds)


def _summary(order: Stream, bounds: list[int]) -> dict:
    ends = [0] + [int(read_items(order, j - 1, j)[0, END]) if j else 0 for j in bounds[1:]]
    return {"n_shards": len(bounds) - 1, "sequences": order.n, "tokens": order.tokens,
            "shard_tokens": [ends[i + 1] - ends[i] for i in range(len(bounds) - 1)]}


def write_orders(leaf_files: Sequence[str | Path], leaves: Sequence[dict], run_dir: str | Path, *, seed: int,
                 max_tokens: int, single_file: bool, window_items: int | None = None) -> dict:
    """Write every shard's order file from the leaf streams, as Ray tasks of at most ``window_items`` items.

    Returns ``{"n_shards", "sequences", "tokens", "shard_tokens"}`` for plan.json. A run whose leaves fit one window
    runs as one task (the same functions, in one process); otherwise one wave of tasks per level (leaf streams,
    cells, groups, the mixture), then one task per shard.
    """
    from curate.layout import RunLayout
    from curate.raytasks import get, remote_task

    window_items = WINDOW_ITEMS if window_items is None else window_items  # read at call time (tests lower it)
    leaf_files = [str(f) for f in leaf_files]
    run_dir = str(run_dir)
    if sum(int(lf["sequences"]) for lf in leaves) <= window_items:
        task = remote_task(orders_in_process)
        return get(task.remote(leaf_files, list(leaves), run_dir, seed=seed, max_tokens=max_tokens,
                               single_file=single_file, window_items=window_items))

    call = remote_task(_call)

    def run(jobs: list[tuple[Callable, tuple]]) -> list[Any]:
        return get([call.remote(fn, args) for fn, args in jobs])

    layout = RunLayout(run_dir)
    order = global_order(leaf_files, leaves, layout.mix_dir / "interleave", seed=seed, window_items=window_items,
                         run=run)
    bounds = shard_bounds(order, max_tokens=max_tokens, single_file=single_file)
    run([(write_order_file, (order, leaf_files, bounds[i], bounds[i + 1], str(layout.order(i))))
         for i in range(len(bounds) - 1)])
    return _summary(order, bounds)


def _call(fn: Callable, args: tuple) -> Any:
    return fn(*args)
