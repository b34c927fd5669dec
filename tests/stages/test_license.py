"""LicenseStage: each source format's license statements under its policy, annotate-only, and real the-stack rows."""

from __future__ import annotations

import json
import pickle
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from curate.errors import RecipeError, SchemaError
from curate.recipe import LicensePolicy, SourceConfig
from curate.pipeline import parse_recipe
from curate.schema import DOC_SCHEMA, DROP_REASON
from curate.stages.license import LicenseStage


def docs(source: str, licenses: list[str | None]) -> pa.Table:
    """Build a DOC_SCHEMA batch with the given raw ``license`` values."""
    n = len(licenses)
    return pa.table(
        {
            "uid": list(range(n)),
            "doc_id": [f"{source}:{i}" for i in range(n)],
            "native_id": [str(i) for i in range(n)],
            "source": [source] * n,
            "subset": [""] * n,
            "text": [f"document {i}" for i in range(n)],
            "url": [f"https://example.org/{i}" for i in range(n)],
            "lang": [None] * n,
            "license": licenses,
            "meta": ["{}"] * n,
            "nbytes": [10] * n,
        },
        schema=DOC_SCHEMA,
    )


def source(fmt: str, lic: object) -> SourceConfig:
    return SourceConfig(format=fmt, paths=["x"], text_column="text" if fmt in ("jsonl", "parquet") else None,
                        license=lic)


def recipe_for(name: str, src: SourceConfig, tmp: Path):
    return parse_recipe({"name": "t", "budget_tokens": 10, "sources": {name: src.model_dump(exclude_none=True)},
                         "mixture": {"g": {"share": 1.0, "sources": {name: 1}}}}, base_dir=tmp, check_paths=False)


# Each case: (format, license policy, [(raw license, expected label, expected drop_reason)])
CASES = {
    "the-stack-v1 permissive": ("the-stack-v1", "permissive", [
        ('["MIT"]', "MIT", None),
        ('["Apache-2.0", "MIT"]', "Apache-2.0 AND MIT", None),
        ('["MIT", "Unlicense"]', "MIT AND Unlicense", None),
        ('["Zlib"]', "Zlib", None),
        ('["GPL-2.0-or-later"]', "GPL-2.0-or-later", "license:GPL-2.0-or-later"),
        ('["MIT", "GPL-3.0"]', "GPL-3.0-only AND MIT", "license:GPL-3.0-only"),  # ALL must pass
        ('["AGPL-3.0-or-later"]', "AGPL-3.0-or-later", "license:AGPL-3.0-or-later"),
        ('["MPL-2.0"]', "MPL-2.0", "license:MPL-2.0"),  # weak copyleft is not permissive
        ("[]", "none", "license:none"),
        ('["BSD"]', "unknown", "license:unknown"),  # code: unknown drops
    ]),
    "the-stack-v2 copyleft": ("the-stack-v2", "copyleft", [
        ('["GPL-2.0-or-later"]', "GPL-2.0-or-later", None),
        ('["LicenseRef-scancode-public-domain"]', "LicenseRef-public-domain", None),
        ('["CC-BY-NC-4.0"]', "CC-BY-NC-4.0", "license:CC-BY-NC-4.0"),
        ('["LicenseRef-scancode-proprietary-license"]', "LicenseRef-scancode-proprietary-license",
         "license:LicenseRef-scancode-proprietary-license"),
        ("[]", "none", "license:none"),
    ]),
    "pg19 public-domain": ("pg19", "public-domain", [
        ("public-domain-us", "public-domain-us", None),
        ("LicenseRef-PG-copyrighted", "LicenseRef-PG-copyrighted", "license:LicenseRef-PG-copyrighted"),
        (None, "unknown", "license:unknown"),  # the preset drops unknown status even for text
    ]),
    "gutenberg-txt permissive": ("gutenberg-txt", "permissive", [
        ("public-domain-us", "public-domain-us", None),
        ("LicenseRef-PG-copyrighted", "LicenseRef-PG-copyrighted", "license:LicenseRef-PG-copyrighted"),
    ]),
    "wikipedia cc-by-sa": ("wikipedia", "cc-by-sa", [("CC-BY-SA-4.0", "CC-BY-SA-4.0", None)] * 2),
    "mediawiki-xml permissive": ("mediawiki-xml", "permissive", [
        ("CC-BY-SA-4.0", "CC-BY-SA-4.0", "license:CC-BY-SA-4.0"),
    ]),
    "culturax permissive": ("culturax", "permissive", [("web-unknown", "web-unknown", None)]),  # keep and tag
    "madlad unknown drop": ("madlad", LicensePolicy(preset="permissive", unknown="drop"), [
        ("web-unknown", "web-unknown", "license:web-unknown"),
    ]),
    "refinedweb allows web-unknown": ("refinedweb", ["web-unknown", "CC-BY-4.0"], [
        ("web-unknown", "web-unknown", None),
    ]),
    "open-web-math cc-by": ("open-web-math", "cc-by", [
        ("http://creativecommons.org/licenses/by/4.0/", "CC-BY-4.0", None),
        ("http://creativecommons.org/licenses/by-sa/4.0/", "CC-BY-SA-4.0", "license:CC-BY-SA-4.0"),
        ("http://arxiv.org/licenses/nonexclusive-distrib/1.0/", "LicenseRef-arXiv-nonexclusive-distrib-1.0",
         "license:LicenseRef-arXiv-nonexclusive-distrib-1.0"),
        (None, "unknown", None),
    ]),
    "proof-pile-2 public-domain": ("proof-pile-2", "public-domain", [
        ("http://creativecommons.org/publicdomain/zero/1.0/", "CC0-1.0", None),
        (None, "unknown", "license:unknown"),
    ]),
    "jsonl list of ids": ("jsonl", ["MIT", "Apache 2.0"], [
        ("MIT License", "MIT", None),
        ("Apache-2.0 OR GPL-2.0", "Apache-2.0 OR GPL-2.0-only", None),
        ("GPLv3+", "GPL-3.0-or-later", "license:GPL-3.0-or-later"),
        ("BSD", "unknown", None),  # text format: unknown kept and tagged
        (None, "unknown", None),
    ]),
    "parquet code-like policy": ("parquet", LicensePolicy(allow=["MIT"], unknown="drop"), [
        ("mit", "MIT", None),
        ("", "unknown", "license:unknown"),
    ]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_source_format_rule(case: str, tmp_path: Path) -> None:
    fmt, policy, rows = CASES[case]
    src = source(fmt, policy)
    stage = LicenseStage.from_source("s", src, recipe_for("s", src, tmp_path))
    assert stage is not None
    table = docs("s", [r[0] for r in rows])
    out = stage.process(table)
    assert out["license_raw"].to_pylist() == [r[0] for r in rows]
    assert out["license"].to_pylist() == [r[1] for r in rows]
    assert out[DROP_REASON].to_pylist() == [r[2] for r in rows]
    # same rows, same order, other columns untouched
    assert out.num_rows == table.num_rows
    assert out.select(["uid", "text", "url", "meta"]).equals(table.select(["uid", "text", "url", "meta"]))


def test_no_license_key_means_no_filter_but_annotator_labels(tmp_path: Path) -> None:
    src = source("the-stack-v1", None)
    assert LicenseStage.from_source("code", src, recipe_for("code", src, tmp_path)) is None
    stage = LicenseStage.annotator("code", src)
    out = stage.process(docs("code", ['["GPL-2.0+"]', "[]", '["mit", "Apache 2.0"]', None]))
    assert out["license"].to_pylist() == ["GPL-2.0-or-later", "none", "Apache-2.0 AND MIT", "unknown"]
    assert out[DROP_REASON].null_count == 4
    assert stage.describe() == {"stage": "license", "source": "code", "policy": None}


def test_idempotent_and_picklable() -> None:
    stage = LicenseStage.from_source("code", source("the-stack-v1", "permissive"))
    table = docs("code", ['["MIT"]', '["GPL-3.0-only"]', "[]"])
    once = stage.process(table)
    again = pickle.loads(pickle.dumps(stage)).process(once)  # rerun on its own output: license_raw is the input
    assert again.equals(once)
    assert stage.describe()["policy"]["preset"] == "permissive"


def test_replaces_an_existing_drop_reason_and_checks_columns() -> None:
    stage = LicenseStage.from_source("code", source("the-stack-v1", "permissive"))
    table = docs("code", ['["MIT"]']).append_column(DROP_REASON, pa.array(["stale"], pa.string()))
    assert stage.process(table)[DROP_REASON].to_pylist() == [None]
    with pytest.raises(SchemaError, match="needs column"):
        stage.process(pa.table({"text": ["x"]}))


def test_bad_policy_is_a_recipe_error() -> None:
    with pytest.raises(RecipeError, match=r"sources\.code\.license\[0\]"):
        LicenseStage.from_source("code", source("the-stack-v1", ["BSD"]))


# Drops a permissive policy must make on the real sample, from PROVENANCE.md (repo: licence, files).
REAL_DROPS = {
    "htop-dev/htop": ("GPL-2.0-or-later", 305),
    "ranger/ranger": ("GPL-3.0-only", 129),
    "minio/mc": ("AGPL-3.0-or-later", 439),
    "karpathy/ng-video-lecture": ("none", 3),
}


def test_permissive_on_real_the_stack(real_data: Path) -> None:
    t = pq.read_table(real_data / "thestack.parquet",
                      columns=["hexsha", "content", "max_stars_repo_name", "max_stars_repo_licenses",
                               "max_issues_repo_licenses", "max_forks_repo_licenses"])
    # build `license` as the the-stack-v1 reader does: the sorted union of the three repo licence lists
    lists = zip(*(t[c].to_pylist() for c in ("max_stars_repo_licenses", "max_issues_repo_licenses",
                                               "max_forks_repo_licenses")), strict=True)
    licenses = [json.dumps(sorted(set(a + b + c))) for a, b, c in lists]
    table = pa.table({"text": t["content"], "license": pa.array(licenses, pa.string()),
                      "repo": t["max_stars_repo_name"]})
    stage = LicenseStage.from_source("stack", source("the-stack-v1", "permissive"))
    out = stage.process(table)
    assert out.num_rows == t.num_rows == 3180
    dropped = out.filter(pc.is_valid(out[DROP_REASON]))
    kept = out.filter(pc.is_null(out[DROP_REASON]))
    by_reason = Counter(dropped[DROP_REASON].to_pylist())
    assert by_reason == Counter({f"license:{lic}": n for lic, n in REAL_DROPS.values()})
    assert Counter(dropped["repo"].to_pylist()) == Counter({repo: n for repo, (_, n) in REAL_DROPS.items()})
    assert kept.num_rows == 3180 - sum(n for _, n in REAL_DROPS.values()) == 2304
    assert not set(kept["repo"].to_pylist()) & set(REAL_DROPS)
    assert Counter(kept["license"].to_pylist()) == Counter({
        "MIT": 160 + 143 + 227 + 164 + 119 + 122 + 196 + 146, "BSD-3-Clause": 141 + 204 + 67 + 142,
        "Apache-2.0": 82 + 58, "BSD-2-Clause": 5, "Zlib": 96, "Apache-2.0 AND MIT": 77, "MIT AND Unlicense": 155,
    })
