"""Issue 22, item 1: a resume never serves results of an input file that changed since it was processed.

Each partition's done marker records its input (path, row-group range, size, mtime, xxh64 of the first and
last 64 KiB); a resume reprocesses a partition whose input differs, and redoes everything downstream of the
partitions, so the result is that of a fresh run on the new inputs, byte for byte.
"""

from __future__ import annotations

import json
import os

import pyarrow.parquet as pq

from curate.io_utils import read_json
from curate.pipeline import load_recipe
from curate.runner import invalidate_changed_inputs, run
from curate.sources import plan_partitions
from tests.reliability._tiny import cli, cli_on_session, run_args, write_jsonl, write_recipe
from tests.test_reliability import assert_same_outputs, output_hashes


def _ingest_in(run_dir) -> int:
    return sum(e["docs_in"] for e in read_json(run_dir / "ledger.json") if e["stage"] == "ingest")


def _quarantined(run_dir) -> int:
    return sum(pq.read_metadata(f).num_rows for f in (run_dir / "quarantine").glob("*.parquet"))


def test_fixed_and_appended_jsonl_is_reprocessed_01(ray_session, tmp_path) -> None:
    """The issue's reproduction: fix the malformed line, append 100 records, rerun into the same --out."""
    data = write_jsonl(tmp_path / "data" / "docs.jsonl", 60, malformed=(7,))
    recipe = write_recipe(tmp_path, [str(data)])
    out = tmp_path / "run"
    res = cli_on_session(ray_session, *run_args(recipe, out))
    assert res.returncode == 0, res.stderr
    assert _ingest_in(out) == 60 and _quarantined(out) == 1

    write_jsonl(data, 60)  # line 8 fixed
    with open(data, "a") as f:
        f.write(write_jsonl(tmp_path / "more.jsonl", 100, start=60).read_text())
    res = cli_on_session(ray_session, *run_args(recipe, out))
    assert res.returncode == 0, res.stderr
    assert "partition p000000 is processed again" in res.stderr and "docs.jsonl changed" in res.stderr, res.stderr

    plan = cli("plan", str(recipe), "--json")
    planned = json.loads(plan.stdout)["sources"]["s"]["records"]
    assert planned == 160
    assert _ingest_in(out) == planned, "the ledger must count the new records"
    assert _quarantined(out) == 0, "the old quarantine record must be gone"
    docs = pq.read_table(out / "documents" / "p000000.parquet")
    assert docs.num_rows == 160 and "quarantined" not in docs["status"].to_pylist()
    # and it is exactly a fresh run on the new input
    res = cli_on_session(ray_session, *run_args(recipe, tmp_path / "clean"))
    assert res.returncode == 0, res.stderr
    assert_same_outputs(output_hashes(out), output_hashes(tmp_path / "clean"))


def test_same_size_same_mtime_edit_is_noticed_01(ray_session, tmp_path) -> None:
    """An edit that keeps size and modification time (a fixed character, ``cp -p``) changes the xxh64."""
    data = write_jsonl(tmp_path / "data" / "docs.jsonl", 40)
    recipe = load_recipe(write_recipe(tmp_path, [str(data)]))
    out = tmp_path / "run"
    run(recipe, out=str(out), quiet=True)
    st = os.stat(data)
    text = data.read_text()
    data.write_text(text.replace("river", "rivex", 1))
    os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(data).st_size == st.st_size and os.stat(data).st_mtime_ns == st.st_mtime_ns
    before = (out / "work" / "parts" / "p000000.done").read_text()
    run(recipe, out=str(out), quiet=True)
    marker = json.loads((out / "work" / "parts" / "p000000.done").read_text())
    assert (out / "work" / "parts" / "p000000.done").read_text() != before
    assert marker["input"]["xxh64"] != json.loads(before)["input"]["xxh64"]
    run(recipe, out=str(tmp_path / "clean"), quiet=True)
    assert_same_outputs(output_hashes(out), output_hashes(tmp_path / "clean"))


def test_new_file_that_renumbers_partitions_01(ray_session, tmp_path) -> None:
    """A file added to a glob, sorting first, shifts every partition number: each is redone, none is stale.
    Removing it again makes the old numbers orphans, deleted with everything downstream."""
    write_jsonl(tmp_path / "data" / "b.jsonl", 30)
    write_jsonl(tmp_path / "data" / "c.jsonl", 30, start=30)
    recipe_file = write_recipe(tmp_path, [str(tmp_path / "data" / "*.jsonl")])
    out = tmp_path / "run"
    run(load_recipe(recipe_file), out=str(out), quiet=True)
    first = output_hashes(out)
    write_jsonl(tmp_path / "data" / "a.jsonl", 30, start=60)
    recipe = load_recipe(recipe_file)
    res = run(recipe, out=str(out), quiet=True)
    assert sum(e["docs_in"] for e in res.ledger.to_list() if e["stage"] == "ingest") == 90
    run(recipe, out=str(tmp_path / "clean"), quiet=True)
    assert_same_outputs(output_hashes(out), output_hashes(tmp_path / "clean"))

    (tmp_path / "data" / "a.jsonl").unlink()  # back to the first run's inputs
    run(load_recipe(recipe_file), out=str(out), quiet=True)
    assert not list((out / "work" / "parts").glob("p000002.*"))
    assert not (out / "documents" / "p000002.parquet").exists()
    assert_same_outputs(output_hashes(out), first)


def test_downstream_never_outlives_a_pending_partition_01(tmp_path) -> None:
    """A kill between deleting a stale partition's marker and its downstream outputs cannot leave stale shards:
    whenever a partition is still to be processed, the shards, documents, dedup, mix and summaries go."""
    data = write_jsonl(tmp_path / "docs.jsonl", 10)
    recipe = load_recipe(write_recipe(tmp_path, [str(data)]))
    parts = plan_partitions(recipe)
    out = tmp_path / "run"
    (out / "recipe.json").parent.mkdir(parents=True)
    (out / "recipe.json").write_text(json.dumps({"recipe": {"shards": {"name": "mix"}}}))
    leftovers = [out / "shards" / "mix_00000.bin", out / "shards" / "mix_00000.json", out / "manifest.json",
                 out / "ledger.json", out / "documents" / "p000000.parquet", out / "work" / "mix" / "plan.json",
                 out / "work" / "dedup" / "done.json"]
    mine = [out / "shards" / "README.txt", out / "documents" / "thesis.txt"]
    for f in leftovers + mine:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text("x")
    notes = invalidate_changed_inputs(out, parts, {p.key: {} for p in parts})  # p000000 has no marker: pending
    assert notes == ["outputs left from before an interrupted invalidation were deleted"]
    assert not [f for f in leftovers if f.exists()]
    assert all(f.exists() for f in mine)


def test_hf_dataset_revision_is_part_of_the_identity_01(tmp_path, monkeypatch) -> None:
    """An ``hf://`` input is identified by its revision: a local mirror's file list (names, sizes, mtimes)."""
    from curate.runner import input_records
    from curate.sources.base import Partition
    from curate.sources.hf import MIRROR_ENV, revision

    repo = tmp_path / "mirror" / "org" / "name"
    write_jsonl(repo / "data" / "train.jsonl", 5)
    monkeypatch.setenv(MIRROR_ENV, str(tmp_path / "mirror"))
    path = "hf://datasets/org/name"
    first = revision(path)
    assert first["revision"].startswith("mirror:") and revision(path) == first
    part = Partition(pid=0, source="s", subset="", format="jsonl", path=path)
    assert input_records([part])["p000000"] == {"path": path, "row_groups": None, **first}
    write_jsonl(repo / "data" / "train.jsonl", 6)
    assert revision(path) != first
    monkeypatch.delenv(MIRROR_ENV)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert revision(path) == {"revision": None}, "offline with no mirror the revision is unknown, not an error"
