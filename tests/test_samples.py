"""Document samples and score histograms kept by the parts phase (issue 20), and ``curate inspect``."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate import samples as S
from curate.cli import main


def _docs(n: int, *, source: str = "web", seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    reasons = np.array(["quality:a", "quality:b", "license:x"])[rng.integers(0, 3, n)]
    return pa.table({
        "uid": pa.array(np.arange(n, dtype=np.int64)), "doc_id": pa.array([f"{source}:{i}" for i in range(n)]),
        "source": pa.array([source] * n), "subset": pa.array([""] * n),
        "text": pa.array([f"document {i} " + "x" * (i % 700) for i in range(n)], pa.large_string()),
        "nbytes": pa.array(np.full(n, 10, np.int64)), "lang": pa.array(["en"] * n),
        "q_a": pa.array(rng.random(n)), "drop_reason": pa.array(reasons),
    })


def test_sample_is_the_smallest_hashes_whatever_the_batches() -> None:
    t = _docs(19)
    whole = S.PartitionProfile("web")
    whole.dropped("quality", t, t["drop_reason"])
    split = S.PartitionProfile("web")
    for a, b in ((0, 5), (5, 6), (11, 8)):
        part = t.slice(a, b)
        split.dropped("quality", part, part["drop_reason"])
    assert whole.table().equals(split.table())
    got = whole.table()
    # per reason: exactly the SAMPLE_K (or fewer) documents with the smallest xxh3(doc_id)
    h = S.id_hash(t["doc_id"])
    for r in set(t["drop_reason"].to_pylist()):
        idx = [i for i, x in enumerate(t["drop_reason"].to_pylist()) if x == r]
        want = sorted(idx, key=lambda i: h[i])[: S.SAMPLE_K]
        rows = got.filter(pa.compute.equal(got["reason"], r))
        assert rows["uid"].to_pylist() == [t["uid"][i].as_py() for i in want]
    assert max(len(x) for x in got["text"].to_pylist()) <= S.TEXT_CHARS
    assert json.loads(got["scores"][0].as_py()).keys() == {"q_a"}


def test_histograms_merge_exactly_by_addition() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.lognormal(2, 2, 500), np.concatenate([rng.random(300), [np.nan, 0.0, -3.3]])
    ha, na = S.buckets(a)
    hb, nb = S.buckets(b)
    hab, nab = S.buckets(np.concatenate([a, b]))
    merged = {k: ha.get(k, 0) + hb.get(k, 0) for k in set(ha) | set(hb)}
    assert merged == hab and na + nb == nab == 1
    assert sum(hab.values()) == 802
    # two significant digits: bounded by the range in decades, not by the number of documents
    assert len(hab) < 180 * 10
    assert S.buckets(np.array([0.1234, 0.1249, 151.0]))[0] == {"0.12": 2, "1.5e+02": 1}


def test_inspect_prints_the_samples_of_the_demo_run_20(audit_run, capsys) -> None:
    *_, res = audit_run
    sample = pq.read_table(res.run_dir / "samples.parquet")
    assert S.samples_info(res.run_dir)["rows"] == sample.num_rows > 0
    reasons = set(sample["reason"].to_pylist())
    assert {"kept"} < reasons and any(r.startswith("license:") for r in reasons)

    assert main(["inspect", str(res.run_dir), "--reason", "license:", "-n", "1"]) == 0
    out = capsys.readouterr().out
    lic = sample.filter(pa.compute.starts_with(sample["reason"], "license:"))
    first = S.select_samples(lic, n=1)
    assert first.num_rows == len({(s, r) for s, r in zip(lic["source"].to_pylist(), lic["reason"].to_pylist())})
    for doc_id, text in zip(first["doc_id"].to_pylist(), first["text"].to_pylist()):
        assert doc_id in out.replace("\n", "") or doc_id[:40] in out
        assert text.split()[0] in out
    assert "· kept" not in out

    assert main(["inspect", str(res.run_dir), "--kept", "--source", "math", "-n", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("math · kept") == 2 and "license:" not in out

    assert main(["inspect", str(res.run_dir), "--source", "no-such-source"]) == 1
    assert "no sampled documents" in capsys.readouterr().out


def test_inspect_refuses_a_folder_that_is_not_a_run(tmp_path, capsys) -> None:
    assert main(["inspect", str(tmp_path)]) == 2
    assert "not a curate run directory" in capsys.readouterr().err


@pytest.mark.parametrize("k", [1, 3])
def test_merge_keeps_k_per_source_and_reason(tmp_path, k) -> None:
    paths = []
    for i, src in enumerate(["a", "a", "b"]):
        t = _docs(12, source=src, seed=i)
        t = t.set_column(0, "uid", pa.array(np.arange(12, dtype=np.int64) + (i << 32)))
        prof = S.PartitionProfile(src)
        prof.dropped("quality", t, t["drop_reason"])
        prof.kept(t.slice(0, 4))
        p = tmp_path / f"p{i}.samples.parquet"
        pq.write_table(prof.table(), p)
        paths.append(p)
    m = S.merge_samples(tmp_path, paths, k=k)
    groups = {}
    for s, r in zip(m["source"].to_pylist(), m["reason"].to_pylist()):
        groups[(s, r)] = groups.get((s, r), 0) + 1
    assert max(groups.values()) <= k and ("a", "kept") in groups
    assert S.merge_samples(tmp_path, list(reversed(paths)), k=k).equals(m)
