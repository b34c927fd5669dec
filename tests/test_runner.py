"""curate.runner helpers: the report refresh throttle, and what ``--force`` deletes (the run files and shard files
of every registered format, a plugin's included, from the registry)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import curate.report
from curate import runner

PLUGIN = "tests.plugins.raw_ids_writer"


@pytest.fixture
def fresh_registry(monkeypatch):
    """The built-in shard writers only, and the plugin writer's module unimported, for this test."""
    import curate.shard_formats as sf

    monkeypatch.setattr(sf, "WRITERS", {k: sf.WRITERS[k] for k in sf.FORMATS})
    monkeypatch.delitem(sys.modules, PLUGIN, raising=False)
    yield sf
    sys.modules.pop(PLUGIN, None)  # registered into this test's registry only: a later import registers again


def test_mid_run_report_refreshes_are_throttled_the_final_one_always_draws(tmp_path, monkeypatch) -> None:
    drawn: list[str] = []
    monkeypatch.setattr(curate.report, "run_report", lambda d: drawn.append(str(d)))
    clock = [1000.0]
    monkeypatch.setattr(runner.time, "monotonic", lambda: clock[0])
    runner._last_report[str(tmp_path)] = clock[0]  # the run starts
    runner.refresh_report(tmp_path, "parts")  # 0 s in: too soon
    clock[0] += runner.REPORT_REFRESH_S + 1
    runner.refresh_report(tmp_path, "dedup")  # a long phase ended: drawn
    runner.refresh_report(tmp_path, "shards")  # right after: skipped
    runner.refresh_report(tmp_path, "finalize", final=True)  # always
    assert drawn == [str(tmp_path)] * 2


def test_a_failing_report_never_fails_the_run(tmp_path, monkeypatch, caplog) -> None:
    def boom(d):
        raise ValueError("no data")

    monkeypatch.setattr(curate.report, "run_report", boom)
    runner.refresh_report(tmp_path, "finalize", final=True)
    assert "report.html not refreshed after phase finalize" in caplog.text


def test_run_files_come_from_the_format_and_validation_registries_15(fresh_registry) -> None:
    from curate.validation import RUN_FILES as VALIDATION_FILES

    built_in = runner.run_files()
    assert set(runner.RUN_FILES) <= set(built_in) and set(VALIDATION_FILES) <= set(built_in)
    assert {"megatron_data_args.txt", "megatron_data_args.json", "olmo_mixture.yaml", "mds_streams.yaml"} <= \
        set(built_in)
    assert "shards/mds/index.json" not in built_in, "a run file under shards/ is a shard-folder file"
    assert "raw_ids.txt" not in built_in and len(set(built_in)) == len(built_in)
    __import__(PLUGIN)  # the plugin registers its writer, with run_files=("raw_ids.txt",)
    assert sorted(runner.run_files()) == sorted((*built_in, "raw_ids.txt"))
    pattern = runner.shard_file_pattern("mix")
    for rel in ("mix_00000.bin", "mix_00000.idx", "mix_00000.json", "mix_00000.lineage.parquet",
                "olmo/mix_00001.npy", "olmo/mix_00001.csv.gz", "datatrove/mix_00000.ds.metadata",
                "mds/mix_00000.mds", "mds/index.json", "raw/mix_00000.ids", "raw/mix_00000.lens"):
        assert pattern.fullmatch(rel), rel
    for rel in ("other_00000.bin", "olmo/notes.txt", "mix_0000.bin", "raw/mix_00000.ids.bak", "mds/other.json",
                "x/mix_00000.bin"):
        assert not pattern.fullmatch(rel), rel


def _tree(d: Path) -> dict[str, bytes]:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_force_deletes_every_format_s_files_and_folders_a_plugin_s_too_15(tmp_path, ray_session,
                                                                            fresh_registry) -> None:
    from curate.pipeline import parse_recipe
    from tests.reliability._tiny import write_jsonl
    from tests.test_reliability import assert_same_outputs, output_hashes

    data = write_jsonl(tmp_path / "docs.jsonl", 30)
    formats = ["megatron", "olmo-npy", "datatrove", "mds", "raw-ids"]
    recipe = parse_recipe({
        "name": "w", "seed": 1, "budget_tokens": 400, "max_doc_tokens": 64, "output": str(tmp_path / "run"),
        "plugins": [PLUGIN], "shards": {"format": formats, "max_tokens": 150},
        "sources": {"s": {"format": "jsonl", "paths": [str(data)], "text_column": "text", "id_column": "id"}},
        "mixture": {"all": {"share": 1.0, "sources": {"s": 1}}}}, base_dir=tmp_path)
    out = Path(runner.run(recipe, quiet=True).run_dir)
    for d in ("olmo", "datatrove", "mds", "raw"):
        assert any((out / "shards" / d).iterdir()), d
    assert all((out / f).is_file() for f in ("raw_ids.txt", "olmo_mixture.yaml", "mds_streams.yaml"))
    want = output_hashes(out)
    mine = {"notes.txt": b"n", "shards/README.md": b"r", "shards/olmo/notes.txt": b"o",
            "shards/raw/mix_00000.ids.bak": b"a user's copy", "shards/mine/x.bin": b"x"}
    for rel, b in mine.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(b)
    (out / "shards" / "empty").mkdir()  # a user's empty folder: nothing of curate's was in it, it stays
    runner.run(recipe, quiet=True, force=True)
    assert {k: v for k, v in _tree(out).items() if k in mine} == mine
    assert_same_outputs({k: v for k, v in output_hashes(out).items() if k not in mine}, want)
    runner.clean_run_dir(out)
    assert _tree(out) == mine, "every registered format's files go, the plugin's too; the user's stay"
    assert sorted(p.name for p in (out / "shards").iterdir()) == ["README.md", "empty", "mine", "olmo", "raw"], \
        "the folders only curate's files were in (datatrove/, mds/) go"


def test_shutdown_ray_leaves_a_ray_it_did_not_start_running(ray_session) -> None:
    """The test session's Ray (started by the fixture, not by init_ray) is not curate's to stop."""
    assert runner.init_ray(None, num_cpus=2) is ray_session  # already up: init_ray starts nothing
    assert runner.shutdown_ray() is False
    assert ray_session.is_initialized()


_CHILD = """
import json, sys
import psutil
from curate import runner
ray = runner.init_ray(None, num_cpus=1)
from ray._private import worker
pids = [p.process.pid for infos in worker._global_node.all_processes.values() for p in infos]
assert ray.get(ray.remote(lambda: 7).remote()) == 7
stopped = runner.shutdown_ray()
alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
print(json.dumps({"stopped": stopped, "n": len(pids), "alive": alive, "up": ray.is_initialized(),
                  "again": runner.shutdown_ray()}))
"""


def test_shutdown_ray_stops_every_process_of_the_local_ray_init_ray_started() -> None:
    """In a process of its own: init_ray starts Ray; shutdown_ray stops it, monitor included, and only once."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(runner.__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(repo)}
    p = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, env=env, timeout=180,
                       check=False)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert out["stopped"] is True and out["up"] is False and out["again"] is False
    assert out["n"] >= 4  # gcs, raylet, monitor, dashboard, ... all listed
    assert out["alive"] == []
