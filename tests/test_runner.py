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
