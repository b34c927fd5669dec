"""Arrow helpers (curate/sources/arrow_utils.py)."""

from __future__ import annotations

import pyarrow as pa

from curate.sources import arrow_utils


def test_json_string_lists_sorts_dedups_and_unions():
    a = pa.array([["MIT", "Apache-2.0"], None, [], ["MIT"], None], pa.list_(pa.string()))
    b = pa.array([["MIT"], ["GPL-3.0-only", ""], None, None, None], pa.list_(pa.string()))
    out = arrow_utils.json_string_lists([a, b]).to_pylist()
    assert out == ['["Apache-2.0", "MIT"]', '["GPL-3.0-only"]', "[]", '["MIT"]', "[]"]
