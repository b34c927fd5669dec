"""One run writing all four shard formats, read back by each trainer's own library (issue 21).

The libraries need torch, and mosaicml-streaming 0.13 pins transformers<5 / huggingface-hub<1, which breaks
datatrove 0.10 in one environment; so they live in their own venvs, built by ``make readers`` (part of
``make test``): ``.venv-readers/torch`` (megatron-core, ai2-olmo-core, datatrove) and ``.venv-readers/mds``
(mosaicml-streaming). Each reader runs in a subprocess (tests/readers/read_shards.py) and must return exactly
the lineage's sequences: every id equal to the Megatron shards' (read by the independent tests/_mmidx.py), and
every sequence's length equal to the lineage's token count. A reader test skips, naming the venv, when its
venv is absent. The tests in the main venv check that the four token streams are one, that Megatron's files
are byte-identical to a Megatron-only run of the same recipe, and that the audit reads each format's truth.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from curate.shard_formats import FORMATS, WRITERS
from tests._mmidx import read_tokens

REPO = Path(__file__).resolve().parent.parent
READERS = REPO / ".venv-readers"
VENV = {"megatron": "torch", "olmo-npy": "torch", "datatrove": "torch", "mds": "mds"}
SCRIPT = REPO / "tests" / "readers" / "read_shards.py"

pytestmark = pytest.mark.slow


def reader_python(fmt: str) -> Path:
    venv = READERS / VENV[fmt]
    if not (venv / ".installed").is_file():
        pytest.skip(f"reader venv {venv} is absent (built by `make readers`): {fmt} is not read by its trainer here")
    return venv / "bin" / "python"


def _run(tmp: Path, name: str, formats) -> object:
    from curate.demo import generate
    from curate.pipeline import parse_recipe
    from curate.runner import run
    from tests._demo import demo_recipe

    if not (tmp / "data").exists():
        generate(tmp / "data", seed=7, scale=0.2)
    data = demo_recipe(tmp / "data", tmp / name, budget_tokens=30_000, tolerance_pp=1.5,
                       shards={"format": formats, "max_tokens": 12_000})
    return run(parse_recipe(data, base_dir=tmp), quiet=True)


@pytest.fixture(scope="module")
def four(tmp_path_factory, ray_session):
    tmp = tmp_path_factory.mktemp("four")
    res = _run(tmp, "run", list(FORMATS))
    seqs = []
    lineage = []
    for s in res.manifest["shards"]:
        seqs += [q.tolist() for q in read_tokens(res.run_dir / "shards" / s["name"])[1]]
        lineage += pq.read_table(res.run_dir / "shards" / s["lineage"])["tokens"].to_pylist()
    assert len(res.manifest["shards"]) >= 2 and [len(q) for q in seqs] == lineage
    return tmp, res, seqs, lineage


@pytest.mark.parametrize("fmt", FORMATS)
def test_trainer_reader_returns_the_lineage(four, fmt, tmp_path) -> None:
    py = reader_python(fmt)
    _tmp, res, seqs, lineage = four
    out = tmp_path / "read.json"
    p = subprocess.run([str(py), str(SCRIPT), fmt, str(res.run_dir), str(out)], capture_output=True, text=True,
                       timeout=600, check=False, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-4000:]
    got = json.loads(out.read_text())
    assert [len(q) for q in got["sequences"]] == lineage, f"{fmt}: sequence lengths differ from the lineage"
    assert got["sequences"] == seqs, f"{fmt}: ids differ from the Megatron shards'"
    if got.get("per_file_windows"):
        # the fixed-length training dataset: each file's stream cut into windows, the remainder dropped
        w, want, pos = got["window"], [], 0
        flat = [t for q in seqs for t in q]
        for n in got["file_tokens"]:
            want += flat[pos:pos + n // w * w]
            pos += n
        assert got["stream"] == want, f"{fmt}: the training dataset's windows are not the shards' stream"
    if fmt == "megatron":
        b = got["blend"]
        assert [Path(x).name for x in b["prefixes"]] == [s["name"] for s in res.manifest["shards"]]
        assert all(b["exists"]) and sum(b["weights"]) == pytest.approx(1.0)
        toks = np.array([s["tokens"] for s in res.manifest["shards"]], dtype=float)
        assert b["weights"] == pytest.approx((toks / toks.sum()).tolist())
        assert (b["split_prefixes"], b["split_weights"]) == (b["prefixes"], b["weights"])
    if fmt == "olmo-npy":
        assert got["yaml_stream"] == got["stream"], "OLMo-core built from olmo_mixture.yaml reads another stream"
    if fmt == "mds":
        assert got["dtypes"] == [res.manifest["shards"][0]["formats"]["mds"]["dtype"]]


def test_one_mix_one_stream_in_every_format(four) -> None:
    _tmp, res, seqs, _lineage = four
    flat = np.array([t for q in seqs for t in q])
    for fmt in FORMATS:
        got = np.concatenate([WRITERS[fmt].read_tokens(res.run_dir / "shards", s["formats"][fmt])
                              for s in res.manifest["shards"]])
        assert np.array_equal(got.astype(np.int64), flat), fmt
    from curate import audit as audit_mod

    assert audit_mod.audit(res.run_dir, verify=True)["violations"] == []


def test_megatron_bytes_do_not_depend_on_the_other_formats(four) -> None:
    tmp, res, _seqs, _lineage = four
    alone = _run(tmp, "megatron-only", "megatron")
    only = {p.name for p in (alone.run_dir / "shards").iterdir()}
    assert only <= {p.name for p in (res.run_dir / "shards").iterdir()}
    for s in alone.manifest["shards"]:
        for key in ("bin", "idx", "lineage"):
            a, b = alone.run_dir / "shards" / s[key], res.run_dir / "shards" / s[key]
            assert a.read_bytes() == b.read_bytes(), s[key]
    assert not any(p.is_dir() for p in (alone.run_dir / "shards").iterdir())


def test_audit_reads_each_formats_own_index(four, tmp_path) -> None:
    from curate import audit as audit_mod

    _tmp, res, _seqs, _lineage = four
    d = tmp_path / "run"
    shutil.copytree(res.run_dir, d)
    s0 = res.manifest["shards"][0]
    # datatrove: a document end moved; olmo: a metadata row lost; mds: the data truncated
    ix = d / "shards" / s0["formats"]["datatrove"]["files"][1]["path"]
    ends = np.fromfile(ix, dtype="<u8")
    ends[0] += 1
    ends.tofile(ix)
    mds = d / "shards" / s0["formats"]["mds"]["files"][0]["path"]
    mds.write_bytes(mds.read_bytes()[:-3])
    result = audit_mod.audit(d)
    kinds = {(v["kind"], v["where"]) for v in result["violations"]}
    assert ("lineage_mismatch", s0["name"]) in kinds
    assert ("shard_checksum", f"{s0['name']} (mds)") in kinds
    assert any("(datatrove) on 2 sequence(s)" in v["message"] for v in result["violations"])
    # a stray file of any format is named
    shutil.copy(d / "shards" / s0["formats"]["olmo-npy"]["files"][0]["path"], d / "shards" / "olmo" / "extra.npy")
    assert ("shard_not_in_manifest", "olmo/extra.npy") in {
        (v["kind"], v["where"]) for v in audit_mod.audit(d)["violations"]}
