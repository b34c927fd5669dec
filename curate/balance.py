"""Balancing a group or member over the values of a column (``balance:``): temperature shares with caps.

Pure numpy over token counts; nothing reads files or starts Ray. ``curate.mix.task`` calls
:func:`plan_scope` inside the mix task, ``curate.planner`` calls it on estimates, and the audit compares the
lineage with the result (the plan's ``balance`` section).

The arithmetic
--------------
A scope (a group, or one member) has a token target ``T`` and values ``v`` (languages, subsets, or the
values of a ``meta`` key) with token supplies ``n_v`` (eos included, after filters and dedup):

1. ``min_tokens`` drops every value with ``n_v < min_tokens`` (each is reported, with its reason).
2. Temperature shares ``p_v = n_v**α / Σ_u n_u**α``: ``α = 1`` follows supply, ``α = 0`` gives every value
   the same share, ``α ≈ 0.3`` (mT5, XLM-R, BLOOM) lifts the small values without drowning the large ones.
3. Caps (water-filling). A value may give at most ``c_v = floor(n_v * max_epochs)`` tokens. Every value whose
   share of what is left exceeds its cap is fixed at its cap; the rest of ``T`` is re-split over the free
   values by their ``n_v**α``; repeated until no free value is over its cap (each round fixes at least one,
   so at most one round per value). The free values keep the ratios of step 2 among themselves.
4. Integers. The free values' tokens are split by largest remainder (ties to the earlier value in sorted
   order), so the value targets add up to ``T`` exactly; a free value rounded one token over its cap is fixed
   at the cap and step 3 repeats.

If ``T > Σ c_v`` no split exists: :func:`water_fill` says so (``feasible = False``) and the caller reports a
shortfall. Everything is deterministic: the values are sorted, and nothing depends on worker count.

A group scope pools all its members' documents: the value target is split over the members holding that
value in proportion to their supply of it (α = 1, the same water-filling with per-member caps), so each
(member, value) cell is one stream of the mix, selected token-exactly like a member.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from curate.mix.core import _split_budget

#: What a document with no value counts as: ``und`` for languages (as in ``route_by_lang``), ``-`` otherwise.
NULL_LANG = "und"
NULL_VALUE = "-"


def null_value(by: str) -> str:
    return NULL_LANG if by == "lang" else NULL_VALUE


def water_fill(total: int, weights: Sequence[float] | np.ndarray,
               caps: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """Split ``total`` tokens by ``weights`` under per-value ``caps``, redistributing what a cap cuts.

    Parameters
    ----------
    total : int
        Tokens to split (>= 0).
    weights : array of float
        ``n_v ** α`` per value (> 0 for a value that may receive tokens).
    caps : array of int
        Most tokens each value may give.

    Returns
    -------
    targets : ndarray of int64
        Adds up to ``min(total, caps.sum())`` exactly; ``targets <= caps``.
    capped : ndarray of bool
        Values held at their cap.
    feasible : bool
        False when ``total > caps.sum()`` (every value is then at its cap and the sum is short).
    """
    w = np.asarray(weights, dtype=np.float64)
    c = np.asarray(caps, dtype=np.int64)
    if w.shape != c.shape:
        msg = f"weights and caps differ in shape: {w.shape} vs {c.shape}"
        raise ValueError(msg)
    if (w < 0).any() or (c < 0).any():
        msg = "weights and caps must be >= 0"
        raise ValueError(msg)
    total = int(total)
    if total < 0:
        msg = f"total must be >= 0, got {total}"
        raise ValueError(msg)
    n = len(w)
    targets = np.zeros(n, dtype=np.int64)
    capped = np.zeros(n, dtype=bool)
    usable = (w > 0) & (c > 0)
    if total >= int(c[usable].sum()):
        targets[usable] = c[usable]
        capped[usable] = True
        return targets, capped, total == int(c[usable].sum())
    free = usable.copy()
    while free.any():
        rest = total - int(c[capped].sum())
        wf = w[free]
        exact = rest * wf / wf.sum()
        over = exact > c[free]
        if over.any():  # fix every value over its cap at once (their exact shares only grow as others fix)
            idx = np.flatnonzero(free)[over]
            capped[idx], free[idx] = True, False
            continue
        ints = _split_budget(rest, wf)  # largest remainder, ties to the earlier value
        over = ints > c[free]
        if over.any():  # a rounding up crossed the cap by one token
            idx = np.flatnonzero(free)[over]
            capped[idx], free[idx] = True, False
            continue
        targets[capped] = c[capped]
        targets[free] = ints
        return targets, capped, True
    # unreachable: the free set empties only when total >= caps.sum(), handled above
    targets[capped] = c[capped]
    return targets, capped, int(targets.sum()) == total


@dataclass(frozen=True)
class ValuePlan:
    """One value of a balanced scope. ``share`` is of the scope's tokens; ``epochs = target / supply``."""

    value: str
    supply: int
    temperature_share: float
    target: int
    share: float
    epochs: float
    capped: bool


@dataclass(frozen=True)
class ScopePlan:
    """The balance of one scope: value targets, dropped values, and per-member cell targets.

    ``cells`` maps ``member key -> {value: target tokens}``; ``dropped`` lists ``{value, supply, reason}``.
    ``feasible`` is False when the scope's target exceeds what its values may give within ``max_epochs``.
    """

    scope: str
    group: str
    by: str
    temperature: float
    min_tokens: int
    max_epochs: float
    target: int
    supply: int
    values: tuple[ValuePlan, ...]
    dropped: tuple[dict[str, Any], ...]
    cells: dict[str, dict[str, int]] = field(default_factory=dict)
    feasible: bool = True

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["values"] = [asdict(v) for v in self.values]
        d["dropped"] = list(self.dropped)
        return d


def scope_caps(cells: Mapping[str, Mapping[str, int]], *, min_tokens: int,
               max_epochs: float) -> tuple[dict[str, int], dict[str, int]]:
    """Supply and cap (most tokens within ``max_epochs``) per member, over the values ``min_tokens`` keeps."""
    per_value: dict[str, int] = {}
    for vals in cells.values():
        for v, n in vals.items():
            per_value[v] = per_value.get(v, 0) + int(n)
    kept = {v for v, n in per_value.items() if n >= min_tokens and n > 0}
    supply = {m: sum(int(n) for v, n in vals.items() if v in kept) for m, vals in cells.items()}
    caps = {m: sum(int(np.floor(int(n) * max_epochs)) for v, n in vals.items() if v in kept)
            for m, vals in cells.items()}
    return supply, caps


def plan_scope(scope: str, group: str, *, by: str, temperature: float, min_tokens: int, max_epochs: float,
               target: int, cells: Mapping[str, Mapping[str, int]]) -> ScopePlan:
    """Value and cell targets of one scope.

    Parameters
    ----------
    scope, group : str
        Names for the report (``group`` or ``group:member``).
    by, temperature, min_tokens, max_epochs
        The ``balance:`` settings (``max_epochs`` already defaulted to the recipe's).
    target : int
        Tokens the scope gives (the sum of its members' planned targets).
    cells : mapping
        ``member key -> {value: supply tokens}`` (eos included); a member scope has one member.

    Returns
    -------
    ScopePlan
        See the module docstring for the arithmetic.
    """
    members = list(cells)
    per_value: dict[str, int] = {}
    for vals in cells.values():
        for v, n in vals.items():
            per_value[v] = per_value.get(v, 0) + int(n)
    values = sorted(per_value)
    dropped = tuple({"value": v, "supply": per_value[v],
                     "reason": f"supply {per_value[v]:,} tokens < min_tokens {min_tokens:,}"}
                    for v in values if 0 < per_value[v] < min_tokens)
    keep = [v for v in values if per_value[v] >= min_tokens and per_value[v] > 0]
    n = np.array([per_value[v] for v in keep], dtype=np.int64)
    cell_n = np.array([[int(cells[m].get(v, 0)) for m in members] for v in keep], dtype=np.int64).reshape(
        len(keep), len(members))
    cell_caps = np.floor(cell_n * float(max_epochs)).astype(np.int64)
    caps = cell_caps.sum(axis=1)
    weights = np.power(n.astype(np.float64), float(temperature)) if len(n) else np.zeros(0)
    tshare = weights / weights.sum() if len(n) else weights
    t_val, capped, feasible = water_fill(int(target), weights, caps)
    out_cells: dict[str, dict[str, int]] = {m: {} for m in members}
    for i, v in enumerate(keep):
        # pooled members: split the value's target by their supply of it (every cell then needs the same epochs)
        split, _, _ = water_fill(int(t_val[i]), cell_n[i].astype(np.float64), cell_caps[i])
        for j, m in enumerate(members):
            if cell_n[i, j] > 0:
                out_cells[m][v] = int(split[j])
    vplans = tuple(ValuePlan(value=v, supply=int(n[i]), temperature_share=float(tshare[i]), target=int(t_val[i]),
                             share=(int(t_val[i]) / int(target)) if target else 0.0,
                             epochs=(int(t_val[i]) / int(n[i])), capped=bool(capped[i]))
                   for i, v in enumerate(keep))
    return ScopePlan(scope=scope, group=group, by=by, temperature=float(temperature), min_tokens=int(min_tokens),
                     max_epochs=float(max_epochs), target=int(target), supply=int(n.sum()), values=vplans,
                     dropped=dropped, cells=out_cells, feasible=feasible)


def refine_selection(lengths: np.ndarray, idx: np.ndarray, ep: np.ndarray, target: int,
                     rounds: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Bring a selection closer to ``target`` by swapping documents of its partial pass (one value's cell).

    :func:`curate.mix.core.select_documents` ends within half of the shortest unused document of its target: fine
    for a member, coarse for a value of a few documents, whose tolerance is a share of its (small) scope. Each
    round finds, vectorized, the best single move among "swap a partial-pass document for an unused one",
    "add an unused one" and "remove one", and applies it if it shrinks ``|target - tokens|``; ties go to the
    earliest position and the shortest document, so the result is deterministic. Full passes are untouched,
    so no document exceeds the passes :func:`select_documents` allowed, and a document is never made adjacent
    to its own repeat.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    idx, ep = np.asarray(idx, dtype=np.int64).copy(), np.asarray(ep, dtype=np.int32).copy()
    n = lengths.size
    if idx.size == 0 or n < 2:
        return idx, ep
    full = int(target) // int(lengths.sum())
    if full * int(lengths.sum()) == int(target):
        return idx, ep  # no partial pass: the full passes are exact
    prev_last = int(idx[ep == full - 1][-1]) if full > 0 else -1
    part = list(idx[ep == full])
    for _ in range(rounds):
        gap = int(target) - int(lengths[idx[ep < full]].sum()) - int(lengths[part].sum())
        if gap == 0:
            break
        used = np.zeros(n, dtype=bool)
        used[part] = True
        out = np.flatnonzero(~used)
        out = out[np.argsort(lengths[out], kind="stable")]
        out_len = lengths[out]
        in_len = lengths[part]
        best = (abs(gap), None)
        if out.size:
            # add the unused document closest to the gap
            j = int(np.clip(np.searchsorted(out_len, gap), 0, out.size - 1))
            for jj in {j, max(j - 1, 0)}:
                e = abs(gap - int(out_len[jj]))
                if e < best[0]:
                    best = (e, ("add", None, jj))
            # swap: document at partial position i (length a) for unused b with b - a closest to the gap
            want = in_len + gap
            js = np.clip(np.searchsorted(out_len, want), 0, out.size - 1)
            jl = np.maximum(js - 1, 0)
            err_s = np.abs(want - out_len[js])
            err_l = np.abs(want - out_len[jl])
            pick = np.where(err_l <= err_s, jl, js)
            err = np.minimum(err_s, err_l)
            i = int(np.argmin(err))
            if int(err[i]) < best[0]:
                best = (int(err[i]), ("swap", i, int(pick[i])))
        if len(part) > 1:
            i = int(np.argmin(np.abs(in_len + gap)))  # removing a document of length close to -gap
            e = abs(gap + int(in_len[i]))
            if e < best[0]:
                best = (e, ("remove", i, None))
        move = best[1]
        if move is None:
            break
        kind, i, j = move
        before = list(part)
        if kind == "add":
            part.append(int(out[j]))
        elif kind == "swap":
            part[i] = int(out[j])
        else:
            part.pop(i)
        if part and part[0] == prev_last:
            if len(part) == 1:  # the only way left repeats the previous pass's last document back to back
                part = before
                break
            part[0], part[1] = part[1], part[0]
    keep = ep < full
    idx = np.concatenate([idx[keep], np.asarray(part, dtype=np.int64)])
    ep = np.concatenate([ep[keep], np.full(len(part), full, dtype=np.int32)])
    return idx, ep
