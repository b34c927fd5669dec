"""curate.license_policy: normalization table, expression evaluation, presets and policies."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from curate.errors import RecipeError
from curate.license_policy import (
    Policy,
    attribution_ids,
    blocker,
    classify,
    decide,
    decide_array,
    evaluate,
    load_license_preset,
    normalize,
    preset_names,
    requires_attribution,
    resolve_policy,
)
from curate.recipe import LicensePolicy, SourceConfig

NORMALIZE = [
    # the messy strings of package metadata and dataset cards
    ("Apache 2.0", "Apache-2.0"),
    ("apache-2.0", "Apache-2.0"),
    ("Apache License 2.0", "Apache-2.0"),
    ("Apache License, Version 2.0", "Apache-2.0"),
    ("Apache Software License", None),  # no version: 1.1 or 2.0
    ("MIT License", "MIT"),
    ("The MIT License (MIT)", "MIT"),
    ("Expat", "MIT"),
    ("BSD", None),  # 2-, 3- or 4-clause: ambiguous, so unknown
    ("BSD 3-Clause License", "BSD-3-Clause"),
    ("New BSD License", "BSD-3-Clause"),
    ("Simplified BSD", "BSD-2-Clause"),
    ("GPLv3+", "GPL-3.0-or-later"),
    ("GPL-2.0+", "GPL-2.0-or-later"),
    ("GPL-3.0", "GPL-3.0-only"),
    ("GPL v2", "GPL-2.0-only"),
    ("GPL", "GPL-1.0-or-later"),
    ("GNU General Public License v3.0", "GPL-3.0-only"),
    ("GNU Lesser General Public License v2.1 or later", "LGPL-2.1-or-later"),
    ("LGPL", "LGPL-2.0-or-later"),
    ("LGPLv2.1", "LGPL-2.1-only"),
    ("AGPL", "AGPL-3.0-or-later"),
    ("MPL 2.0", "MPL-2.0"),
    ("Mozilla Public License 2.0", "MPL-2.0"),
    ("Boost Software License 1.0", "BSL-1.0"),
    ("BSL", None),  # Boost or Business Source License
    ("ISC License", "ISC"),
    ("zlib License", "Zlib"),
    ("The Unlicense", "Unlicense"),
    ("UNLICENSED", "LicenseRef-proprietary"),  # npm: not licensed at all
    ("CC-BY-SA 4.0", "CC-BY-SA-4.0"),
    ("CC BY-SA 4.0", "CC-BY-SA-4.0"),
    ("Creative Commons Attribution-ShareAlike 4.0 International", "CC-BY-SA-4.0"),
    ("cc-by-sa", None),  # no version
    ("CC0", "CC0-1.0"),
    ("Public Domain", "LicenseRef-public-domain"),
    ("LicenseRef-scancode-public-domain", "LicenseRef-public-domain"),
    # tags the readers write
    ("public-domain-us", "public-domain-us"),
    ("LicenseRef-PG-copyrighted", "LicenseRef-PG-copyrighted"),
    ("licenseref-my-own", "LicenseRef-my-own"),
    ("web-unknown", "web-unknown"),
    # arXiv / URLs (open-web-math, proof-pile-2)
    ("http://creativecommons.org/licenses/by/4.0/", "CC-BY-4.0"),
    ("http://creativecommons.org/licenses/by-nc-sa/4.0/", "CC-BY-NC-SA-4.0"),
    ("http://creativecommons.org/licenses/by/3.0/us/", "CC-BY-3.0-US"),
    ("http://creativecommons.org/publicdomain/zero/1.0/", "CC0-1.0"),
    ("http://arxiv.org/licenses/nonexclusive-distrib/1.0/", "LicenseRef-arXiv-nonexclusive-distrib-1.0"),
    ("https://opensource.org/licenses/MIT", "MIT"),
    ("http://www.apache.org/licenses/LICENSE-2.0", "Apache-2.0"),
    # expressions: canonical ids, sorted operands, parenthesized nesting
    ("MIT/Apache-2.0", "Apache-2.0 OR MIT"),
    ("mit or gpl-3.0", "GPL-3.0-only OR MIT"),
    ("Apache 2.0 OR MIT", "Apache-2.0 OR MIT"),
    ("MIT AND GPL-3.0-only", "GPL-3.0-only AND MIT"),
    ("MIT OR (Apache-2.0 AND BSD-2-Clause)", "(Apache-2.0 AND BSD-2-Clause) OR MIT"),
    ("GPL-2.0+ AND GPL-2.0-or-later", "GPL-2.0-or-later"),
    ("Apache-2.0 WITH LLVM-exception", "Apache-2.0 WITH LLVM-exception"),
    # garbage
    ("", None),
    ("   ", None),
    ("(MIT", None),
    ("MIT AND", None),
    ("see the README", None),
]


@pytest.mark.parametrize(("raw", "expected"), NORMALIZE)
def test_normalize(raw: str, expected: str | None) -> None:
    assert normalize(raw) == expected


PERMISSIVE = frozenset({"MIT", "Apache-2.0", "BSD-3-Clause", "Unlicense"})


@pytest.mark.parametrize(
    ("expr", "passes", "blocked"),
    [
        ("MIT", True, None),
        ("MIT OR GPL-3.0-only", True, None),
        ("MIT AND GPL-3.0-only", False, "GPL-3.0-only"),
        ("MIT AND GPL-3.0-only AND AGPL-3.0-only", False, "AGPL-3.0-only AND GPL-3.0-only"),
        ("GPL-2.0-only OR GPL-3.0-only", False, "GPL-2.0-only OR GPL-3.0-only"),
        ("Apache-2.0 WITH LLVM-exception", True, None),  # an exception only adds permissions
        ("GPL-2.0-only WITH Classpath-exception-2.0", False, "GPL-2.0-only WITH Classpath-exception-2.0"),
        ("(MIT OR GPL-3.0-only) AND (Apache-2.0 OR AGPL-3.0-only)", True, None),
        ("MIT AND (GPL-2.0-only OR AGPL-3.0-only)", False, "AGPL-3.0-only OR GPL-2.0-only"),
        ("mit or gpl-3.0", True, None),  # leaves are normalized before the lookup
        ("LicenseRef-PG-copyrighted", False, "LicenseRef-PG-copyrighted"),
    ],
)
def test_evaluate_and_blocker(expr: str, passes: bool, blocked: str | None) -> None:
    assert evaluate(expr, PERMISSIVE) is passes
    assert blocker(expr, PERMISSIVE) == blocked


def test_evaluate_whole_with_expression_can_be_allowed() -> None:
    allowed = frozenset({"GPL-2.0-only WITH Classpath-exception-2.0"})
    assert evaluate("GPL-2.0-only WITH Classpath-exception-2.0", allowed)
    assert not evaluate("GPL-2.0-only", allowed)


@pytest.mark.parametrize(
    ("raw", "label", "terms", "status"),
    [
        ('["MIT", "apache-2.0"]', "Apache-2.0 AND MIT", ("Apache-2.0", "MIT"), None),
        ('["MIT", "MIT"]', "MIT", ("MIT",), None),
        ('["GPL-2.0+"]', "GPL-2.0-or-later", ("GPL-2.0-or-later",), None),
        ('["MIT OR GPL-3.0", "Apache-2.0"]', "Apache-2.0 AND (GPL-3.0-only OR MIT)",
         ("Apache-2.0", "GPL-3.0-only OR MIT"), None),
        ('["MIT", "BSD"]', "MIT AND unknown", ("MIT",), "unknown"),
        ('["BSD"]', "unknown", (), "unknown"),
        ("[]", "none", (), "none"),
        ("NONE", "none", (), "none"),
        ("NOASSERTION", "unknown", (), "unknown"),
        (None, "unknown", (), "unknown"),
        ("", "unknown", (), "unknown"),
        ("[not json", "unknown", (), "unknown"),
        ("[1, 2]", "unknown", (), "unknown"),
        ("web-unknown", "web-unknown", (), "web-unknown"),
        ("public-domain-us", "public-domain-us", ("public-domain-us",), None),
        ("CC-BY-SA-4.0", "CC-BY-SA-4.0", ("CC-BY-SA-4.0",), None),
    ],
)
def test_classify(raw: str | None, label: str, terms: tuple[str, ...], status: str | None) -> None:
    c = classify(raw)
    assert (c.label, c.terms, c.status) == (label, terms, status)
    assert classify(c.label).label == label  # labels are stable when fed back (lineage -> report)


def test_decide_rules() -> None:
    drop = Policy(PERMISSIVE, "drop")
    keep = Policy(PERMISSIVE, "keep")
    assert decide('["MIT", "GPL-2.0+"]', drop).reason == "license:GPL-2.0-or-later"
    assert decide('["MIT", "Unlicense"]', drop).reason is None
    assert decide("[]", drop).reason == "license:none"
    assert decide("[]", keep).reason is None
    assert decide("BSD", drop).reason == "license:unknown"
    assert decide("web-unknown", drop).reason == "license:web-unknown"
    assert decide("web-unknown", keep) == decide("web-unknown", None)
    # a rejected known license names itself even next to an unknown element, under either rule
    assert decide('["BSD", "AGPL-3.0+"]', keep).reason == "license:AGPL-3.0-or-later"
    # a status listed in `allow` is kept whatever the unknown rule says
    assert decide("web-unknown", Policy(PERMISSIVE | {"web-unknown"}, "drop")).reason is None
    # annotate-only never drops
    assert decide('["AGPL-3.0-or-later"]', None).reason is None


def test_decide_array_vectorized_over_chunks_nulls_and_types() -> None:
    policy = Policy(PERMISSIVE, "drop")
    raw = pa.chunked_array([['["MIT"]', None, '["GPL-3.0-only"]'], ['["MIT"]', "[]"]])
    labels, reasons = decide_array(raw, policy)
    assert labels.to_pylist() == ["MIT", "unknown", "GPL-3.0-only", "MIT", "none"]
    assert reasons.to_pylist() == [None, "license:unknown", "license:GPL-3.0-only", None, "license:none"]
    big = pa.array(["MIT", "GPLv3"], type=pa.large_string())
    assert decide_array(big, policy)[1].to_pylist() == [None, "license:GPL-3.0-only"]
    dic = pa.array(["MIT", "MIT", "BSD"]).dictionary_encode()
    assert decide_array(dic, policy)[0].to_pylist() == ["MIT", "MIT", "unknown"]
    nulls = pa.nulls(2)
    assert decide_array(nulls, policy)[1].to_pylist() == ["license:unknown"] * 2
    assert len(decide_array(pa.array([], type=pa.string()), policy)[0]) == 0


# ---------------------------------------------------------------------------- presets
def test_shipped_presets_load_and_are_canonical() -> None:
    assert preset_names() == ["cc-by", "cc-by-sa", "copyleft", "permissive", "public-domain"]
    for name in preset_names():
        p = load_license_preset(name)
        assert p.allow and p.attribution_required <= p.allow
        assert all(normalize(x) == x for x in p.allow), name
        # nothing non-commercial or no-derivatives is open
        assert not [x for x in p.allow if "-NC" in x or "-ND" in x], name


def test_preset_contents() -> None:
    perm, copyleft, pd = load_license_preset("permissive"), load_license_preset("copyleft"), load_license_preset("public-domain")
    ccby, ccbysa = load_license_preset("cc-by"), load_license_preset("cc-by-sa")
    assert {"MIT", "Apache-2.0", "BSD-2-Clause", "BSD-3-Clause", "ISC", "Zlib", "Unlicense", "CC0-1.0", "0BSD",
            "BSL-1.0", "public-domain-us"} <= perm.allow
    # weak copyleft is not permissive (see permissive.yaml)
    assert not {"MPL-2.0", "LGPL-2.1-only", "EPL-2.0", "GPL-2.0-or-later", "AGPL-3.0-or-later"} & perm.allow
    assert perm.allow | {"MPL-2.0", "LGPL-2.1-only", "GPL-3.0-only", "CC-BY-SA-4.0"} <= copyleft.allow
    assert "public-domain-us" in pd.allow and "LicenseRef-PG-copyrighted" not in pd.allow
    assert pd.unknown == "drop" and perm.unknown == "by-format"
    assert "CC-BY-4.0" in ccby.allow and "CC-BY-SA-4.0" not in ccby.allow
    assert {"CC-BY-SA-4.0", "CC-BY-4.0", "public-domain-us"} <= ccbysa.allow
    assert {"MIT", "Apache-2.0", "CC-BY-SA-4.0"} <= attribution_ids()
    assert not {"Unlicense", "CC0-1.0", "0BSD", "public-domain-us"} & attribution_ids()


@pytest.mark.parametrize(
    ("text", "path_fragment"),
    [
        ("allow: [MIT]\nunknown: drop\ncolour: red\n", "`colour`"),
        ("allow: [MIT, BSD]\nunknown: drop\n", "`allow[1]`"),
        ("allow: [MIT]\nunknown: maybe\n", "`unknown`"),
        ("allow: [MIT]\n", "`unknown`"),
        ("allow: [MIT]\nunknown: drop\nattribution_required: [ISC]\n", "`attribution_required`"),
        ("allow: [MIT OR ISC]\nunknown: drop\n", "`allow[0]`"),
        ("allow: [MIT]\nunknown: drop\nextends: [bad]\n", "`extends`"),
        ("- MIT\n", "mapping"),
    ],
)
def test_bad_preset_names_file_and_key(tmp_path: Path, text: str, path_fragment: str) -> None:
    (tmp_path / "bad.yaml").write_text(text)
    (tmp_path / "loop.yaml").write_text("allow: [MIT]\nunknown: drop\nextends: [bad]\n")
    with pytest.raises(RecipeError) as e:
        load_license_preset("bad", filters_dir=tmp_path)
    assert "bad.yaml" in str(e.value) and path_fragment in str(e.value)


def test_missing_preset(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="unknown license preset 'nope'"):
        load_license_preset("nope", filters_dir=tmp_path)


# ---------------------------------------------------------------------------- policies
def _src(fmt: str, lic: object) -> SourceConfig:
    return SourceConfig(format=fmt, paths=["x"], text_column="text" if fmt in ("jsonl", "parquet") else None,
                        license=lic)


def test_resolve_policy_forms_and_unknown_precedence() -> None:
    assert resolve_policy("s", _src("culturax", None)) is None
    code = resolve_policy("code", _src("the-stack-v1", "permissive"))
    text = resolve_policy("web", _src("culturax", "permissive"))
    assert code.unknown == "drop" and text.unknown == "keep"  # by-format
    assert code.allow == load_license_preset("permissive").allow and code.preset == "permissive"
    assert resolve_policy("pg", _src("pg19", "public-domain")).unknown == "drop"  # the preset says drop
    ids = resolve_policy("j", _src("jsonl", ["mit", "Apache 2.0"]))
    assert ids.allow == {"MIT", "Apache-2.0"} and ids.unknown == "keep" and ids.preset is None
    mixed = resolve_policy("c", _src("the-stack-v2", LicensePolicy(preset="permissive", allow=["MPL-2.0"],
                                                                    unknown="keep")))
    assert "MPL-2.0" in mixed.allow and "MIT" in mixed.allow and mixed.unknown == "keep"
    # the recipe's rule beats the preset's
    assert resolve_policy("pg", _src("pg19", LicensePolicy(preset="public-domain", unknown="keep"))).unknown == "keep"


def test_resolve_policy_errors_name_the_yaml_path() -> None:
    with pytest.raises(RecipeError, match=r"`sources\.j\.license\[1\]`: 'BSD' is not a known SPDX"):
        resolve_policy("j", _src("jsonl", ["MIT", "BSD"]))
    with pytest.raises(RecipeError, match=r"`sources\.c\.license\.allow\[0\]`"):
        resolve_policy("c", _src("jsonl", LicensePolicy(allow=["whatever"])))
    with pytest.raises(RecipeError, match=r"`sources\.c\.license`.*unknown license preset"):
        resolve_policy("c", _src("jsonl", "nope"))


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("MIT", True),
        ("Apache-2.0 AND MIT", True),
        ("MIT OR Unlicense", False),  # pick the Unlicense
        ("Unlicense", False),
        ("public-domain-us", False),
        ("CC-BY-SA-4.0", True),
        ("GPL-2.0-only WITH Classpath-exception-2.0", True),
        ("MIT AND unknown", True),
        ("Unlicense AND unknown", None),
        ("web-unknown", None),
        ("none", None),
        ("LicenseRef-arXiv-nonexclusive-distrib-1.0", None),
    ],
)
def test_requires_attribution(label: str, expected: bool | None) -> None:
    assert requires_attribution(label) is expected


def test_license_text_in_the_license_field_is_unknown() -> None:
    text = "Permission is hereby granted, free of charge, to any person obtaining a copy " * 200
    policy = Policy(PERMISSIVE, "drop")
    assert classify(text).label == "unknown"
    assert decide(text, policy) == decide(None, policy)
