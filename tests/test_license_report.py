"""curate.license_report: tokens per license, attribution, and the LICENSES.md / licenses.json files."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from curate.license_report import license_report, write_licenses_report
from curate.pipeline import parse_recipe

LINEAGE = pa.table(
    {
        "source": ["code", "code", "code", "wiki", "web", "books", "books"],
        "subset": ["", "", "", "en", "", "", ""],
        "group": ["code", "code", "code", "text", "text", "text", "text"],
        "license": ["MIT", "Apache-2.0 AND MIT", "MIT", "CC-BY-SA-4.0", "web-unknown", "public-domain-us", None],
        "tokens": [100, 50, 25, 400, 300, 120, 5],
    }
)


def test_license_report_tokens_and_attribution() -> None:
    r = license_report(LINEAGE)
    assert r["total_tokens"] == 1000
    by = {e["license"]: e for e in r["licenses"]}
    assert by["MIT"]["tokens"] == 125 and by["MIT"]["attribution"] is True
    assert by["web-unknown"]["attribution"] is None and by["public-domain-us"]["attribution"] is False
    assert by["unknown"]["tokens"] == 5  # a null label counts as unknown
    assert r["licenses"][0]["license"] == "CC-BY-SA-4.0"  # largest first
    assert set(r["attribution_required"]) == {"code", "wiki"}
    assert {x["license"] for x in r["attribution_required"]["code"]} == {"MIT", "Apache-2.0 AND MIT"}
    assert "same license" in r["attribution_required"]["wiki"][0]["obligation"]
    assert r["unknown"] == {"tokens": 305, "share": 0.305, "labels": ["unknown", "web-unknown"]}
    src = {s["source"]: s for s in r["sources"]}
    assert src["code"]["licenses"] == {"MIT": 125, "Apache-2.0 AND MIT": 50}
    assert src["books"]["unknown_tokens"] == 5


def test_license_report_needs_columns() -> None:
    with pytest.raises(ValueError, match="lacks column"):
        license_report(LINEAGE.drop_columns(["tokens"]))


def test_write_licenses_report(tmp_path: Path) -> None:
    recipe = parse_recipe(
        {
            "name": "lic",
            "budget_tokens": 1000,
            "sources": {
                "code": {"format": "the-stack-v1", "paths": ["a"], "license": "permissive"},
                "wiki": {"format": "wikipedia", "paths": ["b"], "license": "cc-by-sa"},
                "web": {"format": "culturax", "paths": ["c"]},
                "books": {"format": "pg19", "paths": ["d"], "license": ["public-domain-us"]},
            },
            "mixture": {"code": {"share": 0.5, "sources": {"code": 1}},
                        "text": {"share": 0.5, "sources": {"wiki": 1, "web": 1, "books": 1}}},
        },
        base_dir=tmp_path, check_paths=False,
    )
    payload = write_licenses_report(tmp_path / "run", LINEAGE, recipe)
    files = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert files == ["LICENSES.md", "licenses.json"]  # no *.tmp left behind
    on_disk = json.loads((tmp_path / "run" / "licenses.json").read_text())
    assert on_disk == json.loads(json.dumps(payload))
    assert on_disk["policies"]["web"]["policy"] is None
    assert on_disk["policies"]["code"]["policy"]["unknown"] == "drop"
    assert on_disk["policies"]["books"]["policy"]["allow"] == ["public-domain-us"]
    md = (tmp_path / "run" / "LICENSES.md").read_text()
    for needle in ("# Licenses of `lic`", "| CC-BY-SA-4.0 | 400 | 40.00% | required | wiki |", "**code**",
                   "| web | culturax | none (labels only) |", "305 tokens (30.50%)"):
        assert needle in md
