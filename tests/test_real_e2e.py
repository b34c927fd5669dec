"""A recipe over the real samples in ../shared/data/real, end to end on Ray (issue 2).

Every source in its native schema goes through ingest → license → langid → quality → dedup → mix → shards,
and the audit must pass. Skipped (with the reason) where ../shared is absent.
"""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from curate import audit as audit_mod
from curate.recipe import parse_recipe
from curate.runner import run
from tests._mmidx import read_tokens

pytestmark = [pytest.mark.slow, pytest.mark.real]


def real_recipe(real, out) -> dict:
    return {
        "name": "real-sample",
        "seed": 7,
        "output": str(out),
        "tokenizer": "rwkv-world",
        "budget_tokens": 600_000,
        "max_epochs": 4,
        "tolerance_pp": 0.1,
        "max_doc_tokens": 512,
        "sources": {
            "the-stack": {"format": "the-stack-v1", "paths": [str(real / "thestack.parquet")], "license": "permissive",
                          "quality": "code"},
            "culturax": {"format": "culturax", "paths": [str(real / "culturax.parquet")],
                         "langid": {"drop": ["en"], "min_score": 0.65}},
            "gutenberg": {"format": "pg19", "paths": [str(real / "gutenberg.parquet")], "license": "public-domain",
                          "quality": {"gopher": {"gopher_word_count": {"min": 50, "max": None}}}},
            "wikipedia": {"format": "wikipedia", "paths": [str(real / "wikipedia.parquet")]},
            "refinedweb": {"format": "refinedweb", "paths": [str(real / "refinedweb.parquet")], "quality": "fineweb"},
            "math": {"format": "open-web-math", "paths": [str(real / "openwebmath.parquet")]},
        },
        "dedup": {"exact": True, "minhash": {"ngram": 5, "bands": 14, "rows": 8},
                  "keep_priority": ["wikipedia", "gutenberg", "math", "the-stack", "culturax", "refinedweb"]},
        "mixture": {
            "code": {"share": 0.15, "sources": {"the-stack": 1}},
            "multilingual": {"share": 0.15, "sources": {"culturax": 1}},
            "soup": {"share": 0.70, "sources": {"wikipedia": 3, "gutenberg": 2, "refinedweb": 3, "math": 2}},
        },
        "shards": {"format": "megatron", "max_tokens": 200_000},
    }


def test_real_recipe_end_to_end(real_data, tmp_path, ray_session) -> None:
    recipe = parse_recipe(real_recipe(real_data, tmp_path / "run"), base_dir=tmp_path)
    res = run(recipe, quiet=True)
    result = audit_mod.audit(res.run_dir, verify=True)
    assert result["violations"] == [], result["violations"]
    fun = result["funnel"]
    # every real record is accounted for, and the planted problems of the samples are caught
    assert fun["the-stack"]["ingest"]["docs_in"] == 3180
    assert fun["the-stack"]["license"]["dropped"] == {"license:AGPL-3.0-or-later": 439, "license:GPL-2.0-or-later": 305,
                                                      "license:GPL-3.0-only": 129, "license:none": 3}
    assert fun["gutenberg"]["license"]["dropped"] == {"license:LicenseRef-PG-copyrighted": 2}
    assert fun["refinedweb"]["dedup"]["dropped"].get("exact_duplicate", 0) > 0  # 569 rows share their content
    assert fun["culturax"]["langid"]["docs_out"] > 1500
    # shards read back with the independent reader match lineage and manifest
    total = 0
    for s in res.manifest["shards"]:
        idx, seqs = read_tokens(res.run_dir / "shards" / s["name"])
        lin = pq.read_table(res.run_dir / "shards" / s["lineage"])
        assert lin["tokens"].to_pylist() == [len(x) for x in seqs]
        total += sum(len(x) for x in seqs)
    assert total == res.manifest["tokens"] == result["total_tokens"]
    assert set(result["languages"]) >= {"en", "de", "zh"}
