"""Where the versioned YAML presets live, and how every YAML file of curate is read.

The presets are data files under ``filters/`` (``filters/quality/<name>.yaml``, ``filters/licenses/<name>.yaml``,
``filters/langid/lid176.yaml``); ``CURATE_FILTERS`` points at another folder. Recipes and presets are read by
:func:`read_yaml`: ``yaml.SafeLoader`` (data only, no tags, no code) and a repeated mapping key is an error.

Why a module of its own: the recipe, the licence policy, the quality stage and language ID all read presets.
Kept at the bottom of the import graph (it imports only :mod:`curate.errors`), none of them has to reach up
into another for it, and no import cycle can form through it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from curate.errors import RecipeError

FILTERS_DIR = Path(os.environ.get("CURATE_FILTERS", Path(__file__).resolve().parent.parent / "filters"))


def filters_dir() -> Path:
    """The presets folder now (read at call time, so a test or a caller may point ``FILTERS_DIR`` elsewhere)."""
    return FILTERS_DIR


def yaml_names(d: str | os.PathLike) -> list[str]:
    """Names (file stems) of the YAML presets in folder ``d``, sorted; none when ``d`` is not a folder."""
    d = Path(d)
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


def preset_names(kind: str) -> list[str]:
    """Names of the YAML presets in ``filters/<kind>/``."""
    return yaml_names(filters_dir() / kind)


def read_yaml(path: str | os.PathLike) -> Any:
    """Load a YAML file as data (``SafeLoader``: no tags, no code), refusing duplicate keys.

    YAML lets a mapping repeat a key and keeps the last value, so a source or group defined twice would
    silently replace the first definition. The file is composed into nodes first and every mapping is checked;
    a repeated key is a :class:`RecipeError` naming the key's YAML path and both lines. A syntax error is a
    ``RecipeError`` naming the file.
    """
    try:
        loader = yaml.SafeLoader(Path(path).read_text(encoding="utf-8"))
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _check_duplicate_keys(node, "", str(path))
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as e:
        msg = f"not valid YAML: {e}"
        raise RecipeError(msg, recipe_file=str(path)) from None


def _check_duplicate_keys(node: yaml.Node, path: str, file: str) -> None:
    """Raise a RecipeError for the first mapping key that repeats (depth first, in file order)."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.tag != "tag:yaml.org,2002:merge":
                k = key.value
                sub = f"{path}.{k}" if path else str(k)
                line = key.start_mark.line + 1
                if k in seen:
                    msg = (f"duplicate key {k!r} at lines {seen[k]} and {line}: YAML would keep only the second "
                           "definition; remove or rename one of them")
                    raise RecipeError(msg, path=sub, recipe_file=file)
                seen[k] = line
                _check_duplicate_keys(value, sub, file)
            else:
                _check_duplicate_keys(value, path, file)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_duplicate_keys(item, f"{path}[{i}]", file)
