"""The license stage: normalize each document's license statement and drop what the source's policy rejects.

Input: the ``license`` column of ``curate.schema.DOC_SCHEMA`` — the raw statement a reader wrote (a JSON list
for the-stack, ``public-domain-us`` for PG-19, ``CC-BY-SA-4.0`` for Wikipedia, ``web-unknown`` for web
crawls, an arXiv license URL or null for math; see ``curate.license_policy``).

Output, same rows in the same order:

============= ======= =================================================================================
column        type    meaning
============= ======= =================================================================================
license_raw   string  the statement as the reader wrote it (kept for audit)
license       string  lineage label: canonical SPDX expression (``"Apache-2.0 AND MIT"``), a tag
                      (``public-domain-us``, ``LicenseRef-PG-copyrighted``) or a status (``none``,
                      ``unknown``, ``web-unknown``)
drop_reason   string  null keeps the row; ``license:<id>`` drops it, naming the rejected license
                      (``license:GPL-2.0-or-later``, ``license:none``, ``license:unknown``)
============= ======= =================================================================================

A source with ``license:`` in the recipe gets a filtering stage (:meth:`LicenseStage.from_source`); every
other source gets :meth:`LicenseStage.annotator`, which writes the same two columns and drops nothing, so
lineage and the LICENSES report carry a normalized license for every token.

Decisions are made once per distinct raw value (a corpus has few: 11 in the 3,180-file the-stack sample)
and mapped back to rows with ``dictionary_encode`` + ``take``; no per-row Python. The stage is idempotent:
when ``license_raw`` is already present it is the input, so rerunning a batch gives the same result.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import pyarrow as pa

from curate.license_policy import Policy, decide_array, resolve_policy
from curate.stages.base import Stage, set_column, with_drop_reason

if TYPE_CHECKING:
    from curate.recipe import Recipe, SourceConfig


class LicenseStage(Stage):
    """Normalize ``license`` and drop rows whose license the source's policy does not allow.

    Parameters
    ----------
    policy
        The resolved policy, or None to annotate only (nothing is dropped).
    source
        Recipe source name, for :meth:`describe`.

    Examples
    --------
    >>> import pyarrow as pa
    >>> from curate.license_policy import Policy
    >>> stage = LicenseStage(Policy(frozenset({"MIT"}), "drop"), source="code")
    >>> out = stage.process(pa.table({"license": ['["MIT"]', '["GPL-2.0+"]', "[]"]}))
    >>> out["license"].to_pylist(), out["drop_reason"].to_pylist()
    (['MIT', 'GPL-2.0-or-later', 'none'], [None, 'license:GPL-2.0-or-later', 'license:none'])
    """

    name: ClassVar[str] = "license"
    required_columns: ClassVar[tuple[str, ...]] = ("license",)
    added_columns: ClassVar[tuple[str, ...]] = ("license", "license_raw")

    def __init__(self, policy: Policy | None = None, *, source: str = "") -> None:
        self.policy = policy
        self.source = source

    @classmethod
    def from_source(cls, source_name: str, src: SourceConfig, recipe: Recipe | None = None) -> LicenseStage | None:
        """Build the filtering stage for one recipe source; None when the source has no ``license:`` key.

        Raises
        ------
        RecipeError
            naming ``sources.<name>.license`` when the preset is unknown or an id is not SPDX.
        """
        policy = resolve_policy(source_name, src)
        return None if policy is None else cls(policy, source=source_name)

    @classmethod
    def annotator(cls, source_name: str, src: SourceConfig | None = None) -> LicenseStage:
        """Build a stage that normalizes ``license`` and keeps every row (for sources without ``license:``)."""
        return cls(None, source=source_name)

    def process(self, table: pa.Table) -> pa.Table:
        """Set ``license_raw``, ``license`` and ``drop_reason``; same rows, same order."""
        self.check_columns(table, where=f"source {self.source!r}" if self.source else "")
        raw_name = "license_raw" if "license_raw" in table.column_names else "license"
        raw = table[raw_name]
        labels, reasons = decide_array(raw, self.policy)
        if raw.type != pa.string():
            raw = raw.cast(pa.string())
        table = set_column(table, "license_raw", raw)
        table = set_column(table, "license", labels)
        return with_drop_reason(table, reasons)

    def describe(self) -> dict[str, Any]:
        """Describe the configured policy (``policy: null`` for an annotate-only stage)."""
        return {"stage": self.name, "source": self.source,
                "policy": None if self.policy is None else self.policy.describe()}
