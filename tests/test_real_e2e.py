"""A recipe over the real samples in ../shared/data/real, end to end on Ray (issue 2).

Every source in its native schema goes through ingest → license → langid → quality → decontaminate (GSM8K and
MATH test, when ../shared/data/evals is there) → dedup → mix → shards, and the audit must pass. Skipped (with the reason) where ../shared is absent.
"""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from curate import audit as audit_mod
from curate.pipeline import parse_recipe
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
    data = real_recipe(real_data, tmp_path / "run")
    evals = real_data.parent / "evals"
    if (evals / "PROVENANCE.md").is_file():  # issue 18: the GSM8K/MATH test leak in open-web-math
        data["decontaminate"] = {"evals": {
            "gsm8k": {"paths": [str(evals / "gsm8k_test.jsonl")], "fields": ["question", "answer"], "id_field": "idx"},
            "math": {"paths": [str(evals / "math_test.jsonl")], "fields": ["problem", "solution"], "id_field": "idx"}},
            "expect": {"math": ["gsm8k", "math"]}}
    recipe = parse_recipe(data, base_dir=tmp_path)
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
    if recipe.decontaminate is not None:
        # every test item, plus 12 GSM8K train problems that share a 13-gram with a test item; nothing elsewhere
        assert fun["math"]["decontaminate"]["dropped"] == {"contaminated:gsm8k": 1330, "contaminated:math": 5001}
        assert all(not fun[s]["decontaminate"]["dropped"] for s in fun if s != "math")
        dc = result["decontamination"]
        assert dc["table"]["math"]["math"]["docs"] == 5001 and dc["table"]["math"]["math"]["tokens"] > 0
        kinds = {f["kind"] for f in result["flags"]}
        assert "decontamination_drop_share" in kinds and "decontamination_expected" not in kinds
    # shards read back with the independent reader match lineage and manifest
    total = 0
    for s in res.manifest["shards"]:
        idx, seqs = read_tokens(res.run_dir / "shards" / s["name"])
        lin = pq.read_table(res.run_dir / "shards" / s["lineage"])
        assert lin["tokens"].to_pylist() == [len(x) for x in seqs]
        total += sum(len(x) for x in seqs)
    assert total == res.manifest["tokens"] == result["total_tokens"]
    assert set(result["languages"]) >= {"en", "de", "zh"}
