"""License policy: normalization of license statements to SPDX, policy presets and per-value decisions.

What a source reader puts in the ``license`` column (``curate.schema.DOC_SCHEMA``) is a *raw statement*:

================================ ====================================================================
source format                    raw ``license`` value
================================ ====================================================================
the-stack-v1 / the-stack-v2      JSON list of license strings, e.g. ``["Apache-2.0", "MIT"]``; ``[]`` =
                                 no license found. Every element must pass the policy.
pg19 / gutenberg-txt             ``public-domain-us``, or ``LicenseRef-PG-copyrighted`` when the book's
                                 header carries a copyright notice
wikipedia / mediawiki-xml        ``CC-BY-SA-4.0``
culturax / madlad / refinedweb   ``web-unknown``
open-web-math / proof-pile-2     the arXiv paper's license (usually a URL) or null
generic formats                  whatever ``license_column`` holds, or null
================================ ====================================================================

:func:`classify` turns one raw value into a lineage *label* (one string) and the terms a policy checks:

- an SPDX expression, canonical: ids as spelled by the SPDX list, ``AND``/``OR`` operands de-duplicated and
  sorted, nested operators parenthesized (``"Apache-2.0 OR MIT"``). A JSON list becomes the ``AND`` of its
  normalized elements (``["MIT", "Apache-2.0"]`` -> ``"Apache-2.0 AND MIT"``): The Stack's list is the union
  of the licenses of the repositories a file was seen in, so every one of them applies.
- a tag that is not an SPDX id: ``public-domain-us``, ``LicenseRef-*`` (``LicenseRef-PG-copyrighted``,
  ``LicenseRef-public-domain``, ``LicenseRef-arXiv-...``), kept as is and judged by the allow list;
- a *status* that says the license is not known, judged by the policy's ``unknown`` rule:
  ``none`` (``[]``, SPDX ``NONE``: the source looked and found no license, i.e. all rights reserved),
  ``unknown`` (null, empty, SPDX ``NOASSERTION``, or a string this module cannot map to SPDX) and
  ``web-unknown`` (crawled pages: copyright of their publishers, terms unknown). A list that mixes known and
  unparseable elements gets the label ``"<known> AND unknown"``.

:func:`normalize` maps one statement to SPDX with ``license-expression`` (the SPDX license list plus ScanCode
aliases; ``GPL-2.0+`` -> ``GPL-2.0-or-later``, deprecated ``GPL-3.0`` -> ``GPL-3.0-only``) and, before
that, an alias table for the messy strings found in package metadata and dataset cards. Choices a reader
may disagree with, all conservative:

- ``BSD`` alone is ambiguous (2-, 3- or 4-clause, with different conditions): unknown. ``New``/``Modified``/
  ``Revised BSD`` -> ``BSD-3-Clause``, ``Simplified``/``FreeBSD`` -> ``BSD-2-Clause``.
- Unversioned GNU names follow the GNU licenses' own rule ("if the Program does not specify a version
  number ... you may choose any version ever published", GPL-3.0 §14, LGPL-2.1 §13, AGPL-3.0 §14):
  ``GPL`` -> ``GPL-1.0-or-later`` (as license-expression does), ``LGPL`` -> ``LGPL-2.0-or-later`` (2.0 was
  the first LGPL), ``AGPL`` -> ``AGPL-3.0-or-later`` (the only FSF AGPL). A version without "or later"
  (``GPLv2``) is ``-only``, the SPDX reading of the deprecated ``GPL-2.0``.
- ``Apache Software License``, ``MPL``, ``EPL``, ``CC-BY-SA`` without a version: unknown (versions differ).
- ``BSL`` alone is unknown (Boost Software License or Business Source License); ``Boost ...`` is BSL-1.0.
- ``Public Domain`` (and ScanCode's ``LicenseRef-scancode-public-domain``) -> ``LicenseRef-public-domain``.
- ``UNLICENSED``/``Proprietary``/``All rights reserved`` -> ``LicenseRef-proprietary`` (npm's
  ``UNLICENSED`` means "not licensed", not the Unlicense), which no preset allows.
- ``A/B`` (Cargo's deprecated dual-license syntax) -> ``A OR B`` when both parts are known.
- URLs: ``creativecommons.org/licenses/by-sa/4.0/`` -> ``CC-BY-SA-4.0``, ``.../publicdomain/zero/1.0/`` ->
  ``CC0-1.0``, ``arxiv.org/licenses/nonexclusive-distrib/1.0/`` -> ``LicenseRef-arXiv-nonexclusive-distrib-1.0``,
  ``opensource.org/licenses/X`` and ``apache.org/licenses/LICENSE-2.0``.

:func:`evaluate` checks an expression against an allow list: ``AND`` needs every operand, ``OR`` any one,
``A WITH exception`` passes when ``A`` passes (an exception only adds permissions) or when the whole
``A WITH exception`` is listed.

Policies come from the YAML presets in ``filters/licenses/`` (``allow``, ``unknown``,
``attribution_required``, optional ``extends``) or from a recipe's list of SPDX ids; see
:func:`resolve_policy`. The ``unknown`` rule of a preset may be ``by-format`` (the default when nothing says
otherwise): drop for code formats, keep-and-tag for text formats.

There are few distinct license statements in a corpus (22 repositories, 11 distinct lists in the the-stack
sample), so everything here is cached per distinct value; the stage maps decisions back to rows with
``dictionary_encode`` + ``take``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from curate.errors import RecipeError
from curate.presets import filters_dir as _presets_dir
from curate.presets import read_yaml, yaml_names

if TYPE_CHECKING:
    from curate.recipe import SourceConfig

#: Non-SPDX tags a reader may write; they are identified licenses (or statuses), not parse failures.
PUBLIC_DOMAIN_US = "public-domain-us"
PG_COPYRIGHTED = "LicenseRef-PG-copyrighted"
PUBLIC_DOMAIN = "LicenseRef-public-domain"
PROPRIETARY = "LicenseRef-proprietary"
#: Statuses: the license is not known. Judged by the policy's ``unknown`` rule, not by its allow list.
NONE, UNKNOWN, WEB_UNKNOWN = "none", "unknown", "web-unknown"
STATUSES = frozenset({NONE, UNKNOWN, WEB_UNKNOWN})
#: Longer statements are license *texts* pasted into a metadata field, not ids: they count as unknown.
MAX_STATEMENT_CHARS = 8192
#: Ledger drop reasons are ``license:<label>``.
REASON_PREFIX = "license:"

UnknownRule = Literal["drop", "keep"]
PresetUnknown = Literal["drop", "keep", "by-format"]

# ---------------------------------------------------------------------------- alias table
# Keys are lower-case with whitespace collapsed; they are looked up after the cleaning in ``_clean``
# (drops "the", "license", "version", quotes and a trailing "(...)"), so "The MIT License (MIT)" reaches
# "mit". Values are SPDX ids or this module's LicenseRef tags.
ALIASES: dict[str, str] = {
    # Apache
    "apache 2": "Apache-2.0", "apache2": "Apache-2.0", "apache-2": "Apache-2.0", "apache 2.0": "Apache-2.0",
    "apache2.0": "Apache-2.0", "asl 2.0": "Apache-2.0", "asl-2.0": "Apache-2.0", "apache 1.1": "Apache-1.1",
    # MIT family
    "mit/x11": "MIT", "expat": "MIT", "mit expat": "MIT", "mit-style": "MIT",
    # BSD family ("bsd" alone stays unknown: 2-, 3- or 4-clause)
    "new bsd": "BSD-3-Clause", "modified bsd": "BSD-3-Clause", "revised bsd": "BSD-3-Clause",
    "bsd new": "BSD-3-Clause", "bsd-new": "BSD-3-Clause", "bsd-3": "BSD-3-Clause", "bsd3": "BSD-3-Clause",
    "bsd 3-clause new or revised": "BSD-3-Clause", "simplified bsd": "BSD-2-Clause", "bsd-2": "BSD-2-Clause",
    "bsd simplified": "BSD-2-Clause", "freebsd": "BSD-2-Clause", "bsd2": "BSD-2-Clause",
    "bsd 2-clause simplified": "BSD-2-Clause", "bsd zero clause": "0BSD", "zero-clause bsd": "0BSD",
    # others with a common long or short name
    "zlib/libpng": "Zlib", "boost": "BSL-1.0", "boost 1.0": "BSL-1.0", "bsl 1.0": "BSL-1.0",
    "unlicence": "Unlicense", "psf": "PSF-2.0", "psfl": "PSF-2.0", "python software foundation": "PSF-2.0",
    "isc-style": "ISC", "cc0": "CC0-1.0", "cc-0": "CC0-1.0", "cc zero": "CC0-1.0",
    # unversioned GNU names: see the module docstring
    "lgpl": "LGPL-2.0-or-later", "agpl": "AGPL-3.0-or-later", "gnu gpl": "GPL-1.0-or-later",
    # public domain and proprietary
    "public domain": PUBLIC_DOMAIN, "public-domain": PUBLIC_DOMAIN, "publicdomain": PUBLIC_DOMAIN,
    "licenseref-scancode-public-domain": PUBLIC_DOMAIN,
    "unlicensed": PROPRIETARY, "proprietary": PROPRIETARY, "all rights reserved": PROPRIETARY,
    "commercial": PROPRIETARY,
}

# Word-level rewrites applied (in order) after lower-casing, so long names reach a short key.
_WORDS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p), r)
    for p, r in (
        (r"\blicen[cs]e[sd]?\b(?!ref)", " "),
        (r"\bversion\b", " "),
        (r"^the\s+", ""),
        (r"\bgnu\s+", ""),
        (r"\b(?:lesser|library)\s+general\s+public\b", "lgpl"),
        (r"\baffero\s+general\s+public\b", "agpl"),
        (r"\bgeneral\s+public\b", "gpl"),
        (r"\bmozilla\s+public\b", "mpl"),
        (r"\beclipse\s+public\b", "epl"),
        (r"\bboost\s+software\b", "boost"),
        (r"\bacademic\s+free\b", "afl"),
        (r"\beuropean\s+union\s+public\b", "eupl"),
        (r"\bapache\s+software\s+(?=\d|v\d)", "apache "),
        (r"\bcreative\s+commons\b", "cc"),
        (r"\battribution\b", "by"),
        (r"\bnon-?commercial\b", "nc"),
        (r"\bshare-?\s?alike\b", "sa"),
        (r"\bno-?\s?deriv(?:ative)?s\b", "nd"),
        (r"\b(?:international|unported|generic)\b", " "),
    )
)
_GPL_RE = re.compile(
    r"^(?P<fam>a|l)?gpl[\s-]*v?(?P<maj>[123])(?:\.(?P<min>\d))?"
    r"(?P<later>\+|[\s-]*or[\s-]*later|[\s-]*or[\s-]*newer)?(?:[\s-]*only)?$"
)
_BSD_RE = re.compile(r"^(?:bsd[\s-]*(?P<a>[0-4])[\s-]*clause|(?P<b>[0-4])[\s-]*clause[\s-]*bsd)$")
_CC_RE = re.compile(r"^cc[\s-]*(?P<terms>by(?:[\s-]+(?:nc|sa|nd))*)[\s-]*v?(?P<ver>[1-4]\.[05])$")
_CC0_RE = re.compile(r"^cc[\s-]*(?:0|zero)(?:[\s-]*v?1\.0)?(?:[\s-]*universal)?$")
_CC_URL_RE = re.compile(r"creativecommons\.org/licenses/(?P<terms>by(?:-(?:nc|sa|nd))*)/(?P<ver>[1-4]\.[05])"
                        r"(?:/(?P<port>[a-z]{2,3})\b)?")
_CC0_URL_RE = re.compile(r"creativecommons\.org/publicdomain/zero/1\.0")
_PD_URL_RE = re.compile(r"creativecommons\.org/(?:publicdomain/mark/1\.0|licenses/publicdomain)")
_ARXIV_URL_RE = re.compile(r"arxiv\.org/licenses/(?P<name>[a-z0-9.\-]+(?:/[0-9.]+)?)")
_OSI_URL_RE = re.compile(r"opensource\.org/licenses?/(?P<id>[A-Za-z0-9.\-+]+?)(?:\.php|\.html)?/?$")
_APACHE_URL_RE = re.compile(r"apache\.org/licenses/license-(?P<ver>[12]\.[01])")
_LICENSEREF_RE = re.compile(r"^(?:DocumentRef-[A-Za-z0-9.\-]+:)?LicenseRef-[A-Za-z0-9.\-]+$", re.IGNORECASE)
_WS = re.compile(r"\s+")
_STATUS_TAIL_RE = re.compile(r"^(?P<head>.+) AND (?P<status>none|unknown|web-unknown)$")


# ---------------------------------------------------------------------------- SPDX machinery
@lru_cache(maxsize=1)
def _licensing() -> Any:
    from license_expression import get_spdx_licensing  # 0.07 s to build; only when used

    return get_spdx_licensing()


@lru_cache(maxsize=1)
def _spdx_ids() -> dict[str, str]:
    """Map every lower-cased SPDX id and license-expression alias to its canonical SPDX id."""
    out: dict[str, str] = {}
    for key, sym in _licensing().known_symbols.items():
        for name in (key, *sym.aliases):
            out.setdefault(name.lower(), key)
    return out


def _clean(s: str) -> str:
    c = s.lower().replace('"', " ").replace("'", " ").replace(",", " ")
    c = re.sub(r"\s*\([^()]*\)\s*$", "", c)  # "The MIT License (MIT)"
    for pat, rep in _WORDS:
        c = pat.sub(rep, c)
    return _WS.sub(" ", c).strip()


def _known(candidate: str) -> str | None:
    lk = candidate.lower()
    return ALIASES.get(lk) or _spdx_ids().get(lk)


@lru_cache(maxsize=1 << 14)
def _resolve_symbol(key: str) -> str | None:
    """Map one license id (no operators) to its canonical SPDX id or tag, or None when unknown."""
    s = _WS.sub(" ", key).strip()
    if not s:
        return None
    ls = s.lower()
    if ls in (PUBLIC_DOMAIN_US, WEB_UNKNOWN):
        return ls
    if (hit := _known(s)) is not None:
        return hit
    if "://" in s or ls.startswith("www."):
        return _resolve_url(ls)
    if _LICENSEREF_RE.match(s):  # custom ids stay as written, with the SPDX spelling of the prefix
        i = ls.rfind("licenseref-")
        return f"{s[:i]}LicenseRef-{s[i + len('licenseref-'):]}"
    c = _clean(s)
    if (hit := _known(c)) is not None:
        return hit
    if m := _GPL_RE.match(c):
        fam = {"a": "AGPL", "l": "LGPL", None: "GPL"}[m["fam"]]
        cand = f"{fam}-{m['maj']}.{m['min'] or 0}-{'or-later' if m['later'] else 'only'}"
        return _spdx_ids().get(cand.lower())
    if m := _BSD_RE.match(c):
        n = m["a"] or m["b"]
        return "0BSD" if n == "0" else f"BSD-{n}-Clause"
    if _CC0_RE.match(c):
        return "CC0-1.0"
    if m := _CC_RE.match(c):
        terms = "-".join(re.split(r"[\s-]+", m["terms"])).upper()
        return _spdx_ids().get(f"cc-{terms}-{m['ver']}".lower())
    # "apache 2.0" -> "apache-2.0", "mpl v2.0" -> "mpl-2.0", "bsl 1.0" -> "bsl-1.0"
    dashed = re.sub(r"[\s_]+v?(?=\d)", "-", c)
    return _known(dashed)


def _resolve_url(url: str) -> str | None:
    if m := _CC_URL_RE.search(url):
        base = f"cc-{m['terms']}-{m['ver']}"
        if m["port"] and (ported := _spdx_ids().get(f"{base}-{m['port']}")):
            return ported
        return _spdx_ids().get(base)
    if _CC0_URL_RE.search(url):
        return "CC0-1.0"
    if _PD_URL_RE.search(url):
        return PUBLIC_DOMAIN
    if m := _ARXIV_URL_RE.search(url):
        return "LicenseRef-arXiv-" + m["name"].strip("/").replace("/", "-")
    if m := _OSI_URL_RE.search(url.rstrip("/")):
        return _known(m["id"])
    if m := _APACHE_URL_RE.search(url):
        return _spdx_ids().get(f"apache-{m['ver']}")
    return None


def _parse(expr: str) -> Any | None:
    from boolean.boolean import ParseError  # dependency of license-expression
    from license_expression import ExpressionError

    try:
        return _licensing().parse(expr, validate=False, strict=False)
    except (ExpressionError, ParseError, TypeError, ValueError):
        return None


def _op(node: Any) -> str | None:
    lic = _licensing()
    if isinstance(node, lic.AND):
        return "AND"
    if isinstance(node, lic.OR):
        return "OR"
    return None


def _render(node: Any) -> str | None:
    """Canonical string of a parsed expression, or None if a leaf is unknown."""
    from license_expression import LicenseWithExceptionSymbol

    if isinstance(node, LicenseWithExceptionSymbol):
        lic = _resolve_symbol(node.license_symbol.key)
        exc = _resolve_symbol(node.exception_symbol.key)
        return f"{lic} WITH {exc}" if lic and exc else None
    op = _op(node)
    if op is None:
        return _resolve_symbol(node.key)
    parts: set[str] = set()
    for arg in _flatten(node, op):
        r = _render(arg)
        if r is None:
            return None
        parts.add(f"({r})" if _op(arg) else r)
    return _join(parts, op)


def _flatten(node: Any, op: str) -> list[Any]:
    out = []
    for arg in node.args:
        out.extend(_flatten(arg, op) if _op(arg) == op else [arg])
    return out


def _and_of(exprs: Iterable[str]) -> str:
    """``AND`` of rendered expressions, parenthesizing ``OR`` operands only when there are several."""
    uniq = set(exprs)
    if len(uniq) == 1:
        return uniq.pop()
    # re-normalizing flattens nested ANDs and sorts: ("GPL-3.0-only AND MIT", "ISC") -> "GPL-3.0-only AND ISC AND MIT"
    return normalize(" AND ".join(f"({e})" for e in sorted(uniq))) or _join(
        [f"({e})" if " OR " in e else e for e in uniq], "AND")


def _join(parts: Iterable[str], op: str) -> str:
    uniq = sorted(set(parts), key=lambda p: (p.lstrip("(").lower(), p))
    return uniq[0] if len(uniq) == 1 else f" {op} ".join(uniq)


# ---------------------------------------------------------------------------- public: one statement
@lru_cache(maxsize=1 << 14)
def normalize(raw: str) -> str | None:
    """Normalize one license statement to a canonical SPDX expression (or tag), None when unknown.

    Parameters
    ----------
    raw
        An SPDX id or expression, a common name (``"Apache License 2.0"``), a license URL, or a tag
        (``public-domain-us``, ``web-unknown``, ``LicenseRef-*``). JSON lists are handled by :func:`classify`.

    Returns
    -------
    str or None
        e.g. ``"GPL-3.0-or-later"``, ``"Apache-2.0 OR MIT"``, ``"Apache-2.0 WITH LLVM-exception"``; None
        for empty, ambiguous (``"BSD"``) or unparseable strings.

    Examples
    --------
    >>> normalize("GPLv3+"), normalize("MIT License"), normalize("BSD")
    ('GPL-3.0-or-later', 'MIT', None)
    >>> normalize("mit or Apache 2.0")
    'Apache-2.0 OR MIT'
    """
    s = _WS.sub(" ", raw).strip()
    if not s:
        return None
    if (hit := _resolve_symbol(s)) is not None:
        return hit
    if "/" in s and "://" not in s:  # Cargo's deprecated "MIT/Apache-2.0" means OR
        parts = [_resolve_symbol(p) for p in s.split("/")]
        if len(parts) > 1 and all(parts):
            return _join(parts, "OR")  # type: ignore[arg-type]
    tree = _parse(s)
    return None if tree is None else _render(tree)


def _blocker(node: Any, allowed: frozenset[str]) -> str | None:
    """Return the part of ``node`` the allow list rejects (rendered), or None when ``node`` passes."""
    from license_expression import LicenseWithExceptionSymbol

    if isinstance(node, LicenseWithExceptionSymbol):
        lic = _resolve_symbol(node.license_symbol.key)
        whole = f"{lic} WITH {_resolve_symbol(node.exception_symbol.key)}"
        return None if lic in allowed or whole in allowed else whole
    op = _op(node)
    if op is None:
        leaf = _resolve_symbol(node.key) or node.key
        return None if leaf in allowed else leaf
    args = _flatten(node, op)
    failing = [b for a in args if (b := _blocker(a, allowed)) is not None]
    if op == "AND":
        return _and_of(failing) if failing else None
    return None if len(failing) < len(args) else _render(node) or node.render()


@lru_cache(maxsize=1 << 14)
def blocker(expr: str, allowed: frozenset[str]) -> str | None:
    """Return the license(s) in ``expr`` that ``allowed`` rejects, or None when ``expr`` passes.

    For ``AND`` the failing operands (``"MIT AND GPL-3.0-only"`` -> ``"GPL-3.0-only"``); for an ``OR`` whose
    every operand fails, the whole ``OR``; an unparseable ``expr`` is returned as is.
    """
    tree = _parse(expr)
    if tree is None:
        return expr
    return _blocker(tree, allowed)


def evaluate(expr: str, allowed: frozenset[str]) -> bool:
    """Whether the license expression ``expr`` is acceptable under the allow list ``allowed``.

    ``AND`` needs every operand allowed, ``OR`` any one; ``A WITH exc`` passes when ``A`` or the whole
    ``A WITH exc`` is allowed. Leaves are normalized first, so ``"mit or GPL-3.0"`` works too.

    Examples
    --------
    >>> allowed = frozenset({"MIT", "Apache-2.0"})
    >>> evaluate("MIT OR GPL-3.0-only", allowed), evaluate("MIT AND GPL-3.0-only", allowed)
    (True, False)
    >>> evaluate("Apache-2.0 WITH LLVM-exception", allowed)
    True
    """
    return blocker(expr, allowed) is None


# ---------------------------------------------------------------------------- classify and decide
@dataclass(frozen=True)
class Classified:
    """One raw statement, classified.

    Attributes
    ----------
    label
        Lineage label: a canonical SPDX expression, a tag, or a status (``none``/``unknown``/``web-unknown``).
    terms
        Normalized expressions that must *all* pass the allow list (one per JSON-list element).
    status
        ``none``, ``unknown`` or ``web-unknown`` when (part of) the license is not known, else None.
    """

    label: str
    terms: tuple[str, ...] = ()
    status: str | None = None


def classify(raw: str | None) -> Classified:
    """Classify a raw ``license`` value (see the module docstring for the format of each source).

    Examples
    --------
    >>> classify('["MIT", "apache-2.0"]')
    Classified(label='Apache-2.0 AND MIT', terms=('Apache-2.0', 'MIT'), status=None)
    >>> classify("[]").label, classify(None).label, classify("web-unknown").label
    ('none', 'unknown', 'web-unknown')
    """
    if raw is None or len(raw) > MAX_STATEMENT_CHARS:
        return Classified(UNKNOWN, status=UNKNOWN)
    return _classify(raw)


@lru_cache(maxsize=1 << 16)
def _classify(raw: str) -> Classified:
    s = raw.strip()
    low = s.lower()
    if not s or low in ("noassertion", "unknown", "other"):
        return Classified(UNKNOWN, status=UNKNOWN)
    if low == "none":
        return Classified(NONE, status=NONE)
    if low == WEB_UNKNOWN:
        return Classified(WEB_UNKNOWN, status=WEB_UNKNOWN)
    if s.startswith("["):
        try:
            items = json.loads(s)
        except json.JSONDecodeError:
            return Classified(UNKNOWN, status=UNKNOWN)
        if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
            return Classified(UNKNOWN, status=UNKNOWN)
        if not items:
            return Classified(NONE, status=NONE)
        subs = [classify(x) for x in items]
        terms = tuple(sorted({t for c in subs for t in c.terms}))
        statuses = {c.status for c in subs if c.status}
        # an unparseable element is worse than "none"/"web-unknown" next to a known license
        status = UNKNOWN if UNKNOWN in statuses else (min(statuses) if statuses else None)
        known = _and_of(terms) if terms else ""
        if not known:
            return Classified(status or UNKNOWN, status=status or UNKNOWN)
        return Classified(f"{known} AND {status}" if status else known, terms, status)
    if m := _STATUS_TAIL_RE.match(s):  # a label this function made from a list: "MIT AND unknown"
        head = classify(m["head"])
        if head.status is None:
            return Classified(f"{head.label} AND {m['status']}", head.terms, m["status"])
    norm = normalize(s)
    if norm is None:
        return Classified(UNKNOWN, status=UNKNOWN)
    if norm == WEB_UNKNOWN:
        return Classified(WEB_UNKNOWN, status=WEB_UNKNOWN)
    return Classified(norm, (norm,))


@dataclass(frozen=True)
class Policy:
    """A resolved license policy: what a source keeps.

    Attributes
    ----------
    allow
        Canonical SPDX ids and tags that pass (see :func:`evaluate`).
    unknown
        ``drop`` or ``keep`` for values whose license is not known (``none``, ``unknown``, ``web-unknown``)
        unless that status is itself listed in ``allow``.
    preset
        The preset it came from, for reports; None for a plain list of ids.
    attribution_required
        Allowed ids whose notice must travel with the data.
    """

    allow: frozenset[str]
    unknown: UnknownRule
    preset: str | None = None
    attribution_required: frozenset[str] = field(default_factory=frozenset)

    def describe(self) -> dict[str, Any]:
        """JSON-able description for the resolved recipe and LICENSES.md."""
        return {"preset": self.preset, "allow": sorted(self.allow, key=str.lower), "unknown": self.unknown}


@dataclass(frozen=True)
class Decision:
    """What a policy does with one raw value: the lineage label, and the drop reason (None keeps)."""

    license: str
    reason: str | None


def decide(raw: str | None, policy: Policy | None) -> Decision:
    """Apply ``policy`` to one raw ``license`` value; ``policy=None`` only labels (never drops).

    A known license the allow list rejects drops with ``license:<the rejected id(s)>`` (this wins over an
    unknown element next to it); otherwise an unknown status drops with ``license:<status>`` when the rule is
    ``drop`` and the status is not itself in ``allow``.

    Examples
    --------
    >>> p = Policy(frozenset({"MIT"}), "drop")
    >>> decide('["MIT", "GPL-2.0+"]', p)
    Decision(license='GPL-2.0-or-later AND MIT', reason='license:GPL-2.0-or-later')
    >>> decide("[]", p).reason
    'license:none'
    """
    if raw is not None and len(raw) > MAX_STATEMENT_CHARS:
        raw = None  # a license text, not an id: unknown, and not worth a cache entry
    return _decide(raw, policy)


@lru_cache(maxsize=1 << 16)
def _decide(raw: str | None, policy: Policy | None) -> Decision:
    c = classify(raw)
    if policy is None:
        return Decision(c.label, None)
    failing = [b for t in c.terms if (b := blocker(t, policy.allow)) is not None]
    if failing:
        return Decision(c.label, REASON_PREFIX + _and_of(failing))
    if c.status and policy.unknown == "drop" and c.status not in policy.allow:
        return Decision(c.label, REASON_PREFIX + c.status)
    return Decision(c.label, None)


def decide_array(raw: pa.Array | pa.ChunkedArray, policy: Policy | None) -> tuple[pa.Array, pa.Array]:
    """Vectorized :func:`decide`: ``(labels, drop_reasons)`` for a column of raw values.

    Decisions are computed once per distinct value (``dictionary_encode``) and mapped back with ``take``.
    """
    arr = raw.combine_chunks() if isinstance(raw, pa.ChunkedArray) else raw
    if arr.type != pa.string():
        arr = arr.dictionary_decode() if pa.types.is_dictionary(arr.type) else arr
        arr = pc.cast(arr, pa.string())
    enc = pc.dictionary_encode(arr, null_encoding="encode")
    decisions = [decide(v, policy) for v in enc.dictionary.to_pylist()]
    labels = pa.array([d.license for d in decisions], type=pa.string())
    reasons = pa.array([d.reason for d in decisions], type=pa.string())
    return labels.take(enc.indices), reasons.take(enc.indices)


# ---------------------------------------------------------------------------- presets and policies
@dataclass(frozen=True)
class LicensePreset:
    """A license preset file (``filters/licenses/<name>.yaml``), with ``extends`` already merged."""

    name: str
    allow: frozenset[str]
    unknown: PresetUnknown
    attribution_required: frozenset[str]
    path: str


def _filters_dir() -> Path:
    return _presets_dir() / "licenses"


def _normalize_ids(ids: Any, *, where: str, recipe_file: str | None) -> list[str]:
    """Normalize an allow list: single ids (``A WITH exc`` too), tags, or the statuses written out."""
    if not isinstance(ids, list) or not all(isinstance(x, str) for x in ids):
        msg = f"must be a list of SPDX license ids, got {ids!r}"
        raise RecipeError(msg, path=where, recipe_file=recipe_file)
    out = []
    for i, x in enumerate(ids):
        c = classify(x)
        if c.status is not None and c.status == x.strip().lower():
            out.append(c.status)  # `allow: [web-unknown]` keeps crawled text whatever `unknown` says
            continue
        if c.status is not None:
            msg = (f"{x!r} is not a known SPDX license id; use an id from https://spdx.org/licenses/, a "
                   "`LicenseRef-...` tag, or one of public-domain-us, web-unknown, none, unknown")
            raise RecipeError(msg, path=f"{where}[{i}]", recipe_file=recipe_file)
        if " AND " in c.label or " OR " in c.label:
            msg = f"an allow list names single licenses, got the expression {x!r}; list its ids one by one"
            raise RecipeError(msg, path=f"{where}[{i}]", recipe_file=recipe_file)
        out.append(c.label)
    return out


def load_license_preset(name: str, *, filters_dir: str | os.PathLike | None = None) -> LicensePreset:
    """Load ``<filters_dir>/<name>.yaml`` (default ``filters/licenses``), merging its ``extends`` presets.

    Raises
    ------
    RecipeError
        naming the preset file and key when the file is missing, has unknown keys, an unknown id, an
        ``attribution_required`` id that is not allowed, or an ``extends`` cycle.
    """
    d = Path(filters_dir) if filters_dir is not None else _filters_dir()
    return _load_license_preset(name, str(d), ())


@lru_cache(maxsize=64)
def _load_license_preset(name: str, d: str, chain: tuple[str, ...]) -> LicensePreset:
    path = Path(d) / f"{name}.yaml"
    where = str(path)
    if name in chain:
        msg = f"`extends` cycle: {' -> '.join((*chain, name))}"
        raise RecipeError(msg, path="extends", recipe_file=where)
    if not path.is_file():
        have = sorted(p.stem for p in Path(d).glob("*.yaml"))
        msg = f"unknown license preset {name!r}; must be one of {have}"
        raise RecipeError(msg, recipe_file=where)
    data = read_yaml(path)
    if not isinstance(data, dict):
        msg = "a license preset must be a YAML mapping with `allow`, `unknown`, `attribution_required`"
        raise RecipeError(msg, recipe_file=where)
    extra = sorted(set(data) - {"allow", "unknown", "attribution_required", "extends"})
    if extra:
        msg = f"unknown key(s) {extra}; a preset has allow, unknown, attribution_required and optional extends"
        raise RecipeError(msg, path=extra[0], recipe_file=where)
    for key in ("allow", "unknown"):
        if key not in data:
            msg = "required key is missing"
            raise RecipeError(msg, path=key, recipe_file=where)
    unknown = data["unknown"]
    if unknown not in ("drop", "keep", "by-format"):
        msg = f"`unknown` must be one of {{drop, keep, by-format}}, got {unknown!r}"
        raise RecipeError(msg, path="unknown", recipe_file=where)
    allow = set(_normalize_ids(data["allow"], where="allow", recipe_file=where))
    attrib = set(_normalize_ids(data.get("attribution_required") or [], where="attribution_required",
                                recipe_file=where))
    parents = data.get("extends") or []
    parents = [parents] if isinstance(parents, str) else parents
    if not isinstance(parents, list):
        msg = f"`extends` must be a preset name or a list of them, got {parents!r}"
        raise RecipeError(msg, path="extends", recipe_file=where)
    for parent in parents:
        p = _load_license_preset(parent, d, (*chain, name))
        allow |= p.allow
        attrib |= p.attribution_required
    stray = sorted(attrib - allow)
    if stray:
        msg = f"{stray} are in `attribution_required` but not allowed; add them to `allow` or remove them"
        raise RecipeError(msg, path="attribution_required", recipe_file=where)
    return LicensePreset(name, frozenset(allow), unknown, frozenset(attrib), where)


def preset_names(*, filters_dir: str | os.PathLike | None = None) -> list[str]:
    """Names of the license presets."""
    return yaml_names(filters_dir if filters_dir is not None else _filters_dir())


def attribution_ids(*, filters_dir: str | os.PathLike | None = None) -> frozenset[str]:
    """Every id some preset lists under ``attribution_required`` (the LICENSES report uses this union)."""
    return preset_sets(filters_dir)[0]


def preset_sets(filters_dir: str | os.PathLike | None = None) -> tuple[frozenset[str], frozenset[str]]:
    """``(needs a notice, known to any preset)``: the union over all presets of ``attribution_required``, ``allow``."""
    att: set[str] = set()
    known: set[str] = set()
    for name in preset_names(filters_dir=filters_dir):
        p = load_license_preset(name, filters_dir=filters_dir)
        att |= p.attribution_required
        known |= p.allow
    return frozenset(att), frozenset(known)


def resolve_policy(source_name: str, src: SourceConfig, *, filters_dir: str | os.PathLike | None = None
                   ) -> Policy | None:
    """Turn a source's ``license:`` entry into a :class:`Policy` (None when the source has none).

    ``license: permissive`` uses the preset; ``license: [MIT, Apache-2.0]`` allows exactly those;
    ``license: {preset: permissive, allow: [MPL-2.0], unknown: keep}`` allows the union. The ``unknown`` rule
    is the recipe's when given, else the preset's, else by format: ``drop`` for code (the reader registered ``code=True``),
    ``keep`` (keep and tag) for text.
    """
    lic = src.license
    if lic is None:
        return None
    base = f"sources.{source_name}.license"
    preset_name: str | None = None
    extra: list[str] = []
    rule: str | None = None
    if isinstance(lic, str):
        preset_name = lic
    elif isinstance(lic, list):
        extra = _normalize_ids(lic, where=base, recipe_file=None)
    elif hasattr(lic, "allow"):  # a LicensePolicy mapping (duck-typed: the config layer sits above this module)
        preset_name, rule = lic.preset, lic.unknown
        if lic.allow is not None:
            extra = _normalize_ids(lic.allow, where=f"{base}.allow", recipe_file=None)
    else:  # pragma: no cover - pydantic rejects anything else
        msg = f"must be a preset name, a list of SPDX ids or a mapping, got {type(lic).__name__}"
        raise RecipeError(msg, path=base)
    if not isinstance(lic, (str, list)) and not preset_name and not lic.allow:
        msg = "give `preset` or `allow`"
        raise RecipeError(msg, path=base)
    if preset_name is not None and filters_dir is None and preset_name not in preset_names():
        where, also = (base, " or a list of SPDX ids") if isinstance(lic, str) else (f"{base}.preset", "")
        msg = f"unknown license preset {preset_name!r}; must be one of {preset_names()}{also}"
        raise RecipeError(msg, path=where)
    allow: set[str] = set(extra)
    attrib: frozenset[str] = frozenset()
    if preset_name is not None:
        try:
            preset = load_license_preset(preset_name, filters_dir=filters_dir)
        except RecipeError as e:
            where = f"{base}.preset" if not isinstance(lic, str) else base
            raise RecipeError(e.message, path=where if e.path is None else f"{where} ({e.recipe_file}: {e.path})"
                              ) from None
        allow |= preset.allow
        attrib = preset.attribution_required
        if rule is None and preset.unknown != "by-format":
            rule = preset.unknown
    if not allow:
        msg = "the policy allows no license; give `preset` or a non-empty `allow` list"
        raise RecipeError(msg, path=base)
    if rule is None:
        from curate.sources import format_info

        rule = "drop" if format_info(src.format).code else "keep"
    return Policy(frozenset(allow), rule, preset_name, attrib)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- attribution
def requires_attribution(label: str, *, attribution: frozenset[str] | None = None,
                         known: frozenset[str] | None = None) -> bool | None:
    """Whether text under ``label`` must carry a notice: True, False, or None when that is not known.

    A leaf needs a notice when it is in ``attribution``, needs none when it is in ``known`` but not in
    ``attribution``, and is undetermined otherwise (an unknown status, an unlisted ``LicenseRef``).
    ``AND`` needs a notice if any operand does; ``OR`` only if every alternative does (one may pick the
    alternative that needs none): ``"MIT OR Unlicense"`` -> False. Defaults: the union over all presets.
    """
    if attribution is None or known is None:
        att, kn = preset_sets(None)
        attribution = att if attribution is None else attribution
        known = kn if known is None else known
    c = classify(label)
    vals = [_tri(tree, attribution, known) if (tree := _parse(t)) is not None else None for t in c.terms]
    if c.status:
        vals.append(None)
    return _tri_and(vals) if vals else None


def _tri_and(vals: list[bool | None]) -> bool | None:
    return True if True in vals else (None if None in vals else False)


def _tri(node: Any, attribution: frozenset[str], known: frozenset[str]) -> bool | None:
    op = _op(node)
    if op is None:
        key = node.license_symbol.key if hasattr(node, "license_symbol") else node.key
        leaf = _resolve_symbol(key) or key
        return True if leaf in attribution else (False if leaf in known else None)
    vals = [_tri(a, attribution, known) for a in _flatten(node, op)]
    if op == "AND":
        return _tri_and(vals)
    return False if False in vals else (None if None in vals else True)
