"""Vega-Lite chart templates: built once with ``altair``, kept on disk, filled with a run's data as plain dicts.

The report (``curate.report``) draws the same eight chart shapes for every run; only their rows and a few
numbers differ (a panel's height, an axis domain, a title, a colour domain). Building each chart with altair
costs the driver about 0.6 s per report (altair deep-copies and re-wraps every spec object at each ``encode``,
``layer`` and ``concat``) plus 0.5 s to import altair itself, on every run, although the result depends on the
data only through those few values. So a chart is built once per *shape* with placeholders instead of values
and data (:class:`Slots`), turned into its Vega-Lite dict by altair, and kept; a run fills the placeholders
(:func:`fill`), which is a walk over a dict of a few kB.

Placeholders
    ``slots.num(name)`` an integer that appears nowhere else (987,650,000 + n); ``slots.text(name)`` the string
    ``⟦name⟧``, which may stand inside a longer string (a title, an expression); ``slots.seq(name)`` the list
    ``["⟦name⟧"]``, replaced by a whole list (a sort order, a colour domain); ``alt.NamedData(name)`` a data
    source, replaced by ``{"values": rows}``. A number placeholder inside a string (an expression such as
    ``datum.docs > 987650001``) is replaced there too. :func:`fill` fails on a placeholder without a value, so a
    template can never reach the page half filled.

Where they are kept
    In memory for the process, and as JSON under ``io_utils.user_cache_dir() / "chart-templates"``, one file per
    shape, named by the sha256 of the template's name and key, altair's version and the source of the module
    that builds it (``curate/report.py``): a new altair or an edit of the chart code means a new build, never a
    stale chart. A missing, unreadable or foreign file is rebuilt. ``CURATE_CHART_TEMPLATE_CACHE=0`` turns the
    disk off (the test suite sets it, so every test builds its charts with altair and validates them).

Validation: with ``CURATE_VALIDATE_CHARTS=1`` (the tests) each filled spec is checked against the Vega-Lite
schema through altair's own ``from_dict`` (:meth:`Spec.to_dict`).
"""

from __future__ import annotations

import copy
import hashlib
import importlib.metadata
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from curate.io_utils import atomic_write_text, sha256_file, user_cache_dir

#: first number placeholder; a chart never draws a value this large where a placeholder stands
NUM_BASE = 987_650_000
_TEXT = re.compile(r"⟦([A-Za-z0-9_]+)⟧")
#: either placeholder inside a longer string, replaced in one pass (a replacement is never scanned again)
_IN_TEXT = re.compile(r"⟦([A-Za-z0-9_]+)⟧|(98765\d{4})")
#: bump when the file format of a kept template changes
FORMAT = 1


class Slots:
    """The placeholders of one template while it is built; ``numbers`` maps each number placeholder to its name."""

    def __init__(self) -> None:
        self.numbers: dict[int, str] = {}

    def num(self, name: str) -> int:
        for v, n in self.numbers.items():
            if n == name:
                return v
        v = NUM_BASE + len(self.numbers)
        self.numbers[v] = name
        return v

    @staticmethod
    def text(name: str) -> str:
        return f"⟦{name}⟧"

    @staticmethod
    def seq(name: str) -> list[str]:
        return [f"⟦{name}⟧"]


class Spec:
    """A filled Vega-Lite spec with altair's ``to_dict`` interface (``kind``: the altair class, e.g. ``"LayerChart"``).

    ``to_dict(validate=True)`` (the tests' ``CURATE_VALIDATE_CHARTS=1``) checks it against the Vega-Lite schema
    through altair's own ``kind.from_dict``.
    """

    def __init__(self, spec: dict[str, Any], kind: str) -> None:
        self.spec, self.kind = spec, kind

    def to_dict(self, validate: bool = False) -> dict[str, Any]:
        if validate:
            self.to_altair(validate=True)
        return self.spec

    def to_altair(self, *, validate: bool = False):
        """The altair chart of this spec (slow for hundreds of panels: for a notebook, not for a run). Without
        the top-level ``$schema`` and ``config`` (altair's defaults, which it adds again when it writes the chart),
        so that the chart can be composed with others (``alt.hconcat``)."""
        spec = {k: v for k, v in self.spec.items() if k not in ("$schema", "config")}
        return getattr(altair(), self.kind).from_dict(spec, validate=validate)

    def _repr_mimebundle_(self, include=None, exclude=None):  # a notebook draws it as altair would
        return self.to_altair()._repr_mimebundle_(include=include, exclude=exclude)


def altair():
    import altair as alt

    alt.data_transformers.disable_max_rows()
    return alt


_memo: dict[str, dict[str, Any]] = {}
_sources: dict[str, str] = {}


def _cache_on() -> bool:
    return os.environ.get("CURATE_CHART_TEMPLATE_CACHE", "1") != "0"


def _source_sha(build: Callable) -> str:
    """sha256 of the file that defines ``build`` (its module's source: the chart code, whatever it calls)."""
    path = getattr(getattr(build, "__code__", None), "co_filename", None) or "?"
    if path not in _sources:
        try:
            _sources[path] = sha256_file(path)
        except OSError:  # no source on disk (a frozen build): never reuse a kept template
            _sources[path] = os.urandom(16).hex()
    return _sources[path]


def fingerprint(name: str, key: Any, build: Callable) -> str:
    """What a kept template is named by: its name and key, altair's version, the chart code's sha256."""
    try:
        alt_version = importlib.metadata.version("altair")
    except importlib.metadata.PackageNotFoundError:
        alt_version = "?"
    ident = json.dumps([FORMAT, name, repr(key), alt_version, _source_sha(build)])
    return hashlib.sha256(ident.encode()).hexdigest()[:32]


def template(name: str, key: Any, build: Callable[[Any, Slots], Any]) -> dict[str, Any]:
    """The template of chart ``name`` for shape ``key``: ``build(alt, slots)`` makes it on first use.

    ``build`` returns an altair chart whose data are ``alt.NamedData`` sources and whose run-dependent values
    are ``slots`` placeholders. Returns ``{"spec": <Vega-Lite dict>, "numbers": {placeholder: name}}`` (do not
    modify it: :func:`fill` copies).
    """
    fp = fingerprint(name, key, build)
    if fp in _memo:
        return _memo[fp]
    path = user_cache_dir() / "chart-templates" / f"{name}-{fp}.json"
    tpl = _load(path, fp) if _cache_on() else None
    if tpl is None:
        slots = Slots()
        spec = build(altair(), slots).to_dict(validate=False)
        if "datasets" in spec:  # a chart with inline data would bake one run's rows into every later report
            msg = f"chart template {name!r} has inline data ({sorted(spec['datasets'])}); use alt.NamedData"
            raise ValueError(msg)
        tpl = {"spec": spec, "numbers": {str(v): n for v, n in slots.numbers.items()}}
        if _cache_on():
            try:
                atomic_write_text(path, json.dumps({"format": FORMAT, "fingerprint": fp, "template": tpl}))
            except OSError:  # a read-only home: the template is simply built again next time
                pass
    _memo[fp] = tpl
    return tpl


def _load(path: Path, fp: str) -> dict[str, Any] | None:
    try:
        kept = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(kept, dict) or kept.get("format") != FORMAT or kept.get("fingerprint") != fp:
        return None
    tpl = kept.get("template")
    if not isinstance(tpl, dict) or not isinstance(tpl.get("spec"), dict) or not isinstance(tpl.get("numbers"), dict):
        return None
    return tpl


def fill(tpl: dict[str, Any], data: dict[str, list[dict[str, Any]]], values: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``tpl``'s spec with every placeholder replaced: data sources by ``{"values": data[name]}``, the
    others by ``values[name]``. Raises ``KeyError`` naming a placeholder that has no value."""
    numbers = {int(k): n for k, n in tpl["numbers"].items()}

    def value(name: str) -> Any:
        if name not in values:
            msg = f"chart placeholder {name!r} has no value (given: {sorted(values)})"
            raise KeyError(msg)
        return values[name]

    def sub(m: re.Match) -> str:
        if m.group(1) is not None:
            v = value(m.group(1))
            return v if isinstance(v, str) else json.dumps(v)
        n = numbers.get(int(m.group(2)))
        return m.group(2) if n is None else json.dumps(value(n))

    def walk(x: Any) -> Any:
        if isinstance(x, dict):
            out = {}
            for k, v in x.items():
                if k == "data" and isinstance(v, dict) and set(v) == {"name"}:
                    if v["name"] not in data:
                        msg = f"chart data source {v['name']!r} has no rows (given: {sorted(data)})"
                        raise KeyError(msg)
                    out[k] = {"values": data[v["name"]]}
                else:
                    out[k] = walk(v)
            return out
        if isinstance(x, list):
            if len(x) == 1 and isinstance(x[0], str) and (m := _TEXT.fullmatch(x[0])):
                return copy.deepcopy(value(m.group(1)))
            return [walk(v) for v in x]
        if isinstance(x, str):
            if (m := _TEXT.fullmatch(x)) is not None:
                return copy.deepcopy(value(m.group(1)))
            return _IN_TEXT.sub(sub, x) if ("⟦" in x or "98765" in x) else x
        if isinstance(x, bool):
            return x
        if isinstance(x, int) and x in numbers:
            return value(numbers[x])
        if isinstance(x, float) and x.is_integer() and int(x) in numbers:
            return value(numbers[int(x)])
        return x

    return walk(tpl["spec"])
