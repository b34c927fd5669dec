"""The identity gate: a fast encoder is used only after it encodes a probe set exactly as ``tokenizers`` does.

``tokenizer: {hf: tok.json, engine: auto}`` asks for the fastest encoder that gives **the same ids** as the
Hugging Face ``tokenizers`` library on that tokenizer file. ``fastokens`` (a Rust BPE encoder with a flat-buffer
batch API) is 15-30x faster per core, but it is a re-implementation: a tokenizer file that uses a feature it
handles differently would silently change the training tokens. So, at load, both encoders encode
:func:`probe_texts` and the fast one is accepted only when every id of every probe agrees. The probe set covers
what BPE pre-tokenizers and normalizers get wrong:

============  ==========================================================================================
probe         what it exercises
============  ==========================================================================================
whitespace    runs of 1-40 spaces, tabs, mixed ``\\t \\n``, CRLF, form feed, no-break and ideographic space
newlines      blank lines, trailing newlines, ``\\r`` alone
cjk           Chinese, Japanese (kana + kanji), Korean hangul, full-width forms
emoji         ZWJ sequences, skin-tone modifiers, flags, keycaps, variation selectors
combining     combining marks on Latin, Devanagari, Thai and Arabic with harakat; NFD vs NFC text
surrogates    text that *looks* invalid: U+FFFD, noncharacters, private use, escaped ``\\ud800`` literals,
              astral-plane letters (which are surrogate pairs in UTF-16)
code          Python, C, JSON and shell with deep indentation
numbers       long digit runs, decimals, 1,000,000 separators, dates, hex, scientific notation
added         every added token of the file (special or not) inside words, at the edges and doubled
long          one document of ~256 KB mixing all of the above (the chunking and any cache paths)
============  ==========================================================================================

Special tokens are encoded as text on both sides (``encode_special_tokens`` in ``tokenizers``,
``split_special_tokens`` in ``fastokens``), as curate always does: a document that contains ``<|endoftext|>``
must not yield an end-of-document id.

:func:`resolve_engine` returns an :class:`EngineChoice` (engine, its version, and the reason when the fast one
was refused); it is recorded in ``work/mix/plan.json`` and ``manifest.json``. The decision is cached per process
by (file, sha256, requested engine), and the fast encoder the probe loaded is handed to the first
:class:`curate.tokenizers.Tokenizer` of that file (:func:`take_loaded`) instead of being loaded again (0.2 s for
GPT-NeoX). The driver decides once per run and its decisions travel to the workers with the partition payload
(:func:`decisions`, :func:`adopt`): a worker takes a decision only for the same file path, the same sha256 of
the file it reads itself, and the same versions of both libraries, and probes again otherwise (measured on the
GPT-NeoX file: 0.36 s of probe and reload per worker saved).

Decisions are also kept on disk, in ``tokenizer-gate/`` of :func:`curate.io_utils.user_cache_dir`: the probe is
a pure function of the tokenizer file, the two libraries and the probe set, so a later run on this machine with
the same file (by sha256), the same versions of ``fastokens`` and ``tokenizers``, the same platform and Python,
and the same probe set (by the sha256 of :func:`probe_texts`) takes the decision without loading the fast
encoder or probing (`load_tokenizer` on GPT-NeoX: 0.57 → 0.15 s). A cache file that is missing, unreadable or
written for another key is ignored and the gate probes; ``CURATE_TOKENIZER_GATE_CACHE=0`` turns the disk cache
off (the test suite does, so that each test probes). A decision made without ``fastokens`` installed is not
kept: installing it must lead to a probe.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import platform
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from curate.errors import RecipeError

log = logging.getLogger(__name__)

FAST_ENGINE = "fastokens"
REFERENCE_ENGINE = "tokenizers"


@dataclass(frozen=True)
class EngineChoice:
    """Which library encodes an ``hf`` tokenizer, and why."""

    engine: str  # "fastokens" or "tokenizers"
    version: str
    requested: str  # "auto", "fastokens" or "tokenizers"
    reason: str | None = None  # why the fast engine is not used (None when it is, or when not requested)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# ---------------------------------------------------------------------------- the probe set
_WHITESPACE = [" " * n + "x" + " " * n for n in (1, 2, 3, 4, 7, 8, 15, 16, 23, 24, 25, 40)] + [
    "a\tb\t\tc\t\t\t\td", "\t\n \t\n  \n", "line one\r\nline two\r\n\r\n", "col\fform\vfeed",
    "no\u00a0break\u00a0space", "ideographic\u3000space", "  leading and trailing  ", "x" + " \n" * 20,
    "    def f():\n        return 1\n", "\n\n\n\nparagraph\n\n\n",
]
_NEWLINES = ["\n", "\n\n", "text\n", "\r", "a\rb\r\nc\nd", "end of doc\n\n\n\n\n\n\n\n"]
_CJK = [
    "我们的数据管道把原始语料变成训练混合。", "日本語のテキストとカタカナ、ひらがなを混ぜる。",
    "한국어 문장은 공백으로 단어를 나눕니다.", "ＦＵＬＬ－ＷＩＤＴＨ　ｆｏｒｍｓ　１２３", "中文English混合123テスト",
]
_EMOJI = [
    "family 👨\u200d👩\u200d👧\u200d👦 and 👍🏽 👋🏿", "flags 🇺🇸🇯🇵🇫🇷", "keycap 1\ufe0f\u20e3 #\ufe0f\u20e3",
    "heart ❤\ufe0f vs ❤", "🤖🧪📊" * 5,
]
_COMBINING = [
    "cafe\u0301 vs café", "Zalgo: z\u0336\u0301\u0350a\u0335\u0357l\u0334\u0352g\u0337o\u0338",
    "देवनागरी लिपि में हिन्दी", "ภาษาไทยไม่มีช่องว่าง", "العربية مَعَ الحَرَكاتِ", "Ångström Å Å",
]
_SURROGATES = [
    "replacement \ufffd\ufffd char", "nonchar \ufdd0 \uffff \U0010ffff", "private \ue000\uf8ff use",
    "escaped \\ud800\\udc00 literal", "astral 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𐍈 𝟘𝟙", "bom \ufeff in the middle",
]
_CODE = [
    'def tokenize(texts: list[str]) -> dict[str, int]:\n    """Docstring."""\n    return {t: len(t) for t in texts}\n',
    "#include <stdio.h>\nint main(void) {\n\tprintf(\"%d\\n\", 42);\n\treturn 0;\n}\n",
    '{"key": [1, 2.5, -3e10, null, true], "nested": {"a": "b\\u00e9"}}',
    "for f in *.parquet; do echo \"$f\" | tr 'a-z' 'A-Z' >> out.txt; done",
    "x=[[[[[[[[1]]]]]]]];;;;;;  !==  <=> ... ::  ->  =>  ||| &&&",
]
_NUMBERS = [
    "3.14159265358979323846264338327950288419716939937510", "1,000,000 and 1.000.000 and 1 000 000",
    "2026-12-01T20:57:32Z", "0xDEADBEEF 0b1010 1e-9 6.022e23", "12345678901234567890123456789012345678901234",
    "$1,234.56 €99,99 ¥10000 50% 3/4",
]


def probe_texts(added_tokens: list[str] | None = None) -> dict[str, list[str]]:
    """The built-in probe set, by category (see the module docstring).

    Parameters
    ----------
    added_tokens : list of str, optional
        The tokenizer file's added tokens (special or not); each is probed inside a word, at both edges of a
        document and doubled.
    """
    added = [t for t in (added_tokens or []) if t]
    added_probes = []
    for t in added:
        added_probes += [f"before{t}after", f"{t} starts", f"ends {t}", f"{t}{t}", f"a {t} b"]
    mixed = "\n".join(_WHITESPACE + _NEWLINES + _CJK + _EMOJI + _COMBINING + _SURROGATES + _CODE + _NUMBERS
                      + added_probes[:50])
    long_doc = (mixed + "\n") * max(1, 256_000 // (len(mixed) + 1))
    return {
        "whitespace": _WHITESPACE, "newlines": _NEWLINES, "cjk": _CJK, "emoji": _EMOJI,
        "combining": _COMBINING, "surrogates": _SURROGATES, "code": _CODE, "numbers": _NUMBERS,
        "added": added_probes, "long": [long_doc],
    }


# ---------------------------------------------------------------------------- the gate
def load_fast(path: Path) -> Any:
    """The ``fastokens`` encoder of a tokenizer file (raises ImportError or the library's error)."""
    import fastokens

    return fastokens.Tokenizer.from_file(str(path))


def fast_encode_flat(enc: Any, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``fastokens`` batch encode: ``(ids uint32, lengths int64)``, special tokens encoded as text."""
    ids, offsets = enc.encode_batch_flat(texts, split_special_tokens=True)
    ids = np.frombuffer(ids, dtype=np.uint32)
    off = np.frombuffer(offsets, dtype=np.uint64).astype(np.int64)
    return ids, np.diff(off)


def compare(reference: Any, fast: Any, probes: dict[str, list[str]]) -> str | None:
    """The first disagreement between the two encoders on ``probes``, as a sentence; None if identical."""
    for category, texts in probes.items():
        if not texts:
            continue
        ref = [e.ids for e in reference.encode_batch(list(texts), add_special_tokens=False)]
        ids, lengths = fast_encode_flat(fast, list(texts))
        starts = np.concatenate([[0], np.cumsum(lengths)])
        for i, want in enumerate(ref):
            got = ids[starts[i]:starts[i + 1]].tolist()
            if got != want:
                k = next((j for j, (a, b) in enumerate(zip(got, want, strict=False)) if a != b),
                         min(len(got), len(want)))
                return (f"probe {category}[{i}] differs at token {k} "
                        f"({len(got)} ids from {FAST_ENGINE}, {len(want)} from {REFERENCE_ENGINE})")
    return None


def _added_token_strings(reference: Any) -> list[str]:
    try:
        return [t.content for t in reference.get_added_tokens_decoder().values()]
    except AttributeError:  # tokenizers < 0.14
        return []


_DECISIONS: dict[tuple[str, str, str], EngineChoice] = {}
#: the fast encoder a probe loaded, by (file, sha256), until a Tokenizer of that file takes it (:func:`take_loaded`)
_LOADED: dict[tuple[str, str], Any] = {}
#: what :func:`curate.tokenizers.load_tokenizer` read from a file (vocab size, EOS id and token), by decision key
#: and then by the recipe's ``eos`` (``""``: none). Exported with the decisions: a partition task that loads the
#: same file then skips ``tokenizers``' load of it and the vocab walk (0.14 + 0.05 s per worker on GPT-NeoX), and
#: loads only the encoder it encodes with
_FACTS: dict[tuple[str, str, str], dict[str, dict[str, Any]]] = {}


def note_facts(path: Path, sha256: str, requested: str, eos: str | None, facts: dict[str, Any]) -> None:
    """Keep what ``load_tokenizer`` read from the file ``path`` (``vocab_size``, ``eos_id``, ``eos_token``)."""
    _FACTS.setdefault((str(path), sha256, requested), {})[eos or ""] = dict(facts)


def known_facts(path: Path, sha256: str, requested: str, eos: str | None) -> dict[str, Any] | None:
    """The facts of :func:`note_facts` when this process also has the engine decision for the same file (made here
    or adopted from the driver with the same library versions); None otherwise (the file is loaded again)."""
    key = (str(path), sha256, requested)
    if key not in _DECISIONS:
        return None
    return _FACTS.get(key, {}).get(eos or "")


def take_loaded(path: Path, sha256: str) -> Any:
    """The ``fastokens`` encoder of ``path`` that this process's probe loaded, once; None when there is none."""
    return _LOADED.pop((str(path), sha256), None)


def _engine_versions() -> dict[str, str]:
    return {FAST_ENGINE: _version(FAST_ENGINE), REFERENCE_ENGINE: _version(REFERENCE_ENGINE)}


def decisions() -> list[dict[str, Any]]:
    """This process's gate decisions as JSON-able records, for :func:`adopt` in another process.

    Each record holds the cache key (file path, sha256, requested engine), the choice, the versions of both
    libraries the decision was made with, and the file's facts (:func:`note_facts`).
    """
    versions = _engine_versions()
    return [{"path": k[0], "sha256": k[1], "requested": k[2], "choice": c.as_dict(), "versions": versions,
             "facts": _FACTS.get(k, {})} for k, c in _DECISIONS.items()]


def adopt(records: list[dict[str, Any]]) -> int:
    """Take the decisions of :func:`decisions` made in another process (the run's driver); return how many.

    A record is taken only when this process has the same versions of ``fastokens`` and ``tokenizers``: an
    encoder of another version has not been probed. The file's sha256 is part of the key, and
    :func:`curate.tokenizers.load_tokenizer` hashes the file it reads, so a different file on this machine is
    probed again.
    """
    mine = _engine_versions()
    n = 0
    for r in records:
        if r.get("versions") != mine:
            continue
        key = (r["path"], r["sha256"], r["requested"])
        _DECISIONS.setdefault(key, EngineChoice(**r["choice"]))
        for eos, facts in (r.get("facts") or {}).items():
            _FACTS.setdefault(key, {}).setdefault(eos, dict(facts))
        n += 1
    return n


# ---------------------------------------------------------------------------- the decisions kept on disk
def _disk_key(sha256: str, requested: str) -> dict[str, Any]:
    """Everything a decision depends on: the file, both libraries, the platform and the probe set."""
    probes = json.dumps(probe_texts(), sort_keys=True).encode("utf-8")  # the added tokens are in the file
    return {"sha256": sha256, "requested": requested, "versions": _engine_versions(),
            "platform": f"{sys.platform}-{platform.machine()}-py{sys.version_info[0]}.{sys.version_info[1]}",
            "probe_sha256": hashlib.sha256(probes).hexdigest()}


def _disk_path(key: dict[str, Any]) -> Path | None:
    if os.environ.get("CURATE_TOKENIZER_GATE_CACHE", "1") == "0":
        return None
    from curate.io_utils import user_cache_dir

    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()[:32]
    return user_cache_dir() / "tokenizer-gate" / f"{name}.json"


def _read_decision(key: dict[str, Any]) -> EngineChoice | None:
    """The decision kept for ``key``, or None (none kept, unreadable, or kept for another key)."""
    p = _disk_path(key)
    if p is None:
        return None
    try:
        rec = json.loads(p.read_text(encoding="utf-8"))
        if rec.get("key") != key:
            return None
        return EngineChoice(**rec["choice"])
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _keep_decision(key: dict[str, Any], choice: EngineChoice, path: Path) -> None:
    """Write the decision for later runs; a cache folder that cannot be written only costs the next probe."""
    p = _disk_path(key)
    if p is None or key["versions"][FAST_ENGINE] == "unknown":
        return
    from curate.io_utils import atomic_write_json

    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(p, {"key": key, "choice": choice.as_dict(), "file": str(path)})
    except OSError as e:
        log.debug("tokenizer gate: cannot keep the decision in %s: %s", p, e)


def _decide(path: Path, sha256: str, requested: str, reference: Any) -> EngineChoice:
    ref_version = _version(REFERENCE_ENGINE)
    if requested == REFERENCE_ENGINE:
        return EngineChoice(REFERENCE_ENGINE, ref_version, requested)
    key = _disk_key(sha256, requested)
    kept = _read_decision(key)
    if kept is not None and kept.engine == FAST_ENGINE and importlib.util.find_spec(FAST_ENGINE) is None:
        kept = None  # its metadata is there but the module is not: probe, which falls back and says why
    if kept is not None:
        log.info("tokenizer %s: the identity gate's decision for this file and these versions is kept in %s: %s",
                 path.name, _disk_path(key), kept.engine)
        return kept
    choice = _probe(path, sha256, requested, reference, ref_version)
    _keep_decision(key, choice, path)
    return choice


def _probe(path: Path, sha256: str, requested: str, reference: Any, ref_version: str) -> EngineChoice:
    fast_version = _version(FAST_ENGINE)
    try:
        fast = load_fast(path)
    except ImportError:
        reason = f"{FAST_ENGINE} is not installed (pip install 'fastokens>=0.3.5,<0.4')"
        return EngineChoice(REFERENCE_ENGINE, ref_version, requested, reason)
    except Exception as e:  # noqa: BLE001 - the Rust loader raises plain exceptions for unsupported files
        reason = f"{FAST_ENGINE} {fast_version} cannot load {path.name}: {str(e).splitlines()[0][:200]}"
        return EngineChoice(REFERENCE_ENGINE, ref_version, requested, reason)
    try:
        bad = compare(reference, fast, probe_texts(_added_token_strings(reference)))
    except Exception as e:  # noqa: BLE001 - an encoder that crashes on a probe is refused, not fatal
        bad = f"{FAST_ENGINE} failed on the probe set: {type(e).__name__}: {str(e)[:200]}"
    if bad is not None:
        reason = f"{FAST_ENGINE} {fast_version} is not id-identical on {path.name}: {bad}"
        return EngineChoice(REFERENCE_ENGINE, ref_version, requested, reason)
    _LOADED[(str(path), sha256)] = fast
    return EngineChoice(FAST_ENGINE, fast_version, requested)


def resolve_engine(path: Path, sha256: str, requested: str, reference: Any) -> EngineChoice:
    """Decide which library encodes the tokenizer file at ``path``.

    Parameters
    ----------
    path, sha256 : the tokenizer file and its hash (the cache key).
    reference : the file loaded by ``tokenizers`` (special tokens encoded as text), the ids to match.
    requested : {"auto", "fastokens", "tokenizers"}
        ``auto`` takes the fast engine when it passes the probe, else falls back to ``tokenizers`` and logs
        why; ``fastokens`` insists (a failed probe is an error); ``tokenizers`` never probes.

    Raises
    ------
    RecipeError
        ``engine: fastokens`` and the fast engine is missing or not id-identical on this file.
    """
    key = (str(path), sha256, requested)
    choice = _DECISIONS.get(key)
    if choice is None:
        choice = _DECISIONS[key] = _decide(Path(path), sha256, requested, reference)
        if choice.reason is not None and requested != FAST_ENGINE:
            log.warning("tokenizer %s: encoding with %s: %s", Path(path).name, REFERENCE_ENGINE, choice.reason)
    if choice.reason is not None and requested == FAST_ENGINE:
        msg = f"{choice.reason}; use `tokenizer.engine: auto` (falls back to tokenizers) or `tokenizers`"
        raise RecipeError(msg, path="tokenizer.engine")
    return choice
