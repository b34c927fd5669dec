"""The shard formats of curate.shard_formats, written from one batch list and read back by spec-written readers.

The readers here are written from each format's layout (dolma/OLMo-core memmap + csv.gz, datatrove's
TokenizedFile, streaming's MDSWriter), with numpy and struct only; the trainers' own libraries read the same
formats in tests/test_shard_readers.py (from their own venvs, since they need torch).
"""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from curate.errors import RecipeError, ShardError
from curate.pipeline import parse_recipe
from curate.recipe import ShardsConfig
from curate.shard_formats import (
    FORMATS,
    WRITERS,
    SeqBatch,
    ShardWriters,
    check_run_files,
    normalize_weights,
    parse_data_args,
    token_dtype,
    write_run_files,
)
from curate.io_utils import sha256_file
from tests._mmidx import read_tokens

DOCS = [[5, 6, 7], [], [65535], [1, 2], [300] * 300]
EOS = 0


def _write(shard_dir: Path, docs: list[list[int]], *, vocab_size: int, name: str = "mix_00000",
           formats=FORMATS, batches: int = 2) -> dict[str, dict]:
    first = 0
    with ShardWriters(formats, shard_dir, name, vocab_size=vocab_size, tokenizer="test-tok") as ws:
        for part in np.array_split(np.arange(len(docs)), batches):
            chunk = [docs[i] for i in part]
            flat = np.array([t for d in chunk for t in d], dtype=np.uint32)
            meta = pa.table({"doc_id": [f"d{i},x\n" for i in part], "source": ["web"] * len(part),
                             "subset": ["en" if i % 2 else "" for i in part]})
            ws.add(SeqBatch(flat, np.array([len(d) for d in chunk]), eos_id=EOS, vocab_size=vocab_size, meta=meta,
                            where=f"shard {name}", first_seq=first))
            first += len(part)
        return ws.finalize()


def spec_olmo(npy: Path, meta: Path, dtype) -> list[list[int]]:
    ids = np.fromfile(npy, dtype=dtype)
    rows = [line.split(",")[:2] for line in gzip.decompress(meta.read_bytes()).decode().splitlines()]
    return [ids[int(a):int(b)].tolist() for a, b in rows]


def spec_datatrove(ds: Path, token_size: int) -> list[list[int]]:
    ids = np.fromfile(ds, dtype=np.uint16 if token_size == 2 else np.uint32)
    ends = struct.unpack(f"<{Path(f'{ds}.index').stat().st_size // 8}Q", Path(f"{ds}.index").read_bytes())
    starts = (0, *ends[:-1])
    return [ids[a:b].tolist() for a, b in zip(starts, ends)]


def spec_mds(path: Path) -> tuple[dict, list[np.ndarray]]:
    raw = path.read_bytes()
    (n,) = struct.unpack("<I", raw[:4])
    offsets = struct.unpack(f"<{n + 1}I", raw[4:8 + 4 * n])
    config = json.loads(raw[8 + 4 * n:offsets[0]])
    assert offsets[-1] == len(raw)
    dtype = np.dtype(config["column_encodings"][0].split(":")[1])
    out = []
    for a, b in zip(offsets[:-1], offsets[1:]):
        (size,) = struct.unpack("<I", raw[a:a + 4])
        assert size == b - a - 4
        head = raw[a + 4]
        ndim, code = head >> 2, head & 3
        width = (1, 2, 4, 8)[code]
        (length,) = struct.unpack("<" + "BHIQ"[code], raw[a + 5:a + 5 + width])
        assert ndim == 1
        out.append(np.frombuffer(raw[a + 5 + width:b], dtype=dtype))
        assert out[-1].size == length
    return config, out


@pytest.mark.parametrize("vocab_size", [65536, 128_256])
def test_every_format_holds_the_same_sequences(tmp_path, vocab_size) -> None:
    docs = DOCS + ([[70_000, 128_255, 3]] if vocab_size > 65536 else [])
    entries = _write(tmp_path, docs, vocab_size=vocab_size)
    want = [d + [EOS] for d in docs]
    wide = vocab_size > 65536

    _, mega = read_tokens(tmp_path / "mix_00000")
    assert [s.tolist() for s in mega] == want
    assert entries["megatron"]["dtype"] == ("int32" if wide else "uint16")
    dt = np.uint32 if wide else np.uint16
    assert spec_olmo(tmp_path / "olmo/mix_00000.npy", tmp_path / "olmo/mix_00000.csv.gz", dt) == want
    assert spec_datatrove(tmp_path / "datatrove/mix_00000.ds", 4 if wide else 2) == want
    config, mds = spec_mds(tmp_path / "mds/mix_00000.mds")
    assert config["column_encodings"] == [f"ndarray:{np.dtype(dt).name}"] and config["column_names"] == ["tokens"]
    assert [m.tolist() for m in mds] == want
    meta = (tmp_path / "datatrove/mix_00000.ds.metadata").read_text()
    assert meta == f"test-tok|{4 if wide else 2}\n{sum(map(len, want))}"

    n_tok = sum(map(len, want))
    for fmt, e in entries.items():
        assert (e["sequences"], e["tokens"]) == (len(want), n_tok), fmt
        for f in e["files"]:
            p = tmp_path / f["path"]
            assert f["bytes"] == p.stat().st_size and f["sha256"] == sha256_file(p), f["path"]
        # curate's own readers (the audit's) agree with the spec readers
        assert WRITERS[fmt].read_sizes(tmp_path, e).tolist() == [len(s) for s in want], fmt
        assert WRITERS[fmt].read_tokens(tmp_path, e).tolist() == [t for s in want for t in s], fmt
    assert not list(tmp_path.rglob("*.tmp")) and not list(tmp_path.rglob("*.body"))


def test_olmo_metadata_rows(tmp_path) -> None:
    _write(tmp_path, DOCS, vocab_size=50_000, formats=("olmo-npy",))
    lines = gzip.decompress((tmp_path / "olmo/mix_00000.csv.gz").read_bytes()).decode().splitlines()
    # start,end,id,source; strings quoted (an id's comma too), line breaks flattened (OLMo-core reads by line)
    assert lines[0] == '0,4,"d0,x ","web"' and lines[1] == '4,5,"d1,x ","web/en"'
    assert len(lines) == len(DOCS)


def test_gzip_and_shards_are_deterministic(tmp_path) -> None:
    a = _write(tmp_path / "a", DOCS, vocab_size=65536)
    b = _write(tmp_path / "b", DOCS, vocab_size=65536, batches=3)
    assert a == b


def test_token_dtype_per_format() -> None:
    assert token_dtype(65536) == np.uint16 and token_dtype(65537) == np.uint32
    assert token_dtype(128_256, "megatron") == np.int32 and token_dtype(128_256, "mds") == np.uint32
    assert token_dtype(65536, "megatron") == np.uint16
    with pytest.raises(ValueError, match="vocab_size"):
        token_dtype(0)


def test_id_over_the_vocab_aborts_every_format(tmp_path) -> None:
    with pytest.raises(ShardError, match="does not fit uint16"):
        _write(tmp_path, [[1, 2], [70_000]], vocab_size=65536, batches=1)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_recipe_takes_one_format_or_a_list() -> None:
    assert ShardsConfig().formats == ("megatron",)
    assert ShardsConfig(format=["mds", "megatron"]).formats == ("mds", "megatron")
    with pytest.raises(ValueError, match="each once"):
        ShardsConfig(format=["mds", "mds"])
    # a format is a name checked against the registered writers once the plugins are loaded (issue 15)
    with pytest.raises(RecipeError, match="unknown shard format, got 'parquet'"):
        parse_recipe(_tiny_recipe(Path("."), "parquet"), base_dir=Path("."), check_paths=False)


def _manifest(tmp_path: Path, n: int = 2) -> dict:
    shards = []
    for i in range(n):
        name = f"mix_{i:05d}"
        e = _write(tmp_path / "shards", DOCS[i:], vocab_size=65536, name=name)
        shards.append({"name": name, "index": i, "tokens": e["megatron"]["tokens"], "formats": e})
    return {"name": "t", "formats": list(FORMATS), "shards": shards, "tokens": sum(s["tokens"] for s in shards),
            "vocab_size": 65536, "eos_id": EOS, "tokenizer": "test-tok"}


def test_megatron_data_args_parse_as_megatron_does(tmp_path) -> None:
    manifest = _manifest(tmp_path)
    write_run_files(tmp_path, manifest)
    prefixes, weights = parse_data_args((tmp_path / "megatron_data_args.txt").read_text().split())
    assert [Path(p).name for p in prefixes] == ["mix_00000", "mix_00001"]
    for p in prefixes:  # every prefix exists, as Megatron's IndexedDataset.exists checks
        assert Path(f"{p}.idx").is_file() and Path(f"{p}.bin").is_file() and Path(p).is_absolute()
    toks = [s["tokens"] for s in manifest["shards"]]
    assert weights == toks  # Megatron's get_blend_from_list keeps them as written; its builder normalizes
    assert normalize_weights(weights) == pytest.approx([t / sum(toks) for t in toks])
    assert sum(normalize_weights(weights)) == pytest.approx(1.0)
    assert parse_data_args(["a", "b", "c"]) == (["a", "b", "c"], None)
    assert parse_data_args(["x", "a", "y", "b"]) == (["x", "a", "y", "b"], None)
    split = json.loads((tmp_path / "megatron_data_args.json").read_text())
    assert parse_data_args(split["train"]) == (prefixes, weights) and split["valid"] is None
    assert check_run_files(tmp_path, manifest) == []

    # a shard that falls out of the blend is a violation
    args = (tmp_path / "megatron_data_args.txt").read_text().split()
    (tmp_path / "megatron_data_args.txt").write_text(" ".join(args[:2]))
    assert [v["kind"] for v in check_run_files(tmp_path, manifest)] == ["trainer_config"]


def test_mds_index_and_other_configs(tmp_path) -> None:
    import yaml

    manifest = _manifest(tmp_path)
    written = write_run_files(tmp_path, manifest)
    assert written == ["megatron_data_args.txt", "megatron_data_args.json", "olmo_mixture.yaml", "mds_streams.yaml"]
    idx = json.loads((tmp_path / "shards/mds/index.json").read_text())
    assert [s["raw_data"]["basename"] for s in idx["shards"]] == ["mix_00000.mds", "mix_00001.mds"]
    assert [s["samples"] for s in idx["shards"]] == [len(DOCS), len(DOCS) - 1] and idx["version"] == 2
    for s in idx["shards"]:
        config, _ = spec_mds(tmp_path / "shards/mds" / s["raw_data"]["basename"])
        assert {k: s[k] for k in config} == config  # the index repeats each shard's embedded config
        assert s["raw_data"]["bytes"] == (tmp_path / "shards/mds" / s["raw_data"]["basename"]).stat().st_size
    olmo = yaml.safe_load((tmp_path / "olmo_mixture.yaml").read_text())["dataset"]
    assert [Path(p).name for p in olmo["paths"]] == ["mix_00000.npy", "mix_00001.npy"] and olmo["dtype"] == "uint16"
    mixture = yaml.safe_load((tmp_path / "olmo_mixture.yaml").read_text())["source_mixture"]
    assert mixture["source_list"]["sources"][0]["paths"] == olmo["paths"]
    assert mixture["requested_tokens"] == manifest["tokens"]
    streams = yaml.safe_load((tmp_path / "mds_streams.yaml").read_text())["streams"]
    assert Path(streams["t"]["local"]) == (tmp_path / "shards/mds").resolve()
    (tmp_path / "shards/mds/index.json").unlink()
    assert [v["where"] for v in check_run_files(tmp_path, manifest)] == ["mds/index.json"]


# ---------------------------------------------------------------------------- the writer registry (issue 15)
PLUGIN = "tests.plugins.raw_ids_writer"


def _tiny_recipe(tmp_path: Path, fmt, **extra) -> dict:
    from tests.reliability._tiny import write_jsonl

    data = write_jsonl(tmp_path / "docs.jsonl", 30) if tmp_path != Path(".") else "docs.jsonl"
    return {"name": "w", "seed": 1, "budget_tokens": 400, "max_doc_tokens": 64, "output": str(tmp_path / "run"),
            "sources": {"s": {"format": "jsonl", "paths": [str(data)], "text_column": "text", "id_column": "id"}},
            "mixture": {"all": {"share": 1.0, "sources": {"s": 1}}}, "shards": {"format": fmt, "max_tokens": 150},
            **extra}


@pytest.fixture
def fresh_registry(monkeypatch):
    """The built-in writers only, and the plugin module unimported, for this test."""
    import sys

    import curate.shard_formats as sf

    monkeypatch.setattr(sf, "WRITERS", {k: sf.WRITERS[k] for k in FORMATS})
    monkeypatch.delitem(sys.modules, PLUGIN, raising=False)
    yield sf
    sys.modules.pop(PLUGIN, None)  # registered into this test's registry only: a later import registers again


def test_shards_format_is_checked_against_the_registered_writers_15(tmp_path, fresh_registry) -> None:
    d = _tiny_recipe(tmp_path, ["megatron", "raw-ids"])
    with pytest.raises(RecipeError) as ei:
        parse_recipe(d, base_dir=tmp_path)
    assert ei.value.path == "shards.format[1]"
    assert "got 'raw-ids'" in str(ei.value) and all(f"'{f}'" in str(ei.value) for f in FORMATS)
    r = parse_recipe({**d, "plugins": [PLUGIN]}, base_dir=tmp_path)
    assert r.shards.formats == ("megatron", "raw-ids")
    info = fresh_registry.WRITERS["raw-ids"].info
    assert (info.files, info.glob, info.index, info.run_files) == (
        ("raw/{name}.ids", "raw/{name}.lens"), "raw/*.ids", ".lens", ("raw_ids.txt",))


def test_the_registered_capabilities_15(fresh_registry) -> None:
    info = {f: fresh_registry.WRITERS[f].info for f in FORMATS}
    assert info["megatron"].dtypes == ("uint16", "int32") and info["mds"].dtypes == ("uint16", "uint32")
    assert {f: i.held_bytes for f, i in info.items()} == {"megatron": 4, "olmo-npy": 0, "datatrove": 0, "mds": 4}
    assert [i.glob for i in info.values()] == ["*.idx", "olmo/*.npy", "datatrove/*.ds", "mds/*.mds"]
    assert fresh_registry.RUN_LEVEL_FILES == ("megatron_data_args.txt", "megatron_data_args.json",
                                              "olmo_mixture.yaml", "shards/mds/index.json", "mds_streams.yaml")


def test_a_vocabulary_a_format_cannot_store_is_an_error_naming_it_15(tmp_path, fresh_registry) -> None:
    @fresh_registry.register("wide-only", files=("w/{name}.ids",), index=".ids", dtypes=("uint32",))
    class WideOnly(fresh_registry.WRITERS["datatrove"]):
        pass

    with pytest.raises(ShardError, match=r"'wide-only' stores uint32 token ids, but vocab_size 65536 needs uint16"):
        ShardWriters(["megatron", "wide-only"], tmp_path, "mix_00000", vocab_size=65536, tokenizer="t")
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []  # the Megatron writer opened first is aborted
    with pytest.raises(ValueError, match="dtypes must be"):
        fresh_registry.register("bad", files=("x",), index="x", dtypes=("float32",))


def test_a_plugin_shard_format_runs_end_to_end_15(tmp_path, ray_session) -> None:
    from curate import audit as audit_mod
    from curate.runner import run

    recipe = parse_recipe(_tiny_recipe(tmp_path, ["megatron", "raw-ids"], plugins=[PLUGIN]), base_dir=tmp_path)
    res = run(recipe, quiet=True)
    result = audit_mod.audit(res.run_dir)
    assert result["violations"] == [], result["violations"]
    manifest = json.loads((Path(res.run_dir) / "manifest.json").read_text())
    assert manifest["formats"] == ["megatron", "raw-ids"] and len(manifest["shards"]) > 1
    shard_dir = Path(res.run_dir) / "shards"
    for s in manifest["shards"]:
        f = s["formats"]["raw-ids"]
        assert (f["sequences"], f["tokens"]) == (s["sequences"], s["tokens"])
        assert WRITERS["raw-ids"].read_tokens(shard_dir, f).tolist() == \
            WRITERS["megatron"].read_tokens(shard_dir, s["formats"]["megatron"]).tolist()
    listed = (Path(res.run_dir) / "raw_ids.txt").read_text().split()
    assert listed == [f"shards/raw/{s['name']}.ids" for s in manifest["shards"]]
    (Path(res.run_dir) / "raw_ids.txt").write_text("shards/raw/mix_00000.ids\n")  # a shard left out
    assert [v["kind"] for v in audit_mod.audit(res.run_dir)["violations"]] == ["trainer_config"]
