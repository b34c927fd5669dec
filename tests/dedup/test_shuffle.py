"""Tests of curate.dedup.shuffle and the bucket sizing: the bucket count follows the input size, every reduce
task's input stays within the bucket bound (plus at most one group), and the result does not depend on the
bucket count."""

from __future__ import annotations

import glob

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curate import dedup
from curate.dedup import shuffle
from curate.dedup.files import bucket_count, key_bucket, node_bucket
from curate.recipe import DedupConfig, MinHashConfig
from curate.shuffle_files import read_split, write_split
from tests.test_dedup import _write_parts, planted_corpus

TINY = 4096  # bytes of shuffle rows per bucket: a few KB, so a small corpus needs many buckets


def test_bucket_count_follows_the_bytes_and_never_drops_below_the_cpus():
    assert bucket_count(0, 4) == 4
    assert bucket_count(12 * TINY, 4, TINY) == 12
    assert bucket_count(12 * TINY + 1, 4, TINY) == 16  # a multiple of the CPUs: no half-empty last wave
    assert bucket_count(10 * TINY, 4, TINY) == 12
    assert bucket_count(10 * TINY + 1, 1, TINY) == 11
    assert bucket_count(10, 0, TINY) == 1


def test_buckets_are_hash_ranges():
    h = np.array([0, (1 << 63) - 1, 1 << 63, (1 << 64) - 1], dtype=np.uint64)
    assert key_bucket(h, 2).tolist() == [0, 0, 1, 1]
    assert key_bucket(h, 1).tolist() == [0, 0, 0, 0]
    uid = np.arange(100_000, dtype=np.int64) + (7 << 32)  # one partition's uids spread over all buckets
    counts = np.bincount(node_bucket(uid, 8), minlength=8)
    assert counts.min() > 0.9 * len(uid) / 8


def _lsh_buckets(tmp, docs, parts: int) -> tuple[int, list[pa.Table], list]:
    mh = MinHashConfig()
    files = sorted(_write_parts(tmp, docs, parts=parts, minhash=mh))
    est = sum(shuffle.lsh_bytes(pq.read_metadata(f), mh.bands) for f in files)
    nb = bucket_count(est, 1, TINY)
    out = str(tmp / "d")
    for i, f in enumerate(files):
        shuffle.lsh_map(f, i, nb, mh.bands, out, after_exact=False)
    buckets = [read_split(f"{out}/lsh", r) for r in range(nb)]
    for r in range(nb):
        shuffle.lsh_reduce(r, out)
    edges = sorted(glob.glob(f"{out}/edges/*.parquet"))
    return nb, buckets, edges


def test_lsh_reduce_input_is_bounded_and_bucket_count_grows_with_the_input(tmp_path):
    small = planted_corpus(bases=8, distractors=8, seed=5)
    large = planted_corpus(bases=32, distractors=32, seed=5)  # 4x the documents
    nb_s, buckets_s, _ = _lsh_buckets(tmp_path / "s", small, parts=2)
    nb_l, buckets_l, edges = _lsh_buckets(tmp_path / "l", large, parts=4)
    assert nb_l >= 3 * nb_s > 3
    for buckets in (buckets_s, buckets_l):
        sizes = []
        for t in buckets:
            if t is None:
                continue
            # the estimate's row size is the real one (plus Arrow's validity bitmaps)
            assert t.num_rows * shuffle.LSH_ROW_BYTES <= t.nbytes <= 1.1 * t.num_rows * shuffle.LSH_ROW_BYTES
            band, key = t["band"].to_numpy(), t["key"].to_numpy()
            _, group = np.unique(np.stack([band.astype(np.uint64), key]), axis=1, return_counts=True)
            # a bucket exceeds the target only by hash-range noise and its largest group, never by the corpus
            rows_bytes = t.num_rows * shuffle.LSH_ROW_BYTES
            assert rows_bytes <= 1.5 * TINY + group.max() * shuffle.LSH_ROW_BYTES, (rows_bytes, group.max())
            sizes.append(rows_bytes)
        assert np.mean(sizes) <= TINY
    # the bucketed edges are the edges of one bucket
    one = tmp_path / "one"
    out = str(one / "d")
    files = sorted(glob.glob(str(tmp_path / "l" / "parts" / "*.dedup.parquet")))
    for i, f in enumerate(files):
        shuffle.lsh_map(f, i, 1, MinHashConfig().bands, out, after_exact=False)
    shuffle.lsh_reduce(0, out)
    def pairs(fs):
        t = pa.concat_tables([pq.read_table(f) for f in fs])
        return set(zip(t["src"].to_pylist(), t["dst"].to_pylist()))
    assert pairs(edges) == pairs([f"{out}/edges/b00000.parquet"])


def test_exact_estimate_from_the_footer_matches_the_shuffle_rows(tmp_path):
    docs = planted_corpus(bases=8, distractors=8, seed=6)
    files = sorted(_write_parts(tmp_path, docs, parts=2, minhash=None))
    est = sum(shuffle.exact_bytes(pq.read_metadata(f)) for f in files)
    out = str(tmp_path / "d")
    nb = bucket_count(est, 1, TINY)
    for i, f in enumerate(files):
        shuffle.exact_map(f, i, nb, {"web": 0}, out)
    real = sum(t.nbytes for r in range(nb) if (t := read_split(f"{out}/exact/map", r)) is not None)
    assert 0.5 * real <= est <= 2 * real, (est, real)


def test_find_duplicates_takes_more_buckets_for_more_input_with_the_same_result(ray_session, tmp_path):
    docs = planted_corpus(bases=16, distractors=16, seed=8)
    docs += [("wiki", "wiki:" + d[4:], t.upper()) for _, d, t in docs[::7]]
    cfg = DedupConfig(minhash=MinHashConfig())
    prio = {"wiki": 0, "web": 1}
    files = _write_parts(tmp_path / "a", docs, parts=3, minhash=MinHashConfig())
    # many small buckets as Ray tasks, the same buckets in one task (the small-dedup path), one forced bucket
    s_tiny = dedup.find_duplicates(files, cfg=cfg, priority=prio, out_dir=str(tmp_path / "tiny"), bucket_bytes=1024,
                                   one_task_bytes=0)
    s_fused = dedup.find_duplicates(files, cfg=cfg, priority=prio, out_dir=str(tmp_path / "fused"), bucket_bytes=1024)
    s_one = dedup.find_duplicates(files, cfg=cfg, priority=prio, out_dir=str(tmp_path / "one"), num_buckets=1)
    b = s_tiny["buckets"]
    assert b["exact"] > 2 and b["lsh"] > 2 and b["components"] > 2 and b["rank"] > 2, b
    assert s_fused["buckets"]["lsh"] > 2
    assert s_one["buckets"]["lsh"] == 1
    for other, s in (("fused", s_fused), ("one", s_one)):
        assert dedup.read_removed(tmp_path / "tiny").equals(dedup.read_removed(tmp_path / other))
        assert {k: v for k, v in s_tiny.items() if k != "buckets"} == {k: v for k, v in s.items() if k != "buckets"}
    for name in ("tiny", "fused", "one"):  # byte-identical removal files, whatever the buckets
        got = sorted(glob.glob(str(tmp_path / name / "removed" / "f*.parquet")))
        assert len(got) == len(files)
    for other in ("fused", "one"):
        for a, c in zip(sorted(glob.glob(str(tmp_path / "tiny" / "removed" / "*"))),
                        sorted(glob.glob(str(tmp_path / other / "removed" / "*"))), strict=True):
            assert open(a, "rb").read() == open(c, "rb").read(), a


def test_a_small_dedup_runs_in_one_ray_task_and_a_larger_one_in_many(ray_session, tmp_path, monkeypatch):
    """Up to ``one_task_bytes`` of estimated shuffle the steps run inside one task; above it, one task per bucket
    and per group of files. Counted on the remote functions the driver submits."""
    from curate import raytasks
    from curate.dedup import driver

    docs = planted_corpus(bases=8, distractors=8, seed=9)
    files = _write_parts(tmp_path / "a", docs, parts=3, minhash=MinHashConfig())
    cfg = DedupConfig(minhash=MinHashConfig())
    submitted: list[str] = []
    real = raytasks.remote_task

    def spy(fn, **options):
        submitted.append(fn.__name__)
        return real(fn, **options)

    monkeypatch.setattr(raytasks, "remote_task", spy)
    small = dedup.find_duplicates(files, cfg=cfg, priority={"web": 0}, out_dir=str(tmp_path / "s"))
    assert submitted == ["_steps_in_one_task"], submitted
    submitted.clear()
    est = sum(shuffle.exact_bytes(pq.read_metadata(f)) + shuffle.lsh_bytes(pq.read_metadata(f), MinHashConfig().bands)
              for f in files)
    large = dedup.find_duplicates(files, cfg=cfg, priority={"web": 0}, out_dir=str(tmp_path / "l"),
                                  one_task_bytes=est - 1)
    assert "_steps_in_one_task" not in submitted and len(submitted) > 10, submitted
    assert driver.ONE_TASK_BYTES >= 1 << 20
    assert {k: v for k, v in small.items() if k != "buckets"} == {k: v for k, v in large.items() if k != "buckets"}
    assert dedup.read_removed(tmp_path / "s").equals(dedup.read_removed(tmp_path / "l"))


def _exact_bucket(out: str, *, files: int, rows: int, seed: int) -> pa.Table:
    """Map files of exact bucket 0 (the map's schema): distinct hashes, and copies of some within and across files,
    with ties in priority and doc_id that only the later sort keys break."""
    rng = np.random.default_rng(seed)
    parts = []
    for i in range(files):
        h = rng.integers(1, 1 << 62, size=rows, dtype=np.uint64)
        copy = rng.random(rows) < 0.1  # a tenth are copies of a few shared texts
        h[copy] = rng.integers(1, 40, size=int(copy.sum())).astype(np.uint64)
        uid = (np.int64(i) << 32) + np.arange(rows, dtype=np.int64)
        t = pa.table({"uid": uid, "doc_id": pa.array([f"d{k % 7}" for k in range(rows)]),
                      "source": pa.array(["web" if k % 3 else "wiki" for k in range(rows)]),
                      "subset": pa.array([""] * rows), "nbytes": pa.array(np.full(rows, 10, np.int64)),
                      "tokens": pa.array(np.full(rows, 3, np.int64)), "content_hash": pa.array(h),
                      "prio": pa.array(rng.integers(0, 2, size=rows).astype(np.int32)),
                      "file": pa.array(np.full(rows, i, np.int32))})
        write_split(t, np.zeros(rows, np.int64), 1, f"{out}/exact/map", f"f{i:06d}")
        parts.append(t)
    return pa.concat_tables(parts)


def _exact_removed_whole(t: pa.Table) -> dict[int, pa.Table]:
    """The reference: the whole bucket sorted by (content_hash, prio, doc_id, uid), every row after the first of
    its hash removed, per file in sorted order."""
    t = t.take(pa.compute.sort_indices(t, sort_keys=[(k, "ascending") for k in
                                                      ("content_hash", "prio", "doc_id", "uid")]))
    h = t["content_hash"].to_numpy()
    first = np.r_[True, h[1:] != h[:-1]]
    keeper = np.maximum.accumulate(np.where(first, np.arange(len(h)), 0))
    rm = np.flatnonzero(~first)
    out = pa.table({"uid": t["uid"].take(rm), "doc_id": t["doc_id"].take(rm), "source": t["source"].take(rm),
                    "subset": t["subset"].take(rm), "reason": pa.array([dedup.EXACT] * len(rm)),
                    "dup_of": t["uid"].take(keeper[rm]), "dup_of_source": t["source"].take(keeper[rm]),
                    "nbytes": t["nbytes"].take(rm), "tokens": t["tokens"].take(rm)}).cast(dedup.REMOVED_SCHEMA)
    f = t["file"].to_numpy()[rm]
    return {int(i): out.filter(pa.array(f == i)) for i in np.unique(f)}


def test_exact_reduce_holds_one_map_file_and_the_copies_not_the_bucket_16(tmp_path, monkeypatch):
    """The exact reduce reads the bucket's hashes, then one map file at a time keeping only the rows whose hash
    occurs twice: the Arrow memory it holds after any read stays under half of the bucket's (before #16 it held
    every map file at once), and the removals are those of sorting the whole bucket, byte for byte."""
    out = str(tmp_path / "d")
    bucket = _exact_bucket(out, files=8, rows=20_000, seed=3)
    held = []
    read = shuffle.read_split_one

    def spy(*a, **k):
        t = read(*a, **k)
        held.append(pa.total_allocated_bytes())
        return t

    monkeypatch.setattr(shuffle, "read_split_one", spy)
    base = pa.total_allocated_bytes()
    n = shuffle.exact_reduce(0, out)
    monkeypatch.undo()
    assert max(held) - base < bucket.nbytes / 2, (max(held) - base, bucket.nbytes)
    assert len(held) == 16  # the hashes of every file, then each file once
    want = _exact_removed_whole(bucket)
    assert n == sum(t.num_rows for t in want.values()) > 0
    got = {i: t for i in range(8) if (t := read_split(f"{out}/exact/removed", i)) is not None}
    assert sorted(got) == sorted(want)
    for i, t in got.items():
        assert t.equals(want[i]), i
