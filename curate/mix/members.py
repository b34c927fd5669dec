"""Which mixture member, and which balance value, each kept document counts toward.

Both are pure functions of the recipe and a batch of kept rows (``curate.schema.KEPT_FIELDS``: ``source``,
``subset``, ``lang`` and the ``meta.*`` columns a ``balance:`` names), vectorized over the batch. The mix's
per-partition prepare task (``curate.mix.prepare``) and the planner's sample estimate (``curate.planner``) call
them; they live apart from the mix driver (``curate.mix.task``) so a task module never imports the driver.

A member key is ``group/source[/subset]`` (``Recipe.member_key``); "" means the document counts toward no member
(its source is not in the mixture) and the mix drops it as ``not_in_mixture``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.recipe import Recipe

__all__ = ["assign_members", "balance_values"]


def assign_members(recipe: Recipe, kept: pa.Table) -> np.ndarray:
    """Member key of each document ("" when it counts toward no member), vectorized over the table.

    A document's entry is ``source/subset`` when the mixture names it, else ``source``. It counts toward the
    entry's home group, unless a ``route_by_lang`` rule matches its language and that rule's group lists the
    entry too (e.g. non-English Wikipedia articles counted as multilingual).
    """
    named = {e for gc in recipe.mixture.values() for e in gc.sources}
    if kept.num_rows == 0:
        return np.zeros(0, dtype=object)
    # few distinct (source, subset) pairs: decide per distinct pair, then broadcast by dictionary index
    src = pc.fill_null(kept["source"].cast(pa.string()), "")
    sub = pc.fill_null(kept["subset"].cast(pa.string()), "")
    pair = pc.binary_join_element_wise(src, sub, "\x1f").combine_chunks().dictionary_encode()
    inv = pair.indices.to_numpy(zero_copy_only=False)
    uniq = []
    for p in pair.dictionary.to_pylist():
        s, _, b = p.partition("\x1f")
        e = f"{s}/{b}" if b and f"{s}/{b}" in named else s
        uniq.append(e if e in named else "")
    home = np.array([recipe.member_key(recipe.home_group(e), *_split(e)) if e else "" for e in uniq], dtype=object)
    member = home[inv]
    if recipe.route_by_lang:
        from curate.lid_model import lang_group

        routed = np.asarray(lang_group(kept["lang"], [r.as_rule() for r in recipe.route_by_lang])
                            .to_numpy(zero_copy_only=False), dtype=object)
        for g, gc in recipe.mixture.items():
            listed = np.array([u in gc.sources for u in uniq], dtype=bool)[inv]
            hit = (routed == g) & listed
            if hit.any():
                keys = np.array([recipe.member_key(g, *_split(e)) if e in gc.sources else "" for e in uniq],
                                dtype=object)
                member[hit] = keys[inv[hit]]
    return member


def _split(entry: str) -> tuple[str, str | None]:
    s, _, b = entry.partition("/")
    return s, (b or None)


def balance_values(recipe: Recipe, kept: pa.Table, doc_member: np.ndarray,
                   scopes: list | None = None) -> np.ndarray:
    """The value each document is balanced under (None outside a balanced scope), vectorized.

    A document counts toward its member first (``assign_members``, so ``route_by_lang`` applies), then its
    scope's ``by`` column gives its value: ``lang`` (null = ``und``), ``subset`` or ``meta.<key>`` (null = ``-``).
    """
    from curate.balance import null_value

    out = np.full(len(doc_member), None, dtype=object)
    for _scope, _g, mkeys, b in (recipe.balance_scopes() if scopes is None else scopes):
        col = b.by if b.meta_key is None else f"meta.{b.meta_key}"
        vals = pc.fill_null(kept[col].cast(pa.string()), null_value(b.by))
        if b.by == "subset":
            vals = pc.if_else(pc.equal(vals, ""), null_value(b.by), vals)
        at = np.isin(doc_member, mkeys)
        out[at] = np.asarray(vals.to_numpy(zero_copy_only=False), dtype=object)[at]
    return out
