"""A partition's supply travels to the driver as arrays, and the driver's sums equal a plain Python group-by."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa

from curate.mix.prepare import supply_of
from curate.mix.task import _Supply


def _prepared(rng: np.random.Generator, n: int) -> pa.Table:
    values = rng.choice(np.array(["en", "de", "fr", ""], dtype=object), n)
    return pa.table({"member": pa.array(rng.integers(-1, 3, n)),  # -1: in no member
                     "value": pa.array([None if v == "" else v for v in values], pa.string()),
                     "bucket": pa.array(rng.integers(0, 16, n)), "tokens": pa.array(rng.integers(1, 500, n))})


def test_supply_is_arrays_and_sums_like_python():
    rng = np.random.default_rng(5)
    parts = [_prepared(rng, 3_000) for _ in range(4)]
    supply = _Supply(16)
    for t in parts:
        s = supply_of(t)
        assert all(isinstance(s[k], np.ndarray) and s[k].dtype == np.int64
                   for k in ("member", "bucket", "tokens", "docs", "value"))
        assert len(s["values"]) <= 3  # the distinct values, not one string per entry
        supply.add(s)
    supply.add(supply_of(parts[0]), sign=-1)  # a validation carve takes its supply away again
    tokens, docs = Counter(), Counter()
    for t in parts[1:]:
        for m, v, b, k in zip(*(t[c].to_pylist() for c in ("member", "value", "bucket", "tokens")), strict=True):
            if m >= 0:
                tokens[(m, v, b)] += k
                docs[(m, v, b)] += 1
    got_t = {(m, v, b): int(a[0, b]) for (m, v), a in supply.cells.items() for b in range(16) if a[1, b]}
    got_d = {(m, v, b): int(a[1, b]) for (m, v), a in supply.cells.items() for b in range(16) if a[1, b]}
    assert got_t == dict(tokens) and got_d == dict(docs)
    assert supply.member_tokens(1) == sum(k for (m, _v, _b), k in tokens.items() if m == 1)
