"""``hf://datasets/...`` sources through the real ``datasets.load_dataset(streaming=True)`` path, offline.

The Hub is replaced by a local copy of the dataset repositories under ``CURATE_HF_MIRROR`` (see
curate/sources/hf.py); ``HF_HUB_OFFLINE=1`` makes sure nothing is fetched.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.errors import InputError
from curate.pipeline import parse_recipe
from curate.sources import count_records, plan_partitions, read_partition
from curate.sources.base import ReadContext
from curate.sources.hf import parse

README = """---
configs:
- config_name: de
  data_files:
  - split: train
    path: de/*.parquet
- config_name: fr
  data_files:
  - split: train
    path: fr/*.parquet
---
"""


def _cx(lang: str, start: int, n: int) -> pa.Table:
    return pa.table({"text": [f"{lang} text {i}" for i in range(start, start + n)],
                     "timestamp": ["2019-01-01T00:00:00Z"] * n,
                     "url": [f"https://{lang}.example/{i}" for i in range(start, start + n)],
                     "source": ["mC4"] * n})


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    root = tmp_path / "mirror"
    cx = root / "uonlp" / "cx"
    for lang in ("de", "fr"):
        (cx / lang).mkdir(parents=True)
        pq.write_table(_cx(lang, 0, 3), cx / lang / f"{lang}_part_00000.parquet")
        pq.write_table(_cx(lang, 3, 2), cx / lang / f"{lang}_part_00001.parquet")
    (cx / "README.md").write_text(README)
    plain = root / "org" / "plain" / "data"
    plain.mkdir(parents=True)
    pq.write_table(pa.table({"body": ["only one"], "id": [7]}), plain / "train-00000-of-00001.parquet")
    monkeypatch.setenv("CURATE_HF_MIRROR", str(root))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # the libraries read HF_HUB_OFFLINE at import time; an earlier import in this session would miss the variable
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return root


def _recipe(tmp_path, sources: dict):
    mixture = {"all": {"share": 1.0, "sources": dict.fromkeys(sources, 1.0)}}
    return parse_recipe({"name": "t", "budget_tokens": 1000, "sources": sources, "mixture": mixture},
                        base_dir=tmp_path)


def test_hf_paths_plan_per_shard_and_read_through_the_normalizer(tmp_path, mirror):
    r = _recipe(tmp_path, {"cx": {"format": "culturax", "paths": ["hf://datasets/uonlp/cx/fr"]},
                           "plain": {"format": "parquet", "text_column": "body", "id_column": "id",
                                     "paths": ["hf://datasets/org/plain"]}})
    parts = plan_partitions(r)
    assert [(p.pid, p.source, p.path) for p in parts] == [
        (0, "cx", "hf://datasets/uonlp/cx/fr#shard=0/2"),
        (1, "cx", "hf://datasets/uonlp/cx/fr#shard=1/2"),
        (2, "plain", "hf://datasets/org/plain"),
    ]
    texts, uids = [], []
    for part in parts[:2]:
        batches = list(read_partition(part, r.sources["cx"], ReadContext(batch_rows=2)))
        assert sum(b.records for b in batches) == count_records(part, r.sources["cx"])
        for b in batches:
            texts += b.docs.column("text").to_pylist()
            uids += b.docs.column("uid").to_pylist()
            assert set(b.docs.column("license").to_pylist()) == {"web-unknown"}
    assert texts == [f"fr text {i}" for i in range(5)]  # config `fr` only, every row once, in order
    assert uids == [0, 1, 2, 1 << 32, (1 << 32) | 1]
    (b,) = list(read_partition(parts[2], r.sources["plain"], ReadContext()))
    assert b.docs.column("doc_id").to_pylist() == ["plain:7"] and b.docs.column("text").to_pylist() == ["only one"]
    assert count_records(parts[2], r.sources["plain"]) == 1


def test_hf_dataset_without_the_needed_column_is_a_schema_error(tmp_path, mirror):
    r = _recipe(tmp_path, {"plain": {"format": "culturax", "paths": ["hf://datasets/org/plain"]}})
    (part,) = plan_partitions(r)
    with pytest.raises(InputError, match=r"hf://datasets/org/plain, column `text`: required column `text` not "
                                         r"found; columns found: \['body', 'id'\]"):
        list(read_partition(part, r.sources["plain"], ReadContext()))


def test_hf_path_parsing_and_unknown_dataset(tmp_path, mirror):
    assert parse("hf://datasets/a/b/c#shard=2/5").repo == "a/b"
    assert parse("hf://datasets/a/b/c#shard=2/5").base == "hf://datasets/a/b/c"
    with pytest.raises(InputError, match="expected hf://datasets/ORG/NAME"):
        parse("hf://datasets/justone")
    r = _recipe(tmp_path, {"x": {"format": "culturax", "paths": ["hf://datasets/nobody/nothing"]}})
    with pytest.raises(InputError, match=r"cannot load Hugging Face dataset 'nobody/nothing'.*CURATE_HF_MIRROR"):
        plan_partitions(r)
