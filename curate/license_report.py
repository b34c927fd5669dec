"""The LICENSES report of a mixture: tokens per license label and the attribution each source needs.

Written at finalize from the shards' lineage (``source, subset, group, license, tokens``), next to the audit that
reads the same lineage: ``LICENSES.md`` (for people) and ``licenses.json`` (the same payload for tools), both
under the run directory (:class:`curate.layout.RunLayout`). A label needs a notice when some license preset lists
it under ``attribution_required``, none when a preset allows it without listing it, and is undetermined
otherwise (:func:`curate.license_policy.requires_attribution`); each source's obligations are spelled out per
license family (:data:`_OBLIGATIONS`, conservative one-line summaries, not legal advice). The policies
themselves (presets, SPDX normalization, decisions) are in :mod:`curate.license_policy`.
"""

from __future__ import annotations

import json
import math
import os
import re
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from curate.io_utils import atomic_write_text
from curate.layout import RunLayout
from curate.license_policy import UNKNOWN, classify, preset_sets, requires_attribution, resolve_policy

if TYPE_CHECKING:
    from curate.recipe import Recipe


_OBLIGATIONS = (
    ("CC-BY-SA", "credit the authors, link the license, mark changes; share adaptations under the same license "
                 "(CC BY-SA §3(a)-(b)); keep each document's url/title"),
    ("CC-BY", "credit the authors, link the license, mark changes (CC BY §3(a)); keep each document's url"),
    ("Apache", "keep the copyright and license notice and any NOTICE file (Apache-2.0 §4)"),
    ("GPL", "keep notices; distribute under the same license with corresponding source"),
    ("LGPL", "keep notices; distribute the library files under the same license with source"),
    ("AGPL", "keep notices; distribute under the same license with corresponding source"),
    ("MPL", "keep notices; covered files stay under MPL with source (MPL-2.0 §3)"),
)


def _obligation(label: str) -> str:
    for prefix, text in _OBLIGATIONS:
        if re.search(rf"(?:^|[\s(]){re.escape(prefix)}-", label):
            return text
    return "keep the copyright and license notice with the text"


def license_report(lineage: pa.Table, *, filters_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Tokens per license and the attribution each source needs, from a lineage table.

    Parameters
    ----------
    lineage
        Columns ``source``, ``subset``, ``group``, ``license`` (labels from the license stage; null counts
        as ``unknown``) and ``tokens``.
    filters_dir
        Where the presets live (default ``filters/licenses``): an id needs a notice when some preset lists it
        under ``attribution_required``, and needs none when a preset allows it without listing it there.

    Returns
    -------
    dict
        ``total_tokens``; ``licenses``: ``[{license, tokens, share, attribution, sources}]`` largest first
        (``attribution`` is True/False, or None when the license is not known); ``sources``:
        ``[{source, subset, group, tokens, licenses: {label: tokens}, attribution: [labels],
        unknown_tokens}]``; ``attribution_required``: ``{source: [{license, tokens, obligation}]}`` for every
        source that carries text needing a notice; ``unknown``: ``{tokens, share, labels}``.
    """
    need = {"source", "subset", "group", "license", "tokens"}
    missing = sorted(need - set(lineage.column_names))
    if missing:
        msg = f"lineage table lacks column(s) {missing}; it needs {sorted(need)}"
        raise ValueError(msg)
    attribution, known = preset_sets(filters_dir)
    t = lineage.select(sorted(need))
    t = t.set_column(t.schema.get_field_index("license"), "license",
                     pc.fill_null(pc.cast(t["license"], pa.string()), UNKNOWN))
    for col in ("subset", "group"):
        t = t.set_column(t.schema.get_field_index(col), col, pc.fill_null(pc.cast(t[col], pa.string()), ""))
    t = t.set_column(t.schema.get_field_index("tokens"), "tokens", pc.cast(t["tokens"], pa.int64()))
    rows = t.group_by(["source", "subset", "group", "license"]).aggregate([("tokens", "sum")]).to_pylist()
    total = sum(r["tokens_sum"] for r in rows)

    def share(x: int) -> float:
        return x / total if total else 0.0

    by_lic: dict[str, dict[str, Any]] = {}
    by_src: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in rows:
        lab, tok = r["license"], r["tokens_sum"]
        att = requires_attribution(lab, attribution=attribution, known=known)
        e = by_lic.setdefault(lab, {"license": lab, "tokens": 0, "attribution": att, "sources": set()})
        e["tokens"] += tok
        e["sources"].add(r["source"])
        s = by_src.setdefault((r["source"], r["subset"], r["group"]),
                              {"source": r["source"], "subset": r["subset"], "group": r["group"], "tokens": 0,
                               "licenses": {}, "attribution": set(), "unknown_tokens": 0})
        s["tokens"] += tok
        s["licenses"][lab] = s["licenses"].get(lab, 0) + tok
        if att:
            s["attribution"].add(lab)
        if classify(lab).status:
            s["unknown_tokens"] += tok
    licenses = sorted(by_lic.values(), key=lambda e: (-e["tokens"], e["license"]))
    for e in licenses:
        e["share"] = share(e["tokens"])
        e["sources"] = sorted(e["sources"])
    sources = sorted(by_src.values(), key=lambda s: (s["source"], s["subset"], s["group"]))
    attribution_required: dict[str, list[dict[str, Any]]] = {}
    for s in sources:
        s["licenses"] = dict(sorted(s["licenses"].items(), key=lambda kv: (-kv[1], kv[0])))
        s["attribution"] = sorted(s["attribution"])
        for lab in s["attribution"]:
            lst = attribution_required.setdefault(s["source"], [])
            hit = next((x for x in lst if x["license"] == lab), None)
            if hit is None:
                lst.append({"license": lab, "tokens": s["licenses"][lab], "obligation": _obligation(lab)})
            else:
                hit["tokens"] += s["licenses"][lab]
    unknown_labels = sorted(e["license"] for e in licenses if classify(e["license"]).status)
    unknown_tokens = sum(by_lic[lab]["tokens"] for lab in unknown_labels)
    return {
        "total_tokens": total,
        "licenses": licenses,
        "sources": sources,
        "attribution_required": attribution_required,
        "unknown": {"tokens": unknown_tokens, "share": share(unknown_tokens), "labels": unknown_labels},
    }


def _fmt_share(x: float) -> str:
    return f"{100 * x:.2f}%" if not math.isnan(x) else "-"


def _md_escape(s: str) -> str:
    return s.replace("|", "\\|")


def _markdown(report: dict[str, Any], policies: dict[str, Any], recipe_name: str) -> str:
    out = [f"# Licenses of `{recipe_name}`", "",
           f"{report['total_tokens']:,} tokens in the mixture. Labels are normalized SPDX expressions; "
           "`none` = no license found, `unknown` = not stated or not parseable, `web-unknown` = crawled pages "
           "(copyright of their publishers), `public-domain-us` = public domain in the US only.", "",
           "## Policies", "", "| source | format | policy | allow | unknown |", "|---|---|---|---|---|"]
    for name, p in policies.items():
        if p["policy"] is None:
            out.append(f"| {name} | {p['format']} | none (labels only) | - | kept |")
        else:
            allow = p["policy"]["allow"]
            shown = ", ".join(allow[:8]) + (f", ... ({len(allow)} ids)" if len(allow) > 8 else "")
            out.append(f"| {name} | {p['format']} | {p['policy']['preset'] or 'list'} | {_md_escape(shown)} | "
                       f"{p['policy']['unknown']} |")
    out += ["", "## Tokens by license", "", "| license | tokens | share | attribution | sources |",
            "|---|---:|---:|---|---|"]
    for e in report["licenses"]:
        att = {True: "required", False: "no", None: "unknown"}[e["attribution"]]
        out.append(f"| {_md_escape(e['license'])} | {e['tokens']:,} | {_fmt_share(e['share'])} | {att} | "
                   f"{', '.join(e['sources'])} |")
    out += ["", "## Attribution", ""]
    if not report["attribution_required"]:
        out.append("No source carries text whose license requires a notice.")
    for src, lst in report["attribution_required"].items():
        out.append(f"- **{src}**")
        out += [f"  - {_md_escape(x['license'])} ({x['tokens']:,} tokens): {x['obligation']}" for x in lst]
    unk = report["unknown"]
    out += ["", "## Unknown status", "",
            f"{unk['tokens']:,} tokens ({_fmt_share(unk['share'])}) have no known license: "
            + (", ".join(f"`{x}`" for x in unk["labels"]) or "none") + ".",
            "Web text (`web-unknown`) belongs to its publishers; check the terms before redistributing shards.",
            ""]
    return "\n".join(out)


def write_licenses_report(run_dir: str | os.PathLike, lineage_table: pa.Table, recipe: Recipe) -> dict[str, Any]:
    """Write ``LICENSES.md`` and ``licenses.json`` into ``run_dir`` (each atomically, ``curate.io_utils``).

    Returns the ``licenses.json`` payload: :func:`license_report` plus ``recipe`` and ``policies``
    (``{source: {format, policy}}``, ``policy`` being :meth:`Policy.describe` or None).
    """
    report = license_report(lineage_table)
    policies = {}
    for name, src in recipe.sources.items():
        pol = resolve_policy(name, src)
        policies[name] = {"format": src.format, "policy": None if pol is None else pol.describe()}
    payload = {"recipe": recipe.name, "policies": policies, **report}
    layout = RunLayout(run_dir)
    layout.root.mkdir(parents=True, exist_ok=True)
    for path, text in ((layout.licenses_json, json.dumps(payload, indent=2, sort_keys=False) + "\n"),
                       (layout.licenses_md, _markdown(report, policies, recipe.name))):
        atomic_write_text(path, text)
    return payload
