"""Validation sets (issue 19): recipe checks, the pure carve, and an end-to-end run on the demo corpus with a planted
cross-source near-duplicate of every Wikipedia article that dedup keeps (Jaccard under its threshold)."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml

from curate import audit as audit_mod
from curate.demo import generate
from curate.errors import RecipeError
from curate.ledger import Ledger
from curate.mix.core import ShortfallError
from curate.pipeline import parse_recipe
from curate.runner import run
from curate.shard_formats import parse_data_args
from curate.validation import NEAR_DUP, carve, carve_for_mix, component_labels, member_settings
from tests._demo import demo_recipe
from tests._mmidx import read_tokens

PLANTED = "https://planted.example/"


# ---------------------------------------------------------------------------- recipe
def _recipe(tmp_path: Path, **overrides):
    return parse_recipe(demo_recipe(tmp_path / "data", tmp_path / "run", **overrides), base_dir=tmp_path,
                        check_paths=False)


def test_settings_most_specific_wins_and_false_opts_out(tmp_path) -> None:
    d = demo_recipe(tmp_path / "data", tmp_path / "run", validation={"tokens": 100})
    d["sources"]["math"]["validation"] = {"tokens": 7}
    d["sources"]["gutenberg"]["validation"] = False
    r = parse_recipe(d, base_dir=tmp_path, check_paths=False)
    got = member_settings(r)
    assert got["math"] == (7, "sources.math.validation.tokens")
    assert got["wikipedia"] == (100, "validation.tokens")
    assert "gutenberg" not in got


@pytest.mark.parametrize(("value", "path"), [({"tokens": 0}, "validation.tokens"), ({"tokens": "x"}, "validation.tokens"),
                                             ({"tokens": 10, "share": 0.1}, "validation.share")])
def test_bad_validation_names_the_yaml_path(tmp_path, value, path) -> None:
    with pytest.raises(RecipeError) as e:
        _recipe(tmp_path, validation=value)
    assert e.value.path == path, e.value


def test_validation_needs_near_duplicate_detection(tmp_path) -> None:
    with pytest.raises(RecipeError, match="minhash") as e:
        _recipe(tmp_path, validation={"tokens": 10}, dedup={"exact": True})
    assert e.value.path == "validation"


def test_subset_setting_needs_the_subset_as_a_member(tmp_path) -> None:
    d = demo_recipe(tmp_path / "data", tmp_path / "run")
    d["sources"]["math"] = {"format": "open-web-math", "subsets": {"a": {"paths": ["x"], "validation": {"tokens": 5}}}}
    with pytest.raises(RecipeError) as e:
        parse_recipe(d, base_dir=tmp_path, check_paths=False)
    assert e.value.path == "sources.math.subsets.a.validation"


# ---------------------------------------------------------------------------- the carve, pure
def test_component_labels() -> None:
    labels = component_labels(np.array([1, 2, 3, 4, 9]), np.array([2, 4]), np.array([1, 7]))
    assert labels.tolist() == [1, 1, 3, 4, 9]  # 4's component is {4, 7}: smallest 4


def test_carve_is_deterministic_and_keeps_components_whole() -> None:
    rng = np.random.default_rng(0)
    n = 400
    uids = np.arange(n, dtype=np.int64) * 3 + 11
    members = np.array(rng.choice(["a", "b", "c", ""], n), dtype=object)
    tokens = rng.integers(5, 60, n)
    # components of 1-4 documents that may span members (a cross-source copy)
    labels = uids.copy()
    for i in range(0, n - 4, 7):
        labels[i:i + rng.integers(1, 5)] = uids[i]
    wanted = {"a": 500, "b": 300}
    held, near, info = carve(members, tokens, uids, labels, wanted, seed=5)
    for m, n_tok in wanted.items():
        got = tokens[held & (members == m)]
        assert info[m]["tokens"] == got.sum() >= n_tok
        assert info[m]["documents"] == len(got)
    assert not (held & near).any() and not held[members == "c"].any()
    val_labels = set(labels[held].tolist())
    train = ~held & ~near & (members != "")
    assert not val_labels & set(labels[train].tolist()), "a component is on both sides"
    assert near.any(), "the fixture has components across the carve"
    # the same inputs in another row order give the same set: the order is a function of (seed, member, component)
    p = rng.permutation(n)
    held2, near2, _ = carve(members[p], tokens[p], uids[p], labels[p], wanted, seed=5)
    assert set(uids[p][held2].tolist()) == set(uids[held].tolist())
    assert set(uids[p][near2].tolist()) == set(uids[near].tolist())
    held3, _, _ = carve(members, tokens, uids, labels, wanted, seed=6)
    assert set(uids[held3].tolist()) != set(uids[held].tolist())


def test_validation_larger_than_supply_is_refused_naming_the_member(tmp_path) -> None:
    d = demo_recipe(tmp_path / "data", tmp_path / "run")
    d["sources"]["math"]["validation"] = {"tokens": 1000}
    r = parse_recipe(d, base_dir=tmp_path, check_paths=False)
    kept = pa.table({"uid": pa.array([1, 2], pa.int64()), "tokens": pa.array([300, 400], pa.int64()),
                     "ntok": pa.array([299, 399], pa.int64()), "tok_offset": pa.array([0, 299], pa.int64()),
                     "source": ["math", "math"], "subset": ["", ""], "doc_id": ["m:1", "m:2"], "lang": ["en", "en"],
                     "license": ["x", "x"]})
    with pytest.raises(ShortfallError, match=r"math: sources\.math\.validation\.tokens asks for 1,000 tokens"):
        carve_for_mix(r, tmp_path, kept, np.array(["math", "math"], dtype=object), Ledger(), {"math": "soup"})


# ---------------------------------------------------------------------------- end to end
def _plant_twins(data: Path) -> int:
    """A refinedweb file holding a copy of every Wikipedia article with 1% of its words replaced."""
    rng = random.Random(7)
    wiki = pa.concat_tables([pq.read_table(p) for p in sorted((data / "wikipedia").glob("*.parquet"))])
    schema = pq.read_schema(sorted((data / "refinedweb").glob("*.parquet"))[0])
    rows = []
    for wid, text in zip(wiki["id"].to_pylist(), wiki["text"].to_pylist()):
        words = text.split(" ")
        for _ in range(max(1, len(words) // 100)):
            words[rng.randrange(len(words))] = f"zq{rng.randrange(10**6)}"
        rows.append({"content": " ".join(words), "url": f"{PLANTED}{wid}", "timestamp": None, "dump": "x",
                     "segment": "y", "image_urls": []})
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), data / "refinedweb" / "part-00009.parquet")
    return len(rows)


def _val_recipe(tmp: Path, out: Path) -> dict:
    d = demo_recipe(tmp / "data", out, budget_tokens=50_000, tolerance_pp=1.0, validation={"tokens": 1500})
    # verify_jaccard with a high threshold: the twins are LSH candidates (one component) that dedup keeps both of
    d["dedup"]["minhash"]["threshold"] = 0.99
    d["sources"]["wikipedia"]["validation"] = {"tokens": 9000}
    d["sources"]["refinedweb"]["validation"] = {"tokens": 6000}
    d["sources"]["gutenberg"]["validation"] = False
    return d


@pytest.fixture(scope="module")
def val_run(tmp_path_factory, ray_session):
    tmp = tmp_path_factory.mktemp("valid")
    generate(tmp / "data", seed=0, scale=0.3)
    n_twins = _plant_twins(tmp / "data")
    d = _val_recipe(tmp, tmp / "run")
    recipe = parse_recipe(d, base_dir=tmp)
    res = run(recipe, quiet=True)
    return tmp, d, recipe, res, n_twins


def _documents(run_dir: Path) -> pa.Table:
    return pa.concat_tables([pq.read_table(p) for p in sorted((run_dir / "documents").glob("*.parquet"))],
                            promote_options="permissive")


def _lineage(folder: Path) -> pa.Table:
    return pa.concat_tables([pq.read_table(p) for p in sorted(folder.glob("*.lineage.parquet"))])


def test_planted_near_duplicates_land_on_one_side(val_run) -> None:
    _tmp, _d, _r, res, n_twins = val_run
    docs = _documents(res.run_dir).to_pylist()
    by_url = {r["url"]: r for r in docs if r["url"]}
    wiki = {r["native_id"]: r for r in docs if r["source"] == "wikipedia"}
    pairs = [(wiki[u[len(PLANTED):]], r) for u, r in by_url.items() if u.startswith(PLANTED)]
    assert len(pairs) == n_twins
    # both survived the filters and dedup (dedup keeps both: their Jaccard is under its 0.99 threshold)
    both_kept = [(w, t) for w, t in pairs if not {w["stage"], t["stage"]} & {"dedup", "license", "quality", "ingest"}]
    held = [(w, t) for w, t in both_kept if "validation" in (w["status"], t["status"])]
    assert len(held) >= 3, f"only {len(held)} planted pairs reach a validation set: the test would not test"
    for w, t in held:
        sides = {x["status"] if x["status"] == "validation" else x["reason"] for x in (w, t)}
        assert sides <= {"validation", NEAR_DUP}, (w, t)
    # the train side of a held pair is never written to the training shards
    train_ids = set(_lineage(res.run_dir / "shards")["doc_id"].to_pylist())
    val_ids = set(_lineage(res.run_dir / "validation")["doc_id"].to_pylist())
    assert not train_ids & val_ids
    assert all(x["doc_id"] not in train_ids for w, t in held for x in (w, t))
    assert any(x["reason"] == NEAR_DUP for w, t in held for x in (w, t)), "no pair was split across members"


def test_audit_reports_validation_and_passes(val_run) -> None:
    _tmp, _d, recipe, res, _n = val_run
    result = audit_mod.audit(res.run_dir, verify=True)
    assert result["violations"] == [], result["violations"]
    val = result["validation"]
    settings = member_settings(recipe)
    assert set(val["members"]) == set(settings) and "gutenberg" not in val["members"]
    for m, e in val["members"].items():
        assert e["tokens"] >= settings[m][0] == e["requested"]
    # every document accounted for: validation status in documents/, the mix ledger conserves
    docs = _documents(res.run_dir)
    n_val = pc.sum(pc.equal(docs["status"], "validation")).as_py()
    led = Ledger.read(res.run_dir / "ledger.json")
    assert sum(c.dropped.get("validation", 0) for (st, _s, _b), c in led.entries.items() if st == "mix") == n_val
    assert n_val == sum(e["documents"] for e in val["members"].values())
    assert led.conservation_violations() == []
    files = res.manifest["files"]
    assert {f"validation/{e['name']}.bin" for e in res.manifest["validation"]["sets"]} <= set(files)
    assert "validation/components.parquet" in files


def test_validation_shards_read_by_independent_reader(val_run) -> None:
    _tmp, _d, _r, res, _n = val_run
    result = audit_mod.audit(res.run_dir)
    for e in res.manifest["validation"]["sets"]:
        idx, seqs = read_tokens(res.run_dir / "validation" / e["name"])
        assert idx["code"] == 8
        lin = pq.read_table(res.run_dir / "validation" / e["lineage"])
        assert lin["tokens"].to_pylist() == [len(x) for x in seqs]
        assert all(x[-1] == 0 and (x[:-1] != 0).all() for x in seqs), "exactly one end-of-document token, last"
        assert sum(len(x) for x in seqs) == result["validation"]["members"][e["member"]]["tokens"]
        assert set(lin.column_names) == set(pq.read_schema(res.run_dir / "shards" / "mix_00000.lineage.parquet").names)


def test_trainer_configs_parse_and_point_at_files(val_run) -> None:
    _tmp, _d, _r, res, _n = val_run
    rd = res.run_dir
    split = json.loads((rd / "megatron_data_args.json").read_text())
    assert split["train"] == (rd / "megatron_data_args.txt").read_text().split()
    prefixes, weights = parse_data_args(split["valid"])
    assert weights is None and len(prefixes) == len(res.manifest["validation"]["sets"])
    for p in prefixes:
        assert Path(p + ".bin").is_file() and Path(p + ".idx").is_file()
    labels = (rd / "megatron_validation_sets.txt").read_text().split()
    rows = [ln.split(",") for ln in (rd / "validation_sets.csv").read_text().splitlines()]
    assert rows[0] == ["label", "path"] and [r[0] for r in rows[1:]] == labels
    assert [r[1] for r in rows[1:]] == prefixes


def _tampered(res, tmp_path: Path) -> Path:
    d = tmp_path / "run"
    shutil.copytree(res.run_dir, d)
    return d


def test_audit_fails_on_a_document_in_both(val_run, tmp_path) -> None:
    _tmp, _d, _r, res, _n = val_run
    d = _tampered(res, tmp_path)
    train = pq.read_table(d / "shards" / "mix_00000.lineage.parquet")
    e = res.manifest["validation"]["sets"][0]
    p = d / "validation" / e["lineage"]
    lin = pq.read_table(p)
    lin = lin.set_column(lin.schema.get_field_index("doc_id"), "doc_id",
                         pa.array([train["doc_id"][0].as_py()] + lin["doc_id"].to_pylist()[1:]))
    pq.write_table(lin, p)
    kinds = {(v["kind"], v["where"]) for v in audit_mod.audit(d)["violations"]}
    assert ("validation_overlap", f"validation/{e['member']}") in kinds


def test_audit_fails_on_a_component_on_both_sides(val_run, tmp_path) -> None:
    _tmp, _d, _r, res, _n = val_run
    d = _tampered(res, tmp_path)
    train_uid = pq.read_table(d / "shards" / "mix_00000.lineage.parquet")["uid"][0].as_py()
    val_uid = pq.read_table(d / "validation" / res.manifest["validation"]["sets"][0]["lineage"])["uid"][0].as_py()
    pq.write_table(pa.table({"uid": pa.array([train_uid, val_uid], pa.int64()),
                             "component": pa.array([val_uid, val_uid], pa.int64())}),
                   d / "validation" / "components.parquet")
    kinds = {v["kind"] for v in audit_mod.audit(d)["violations"]}
    assert "validation_near_duplicate_in_train" in kinds


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_a_damaged_set_is_rewritten_on_resume(val_run) -> None:
    _tmp, _d, recipe, res, _n = val_run
    before = _digests(res.run_dir / "validation")
    name = res.manifest["validation"]["sets"][0]["name"]
    (res.run_dir / "validation" / f"{name}.bin").unlink()
    res2 = run(recipe, quiet=True)
    assert _digests(res.run_dir / "validation") == before
    assert res2.manifest["validation"] == res.manifest["validation"]


def test_one_and_two_workers_write_identical_validation_sets(val_run) -> None:
    tmp, d, _r, res, _n = val_run
    f = tmp / "one.yaml"
    d = {**d, "output": str(tmp / "one")}
    f.write_text(yaml.safe_dump(d, sort_keys=False))
    out = subprocess.run([sys.executable, "-m", "curate.cli", "run", str(f), "--num-cpus", "1", "--quiet"],
                         capture_output=True, text=True, check=False, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    assert _digests(tmp / "one" / "validation") == _digests(res.run_dir / "validation")
    assert _digests(tmp / "one" / "shards") == _digests(res.run_dir / "shards")


def test_report_has_a_validation_section(val_run) -> None:
    from curate.report import render_html

    _tmp, _d, _r, res, _n = val_run
    page = render_html(audit_mod.audit(res.run_dir))
    assert "sec-validation" in page
    assert all(f"<td>{e['name']}</td>" in page for e in res.manifest["validation"]["sets"])


def test_audit_table_shows_validation_sets(val_run) -> None:
    import io

    from rich.console import Console

    _tmp, _d, _r, res, _n = val_run
    buf = io.StringIO()
    audit_mod.render_table(audit_mod.audit(res.run_dir), Console(file=buf, width=200))
    out = buf.getvalue()
    assert "validation sets" in out and all(e["name"] in out for e in res.manifest["validation"]["sets"])


def test_force_clean_and_invalidation_remove_the_validation_files_only(val_run, tmp_path) -> None:
    from curate.runner import clean_run_dir, remove_downstream

    _tmp, _d, _r, res, _n = val_run
    for fn in (remove_downstream, clean_run_dir):
        d = tmp_path / fn.__name__
        shutil.copytree(res.run_dir, d)
        (d / "validation" / "notes.txt").write_text("mine")
        fn(d)
        assert [p.name for p in (d / "validation").iterdir()] == ["notes.txt"]
        assert not (d / "megatron_validation_sets.txt").exists() or fn is remove_downstream


def test_write_validation_into_a_shared_folder(val_run, tmp_path, ray_session) -> None:
    from curate.runner import write_validation

    _tmp, _d, recipe, res, _n = val_run
    entries = write_validation(res.run_dir, recipe, tmp_path / "shared", ray=ray_session)
    assert sorted(e["member"] for e in entries) == sorted(member_settings(recipe))
    assert _digests(tmp_path / "shared") == _digests(res.run_dir / "validation")
    other = _recipe(tmp_path, validation={"tokens": 10})
    with pytest.raises(Exception, match="rerun the mix"):
        write_validation(res.run_dir, other, tmp_path / "x", ray=ray_session)
