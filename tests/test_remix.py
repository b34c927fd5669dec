"""Remix (issue 19): ``curate run NEW.yaml --from OLD`` reuses OLD's processed corpus and gives fresh-run bytes.

One demo corpus, one run of the base recipe (OLD), one fresh run of a new mixture (FRESH), one remix of the new
mixture from OLD (REMIX). REMIX must equal FRESH byte for byte in ``shards/`` (bin, idx, lineage, markers),
``documents/``, ``quarantine/``, the manifest and the ledger (``tests.test_reliability.output_hashes``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from curate.demo import generate
from curate.errors import RemixError
from curate.io_utils import read_json
from curate.pipeline import parse_recipe
from curate.remix import processing_diff, processing_fingerprint, processing_settings
from curate.runner import run
from tests._demo import demo_recipe
from tests.test_reliability import output_hashes

COMMON = {"budget_tokens": 50_000, "tolerance_pp": 1.0}
#: three demo runs in the module fixture: about 2 minutes on a loaded 2-core machine
pytestmark = pytest.mark.slow


def new_mixture(d: dict) -> dict:
    """The base recipe with other shares: more code, a reweighted soup, another seed."""
    d["mixture"]["code"]["share"] = 0.25
    d["mixture"]["soup"]["share"] = 0.60
    d["mixture"]["soup"]["sources"] = {"wikipedia": 1, "gutenberg": 1, "refinedweb": 4, "math": 1}
    d["seed"] = 99
    return d


@pytest.fixture(scope="module")
def runs(tmp_path_factory, ray_session):
    tmp = tmp_path_factory.mktemp("remix")
    generate(tmp / "data", seed=3, scale=0.25)
    base = parse_recipe(demo_recipe(tmp / "data", tmp / "old", **COMMON), base_dir=tmp)
    run(base, quiet=True)
    new_data = new_mixture(demo_recipe(tmp / "data", tmp / "fresh", **COMMON))
    (tmp / "new.yaml").write_text(yaml.safe_dump(new_data, sort_keys=False))
    new = parse_recipe(new_data, base_dir=tmp)
    run(new, quiet=True)
    run(new, out=str(tmp / "remix"), quiet=True, reuse_from=tmp / "old")
    return tmp, base, new


def test_remix_is_byte_identical_to_a_fresh_run(runs) -> None:
    tmp, _, _ = runs
    fresh, remix = output_hashes(tmp / "fresh"), output_hashes(tmp / "remix")
    assert any(k.endswith(".lineage.parquet") for k in fresh) and any(k.startswith("documents/") for k in fresh)
    assert remix == fresh
    # and it is another mixture than OLD's, so the comparison is not trivially the same recipe
    assert output_hashes(tmp / "old") != fresh


def test_remix_links_old_parts_and_records_the_reuse(runs) -> None:
    tmp, base, new = runs
    info = read_json(tmp / "remix" / "run.json")
    assert info["processing_fingerprint"] == processing_fingerprint(new) == processing_fingerprint(base)
    reused = info["reused"]
    assert reused["from"] == str((tmp / "old").resolve())
    assert reused["fingerprint"] == read_json(tmp / "old" / "run.json")["fingerprint"] != info["fingerprint"]
    assert reused["dedup"] == "reused" and reused["linked"] > 0
    parts = sorted(p.name.split(".")[0] for p in (tmp / "old" / "work" / "parts").glob("*.done"))
    assert reused["parts"] == parts
    # the partitions were not processed again: same inodes (hard links), no worker CPU in the parts phase
    for p in (tmp / "old" / "work" / "parts").glob("*.tok"):
        assert os.stat(p).st_ino == os.stat(tmp / "remix" / "work" / "parts" / p.name).st_ino
    # the ledger (conserved, or finalize would have raised) counts the reused partitions' ingest
    led = read_json(tmp / "remix" / "ledger.json")
    assert led == read_json(tmp / "fresh" / "ledger.json")


def test_remix_resumes_an_interrupted_link_and_survives_old_work_deleted(runs, tmp_path) -> None:
    tmp, _, new = runs
    out = tmp_path / "again"
    shutil.copytree(tmp / "remix", out, copy_function=os.link)
    # as if killed mid-link: one partition lost its marker and a file, the downstream outputs are gone
    (out / "work" / "parts" / "p000002.done").unlink()
    (out / "work" / "parts" / "p000002.kept.parquet").unlink()
    shutil.rmtree(out / "shards")
    shutil.rmtree(out / "documents")
    (out / "manifest.json").unlink()
    # OLD is an in-progress run whose dedup is not done: the remix runs dedup itself from the linked parts
    old = tmp_path / "old-in-progress"
    old.mkdir()
    for f in ("run.json", "recipe.json"):
        shutil.copy(tmp / "old" / f, old / f)
    shutil.copytree(tmp / "old" / "work" / "parts", old / "work" / "parts", copy_function=os.link)
    shutil.copytree(tmp / "old" / "quarantine", old / "quarantine", copy_function=os.link)
    shutil.rmtree(out / "work" / "dedup")
    run(new, out=str(out), quiet=True, reuse_from=old)
    assert read_json(out / "run.json")["reused"]["dedup"] == "run here"
    shutil.rmtree(old / "work")  # a hard-linked remix does not need OLD's work/ any more
    assert output_hashes(out) == output_hashes(tmp / "fresh")
    run(new, out=str(out), quiet=True)  # a plain resume of the remix is a no-op with the same bytes
    assert output_hashes(out) == output_hashes(tmp / "fresh")


def test_a_changed_processing_key_is_refused_naming_it(runs) -> None:
    tmp, _, _ = runs
    d = yaml.safe_load((tmp / "new.yaml").read_text())
    d["sources"]["the-stack"]["license"] = ["MIT"]
    d["dedup"]["minhash"]["bands"] = 10
    d["max_doc_tokens"] = 256
    (tmp / "changed.yaml").write_text(yaml.safe_dump(d, sort_keys=False))
    out = subprocess.run([sys.executable, "-m", "curate.cli", "run", str(tmp / "changed.yaml"), "--out",
                          str(tmp / "refused"), "--from", str(tmp / "old"), "--quiet"],
                         capture_output=True, text=True, check=False, timeout=120)
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    for key in ("sources.the-stack.license", "dedup.minhash.bands", "max_doc_tokens"):
        assert f"  {key}:" in out.stderr, out.stderr
    assert "seed" not in out.stderr.split("differ")[1].split("A remix")[0]
    assert not (tmp / "refused" / "run.json").exists()


def test_sources_in_another_order_are_refused(runs) -> None:
    tmp, _, new = runs
    d = yaml.safe_load((tmp / "new.yaml").read_text())
    d["sources"] = dict(reversed(list(d["sources"].items())))
    with pytest.raises(RemixError, match="another order"):
        run(parse_recipe(d, base_dir=tmp), out=str(tmp / "reordered"), quiet=True, reuse_from=tmp / "old")
    assert not (tmp / "reordered" / "run.json").exists()


def test_processing_diff_names_yaml_paths_and_ignores_the_mixture(runs) -> None:
    tmp, base, new = runs
    assert processing_diff(processing_settings(base), processing_settings(new)) == []
    d = demo_recipe(tmp / "data", tmp / "x", **COMMON)
    d["sources"]["culturax"]["langid"]["min_score"] = 0.5
    diffs = processing_diff(processing_settings(base), processing_settings(parse_recipe(d, base_dir=tmp)))
    assert diffs == ["sources.culturax.langid.min_score: 0.65 -> 0.5"]
    # audit thresholds are not processing
    d = demo_recipe(tmp / "data", tmp / "x", **COMMON)
    d["sources"]["math"]["max_drop_share"] = 0.5
    assert processing_fingerprint(parse_recipe(d, base_dir=tmp)) == processing_fingerprint(base)


def test_an_unfinished_or_missing_old_run_is_refused(runs, tmp_path) -> None:
    tmp, _, new = runs
    old = tmp_path / "old-parts-running"
    old.mkdir()
    for f in ("run.json", "recipe.json"):
        shutil.copy(tmp / "old" / f, old / f)
    shutil.copytree(tmp / "old" / "work", old / "work", copy_function=os.link)
    (old / "work" / "parts" / "p000005.done").unlink()  # still being processed there
    with pytest.raises(RemixError, match=r"1 of 12 partition\(s\) are not processed there yet \(p000005\)"):
        run(new, out=str(tmp_path / "new"), quiet=True, reuse_from=old)
    with pytest.raises(RemixError, match="not a curate run directory"):
        run(new, out=str(tmp_path / "new"), quiet=True, reuse_from=tmp_path / "nothing")
    with pytest.raises(RemixError, match="is the run directory itself"):
        run(new, out=str(tmp / "remix"), quiet=True, reuse_from=tmp / "remix")
    assert not (tmp_path / "new" / "run.json").exists()
