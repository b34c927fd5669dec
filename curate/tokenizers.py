"""Tokenizers: the recipe's ``tokenizer`` value turned into a picklable encoder of document batches.

Two kinds, chosen by the recipe::

    tokenizer: rwkv-world                  # RWKV World vocab shipped in the `rwkv` package
    tokenizer: {hf: tok.json, eos: "</s>"}  # a Hugging Face `tokenizers` file; eos optional

Output of :meth:`Tokenizer.encode_batch`: ``(ids, lengths)`` where ``ids`` is the flat ``uint32`` array of
every document's tokens concatenated and ``lengths`` the ``int64`` token count per document. The arrays
carry **no** end-of-document token: the shard writer (:mod:`curate.shards`) appends exactly one ``eos_id``
per document, so an EOS can never be doubled or missing, whatever the tokenizer's post-processor does.

RWKV World (``rwkv/rwkv_vocab_v20230424.txt``): 65,529 byte strings with ids 1..65529, id 0 = end of text,
``vocab_size`` 65,536 (ids fit ``uint16``). Encoding is greedy longest match over the UTF-8 bytes; the
reference is ``rwkv.rwkv_tokenizer.TRIE_TOKENIZER`` (pure Python, ~1.5 MB/s measured). We encode with the
Rust ``pyrwkv_tokenizer`` (~25 MB/s single thread) fed the very same vocab file; ``tests/test_tokenizers.py``
checks it against the reference on all ~89 MB of real sample text (whole Gutenberg books included) and on
generated multilingual strings.

Hugging Face: ``tokenizers.Tokenizer.from_file``, or the id-identical ``fastokens`` encoder when
``tokenizer.engine`` (default ``auto``) allows it and it passes the identity gate of
:mod:`curate.tokenizer_gate` on that very file; ``engine`` / ``engine_version`` / ``engine_reason`` say which
one encodes and why. Documents are encoded with ``add_special_tokens=False``
(no BOS/EOS from the post-processor) and with ``encode_special_tokens`` on, so a document that literally
contains ``<|endoftext|>`` is tokenized as text and never yields a stray end-of-document id. The EOS id is
``tokenizer.eos`` from the recipe, else the first of ``<|endoftext|>``, ``</s>``, ``<eos>`` in the vocab.

Threads: both libraries parallelize a batch with their own rayon global pool, sized once per process from
``RAYON_NUM_THREADS`` when the first batch runs. :meth:`Tokenizer.encode_batch` sets that variable (unless the
user did) to ``num_threads``, defaulting to the CPUs Ray assigned to the current actor, else the CPUs this
process may run on. ``num_threads=1`` encodes document by document and never starts a pool.

A :class:`Tokenizer` holds only its configuration when pickled; the native encoder is built on first use,
so it can be shipped to Ray actors.
"""

from __future__ import annotations

import array
import importlib.util
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, NoReturn

import numpy as np

from curate.errors import RecipeError
from curate.io_utils import sha256_file
from curate.tokenizer_gate import (
    FAST_ENGINE,
    REFERENCE_ENGINE,
    EngineChoice,
    _version,
    fast_encode_flat,
    known_facts,
    load_fast,
    note_facts,
    resolve_engine,
    take_loaded,
)

#: Candidate end-of-document tokens of a Hugging Face tokenizer, in order of preference.
HF_EOS_CANDIDATES = ("<|endoftext|>", "</s>", "<eos>")

RWKV_WORLD = "rwkv-world"
RWKV_VOCAB_FILE = "rwkv_vocab_v20230424.txt"
RWKV_VOCAB_SIZE = 65536
RWKV_EOS_ID = 0

# Texts are handed to the native encoder in chunks of about this many characters, so the Python lists of
# ints it returns (~36 bytes per token) stay small whatever the caller's batch size.
_CHUNK_CHARS = 8_000_000
_U32 = "I" if array.array("I").itemsize == 4 else "L"  # array typecode of a 4-byte unsigned int

TokenizerKind = Literal["rwkv-world", "hf"]
#: ``tokenizer.engine`` values of an ``hf`` tokenizer (see :mod:`curate.tokenizer_gate`).
ENGINES = ("auto", FAST_ENGINE, REFERENCE_ENGINE)


# ---------------------------------------------------------------------------- helpers
def default_num_threads() -> int:
    """CPUs for a tokenizer's thread pool.

    Returns
    -------
    int
        The CPUs Ray assigned to the current task or actor when running inside Ray, else the CPUs this
        process may run on (``os.sched_getaffinity``), else ``os.cpu_count()``.
    """
    ray = sys.modules.get("ray")  # only consult Ray when the process already uses it
    if ray is not None:
        try:
            if ray.is_initialized():
                cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
                if cpus:
                    return max(1, int(cpus))
        except Exception:  # noqa: BLE001 - the driver has no assigned resources; fall back to the machine
            pass
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def rwkv_vocab_path() -> Path:
    """Path of the RWKV World vocab file shipped in the ``rwkv`` package (found without importing it)."""
    spec = importlib.util.find_spec("rwkv")
    if spec is None or not spec.submodule_search_locations:
        msg = "tokenizer `rwkv-world` needs the `rwkv` package for its vocab file: pip install 'rwkv>=0.8.30,<0.9'"
        raise RecipeError(msg, path="tokenizer")
    p = Path(next(iter(spec.submodule_search_locations))) / RWKV_VOCAB_FILE
    if not p.is_file():
        msg = f"the `rwkv` package has no {RWKV_VOCAB_FILE} (looked at {p}); reinstall rwkv>=0.8.30,<0.9"
        raise RecipeError(msg, path="tokenizer")
    return p


def _chunks(texts: Sequence[str], max_chars: int) -> list[tuple[int, int]]:
    """Split ``texts`` into consecutive ``[start, stop)`` ranges of about ``max_chars`` characters."""
    lens = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    ends = np.cumsum(lens)
    out, start = [], 0
    while start < len(texts):
        base = ends[start - 1] if start else 0
        stop = int(np.searchsorted(ends, base + max_chars, side="right"))
        stop = max(stop, start + 1)
        out.append((start, stop))
        start = stop
    return out


def _check_texts(texts: Sequence[Any], err: Exception, *, offset: int = 0) -> NoReturn:
    """Re-raise a native encoder's failure naming the first document (batch index) that is not a ``str``."""
    for i, t in enumerate(texts, start=offset):
        if not isinstance(t, str):
            msg = f"encode_batch: document {i} is {type(t).__name__}, not str; drop or fill null texts first"
            raise TypeError(msg) from err
        try:
            t.encode("utf-8")
        except UnicodeEncodeError as e:
            msg = f"encode_batch: document {i} is not valid Unicode ({e.reason} at character {e.start})"
            raise ValueError(msg) from err
    raise err


# ---------------------------------------------------------------------------- Tokenizer
class Tokenizer:
    """A picklable tokenizer configuration with a lazily built native encoder.

    Build one with :func:`load_tokenizer`, not directly.

    Attributes
    ----------
    name : str
        ``"rwkv-world"`` or ``"hf:<file name>"``.
    kind : {"rwkv-world", "hf"}
        Which library encodes.
    path : Path
        The vocab / tokenizer file.
    vocab_size : int
        Number of ids (largest id + 1 bound); the shard token dtype is derived from it.
    eos_id : int
        End-of-document id the shard writer appends once per document.
    eos_token : str or None
        The EOS token string (``None`` for rwkv-world, whose EOS is id 0 and has no string).
    """

    def __init__(self, *, kind: TokenizerKind, path: Path, vocab_size: int, eos_id: int,
                 eos_token: str | None = None, name: str | None = None, engine: EngineChoice | None = None) -> None:
        self.kind = kind
        self.path = Path(path)
        self.vocab_size = int(vocab_size)
        self.eos_id = int(eos_id)
        self.eos_token = eos_token
        self.name = name or (RWKV_WORLD if kind == RWKV_WORLD else f"hf:{self.path.name}")
        self.engine = engine or EngineChoice(
            "pyrwkv-tokenizer" if kind == RWKV_WORLD else REFERENCE_ENGINE,
            _version("pyrwkv-tokenizer" if kind == RWKV_WORLD else REFERENCE_ENGINE), "auto")
        self._impl: Any = None

    # ------------------------------------------------------------------ pickling: configuration only
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_impl"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return (f"Tokenizer(name={self.name!r}, vocab_size={self.vocab_size}, eos_id={self.eos_id}, "
                f"engine={self.engine.engine!r})")

    @property
    def fast(self) -> bool:
        """True when the id-identical ``fastokens`` encoder encodes (it passed the identity gate)."""
        return self.engine.engine == FAST_ENGINE

    # ------------------------------------------------------------------ native encoder
    def _encoder(self) -> Any:
        if self._impl is None:
            if self.kind == RWKV_WORLD:
                try:
                    from pyrwkv_tokenizer import WorldTokenizer
                except ImportError as e:
                    msg = "tokenizer `rwkv-world` needs pyrwkv-tokenizer: pip install 'pyrwkv-tokenizer>=0.9.1,<0.10'"
                    raise ImportError(msg) from e
                self._impl = WorldTokenizer(str(self.path))
            elif self.fast:
                self._impl = load_fast(self.path)
            else:
                self._impl = _load_hf(self.path)
        return self._impl

    def _encode_flat(self, texts: Sequence[str], *, parallel: bool) -> tuple[np.ndarray, np.ndarray]:
        """The fast engine's flat-buffer batch encode (no per-token Python objects)."""
        enc = self._encoder()
        if parallel:
            return fast_encode_flat(enc, list(texts))
        parts = [fast_encode_flat(enc, [t]) for t in texts]  # one document per call: never a parallel batch
        if not parts:
            return np.zeros(0, np.uint32), np.zeros(0, np.int64)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def _encode_lists(self, texts: Sequence[str], *, parallel: bool) -> list[list[int]]:
        enc = self._encoder()
        if self.kind == RWKV_WORLD:
            return enc.encode_batch(list(texts)) if parallel else [enc.encode(t) for t in texts]
        batch = getattr(enc, "encode_batch_fast", None) or enc.encode_batch
        if parallel:
            return [e.ids for e in batch(list(texts), add_special_tokens=False)]
        # serial: the batch encoder without offsets is 12-18% faster than encode() per document (GPT-NeoX,
        # RefinedWeb); TOKENIZERS_PARALLELISM, read by the library on every call, keeps it off the thread pool
        prev = os.environ.get("TOKENIZERS_PARALLELISM")
        os.environ["TOKENIZERS_PARALLELISM"] = "false"
        try:
            return [e.ids for e in batch(list(texts), add_special_tokens=False)]
        finally:
            if prev is None:
                os.environ.pop("TOKENIZERS_PARALLELISM", None)
            else:
                os.environ["TOKENIZERS_PARALLELISM"] = prev

    @staticmethod
    def _size_pool(num_threads: int) -> None:
        # rayon reads this once, when the library's global pool starts (its first parallel batch).
        os.environ.setdefault("RAYON_NUM_THREADS", str(num_threads))
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")

    # ------------------------------------------------------------------ public API
    def encode_batch(self, texts: Sequence[str], *, num_threads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Encode documents without any end-of-document token.

        Parameters
        ----------
        texts : sequence of str
            The documents (no nulls).
        num_threads : int, optional
            Threads for the native encoder. Default: :func:`default_num_threads`. The library's thread
            pool is sized by the first parallel call in the process; ``1`` encodes serially.

        Returns
        -------
        ids : np.ndarray
            ``uint32``, every document's ids concatenated, ``lengths.sum()`` long.
        lengths : np.ndarray
            ``int64``, tokens per document, ``len(texts)`` long.
        """
        n = default_num_threads() if num_threads is None else int(num_threads)
        if n < 1:
            msg = f"`num_threads` must be >= 1, got {num_threads}"
            raise ValueError(msg)
        parallel = n > 1 and len(texts) > 1
        if parallel:
            self._size_pool(n)
        flat = array.array(_U32)
        lengths = np.empty(len(texts), dtype=np.int64)
        try:
            chunks = _chunks(texts, _CHUNK_CHARS)
        except TypeError as e:  # a null document has no len()
            _check_texts(texts, e)
        if self.fast:
            pieces = []
            for start, stop in chunks:
                part = texts[start:stop]
                try:
                    ids, lengths[start:stop] = self._encode_flat(part, parallel=parallel)
                except (TypeError, ValueError, UnicodeEncodeError) as e:
                    _check_texts(part, e, offset=start)
                pieces.append(ids)
            return (np.concatenate(pieces) if pieces else np.zeros(0, np.uint32)), lengths
        for start, stop in chunks:
            part = texts[start:stop]
            try:
                lists = self._encode_lists(part, parallel=parallel)
            except (TypeError, ValueError, UnicodeEncodeError) as e:
                _check_texts(part, e, offset=start)
            lengths[start:stop] = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
            for ids in lists:  # array.extend is the fastest list->buffer copy measured (~37M ids/s)
                flat.extend(ids)
        return np.frombuffer(flat, dtype=np.uint32) if len(flat) else np.zeros(0, np.uint32), lengths

    def count_tokens(self, texts: Sequence[str], *, num_threads: int | None = None) -> np.ndarray:
        """Tokens per document (``int64``), end-of-document token not counted."""
        return self.encode_batch(texts, num_threads=num_threads)[1]

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """Decode ids back to text (for inspection and tests; skips nothing)."""
        enc = self._encoder()
        seq = [int(i) for i in ids]
        if self.kind == RWKV_WORLD:
            return enc.decode(seq)
        return enc.decode(seq, skip_special_tokens=False)

    def describe(self) -> dict[str, Any]:
        """JSON-able identity of the tokenizer (written next to the shards): file, its sha256, ids."""
        return {"name": self.name, "kind": self.kind, "path": str(self.path), "sha256": sha256_file(self.path),
                "vocab_size": self.vocab_size, "eos_id": self.eos_id, "eos_token": self.eos_token,
                "engine": self.engine.as_dict()}


# ---------------------------------------------------------------------------- loading
def _load_hf(path: Path) -> Any:
    try:
        from tokenizers import Tokenizer as HfTok
    except ImportError as e:
        msg = "an `hf` tokenizer needs the tokenizers package: pip install 'tokenizers>=0.19,<1'"
        raise ImportError(msg) from e
    try:
        tok = HfTok.from_file(str(path))
    except Exception as e:  # noqa: BLE001 - the Rust error is a plain Exception
        msg = f"cannot load Hugging Face tokenizer file {path}: {e}; it must be a tokenizer.json"
        raise RecipeError(msg, path="tokenizer.hf") from None
    tok.no_truncation()
    tok.no_padding()
    if hasattr(tok, "encode_special_tokens"):
        tok.encode_special_tokens = True  # "<|endoftext|>" inside a document is text, not an EOS
    return tok


def _hf_eos(tok: Any, path: Path, eos: str | None) -> tuple[int, str]:
    if eos is not None:
        eid = tok.token_to_id(eos)
        if eid is None:
            msg = f"`tokenizer.eos` is {eos!r}, which is not a token of {path}; use a token of its vocab"
            raise RecipeError(msg, path="tokenizer.eos")
        return int(eid), eos
    for cand in HF_EOS_CANDIDATES:
        eid = tok.token_to_id(cand)
        if eid is not None:
            return int(eid), cand
    msg = (f"tokenizer file {path} has none of the end-of-document tokens {list(HF_EOS_CANDIDATES)}; "
           f"set `tokenizer.eos` in the recipe to the token string that ends a document")
    raise RecipeError(msg, path="tokenizer.eos")


def load_tokenizer(spec: Any, *, base_dir: Path | None = None) -> Tokenizer:
    """Build a :class:`Tokenizer` from the recipe's ``tokenizer`` value.

    Parameters
    ----------
    spec : str, HfTokenizer or dict
        ``"rwkv-world"``, a :class:`curate.recipe.HfTokenizer`, or ``{"hf": path, "eos": token}``.
    base_dir : Path, optional
        Folder a relative ``hf`` path is resolved against (the recipe's folder); default: the current one.

    Returns
    -------
    Tokenizer
        Validated: the file loads and the EOS id is known. Hugging Face tokenizers keep the loaded
        encoder; pickling drops it.

    Raises
    ------
    RecipeError
        Unknown spec, missing file, or no end-of-document token (names ``tokenizer.eos`` as the fix).
    """
    if isinstance(spec, str):
        if spec != RWKV_WORLD:
            msg = f"`tokenizer` must be one of {{'rwkv-world', {{hf: <tokenizer.json>}}}}, got {spec!r}"
            raise RecipeError(msg, path="tokenizer")
        return Tokenizer(kind=RWKV_WORLD, path=rwkv_vocab_path(), vocab_size=RWKV_VOCAB_SIZE, eos_id=RWKV_EOS_ID)

    if isinstance(spec, dict):
        unknown = set(spec) - {"hf", "eos", "engine"}
        if "hf" not in spec or unknown:
            msg = (f"a Hugging Face `tokenizer` is a mapping {{hf: <path>, eos: <token>, engine: auto}}, "
                   f"got keys {sorted(spec)}")
            raise RecipeError(msg, path="tokenizer")
        hf, eos, engine = spec["hf"], spec.get("eos"), spec.get("engine", "auto")
    elif hasattr(spec, "hf"):
        hf, eos, engine = spec.hf, getattr(spec, "eos", None), getattr(spec, "engine", "auto")
    else:
        msg = f"`tokenizer` must be 'rwkv-world' or {{hf: <path>}}, got {type(spec).__name__}"
        raise RecipeError(msg, path="tokenizer")

    path = Path(hf)
    if not path.is_absolute():
        path = (base_dir or Path.cwd()) / path
    path = path.resolve()
    if not path.is_file():
        msg = f"tokenizer file not found: {path}; `tokenizer.hf` is relative to the recipe's folder"
        raise RecipeError(msg, path="tokenizer.hf")
    if engine not in ENGINES:
        msg = f"`tokenizer.engine` must be one of {list(ENGINES)}, got {engine!r}"
        raise RecipeError(msg, path="tokenizer.engine")
    sha = sha256_file(path)
    facts = known_facts(path, sha, engine, eos)
    if facts is not None:  # the same file, read by the driver: its facts, and the encoder loaded on first use
        return Tokenizer(kind="hf", path=path, vocab_size=facts["vocab_size"], eos_id=facts["eos_id"],
                         eos_token=facts["eos_token"], engine=resolve_engine(path, sha, engine, None))
    tok = _load_hf(path)
    if getattr(tok.model, "dropout", None):
        msg = (f"tokenizer file {path} uses BPE dropout ({tok.model.dropout}): it samples merges at random, so the "
               "same text would get different ids on every run; set `model.dropout` to null in the file")
        raise RecipeError(msg, path="tokenizer.hf")
    eos_id, eos_token = _hf_eos(tok, path, eos)
    # Added tokens may sit above the base vocab with gaps; the shard dtype must fit the largest id.
    vocab = tok.get_vocab(with_added_tokens=True)
    vocab_size = max(tok.get_vocab_size(with_added_tokens=True), max(vocab.values(), default=-1) + 1)
    choice = resolve_engine(path, sha, engine, tok)
    note_facts(path, sha, engine, eos, {"vocab_size": vocab_size, "eos_id": eos_id, "eos_token": eos_token})
    out = Tokenizer(kind="hf", path=path, vocab_size=vocab_size, eos_id=eos_id, eos_token=eos_token, engine=choice)
    # the fast encoder the probe just loaded, if this call probed (else loaded on first use)
    out._impl = take_loaded(path, sha) if out.fast else tok
    return out
