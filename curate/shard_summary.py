"""Per-shard summaries of the shards' lineage, one Ray task per shard: what the audit and the report read.

The driver never holds the lineage of the run (one row per sequence): a task per shard reads that shard's lineage
and its formats' indexes (bounded by one shard) and returns a small summary, and every whole-stream check is
rebuilt from the summaries exactly. See docs/SCALING.md §2b.

**Pass 1** (:func:`summarize`, :func:`summarize_shards`): per shard entry (in stream order), the task checks the
shard as the audit always has (files present, sha256 with ``verify``, the lineage's token counts against every
format's own index: ``curate.shard_formats``) and returns two objects:

- the **summary** (to the driver)::

      {"name", "violations": [...], "ok": bool,        # ok: an index was read (the shard is in the stream)
       "rows": int, "columns": [present optional columns of KEY_COLUMNS, doc_id, uid],
       "keys": [[group, source, subset, lang, license, balance], ...],   # first appearance order; str or None
       "key_tokens": [int], "key_sequences": [int],                     # lineage tokens and rows per key
       "idx_tokens": int, "idx_max": int, "idx_by_group": [int],        # index sizes: sum, max, per group code
       "hits": {"doc_id": [...], "uid": [...], "near": [...]}}          # validation probe values found here

- the **stream** (left in the object store; the driver holds its reference only): ``{"lens": int64 index sizes,
  "grp": int32 group code (the position of the group in ``recipe.mixture``, 0 for another), "key": int32 key
  code}`` per sequence, in order.

**Pass 2** (exact, bounded): the window check (:func:`window_check`) gives each shard the windows that *end* in it;
its task reads its own stream and the streams of the shards overlapping the W tokens before it, and returns the
largest deviation per group and where. The trainer views (:func:`weighted_keys`) send each shard the token
intervals that overlap it (the first ``n`` tokens; RWKV-LM's samples) and get back the overlapped tokens per key.
The report's stream chart (:func:`stream_series`) evaluates each group's cumulative tokens at its window edges,
each shard at the edges inside it. Each result is the same float the one-table computation gave: ``np.interp``
only reads the two boundaries around a point, and every position and cumulative count is an exact integer.

Validation disjointness: the held-out sets are small (``validation.tokens`` per member), so their ``doc_id`` and
``uid`` sets, and the uids of the dedup components they touch, travel to every task (object store) as the
``probe``; each task returns the probe values its shard holds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.errors import CurateError
from curate.io_utils import read_json, sha256_file
from curate.layout import RunLayout
from curate.raytasks import get, init_ray, remote_task

#: The lineage columns a key is made of (the first three are required, the others optional).
KEY_COLUMNS = ("group", "source", "subset", "lang", "license", "balance")
#: Lineage columns the audit requires.
LINEAGE_COLUMNS = ("shard", "source", "subset", "group", "tokens")
#: Errors that mean a file under its final name cannot be read as what it should be.
READ_ERRORS = (pa.ArrowException, OSError, ValueError, KeyError, TypeError)


def _rel(path: Path, run_dir: Path) -> str:
    try:
        return str(Path(path).relative_to(run_dir))
    except ValueError:
        return str(path)


def corrupt(violations: list[dict], path: Path, run_dir: Path, e: Exception, what: str) -> None:
    """Append a ``corrupt_file`` violation naming ``path`` (relative to ``run_dir``)."""
    rel = _rel(path, run_dir)
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    violations.append({"kind": "corrupt_file", "where": rel,
                       "message": f"{rel}: the {what} cannot be read ({first}); it was modified or damaged "
                                  "after it was written: rerun `curate run` with --force to rewrite the run"})


# ---------------------------------------------------------------------------- pass 1: one task per shard
def _keys(lin: pa.Table, tokens: np.ndarray) -> tuple[list[list], np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(keys in first appearance order, key code per row, lineage tokens per key, rows per key, columns used)."""
    cols = [c for c in KEY_COLUMNS if c in lin.column_names]
    n = lin.num_rows
    combined = np.zeros(n, np.int64)
    codes, dicts = [], []
    for c in cols:
        arr = lin[c].cast(pa.string()).combine_chunks()
        d = pc.dictionary_encode(arr, null_encoding="encode")
        code = d.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        codes.append(code)
        dicts.append(d.dictionary.to_pylist())
        combined = combined * max(len(dicts[-1]), 1) + code
    uniq, first, inverse = np.unique(combined, return_index=True, return_inverse=True)
    rank = np.empty(len(uniq), np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(uniq))
    key = rank[inverse.reshape(-1)]
    firsts = np.sort(first)
    keys = [[None] * len(KEY_COLUMNS) for _ in firsts]
    for c, code, dic in zip(cols, codes, dicts):
        j = KEY_COLUMNS.index(c)
        for i, row in enumerate(firsts):
            keys[i][j] = dic[code[row]]
    tok = np.zeros(len(uniq), np.int64)
    np.add.at(tok, key, tokens)
    seqs = np.bincount(key, minlength=len(uniq)).astype(np.int64)
    return keys, key, tok, seqs, cols


def _import_run_plugins(run_dir: Path) -> None:
    """Import the run's ``plugins`` (recipe.json) in this worker, which may never have run a task of that run."""
    import importlib

    p = RunLayout(run_dir).recipe_json
    try:
        mods = (read_json(p).get("recipe") or {}).get("plugins") or []
    except (OSError, ValueError, AttributeError):
        return  # a damaged recipe.json is the audit's own finding, reported by the driver
    for mod in mods:
        importlib.import_module(mod)


def summarize(run_dir: str, entry: dict, verify: bool, group_names: list[str],
              probe: dict | None) -> tuple[dict, dict | None]:
    """Pass 1 for one shard (a Ray task with two returns): its summary and its stream (module docstring)."""
    from curate.shard_formats import WRITERS, shard_formats

    run_dir = Path(run_dir)
    _import_run_plugins(run_dir)  # a plugin's shard format is registered only where its module was imported
    violations: list[dict] = []
    summary: dict[str, Any] = {"name": entry.get("name"), "violations": violations, "ok": False}
    shard_dir = RunLayout(run_dir).shards_dir
    fmts = shard_formats(entry)
    lin_p = shard_dir / entry["lineage"]
    missing = [x["path"] for f in fmts.values() for x in f["files"] if not (shard_dir / x["path"]).exists()]
    missing += [lin_p.name] if not lin_p.exists() else []
    if missing:
        violations.append({"kind": "shard_missing", "where": entry["name"],
                           "message": f"shard {entry['name']} is in the manifest but {missing} are missing"})
        return summary, None
    if verify:
        for f in fmts.values():
            for x in f["files"]:
                try:
                    digest = sha256_file(shard_dir / x["path"])
                except FileNotFoundError:
                    continue  # removed while the audit ran
                if digest != x["sha256"]:
                    violations.append({"kind": "shard_checksum", "where": x["path"],
                                       "message": f"{x['path']}: sha256 does not match the manifest (truncated "
                                                  "or modified); rewrite it by rerunning with --force"})
    try:
        lin = pq.read_table(lin_p)
        missing_cols = [c for c in LINEAGE_COLUMNS if c not in lin.column_names]
        if missing_cols:
            msg = f"columns {missing_cols} are missing"
            raise ValueError(msg)
        lt = lin["tokens"].to_numpy()
    except FileNotFoundError:
        return summary, None
    except READ_ERRORS as ex:
        corrupt(violations, lin_p, run_dir, ex, "lineage")
        return summary, None
    idx_tokens = None
    for fmt, f in fmts.items():
        try:
            sizes = WRITERS[fmt].read_sizes(shard_dir, f)
        except CurateError as ex:
            violations.append({"kind": "shard_checksum", "where": f"{entry['name']} ({fmt})", "message": str(ex)})
            continue
        except FileNotFoundError:
            continue  # removed while the audit ran (a --force restart): not written, as far as we know
        except READ_ERRORS as ex:
            corrupt(violations, shard_dir / f["files"][-1]["path"], run_dir, ex, f"{fmt} shard index")
            continue
        if len(lt) != len(sizes) or not np.array_equal(lt, sizes):
            n_bad = int(np.sum(lt[: len(sizes)] != sizes[: len(lt)])) + abs(len(lt) - len(sizes))
            violations.append({"kind": "lineage_mismatch", "where": entry["name"],
                               "message": f"shard {entry['name']}: lineage disagrees with the {WRITERS[fmt].info.index} "
                                          f"({fmt}) on {n_bad} sequence(s) (lineage {len(lt)} rows / "
                                          f"{int(lt.sum())} tokens, index {len(sizes)} sequences / "
                                          f"{int(sizes.sum())} tokens)"})
        if idx_tokens is None:
            idx_tokens = sizes
    if idx_tokens is None:
        return summary, None
    # the stream's sizes are the index's (the lineage's where the index is shorter: it is damaged, and said so)
    lens = (np.asarray(idx_tokens[: lin.num_rows]) if len(idx_tokens) >= lin.num_rows else lt).astype(np.int64)
    code_of = {g: i for i, g in enumerate(group_names)}  # another group (or none) counts as the first, as ever
    enc = pc.dictionary_encode(lin["group"].combine_chunks(), null_encoding="encode")
    dict_code = np.array([code_of.get(g, 0) for g in enc.dictionary.to_pylist()] or [0], dtype=np.int32)
    grp = dict_code[enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)]
    by_group = np.zeros(max(len(group_names), 1), np.int64)
    np.add.at(by_group, grp, lens)
    keys, key, key_tok, key_seq, cols = _keys(lin, lt.astype(np.int64))
    hits: dict[str, list] = {}
    for col in ("doc_id", "uid"):
        if probe is not None and col in lin.column_names and probe.get(col) is not None:
            found = lin[col].filter(pc.is_in(lin[col], value_set=probe[col]))
            hits[col] = pc.unique(found).to_pylist()
    if probe is not None and probe.get("near") is not None and "uid" in lin.column_names:
        hits["near"] = pc.unique(lin["uid"].filter(pc.is_in(lin["uid"], value_set=probe["near"]))).to_pylist()
    summary.update({
        "ok": True, "rows": lin.num_rows,
        "columns": cols + [c for c in ("doc_id", "uid") if c in lin.column_names],
        "keys": keys, "key_tokens": key_tok.tolist(), "key_sequences": key_seq.tolist(),
        "idx_tokens": int(lens.sum()), "idx_max": int(lens.max()) if lens.size else 0,
        "idx_by_group": by_group.tolist(),
        "hits": hits})
    return summary, {"lens": lens, "grp": grp, "key": key.astype(np.int32)}


@dataclass
class Summaries:
    """Pass 1 of every shard entry: the summaries of the shards in the stream (``ok``), in order, with their
    stream references, and the merged keys (first appearance in the stream)."""

    group_names: list[str]
    shards: list[dict] = field(default_factory=list)
    streams: list[Any] = field(default_factory=list)
    keys: dict[tuple, dict] = field(default_factory=dict)
    columns: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(s["rows"] for s in self.shards)

    @property
    def idx_total(self) -> int:
        return sum(s["idx_tokens"] for s in self.shards)

    @property
    def idx_max(self) -> int:
        return max((s["idx_max"] for s in self.shards), default=0)

    def starts(self) -> np.ndarray:
        """Global token position (index sizes) where each shard starts, and the stream's end last."""
        return np.concatenate([[0], np.cumsum([s["idx_tokens"] for s in self.shards], dtype=np.int64)])

    def key_table(self) -> pa.Table:
        """One row per key (``KEY_COLUMNS`` the lineage has) with its lineage ``tokens`` and ``sequences``: what
        the audit's composition and balance sums read (the same sums as over the lineage rows)."""
        cols = [c for c in KEY_COLUMNS if c in self.columns or c in ("group", "source", "subset")]
        ks = list(self.keys)
        data = {c: pa.array([k[KEY_COLUMNS.index(c)] for k in ks], pa.string()) for c in cols}
        data["tokens"] = pa.array([v["tokens"] for v in self.keys.values()], pa.int64())
        data["sequences"] = pa.array([v["sequences"] for v in self.keys.values()], pa.int64())
        return pa.table(data)

    def hits(self, col: str) -> list:
        out: set = set()
        for s in self.shards:
            out.update(s["hits"].get(col, []))
        return sorted(out)


def summarize_shards(run_dir: Path, entries: list[dict], *, verify: bool, group_names: list[str],
                     probe: dict | None = None) -> tuple[Summaries, list[dict]]:
    """Pass 1: one :func:`summarize` task per entry (Ray: the embedded local one unless it is already up).

    Returns the summaries and the shards' violations, in entry order.
    """
    ray = init_ray(None)
    task = remote_task(summarize, num_returns=2)
    probe_ref = ray.put(probe) if probe is not None else None
    refs = [task.remote(str(run_dir), e, verify, group_names, probe_ref) for e in entries]
    summaries = get([r[0] for r in refs])
    out = Summaries(group_names=list(group_names))
    violations: list[dict] = []
    cols: set[str] = set()
    for s, (_sref, stream_ref) in zip(summaries, refs):
        violations.extend(s["violations"])
        if not s["ok"]:
            continue
        out.shards.append(s)
        out.streams.append(stream_ref)
        cols.update(s["columns"])
        for k, t, n in zip(s["keys"], s["key_tokens"], s["key_sequences"]):
            acc = out.keys.setdefault(tuple(k), {"tokens": 0, "sequences": 0})
            acc["tokens"] += t
            acc["sequences"] += n
    out.columns = sorted(cols)
    return out, violations


# ---------------------------------------------------------------------------- pass 2: the window check
def window_part(first_start: int, prefix: list[int], own_start: int, own_end: int, w: float, total: float,
                shares: list[float], *streams: dict) -> tuple[list[float], list[float]]:
    """Per group: the largest deviation (a fraction) over the windows ``[t, t + w)`` that end in ``(own_start,
    own_end]``, and the first ``t`` reaching it; ``streams`` are the shards from the one holding ``own_start - w``
    to this one, starting at token ``first_start`` where the groups' cumulative tokens are ``prefix``."""
    from curate.mix.core import window_deviations

    lens = np.concatenate([s["lens"] for s in streams]).astype(np.int64)
    grp = np.concatenate([s["grp"] for s in streams]).astype(np.int64)
    keep = lens > 0
    lens, grp = lens[keep], grp[keep]
    pos = first_start + np.concatenate([[0], np.cumsum(lens)])
    bounds = pos.astype(np.float64)
    cums = [(prefix[g] + np.concatenate([[0], np.cumsum(np.where(grp == g, lens, 0))])).astype(np.float64)
            for g in range(len(shares))]
    own = bounds[(pos > own_start) & (pos <= own_end)]  # windows ending at one of this shard's boundaries
    early = bounds[(pos > own_start - w) & (pos <= own_end - w)]  # windows starting at a boundary, ending here
    starts = np.concatenate([own - w, early])
    starts = np.unique(starts[(starts >= 0) & (starts <= total - w)])
    dev, at = window_deviations(bounds, cums, starts, w, np.asarray(shares, np.float64))
    return dev.tolist(), at.tolist()


def window_check(s: Summaries, window_tokens: int | None = None) -> dict[str, Any] | None:
    """The audit's ``stream`` section from pass 1 and a window task per shard (``window_part``): the window W =
    ``max(1% of tokens, 100 x longest sequence)`` and the largest deviation of a group's share over every window
    of W tokens, against the achieved shares, exactly :func:`curate.mix.core.window_max_deviation` of the whole
    stream (``window_tokens`` overrides W). Also ``_at``: ``(start token, group index)`` of that window, as
    :func:`curate.mix.core.window_deviation_at` gives it (not part of the audit's JSON)."""
    if s.rows == 0:
        return None
    n_g = max(len(s.group_names), 1)
    total_i = s.idx_total
    window = int(max(math.ceil(0.01 * total_i), 100 * s.idx_max))  # curate.mix.core.default_window
    if window_tokens is not None:
        window = int(window_tokens)
    if total_i == 0:
        return {"window_tokens": window, "max_deviation_pp": 0.0, "_at": (0.0, 0)}
    by_g = np.array([[int(x) for x in sh["idx_by_group"]] for sh in s.shards], dtype=np.int64)
    total_g = by_g.sum(axis=0)
    shares = [float(np.int64(total_g[i]) / np.int64(total_i)) for i in range(n_g)]
    starts = s.starts()
    prefix_g = np.concatenate([np.zeros((1, n_g), np.int64), np.cumsum(by_g, axis=0)])
    w = float(min(window, total_i))
    total = float(total_i)
    task = remote_task(window_part)
    refs, js = [], []
    for k in range(len(s.shards)):
        a, b = int(starts[k]), int(starts[k + 1])
        if b == a:
            continue
        j0 = k
        while j0 > 0 and starts[j0] > a - w:  # back to the shard holding token a - w
            j0 -= 1
        # the streams as arguments of their own: Ray resolves them in the task (the driver never fetches one)
        refs.append(task.remote(int(starts[j0]), prefix_g[j0].tolist(), a, b, w, total, shares,
                                *s.streams[j0:k + 1]))
        js.append(k)
    parts = get(refs)
    dev = np.full(n_g, -np.inf)
    at = np.full(n_g, np.nan)
    for d, t in parts:  # shards in stream order: the first shard reaching a maximum holds its first start
        d, t = np.asarray(d), np.asarray(t)
        better = d > dev
        dev[better], at[better] = d[better], t[better]
    g = int(np.argmax(dev))
    return {"window_tokens": window, "max_deviation_pp": 100.0 * max(0.0, float(dev.max())),
            "_at": (float(at[g]), g)}


# ---------------------------------------------------------------------------- pass 2: the trainer views
def weighted_part(stream: dict, start: int, lo: np.ndarray, hi: np.ndarray, n_keys: int) -> list[int]:
    """Tokens of each key (code) of one shard inside the token intervals ``[lo, hi)`` (global positions, each
    counted as often as intervals cover it), for a shard whose first token is ``start``."""
    lens = stream["lens"].astype(np.int64)
    end = start + int(lens.sum())
    lo = np.sort(np.clip(np.asarray(lo, np.int64), start, end) - start)
    hi = np.sort(np.clip(np.asarray(hi, np.int64), start, end) - start)
    edges = np.concatenate([[0], np.cumsum(lens)])
    slo = np.concatenate([[0], np.cumsum(lo)])
    shi = np.concatenate([[0], np.cumsum(hi)])

    def covered(x: np.ndarray) -> np.ndarray:  # sum over intervals of |[lo, hi) ∩ [0, x)|
        n_lo = np.searchsorted(lo, x, side="left")
        n_hi = np.searchsorted(hi, x, side="left")
        return (n_lo * x - slo[n_lo]) - (n_hi * x - shi[n_hi])

    cov = covered(edges)
    w = cov[1:] - cov[:-1]
    out = np.zeros(n_keys, np.int64)
    np.add.at(out, stream["key"].astype(np.int64), w)
    return out.tolist()


def weighted_keys(s: Summaries, lo: np.ndarray, hi: np.ndarray) -> dict[tuple, int]:
    """Tokens per merged key inside the intervals ``[lo, hi)`` of the stream (index sizes), every key present
    (0 where no interval reaches it): one :func:`weighted_part` task per shard the intervals overlap."""
    lo, hi = np.asarray(lo, np.int64), np.asarray(hi, np.int64)
    out = {k: 0 for k in s.keys}
    starts = s.starts()
    task = remote_task(weighted_part)
    refs, which = [], []
    for k, sh in enumerate(s.shards):
        a, b = int(starts[k]), int(starts[k + 1])
        m = (lo < b) & (hi > a) & (hi > lo)
        if b > a and m.any():
            refs.append(task.remote(s.streams[k], a, lo[m], hi[m], len(sh["keys"])))
            which.append(k)
    for k, w in zip(which, get(refs)):
        for key, v in zip(s.shards[k]["keys"], w):
            out[tuple(key)] += int(v)
    return out


# ---------------------------------------------------------------------------- the report's stream chart
def _group_tokens(path: str, groups: list[str]) -> tuple[int, list[int]]:
    t = pq.read_table(path, columns=["group", "tokens"])
    grp = t["group"].to_numpy(zero_copy_only=False)
    tok = t["tokens"].to_numpy().astype(np.int64)
    return int(tok.sum()), [int(tok[grp == g].sum()) for g in groups]


def _group_cum_at(path: str, groups: list[str], start: int, prefix: list[int], x: np.ndarray) -> list[list[float]]:
    t = pq.read_table(path, columns=["group", "tokens"])
    grp = t["group"].to_numpy(zero_copy_only=False)
    tok = t["tokens"].to_numpy().astype(np.int64)
    pos = (start + np.concatenate([[0], np.cumsum(tok)])).astype(np.float64)
    return [np.interp(x, pos, (prefix[i] + np.concatenate([[0], np.cumsum(np.where(grp == g, tok, 0))]))
                      .astype(np.float64)).tolist() for i, g in enumerate(groups)]


def stream_series(run_dir: Path, groups: list[str], points: int = 50, *,
                  window: int | None = None) -> dict[str, list[float]]:
    """Each group's share in ``points`` windows of the token stream (the shards' lineage ``tokens``, in shard
    order). Without ``window``: consecutive windows of ``total / points`` tokens. With ``window`` (shorter than
    the stream): windows of ``window`` tokens centred at ``points`` evenly spaced positions, the windows the
    audit's window check bounds. Two Ray passes of a task per shard (its tokens per group; then each group's
    cumulative tokens at the window edges inside it), the same floats as over the concatenated lineage."""
    files = [str(p) for p in sorted(RunLayout(run_dir).shards_dir.glob("*.lineage.parquet"))]
    if not files:
        return {g: [] for g in groups}
    init_ray(None)
    sums = get([remote_task(_group_tokens).remote(f, groups) for f in files])
    files = [f for f, (n, _) in zip(files, sums) if n > 0]
    sums = [x for x in sums if x[0] > 0]
    if not files:
        return {g: [] for g in groups}
    ends = np.cumsum([n for n, _ in sums], dtype=np.int64)
    starts = np.concatenate([[0], ends[:-1]])
    prefix = np.concatenate([np.zeros((1, len(groups)), np.int64), np.cumsum([g for _, g in sums], axis=0)
                             .reshape(len(sums), len(groups))])
    end = float(ends[-1])
    sliding = window is not None and 0 < window < end
    if sliding:
        centres = np.linspace(window / 2, end - window / 2, points)
        lo, hi = centres - window / 2, centres + window / 2
    else:
        edges = np.linspace(0, end, points + 1)
        lo, hi = edges[:-1], edges[1:]
    x = np.concatenate([lo, hi])
    at = np.minimum(np.searchsorted(ends, x, side="left"), len(files) - 1)  # the shard holding each edge
    task = remote_task(_group_cum_at)
    refs, masks = [], []
    for k, f in enumerate(files):
        m = at == k
        if m.any():
            refs.append(task.remote(f, groups, int(starts[k]), prefix[k].tolist(), x[m]))
            masks.append(m)
    cum = np.zeros((len(groups), len(x)))
    for m, vals in zip(masks, get(refs)):
        cum[:, m] = np.asarray(vals).reshape(len(groups), -1)
    n = len(lo)
    return {g: list((cum[i, n:] - cum[i, :n]) / (hi - lo)) for i, g in enumerate(groups)}


__all__ = ["KEY_COLUMNS", "LINEAGE_COLUMNS", "Summaries", "stream_series", "summarize", "summarize_shards",
           "weighted_keys", "window_check"]
