"""The trim (issue 16): each member's closing sequence is cut so its tokens hit the target exactly.

Unit tests of :func:`curate.mix.core.trim_selection` / :func:`select_sequences` (exact totals, one trimmed
sequence, never an eos-only one, repeats never back to back, no extra pass), and an end-to-end run over the real
Gutenberg books with no ``max_doc_tokens``: the audit passes and the share is exact to the token.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.io_utils import read_json
from curate.layout import RunLayout
from curate.mix.core import (
    MIN_TRIMMED_TOKENS,
    interleave,
    select_documents,
    select_sequences,
    trim_selection,
    window_deviation_bound,
    window_max_deviation,
)


def _check(lengths: np.ndarray, target: int, idx: np.ndarray, ep: np.ndarray, take: np.ndarray) -> None:
    assert idx.shape == ep.shape == take.shape
    assert (take >= 1).all() and (take <= lengths[idx]).all()
    cut = take < lengths[idx]
    assert cut.sum() <= 1, "at most one sequence is trimmed"
    assert (take[cut] >= MIN_TRIMMED_TOKENS).all(), "a trim keeps at least one content token and its eos"
    if lengths.size > 1:
        assert not (idx[1:] == idx[:-1]).any(), "a repeat is never adjacent to itself"
    if idx.size:
        assert np.bincount(idx).max() <= -(-target // int(lengths.sum())), "no sequence gets an extra pass"


@pytest.mark.parametrize("seed", range(6))
def test_selection_is_exact_to_the_token_with_long_documents(seed) -> None:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2_000, 60_000, size=40)  # books: each far longer than the tolerance
    for target in (int(lengths.sum() * f) for f in (0.013, 0.21, 0.5, 1.0, 1.37, 2.9)):
        idx, ep, take = select_sequences(lengths, target, seed=seed, max_epochs=3)
        _check(lengths, target, idx, ep, take)
        assert int(take.sum()) == target


def test_an_exact_selection_is_left_as_it_is() -> None:
    lengths = np.full(50, 10, dtype=np.int64)
    idx, ep = select_documents(lengths, 230, seed=1, max_epochs=1)
    assert int(lengths[idx].sum()) == 230
    idx2, ep2, take = trim_selection(lengths, idx, ep, 230)
    assert np.array_equal(idx2, idx) and np.array_equal(ep2, ep) and np.array_equal(take, lengths[idx])


def test_under_by_g_appends_the_shortest_unused_sequence_long_enough() -> None:
    lengths = np.array([100, 30, 500, 70, 45], dtype=np.int64)
    idx, ep, take = trim_selection(lengths, np.array([1]), np.array([0], np.int32), 100)
    # gap 70: 70 (whole) is the best fit, no trim
    assert idx.tolist() == [1, 3] and take.tolist() == [30, 70]
    idx, ep, take = trim_selection(lengths, np.array([1]), np.array([0], np.int32), 110)
    # gap 80: the shortest unused one of at least 81 tokens is 100, trimmed to 80
    assert idx.tolist() == [1, 0] and take.tolist() == [30, 80] and ep.tolist() == [0, 0]


def test_over_by_d_cuts_the_closing_sequence() -> None:
    lengths = np.array([100, 30, 500, 70], dtype=np.int64)
    idx, ep, take = trim_selection(lengths, np.array([1, 2]), np.array([0, 0], np.int32), 300)
    assert idx.tolist() == [1, 2] and take.tolist() == [30, 270]


def test_a_one_token_gap_never_makes_an_eos_only_sequence() -> None:
    lengths = np.array([40, 60, 90], dtype=np.int64)
    # partial pass [40] wants 41: give 40 back and trim the 60 to 41
    idx, ep, take = trim_selection(lengths, np.array([0]), np.array([0], np.int32), 41)
    assert idx.tolist() == [1] and take.tolist() == [41]
    rng = np.random.default_rng(0)
    misses = 0
    for t in range(3_000):
        n = int(rng.integers(1, 8))
        lens = rng.integers(1, 200, size=n)
        target = int(rng.integers(1, 3 * int(lens.sum())))
        idx, ep, take = select_sequences(lens, target, seed=t, max_epochs=4)
        _check(lens, target, idx, ep, take)
        gap = target - int(take.sum())
        assert gap in (0, 1), "only a one-token gap can be left, where no sequence can be traded for a longer one"
        misses += gap
    assert misses < 60, "a one-token miss is rare"


def test_a_member_of_one_document_and_repeats() -> None:
    lengths = np.array([1_000], dtype=np.int64)
    idx, ep, take = select_sequences(lengths, 2_345, seed=3, max_epochs=3)
    assert idx.tolist() == [0, 0, 0] and ep.tolist() == [0, 1, 2] and take.tolist() == [1_000, 1_000, 345]
    # repeats with many documents: the trimmed one is in the last (partial) pass, never next to itself
    lengths = np.random.default_rng(5).integers(500, 5_000, size=7)
    target = int(2.5 * lengths.sum()) + 1
    idx, ep, take = select_sequences(lengths, target, seed=9, max_epochs=3)
    _check(lengths, target, idx, ep, take)
    assert int(take.sum()) == target and int(ep[take < lengths[idx]][0]) == 2


def test_the_window_bound_holds_with_trimmed_streams() -> None:
    rng = np.random.default_rng(2)
    books = rng.integers(5_000, 50_000, size=30)
    web = rng.integers(50, 2_000, size=3_000)
    budget = 1_000_000
    streams = []
    for lens, target, seed in ((books, budget // 5, 1), (web, budget - budget // 5, 2)):
        idx, _ep, take = select_sequences(lens, target, seed=seed, max_epochs=2)
        streams.append(take)
    assert sum(int(s.sum()) for s in streams) == budget
    order = interleave(streams, [0, 1], seed=4)
    out_lens = np.array([streams[m][p] for m, p in order])
    out_grp = order[:, 0]
    w = 100 * int(max(s.max() for s in streams))
    w = min(w, budget)
    got = window_max_deviation(out_lens, out_grp, [0.2, 0.8], w)
    assert got <= window_deviation_bound(streams, [0, 1], w) + 1e-9


@pytest.mark.slow
@pytest.mark.real
def test_whole_real_books_hit_their_share_exactly_without_max_doc_tokens(real_data, tmp_path, ray_session) -> None:
    from curate import audit as audit_mod
    from curate.pipeline import parse_recipe
    from curate.runner import run

    data = {
        "name": "books-trim", "seed": 7, "output": str(tmp_path / "run"), "tokenizer": "rwkv-world",
        "budget_tokens": 400_000, "max_epochs": 2, "tolerance_pp": 0.1,  # no max_doc_tokens: whole books
        "sources": {
            "gutenberg": {"format": "pg19", "paths": [str(real_data / "gutenberg.parquet")], "license": "public-domain"},
            "wikipedia": {"format": "wikipedia", "paths": [str(real_data / "wikipedia.parquet")]},
        },
        "mixture": {"books": {"share": 0.2, "sources": {"gutenberg": 1}},
                    "wiki": {"share": 0.8, "sources": {"wikipedia": 1}}},
        "shards": {"format": "megatron", "max_tokens": 150_000},
    }
    res = run(parse_recipe(data, base_dir=tmp_path), quiet=True)
    result = audit_mod.audit(res.run_dir)
    assert result["violations"] == [], result["violations"]
    assert result["total_tokens"] == 400_000
    assert result["sources"]["gutenberg"]["tokens"] == 80_000, "the share is exact to the token"
    plan = read_json(RunLayout(res.run_dir).mix_plan)
    trims = plan["trims"]
    assert trims and {t["member"] for t in trims} <= {"gutenberg", "wikipedia"}
    assert any(t["member"] == "gutenberg" for t in trims)
    assert [t for t in result["trims"] if "keeps" in t["message"]]
    # the lineage row of the trimmed book holds its kept tokens; the order file marks it
    lin = pa.concat_tables([pq.read_table(res.run_dir / "shards" / s["lineage"]) for s in res.manifest["shards"]])
    orders = pa.concat_tables([pq.read_table(RunLayout(res.run_dir).order(i)) for i in range(plan["n_shards"])])
    assert orders["trimmed"].to_pylist().count(True) == len(trims)
    for t in trims:
        rows = lin.filter(pa.compute.and_(pa.compute.equal(lin["uid"], t["uid"]),
                                          pa.compute.equal(lin["tokens"], t["tokens"])))
        assert rows.num_rows >= 1
