"""The benchmark harness at a tiny size, so it cannot rot: corpus builder, both pipelines, memory sampling, report.

Needs the real samples (``real_data`` fixture) and the ``bench`` extra (datatrove); skips cleanly without them.
"""

from __future__ import annotations

import importlib.util
import json
import random

import pyarrow.parquet as pq
import pytest

from bench import corpus as bc

pytestmark = pytest.mark.skipif(importlib.util.find_spec("datatrove") is None,
                                reason="needs the bench extra: pip install -e '.[bench]'")


def test_perturbations_make_near_and_exact_duplicates():
    rng = random.Random(0)
    text = " ".join(f"w{i}" for i in range(400))
    nd = bc.near_dup(text, rng)
    assert nd != text
    a, b = text.split(), nd.split()
    sh = lambda w: {tuple(w[i:i + 5]) for i in range(len(w) - 4)}  # noqa: E731
    j = len(sh(a) & sh(b)) / len(sh(a) | sh(b))
    assert 0.6 < j < 1.0  # near, not exact, and above the 14x8 LSH threshold region
    mixed = bc.remix("A one. A two. A three. A four.", "B one. B two. B three. B four.", "sentence", rng)
    units = mixed.split(" A ")
    assert "A one." in mixed and mixed.count("B ") == 2 and units


def test_corpus_is_deterministic_and_native(real_data, tmp_path):
    a = bc.build("prose", 1, seed=3, real=real_data, root=tmp_path / "a")
    b = bc.build("prose", 1, seed=3, real=real_data, root=tmp_path / "b")
    fa = sorted(p.relative_to(a) for p in a.rglob("*.parquet"))
    assert fa == sorted(p.relative_to(b) for p in b.rglob("*.parquet"))
    for f in fa:
        assert pq.read_table(a / f).equals(pq.read_table(b / f))
    info = json.loads((a / "corpus.json").read_text())
    assert 0.8e6 < info["text_bytes"] < 1.6e6
    kinds = info["sources"]["wikipedia"]["kinds"]
    assert {"original", "remix"} <= set(kinds)
    wiki = pq.read_table(a / "wikipedia" / "part-00000.parquet")
    assert set(wiki.column_names) >= {"id", "url", "title", "text"}
    assert wiki["id"].to_pylist() == list(dict.fromkeys(wiki["id"].to_pylist()))  # ids unique per copy


@pytest.mark.slow  # ~40 s on an idle 2-core machine (Ray start-up + datatrove's executors); minutes under load
@pytest.mark.timeout(600)
def test_smoke_pipeline_and_report(real_data):
    from bench.__main__ import cmd_smoke

    out = cmd_smoke(size_mb=1)
    r = out["run"]
    assert r["input_mb"] > 0.5
    for side in ("curate", "datatrove"):
        s = r[side]
        assert s["mb_s_core"] > 0 and s["memory"]["samples"] > 0 and s["memory"]["cpu_s"] > 0
        assert s["tokens"] > 0
    assert r["curate"]["memory"]["max_one_mb"]["ray_worker"] > 0
    assert set(r["curate"]["phases_s"]) >= {"parts", "dedup", "mix", "shards"}
    assert r["ratio"] > 0
    assert "## Full pipeline: curate vs datatrove" in out["report"] and "| mixed |" in out["report"]


def test_memory_append_keeps_rows_at_other_sizes(tmp_path):
    """`python -m bench memory --memory-sizes 4000 --append` adds the 4 GB row to the existing table."""
    from bench.__main__ import cmd_memory

    def run(size: float, docs: int, worker_mb: float) -> dict:
        mem = {"max_one_mb": {"driver": 260.0, "ray_worker": worker_mb}, "sum_mb": {"total": 2 * worker_mb}}
        return {"variant": "mixed", "size_mb": size, "input_mb": size, "cores": 2, "corpus": {"docs": docs},
                "curate": {"wall_s": 10.0, "ray_start_s": 1.0, "run_s": 9.0, "mb_s_core": 1.0, "phases_s": {},
                           "memory": mem}, "load_before": [1, 1, 1], "load_after": [1, 1, 1], "date": "d"}

    class Runs:
        def __init__(self, table: dict[float, dict]) -> None:
            self.table = table

        def get(self, variant: str, size: float, cores: int) -> dict:
            return self.table[size]

    cmd_memory(tmp_path, Runs({100.0: run(100, 1000, 1000.0), 1000.0: run(1000, 10000, 1100.0)}),
               sizes=[100, 1000], cores=2)
    out = cmd_memory(tmp_path, Runs({4000.0: run(4000, 40000, 1150.0)}), sizes=[4000], cores=2, append=True)
    assert [r["size_mb"] for r in out["rows"]] == [100, 1000, 4000]
    assert out["bytes_per_doc_growth"]["ray_worker"] == round(150 * 1e6 / 39000, 1)
    replaced = cmd_memory(tmp_path, Runs({1000.0: run(1000, 10000, 999.0)}), sizes=[1000], cores=2, append=True)
    assert [r["memory"]["max_one_mb"]["ray_worker"] for r in replaced["rows"]] == [1000.0, 999.0, 1150.0]
    fresh = cmd_memory(tmp_path, Runs({100.0: run(100, 1000, 1000.0)}), sizes=[100], cores=2)
    assert [r["size_mb"] for r in fresh["rows"]] == [100]


def test_decontaminate_bench_smoke(real_data, tmp_path):
    from bench import bench_decontaminate as bd
    from bench import report

    if not (real_data.parent / "evals" / "PROVENANCE.md").is_file():
        pytest.skip("eval sets not found next to the real samples")
    r = bd.run(real_data, real_data.parent / "evals", max_rows=20, repeats=1)
    assert r["index"]["ngrams"] > 500_000 and r["index"]["bytes_per_million_ngrams"] < 20e6
    assert r["parts_cpu_s"]["with"] > r["stage_cpu_s"] > 0
    assert "refinedweb" not in r["dropped"] and "wikipedia" not in r["dropped"]
    (tmp_path / "decontaminate_bench.json").write_text(json.dumps(r))
    text = report.render(tmp_path)
    assert "## Decontamination" in text and "bytes per million indexed n-grams" in text


@pytest.mark.slow  # two curate child processes (a full run and a remix) on a 1 MB corpus: ~1-3 min
def test_remix_bench_smoke(real_data, tmp_path):
    from bench import report
    from bench.bench_remix import bench_remix

    r = bench_remix(1, cores=2, root=tmp_path / "corpus", work=tmp_path / "work")
    assert r["remix"]["reused"]["parts"] > 0 and r["remix"]["reused"]["dedup"] == "reused"
    assert r["remix"]["phases_s"]["parts"] < r["full"]["phases_s"]["parts"]
    assert r["remix"]["tokens"] > 0 and r["full"]["tokens"] > 0 and len(r["load_before"]) == 3
    (tmp_path / "remix.json").write_text(json.dumps(r))
    text = report.render(tmp_path)
    assert "## Remix vs full run" in text and "of the full run's wall time" in text


def test_fixed_cost_bench_times_each_source_and_renders(tmp_path):
    """bench fixed's actor-side measurement runs in a fresh interpreter and names every source's stage set."""
    from bench import bench_fixed, report

    rec = bench_fixed.demo_recipe(tmp_path)
    parts = bench_fixed._child("parts", str(rec))
    assert set(parts["stages_s"]) == {"the-stack", "culturax", "gutenberg", "wikipedia", "refinedweb", "math"}
    assert parts["import_processor_s"] > 0 and all(v >= 0 for v in parts["stages_s"].values())
    run = {"import_s": 1.0, "ray_start_s": 4.0, "run_s": 6.0, "after_ray_s": 6.0, "wall_s": 11.0, "tokens": 1,
           "stats_phases": {"parts": 3.0, "report": 1.0}}
    text = "\n".join(report._fixed({"runs": [run], "after_ray_median_s": 6.0, "target_after_ray_s": 5.0,
                                    "date": "d", "cores": 2, "load_before": [1, 1, 1], "load_after": [1, 1, 1],
                                    "parts": parts, "ray": {}}))
    assert "**not met**" in text and "culturax" in text


def test_scale_corpus_is_deterministic_tiny_documents(real_data, tmp_path):
    """bench scale's corpus: the asked number of documents of 3 real sentences, the same for the same seed."""
    import pyarrow.compute as pc

    from bench import bench_scale as bs

    a = bs.build(2_500, seed=1, root=tmp_path / "a", real=real_data)
    b = bs.build(2_500, seed=1, root=tmp_path / "b", real=real_data)
    files = sorted((a / "web").glob("*.parquet"))
    assert [f.name for f in files] == [f.name for f in sorted((b / "web").glob("*.parquet"))]
    ta = pq.read_table(files[0])
    assert ta.equals(pq.read_table(b / "web" / files[0].name))
    assert ta.num_rows == 2_500 and ta.column_names == ["id", "text"]
    assert pc.count_distinct(ta["id"]).as_py() == 2_500
    pool = set(bs.sentences(real_data).to_pylist())
    first = ta["text"][0].as_py()
    assert sum(s in first for s in pool) >= 3  # built from real sentences (some contain others)
    info = json.loads((a / "corpus.json").read_text())
    assert info["docs"] == 2_500 and info["text_mb"] > 0


def test_scale_summary_judges_growth_of_the_largest_process():
    from bench.bench_scale import summarize

    def row(docs: int, peak: dict) -> dict:
        return {"docs": docs, "run_s": docs / 1e4, "peak_mb": peak}

    flat = summarize([row(1_000_000, {"driver": 300, "mix": 500, "process_partition": 600}),
                      row(4_000_000, {"driver": 320, "mix": 600, "process_partition": 1_500})])
    assert flat["target_met"] and flat["largest_growth"] == [1.2]  # the partition tasks are judged apart
    grows = summarize([row(1_000_000, {"driver": 300, "mix": 500}), row(4_000_000, {"driver": 320, "mix": 1_400})])
    assert not grows["target_met"] and grows["worst_kind"] == {"kind": "mix", "growth": 2.8}
    assert grows["doc_ratio"] == [4.0] and grows["wall_ratio"] == [4.0]


def test_scale_kinds_keep_idle_workers_apart_and_report_anonymous_memory_16():
    """A pooled worker between tasks (title IDLE) is its own kind, not Ray's footprint: it holds what the tasks it
    ran left (until session 7 it was counted in ``ray_system``, which then seemed to grow 2.4x per 4x documents)."""
    from bench.bench_scale import _kinds, summarize

    def mem(scale: float) -> dict:
        return {"max_one_mb": {"driver": 300, "ray_system": 80},
                "ray_task_max_mb": {"IDLE": 600 * scale, "DashboardAgent": 95, "write_shard": 700 * scale},
                "max_one_anon_mb": {"driver": 200, "ray_system": 40},
                "ray_task_max_anon_mb": {"IDLE": 480, "DashboardAgent": 56, "write_shard": 360}}

    assert _kinds(mem(1)) == {"driver": 300, "idle_worker": 600, "ray_system": 95, "write_shard": 700}
    assert _kinds(mem(1), anon=True) == {"driver": 200, "idle_worker": 480, "ray_system": 56, "write_shard": 360}
    rows = [{"docs": n, "run_s": 1.0, "peak_mb": _kinds(mem(k)), "peak_anon_mb": _kinds(mem(k), anon=True)}
            for n, k in ((1_000_000, 1), (4_000_000, 2))]
    s = summarize(rows)
    assert s["growth"]["write_shard"] == [2.0] and s["growth_anon"]["write_shard"] == [1.0]
    assert s["growth"]["idle_worker"] == [2.0] and s["worst_kind"]["growth"] == 2.0


def test_tree_sampler_splits_anonymous_memory_from_the_rss(tmp_path):
    """The sampler's anonymous peak (RSS less file-backed and shared pages) of a child that writes 200 MB of its
    own memory and maps a 100 MB file it reads: the file's pages are in the RSS, not in the anonymous peak."""
    import subprocess
    import sys

    from bench.pipeline import TreeSampler

    f = tmp_path / "big.bin"
    f.write_bytes(b"\1" * 100_000_000)
    code = ("import mmap, time; own = b'x' * 200_000_000; fh = open(%r, 'rb'); "
            "m = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ); s = sum(m[i] for i in range(0, len(m), 4096)); "
            "time.sleep(1.5)") % str(f)
    p = subprocess.Popen([sys.executable, "-c", code])
    with TreeSampler(p.pid, interval=0.1) as smp:
        p.wait()
    out = smp.summary()
    rss, anon = out["max_one_mb"]["driver"], out["max_one_anon_mb"]["driver"]
    assert anon >= 190 and rss - anon >= 95, (rss, anon)


def _bracketed_cell(before: list[float], d: float, after: list[float], cal: list[float]) -> dict:
    """A bracketed comparison as bench.pipeline.bench writes it: curate runs taking ``before`` and ``after``
    seconds after Ray (1 s Ray, 0.5 s imports each), datatrove ``d`` seconds after its 0.4 s imports,
    calibrations ``cal``."""
    def curate(t: float, side: str) -> dict:
        return {"wall_s": t + 1.5, "ray_start_s": 1.0, "import_s": 0.5, "mb_s_core": 1.0, "mb_per_cpu_s": 1.0,
                "memory": {"cpu_s": 2 * t, "sum_mb": {"total": 100}}, "phases_s": {"parts": t / 2}, "side": side}
    runs = [curate(t, "before") for t in before] + [curate(t, "after") for t in after]
    return {"variant": "mixed", "input_mb": 50.0, "tokenizer": "gpt-neox-20b.json",
            "load_before": [0.5, 0.5, 0.5], "load_after": [1.5, 1.5, 1.5],
            "curate": runs[0], "curate_runs": runs,
            "datatrove": {"wall_s": d + 0.4, "import_s": 0.4, "mb_s_core": 0.1, "mb_per_cpu_s": 0.1,
                          "memory": {"cpu_s": 1.5 * d, "sum_mb": {"total": 300}}, "stages_s": {"minhash": d / 3}},
            "calibration": [{"mean_s": c, "max_s": c, "load": 1.0} for c in cal]}


def test_compare_takes_the_median_of_curate_runs_on_both_sides_and_corrects_for_drift():
    """curate's seconds are the median of its runs before and after datatrove's (one run caught in a burst of
    load does not decide); with a machine that slowed 50 % during datatrove's run the calibrated ratio divides
    each run by the calibrations around its group, and drift says how far the speed moved."""
    from bench.pipeline import compare

    steady = compare(_bracketed_cell([8.0, 9.0], 100.0, [11.0, 30.0], [1.0, 1.0, 1.0, 1.0]))
    assert steady["curate_s"] == 10.0 and steady["datatrove_s"] == 100.0  # median of 8, 9, 11, 30
    assert steady["ratio"] == 10.0 and steady["ratio_calibrated"] == 10.0 and steady["drift"] == 0.0
    assert steady["ratio_cpu"] == round(150 / 20, 2)
    # the machine slows from 1.0 to 1.5 s per calibration while datatrove runs: curate's later runs are 1.5x
    # slower too, and datatrove's seconds are judged against the mean of its calibrations (1.25)
    slowed = compare(_bracketed_cell([8.0, 8.0], 125.0, [12.0, 12.0], [1.0, 1.0, 1.5, 1.5]))
    assert slowed["drift"] == 0.5
    assert slowed["ratio_calibrated"] == round(125.0 / 1.25 / 8.0, 2) == 12.5
    assert slowed["ratio"] == 12.5
    single = _bracketed_cell([8.0], 100.0, [], [])
    del single["curate_runs"], single["calibration"]
    one = compare(single)
    assert one["ratio"] == 12.5 and "ratio_calibrated" not in one and "drift" not in one


def test_pipeline_report_shows_every_curate_run_calibrations_and_the_stricter_verdict():
    from bench import report
    from bench.pipeline import compare

    fast_then_slow = _bracketed_cell([8.0, 8.0], 90.0, [9.0, 9.0], [1.0, 1.0, 2.0, 2.0])
    fast_then_slow.update(compare(fast_then_slow))
    assert fast_then_slow["ratio"] >= 10 > fast_then_slow["ratio_calibrated"]
    text = "\n".join(report._pipeline({"runs": [fast_then_slow]}))
    assert "| curate 1 (before) |" in text and "| curate 4 (after) |" in text
    row = next(line for line in text.splitlines() if line.startswith("| mixed | 50.0 | 8.00 / 8.00 / 9.00 / 9.00 |"))
    assert "1.00 → 1.00 → 2.00 → 2.00" in row and "100 %" in row and "**not met**" in row
    assert "mixed / gpt-neox-20b.json / curate 3 (after): parts 4.5" in text
    assert "mixed / gpt-neox-20b.json / datatrove: minhash 30.0" in text


def test_calibration_times_a_fixed_workload_on_every_core():
    from bench.pipeline import calibrate

    c = calibrate(2, repeats=2)
    assert len(c["runs_s"]) == 2 and 0 < min(c["runs_s"]) <= c["mean_s"] <= c["max_s"] < 60 and c["load"] >= 0


def test_datatrove_is_refused_the_rwkv_world_tokenizer_before_any_corpus_is_built(tmp_path):
    from bench.pipeline import bench

    for systems in (("datatrove",), ("curate", "datatrove")):
        with pytest.raises(ValueError, match="datatrove cannot use the RWKV World tokenizer"):
            bench("mixed", 1, tokenizer="rwkv-world", systems=systems, root=tmp_path / "corpus", work=tmp_path)
    assert not (tmp_path / "corpus").exists()
