"""Remix: a new mixture from another run's processed corpus (``curate run NEW.yaml --out NEW --from OLD``).

Reading, the license / language-ID / quality / decontamination filters, tokenizing and dedup do not depend on
the mixture. A remix takes OLD's finished partitions (``work/parts/<key>.*`` and ``quarantine/<key>.parquet``)
and, when done, its dedup result (``work/dedup/``) into NEW's run directory, so NEW runs only mix, shards,
documents and the audit. Its shards, lineage and ``documents/`` are byte-identical to a from-scratch run of
NEW.yaml (the parts and the dedup are deterministic functions of the processing settings and the inputs).

Allowed only when the **processing settings** are identical (:func:`processing_settings`): ``sources``
(paths resolved to absolute, formats, columns, per-source license / langid / quality / on_error /
decontaminate), ``tokenizer`` (engine
and the file's size and xxh64), ``langid`` (model file too), ``decontaminate`` (eval files too; its audit-only
``expect`` / ``max_drop_share`` excepted), ``dedup``, ``max_doc_tokens`` (the ``kept`` tables store sequence
counts), ``plugins`` (readers), and the ``meta`` keys a ``balance: {by: meta.<key>}`` reads (the worker keeps
them as columns). ``seed`` is not one: only the mix reads it. The order of the sources numbers the partitions
(hence the uids) but ``recipe.json`` stores keys sorted, so it is checked on the partition plan instead: NEW's
partitions must be OLD's (``work/partitions.json``: same key, source, subset, file and row groups). Per-source ``max_drop_share`` / ``allow_drop_all``
are audit thresholds, not processing. Every input partition must also be unchanged since OLD processed it (the
identity its ``.done`` marker records, see ``curate.runner.input_records``). Otherwise :class:`RemixError`
(exit 2) names each key that differs, YAML-path style (``sources.the-stack.license``).

How the files come over: **hard links** (``os.link``), with a copy when the link is impossible (another file
system, no permission). curate never rewrites a file in place (every write is a rename of a temporary file,
``curate.io_utils``), so a hard-linked file cannot change under the other run; deleting either run's
``work/`` later leaves the other's copy intact (the data is freed when the last link goes). The partitions
OLD has finished are linked, the ``.done`` marker of each last; a partition OLD has not finished makes the
remix refuse (wait for OLD's parts phase). When OLD's dedup is not done yet, NEW runs dedup itself from the
linked partitions (same result: dedup is deterministic), so a remix can start while OLD is mixing or deduping.

Reliability: NEW is then an ordinary run directory; resume, ``--force``, the run lock, stale-input detection
and shard repair behave as for any run. A remix killed while linking is resumed by the same command (a file
already there is kept, a partition without its marker is linked again). ``run.json`` records
``processing_fingerprint`` for every run, and for a remix ``reused``: ``{from, fingerprint,
processing_fingerprint, parts, dedup, linked, copied, bytes}``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from curate.errors import RemixError
from curate.io_utils import atomic_write_json, read_json, temp_path
from curate.layout import RunLayout
from curate.recipe import HF_PREFIX, HfTokenizer, Recipe, expand_globs

#: Per-source keys that the partitions and the dedup never read: the audit's bounds, and ``validation``, which the
#: mix carves (a remix may change it). A subset's own ``validation`` is left out with everything but its paths.
AUDIT_ONLY_SOURCE_KEYS = ("max_drop_share", "allow_drop_all", "validation")
#: ``decontaminate`` keys that only the audit reads.
AUDIT_ONLY_DECONT_KEYS = ("expect", "max_drop_share")


def _content_id(path: str) -> dict[str, Any]:
    """Size and xxh64 (first and last 64 KiB) of a referenced file; no mtime, so a copied file still matches."""
    from curate.io_utils import file_identity

    if path.startswith(HF_PREFIX) or not os.path.isfile(path):
        return {"missing": True}
    ident = file_identity(path)
    return {"size": ident["size"], "xxh64": ident["xxh64"]}


def processing_settings(recipe: Recipe) -> dict[str, Any]:
    """The part of ``recipe`` that decides each partition's output and the dedup, paths resolved (see module doc)."""
    d = recipe.model_dump(mode="json", by_alias=True)
    sources = {}
    for name, s in d["sources"].items():
        scfg = recipe.sources[name]
        s = {k: v for k, v in s.items() if k not in AUDIT_ONLY_SOURCE_KEYS}
        s["paths"] = [recipe.resolve_path(p) for p in s["paths"]]
        s["subsets"] = {k: {"paths": [recipe.resolve_path(p) for p in v["paths"]]} for k, v in s["subsets"].items()}
        if s.get("blob_dir"):
            s["blob_dir"] = recipe.resolve_path(s["blob_dir"])
        q = scfg.quality_spec()  # "code", ["code"] and {code: {}} are the same setting
        if "fasttext" in q:
            model = recipe.resolve_path(str(q["fasttext"]["model"]))
            q = {**q, "fasttext": {**q["fasttext"], "model": model, "model_file": _content_id(model)}}
        s["quality"] = q
        sources[name] = s
    tok = d["tokenizer"]
    if isinstance(recipe.tokenizer, HfTokenizer):
        path = recipe.resolve_path(recipe.tokenizer.hf)
        tok = {**tok, "hf": path, "hf_file": _content_id(path)}
    langid = dict(d["langid"])
    if recipe.langid.model:
        path = recipe.resolve_path(recipe.langid.model)
        langid.update(model=path, model_file=_content_id(path))
    decont = None
    if recipe.decontaminate is not None:
        decont = {k: v for k, v in d["decontaminate"].items() if k not in AUDIT_ONLY_DECONT_KEYS}
        evals = {}
        for name, ev in d["decontaminate"]["evals"].items():
            files = expand_globs(recipe, "", "", ev["paths"], yaml_path=f"decontaminate.evals.{name}.paths")
            evals[name] = {**ev, "paths": [recipe.resolve_path(p) for p in ev["paths"]],
                           "files": {f: _content_id(f) for f in files}}
        decont["evals"] = evals
    return {
        "sources": sources,
        "tokenizer": tok,
        "langid": langid,
        "decontaminate": decont,
        "dedup": d["dedup"],
        "max_doc_tokens": d["max_doc_tokens"],
        "plugins": d["plugins"],
        "balance_meta_keys": recipe.balance_meta_keys(),
    }


def processing_fingerprint(recipe: Recipe) -> str:
    """sha256 of the canonical JSON of :func:`processing_settings` (sorted keys; the source order is explicit)."""
    blob = json.dumps(processing_settings(recipe), sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


#: How a top-level key of :func:`processing_settings` that is not a recipe key is named in a refusal.
_SYNTHETIC = {"balance_meta_keys": "mixture.*.balance.by (the meta.<key> columns the partitions keep)"}


def _short(v: Any) -> str:
    s = json.dumps(v, sort_keys=True, default=str)
    return s if len(s) <= 70 else s[:67] + "..."


def processing_diff(old: dict[str, Any], new: dict[str, Any], path: str = "") -> list[str]:
    """``"yaml.path: old -> new"`` for each leaf where two :func:`processing_settings` differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in [*old, *(k for k in new if k not in old)]:
            sub = _SYNTHETIC.get(k, k) if not path else f"{path}.{k}"
            if k not in old:
                out.append(f"{sub}: (absent) -> {_short(new[k])}")
            elif k not in new:
                out.append(f"{sub}: {_short(old[k])} -> (absent)")
            else:
                out += processing_diff(old[k], new[k], sub)
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new) and path not in _SYNTHETIC.values():
        return [d for i, (a, b) in enumerate(zip(old, new)) for d in processing_diff(a, b, f"{path}[{i}]")]
    return [] if old == new else [f"{path}: {_short(old)} -> {_short(new)}"]


# ---------------------------------------------------------------------------- checking OLD_RUN
def _old_recipe(old_run: Path) -> Recipe:
    from curate.pipeline import recipe_from_payload

    old = RunLayout(old_run)
    if not old.run_json.is_file() or not old.recipe_json.is_file():
        msg = f"--from {old_run}: not a curate run directory (no run.json / recipe.json)"
        raise RemixError(msg)
    return recipe_from_payload(read_json(old.recipe_json))


def check_remix(recipe: Recipe, old_run: Path, new_run: Path, parts: list, inputs: dict[str, dict]) -> dict:
    """Refuse a remix that could not give the bytes of a fresh run; return OLD's fingerprints when it can.

    Checks, before anything is written: OLD is a curate run and not NEW itself; the processing settings are
    identical (:func:`processing_diff`, every differing key named); every partition of NEW's plan is done in
    OLD, from the same input (marker identity = the input now).
    """
    from curate.partition import part_paths

    old_run, new_run = old_run.resolve(), new_run.resolve()
    if old_run == new_run:
        msg = f"--from {old_run} is the run directory itself; a resume needs no --from"
        raise RemixError(msg)
    old_recipe = _old_recipe(old_run)
    diffs = processing_diff(processing_settings(old_recipe), processing_settings(recipe))
    if diffs:
        msg = (f"--from {old_run}: cannot remix, its processing settings differ from this recipe's in "
               f"{len(diffs)} key(s):\n  " + "\n  ".join(diffs) + "\nA remix reuses processed partitions, so only "
               "the mixture, shards, seed and budget may change; run without --from to process again")
        raise RemixError(msg)
    _check_partition_plan(old_run, parts)
    not_done, changed = [], []
    for p in parts:
        done = part_paths(old_run, p)["done"]
        if not done.is_file():
            not_done.append(p.key)
            continue
        rec = read_json(done).get("input")
        if rec != json.loads(json.dumps(inputs[p.key])):
            changed.append(f"{p.key} ({inputs[p.key]['path']})")
    if changed:
        msg = (f"--from {old_run}: {len(changed)} input partition(s) changed since that run processed them: "
               f"{', '.join(changed[:5])}{' ...' if len(changed) > 5 else ''}; rerun it (it reprocesses only "
               "those) or run without --from")
        raise RemixError(msg)
    if not_done:
        msg = (f"--from {old_run}: {len(not_done)} of {len(parts)} partition(s) are not processed there yet "
               f"({', '.join(not_done[:5])}{' ...' if len(not_done) > 5 else ''}); wait until its parts phase "
               "is done, or run without --from")
        raise RemixError(msg)
    run_json = read_json(RunLayout(old_run).run_json)
    return {"from": str(old_run), "fingerprint": run_json.get("fingerprint"),
            "processing_fingerprint": processing_fingerprint(old_recipe)}


def _check_partition_plan(old_run: Path, parts: list) -> None:
    """NEW's partitions must be numbered as OLD's: the key is in every uid, so another order is other bytes."""
    path = RunLayout(old_run).partitions_json
    if not path.is_file():
        return  # an OLD that never got past planning has no finished partition either: refused below
    def cell(p: dict) -> tuple:
        return p["source"], p["subset"], p["path"], json.dumps(p.get("row_groups"))

    old = {f"p{p['pid']:06d}": cell(p) for p in read_json(path)}
    new = {p.key: cell(p.__dict__) for p in parts}
    if old == new:
        return
    if sorted(old.values()) == sorted(new.values()):
        msg = (f"--from {old_run}: cannot remix, `sources` lists the same inputs in another order there, and the "
               "order numbers the partitions (their ids are in every document's uid); list the sources in the "
               "order of that run's recipe")
    else:
        gone = sorted({c[2] for c in old.values()} - {c[2] for c in new.values()})
        added = sorted({c[2] for c in new.values()} - {c[2] for c in old.values()})
        msg = (f"--from {old_run}: cannot remix, the set of input files differs from that run's "
               f"({len(added)} new, e.g. {added[:2]}; {len(gone)} gone, e.g. {gone[:2]}); run without --from")
    raise RemixError(msg)


# ---------------------------------------------------------------------------- linking
def _link(src: Path, dst: Path, stats: dict) -> None:
    """Hard-link ``src`` at ``dst`` (a copy, written atomically, when linking fails); keep a ``dst`` already there."""
    if dst.exists():
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
        stats["linked"] += 1
    except OSError:
        tmp = temp_path(dst)
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
        stats["copied"] += 1
    stats["bytes"] += dst.stat().st_size


def _link_tree(src: Path, dst: Path, marker: str, stats: dict) -> None:
    """Link every file under ``src`` into ``dst`` (temporary files skipped), the file named ``marker`` last."""
    files = sorted(f for f in src.rglob("*") if f.is_file() and not f.name.endswith(".tmp"))
    files.sort(key=lambda f: f.name == marker)
    for f in files:
        _link(f, dst / f.relative_to(src), stats)


def link_processed(recipe: Recipe, old_run: Path, new_run: Path, parts: list, inputs: dict[str, dict],
                   record: dict) -> dict:
    """Bring OLD's finished partitions (and dedup, when done) into ``new_run``; return the ``reused`` record.

    Called under NEW's run lock, after ``prepare_run_dir``. Each partition's files come over with its
    ``.done`` marker last, so a kill leaves a partition that is simply not done (the next ``--from`` links it
    again; a plain resume processes it, with the same result). A marker whose input no longer matches (OLD
    reprocessed the partition meanwhile) is refused like in :func:`check_remix`.
    """
    from curate.partition import part_paths

    old_run, new_run = old_run.resolve(), new_run.resolve()
    stats = {"linked": 0, "copied": 0, "bytes": 0}
    for p in parts:
        old, new = part_paths(old_run, p), part_paths(new_run, p)
        if new["done"].is_file():
            continue
        if read_json(old["done"]).get("input") != json.loads(json.dumps(inputs[p.key])):
            msg = f"--from {old_run}: partition {p.key} was reprocessed there while this remix started; rerun it"
            raise RemixError(msg)
        for f in new["done"].parent.glob(f"{p.key}.*"):
            f.unlink()  # left by a killed link step: relink from OLD
        files = sorted(old["done"].parent.glob(f"{p.key}.*"))
        files = [f for f in files if not f.name.endswith(".tmp") and f.name != old["done"].name]
        for f in files:
            _link(f, new["done"].parent / f.name, stats)
        if old["quarantine"].is_file():
            _link(old["quarantine"], new["quarantine"], stats)
        _link(old["done"], new["done"], stats)
    old_l, new_l = RunLayout(old_run), RunLayout(new_run)
    dedup = "none"
    if recipe.dedup is not None:
        dedup = "run here"
        if new_l.dedup_done.is_file():
            dedup = "reused"
        elif old_l.dedup_done.is_file():
            if new_l.dedup_dir.exists():
                shutil.rmtree(new_l.dedup_dir)
            _link_tree(old_l.dedup_dir, new_l.dedup_dir, new_l.dedup_done.name, stats)
            dedup = "reused"
    if recipe.decontaminate is not None and old_l.decont_index.is_file():
        _link(old_l.decont_index, new_l.decont_index, stats)
    return {**record, "parts": [p.key for p in parts], "dedup": dedup, **stats}


def record_run(run_dir: Path, recipe: Recipe, reused: dict | None) -> None:
    """Add ``processing_fingerprint`` (and, for a remix, ``reused``) to ``run_dir/run.json``."""
    path = RunLayout(run_dir).run_json
    info = read_json(path)
    info["processing_fingerprint"] = processing_fingerprint(recipe)
    if reused is not None:
        info["reused"] = reused
    atomic_write_json(path, info)


__all__ = ["check_remix", "link_processed", "processing_diff", "processing_fingerprint", "processing_settings",
           "record_run"]
