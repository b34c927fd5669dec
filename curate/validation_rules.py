"""The recipe rules of ``validation:`` (issue 19): which leaf members hold out a set, and the recipe checks.

Config-level only (no implementation import), so :mod:`curate.recipe` can check a recipe with it; the carve, the
sets and the audit are :mod:`curate.validation`.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from curate.io_utils import atomic_write_text

#: the run directory's folder of validation sets
DIR = "validation"
#: trainer files written beside megatron_data_args.{txt,json} (curate.shard_formats.write_run_files)
RUN_FILES = ("megatron_validation_sets.txt", "validation_sets.csv")


def member_settings(recipe) -> dict[str, tuple[int, str]]:
    """``{member key: (tokens, YAML path of the setting)}`` for every leaf member that holds out a set.

    The most specific setting wins: subset, then source, then the top level; ``false`` opts out.
    """
    out: dict[str, tuple[int, str]] = {}
    for g, src, sub, _share in recipe.members():
        scfg = recipe.sources.get(src)
        chain = []
        if scfg is not None and sub and sub in scfg.subsets:
            chain.append((scfg.subsets[sub].validation, f"sources.{src}.subsets.{sub}.validation"))
        if scfg is not None:
            chain.append((scfg.validation, f"sources.{src}.validation"))
        chain.append((recipe.validation, "validation"))
        for v, path in chain:
            if v is None:
                continue
            if v is not False:
                out[recipe.member_key(g, src, sub)] = (int(v.tokens), f"{path}.tokens")
            break
    return out


def file_stem(member: str) -> str:
    """The file-name stem of a member's set: ``<member>_00000`` with unsafe characters replaced by ``-``."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", member) + "_00000"


def check_validation(r, fail) -> None:
    """Recipe checks of ``validation:`` (``fail(message, yaml_path)`` raises the recipe error)."""
    members = {(s, sub) for _g, s, sub, _ in r.members()}
    named = [(f"sources.{n}.validation", s.validation) for n, s in r.sources.items()]
    for n, s in r.sources.items():
        for b, sb in s.subsets.items():
            named.append((f"sources.{n}.subsets.{b}.validation", sb.validation))
            if sb.validation is not None and (n, b) not in members:
                fail(f"subset {b!r} is not a mixture member of its own (the mixture lists source {n!r} as a "
                     f"whole); set `validation` on the source instead", f"sources.{n}.subsets.{b}.validation")
    settings = member_settings(r)
    if not settings:
        return
    if r.dedup is None or r.dedup.minhash is None:
        path = "validation" if r.validation is not None else next(p for p, v in named if v)
        fail("validation sets are kept disjoint from train by dedup components, which needs `dedup:` with "
             "`minhash:` (near-duplicate detection); add it, or remove `validation`", path)
    stems: dict[str, str] = {}
    for m, (_n, path) in settings.items():
        other = stems.setdefault(file_stem(m), m)
        if other != m:
            fail(f"members {other!r} and {m!r} would write the same validation files {file_stem(m)}.*", path)


# ---------------------------------------------------------------------------- trainer files
def valid_prefixes(run_dir: Path, manifest: dict) -> list[str] | None:
    """The ``valid`` list of ``megatron_data_args.json``: one absolute prefix per set (None without sets)."""
    sets = (manifest.get("validation") or {}).get("sets") or []
    return [str((Path(run_dir) / DIR / e["name"]).resolve()) for e in sets] or None


def write_trainer_files(run_dir: Path, manifest: dict) -> list[str]:
    """``megatron_validation_sets.txt`` (labels, in the ``valid`` list's order) and ``validation_sets.csv``."""
    sets = (manifest.get("validation") or {}).get("sets") or []
    if not sets:
        return []
    prefixes = valid_prefixes(run_dir, manifest)
    atomic_write_text(run_dir / RUN_FILES[0], "".join(f"{e['label']}\n" for e in sets))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["label", "path"])
    w.writerows((e["label"], p) for e, p in zip(sets, prefixes))
    atomic_write_text(run_dir / RUN_FILES[1], buf.getvalue())
    return list(RUN_FILES)
