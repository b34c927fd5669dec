"""Megatron ``MMIDIDX`` indexed datasets: the tokenized shards a run writes (``<prefix>.bin`` + ``<prefix>.idx``).

Layout (all little endian), as Megatron-LM's ``indexed_dataset.py`` and RWKV-LM's ``binidx.py`` read it::

    <prefix>.bin   token ids of every sequence back to back, dtype from the .idx header
    <prefix>.idx   magic    9 bytes  b"MMIDIDX\\x00\\x00"
                   version  u64      1
                   dtype    u8       1 uint8, 2 int8, 3 int16, 4 int32, 5 int64, 6 float64, 7 float32, 8 uint16
                   n_seq    u64      number of sequences
                   n_doc    u64      len(doc_idx) = n_seq + 1
                   sizes    int32[n_seq]     tokens per sequence
                   pointers int64[n_seq]     byte offset of each sequence in .bin
                   doc_idx  int64[n_doc]     0, 1, ..., n_seq (one document per sequence; leading 0)

One sequence is one document: its ids followed by exactly one end-of-document id, appended here and
nowhere else (:mod:`curate.tokenizers` returns ids without it). The token dtype comes from the vocabulary:
``uint16`` when ``vocab_size <= 65536`` (largest id 65535), else ``int32``; the writer checks that every id
fits instead of letting numpy wrap it (the uint16 overflow of datatrove #118).

The writer streams tokens to the ``.bin``'s temporary name (:func:`curate.io_utils.temp_path`,
``.<prefix>.bin.<pid>.tmp``, the one temp-name rule of the run directory) as batches arrive (only the int32 sizes
stay in memory, 4 bytes per sequence: 400 MB for 10**8 sequences), hashes them on the way, then writes the
``.idx``'s temporary file in blocks of :data:`IDX_BLOCK` sequences (the int64 pointers and document indices are
never whole in memory) and renames ``.bin`` first, ``.idx`` last: a final ``.idx`` exists only when its ``.bin``
is complete. A sequence longer than a gather batch arrives in pieces (:meth:`IndexedDatasetWriter.add_piece`,
:func:`piece_with_eos`).
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from curate.errors import ShardError
from curate.io_utils import temp_path
from curate.schema import token_dtype

MAGIC = b"MMIDIDX\x00\x00"
VERSION = 1
#: magic, version u64, dtype code u8, sequence count u64, document count u64
HEADER = struct.Struct("<9sQBQQ")

#: Megatron's dtype codes.
DTYPE_CODES: dict[int, np.dtype] = {
    1: np.dtype(np.uint8),
    2: np.dtype(np.int8),
    3: np.dtype(np.int16),
    4: np.dtype(np.int32),
    5: np.dtype(np.int64),
    6: np.dtype(np.float64),
    7: np.dtype(np.float32),
    8: np.dtype(np.uint16),
}
CODE_OF_DTYPE = {v: k for k, v in DTYPE_CODES.items()}

_INT32_MAX = np.iinfo(np.int32).max

#: Sequences per block when :meth:`IndexedDatasetWriter.finalize` writes the ``.idx`` pointers and doc_idx
#: (16 bytes a sequence, 16 MiB a block).
IDX_BLOCK = 1 << 20


def idx_path(prefix: str | os.PathLike) -> Path:
    """``<prefix>.idx``."""
    return Path(f"{os.fspath(prefix)}.idx")


def bin_path(prefix: str | os.PathLike) -> Path:
    """``<prefix>.bin``."""
    return Path(f"{os.fspath(prefix)}.bin")


# ---------------------------------------------------------------------------- writer
def sequences_with_eos(flat_ids: np.ndarray, lengths: np.ndarray, *, eos_id: int, dtype: np.dtype, where: str,
                       first_seq: int = 0, vocab_size: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Checked ``(tokens, sizes)`` of one batch: each document's ids then one ``eos_id``, as ``dtype``.

    Every shard format takes its sequences from here, so their token streams are identical. ``sizes`` is
    ``None`` for an empty batch. Raises :class:`ShardError` naming ``where`` and the document (counted from
    ``first_seq``) when an id does not fit ``dtype``, lengths and ids disagree, or a size exceeds int32.
    """
    dtype = np.dtype(dtype)
    max_id = int(np.iinfo(dtype).max)
    flat = np.asarray(flat_ids)
    lens = np.asarray(lengths, dtype=np.int64)
    if flat.ndim != 1 or lens.ndim != 1:
        msg = f"{where}: ids and lengths must be 1-D, got shapes {flat.shape} and {lens.shape}"
        raise ShardError(msg)
    if flat.size and flat.dtype.kind not in "iu":
        msg = f"{where}: token ids must be integers, got dtype {flat.dtype}"
        raise ShardError(msg)
    if lens.size and int(lens.min()) < 0:
        msg = f"{where}: negative document length at index {int(np.argmin(lens))}"
        raise ShardError(msg)
    if int(lens.sum()) != flat.size:
        msg = f"{where}: lengths sum to {int(lens.sum())} but {flat.size} ids were given"
        raise ShardError(msg)
    if not 0 <= int(eos_id) <= max_id:
        msg = (f"{where}: eos id {eos_id} does not fit {dtype.name} (0..{max_id}); "
               f"vocab_size={vocab_size} is too small for this tokenizer")
        raise ShardError(msg)
    if flat.size:
        lo, hi = int(flat.min()), int(flat.max())
        if lo < 0 or hi > max_id:
            bad = int(np.flatnonzero((flat < 0) | (flat > max_id))[0])
            doc = int(np.searchsorted(np.cumsum(lens), bad, side="right"))
            msg = (f"{where}: token id {int(flat[bad])} (document {first_seq + doc} of the shard) "
                   f"does not fit {dtype.name} (0..{max_id}); set vocab_size to the tokenizer's "
                   f"real vocabulary size (got {vocab_size})")
            raise ShardError(msg)
    if lens.size and int(lens.max()) + 1 > _INT32_MAX:
        msg = f"{where}: a document of {int(lens.max())} tokens exceeds Megatron's int32 sizes"
        raise ShardError(msg)
    if not lens.size:
        return np.zeros(0, dtype=dtype), None
    sizes = lens + 1
    out = np.empty(int(sizes.sum()), dtype=dtype)
    eos_at = np.cumsum(sizes) - 1
    is_tok = np.ones(out.size, dtype=bool)
    is_tok[eos_at] = False
    out[is_tok] = flat
    out[eos_at] = eos_id
    return out, sizes


def piece_with_eos(ids: np.ndarray, *, ntok: int, start: int, eos_id: int, dtype: np.dtype, where: str,
                   seq: int = 0, vocab_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Checked ``(tokens, sizes)`` of one piece of a long sequence: ids ``[start, start + len(ids))`` of a
    document of ``ntok`` ids, then the ``eos_id`` when the piece is its last.

    ``sizes`` is ``[ntok + 1]`` for the first piece (the sequence starts here) and empty for the others, so the
    pieces of a sequence, written one after the other, give the bytes of :func:`sequences_with_eos` of the whole.
    Raises :class:`ShardError` as :func:`sequences_with_eos` does (naming document ``seq`` of the shard).
    """
    ids = np.asarray(ids)
    end = start + ids.size
    if not 0 <= start < max(ntok, 1) or end > ntok:
        msg = f"{where}: piece [{start}, {end}) is outside document {seq} of {ntok} ids"
        raise ShardError(msg)
    last = end == ntok
    body, _ = sequences_with_eos(ids, np.array([ids.size]), eos_id=eos_id, dtype=dtype, where=where, first_seq=seq,
                                 vocab_size=vocab_size)
    if ntok + 1 > _INT32_MAX:
        msg = f"{where}: a document of {ntok} tokens exceeds Megatron's int32 sizes"
        raise ShardError(msg)
    tokens = body if last else body[:-1]
    sizes = np.array([ntok + 1] if start == 0 else [], dtype=np.int64)
    return tokens, sizes


def _index_parts(sizes: np.ndarray, dtype: np.dtype) -> Iterator[bytes]:
    """The bytes of a ``.idx`` for ``sizes``, in parts: the header, the sizes, then the int64 pointers and the
    doc_idx block by block (:data:`IDX_BLOCK` sequences), so only the int32 sizes are ever whole in memory."""
    n = int(sizes.size)
    yield HEADER.pack(MAGIC, VERSION, CODE_OF_DTYPE[dtype], n, n + 1)
    yield sizes.astype("<i4").tobytes()
    base = 0  # byte offset of the block's first sequence
    for s in range(0, n, IDX_BLOCK):
        block = sizes[s:s + IDX_BLOCK].astype(np.int64)
        ends = np.cumsum(block) * dtype.itemsize
        yield (base + np.concatenate([[0], ends[:-1]])).astype("<i8").tobytes()
        base += int(ends[-1])
    for s in range(0, n + 1, IDX_BLOCK):
        yield np.arange(s, min(s + IDX_BLOCK, n + 1), dtype="<i8").tobytes()


class IndexedDatasetWriter:
    """Stream documents into one Megatron ``MMIDIDX`` shard.

    Parameters
    ----------
    prefix : Path
        Output path without extension; ``<prefix>.bin`` and ``<prefix>.idx`` appear at :meth:`finalize`.
    vocab_size : int
        Picks the token dtype (:func:`curate.schema.token_dtype` of ``megatron``); ids must be ``< 65536`` for uint16, ``< 2**31`` else.

    Examples
    --------
    >>> w = IndexedDatasetWriter(tmp / "mix_00000", vocab_size=65536)   # doctest: +SKIP
    >>> w.add_batch(ids, lengths, eos_id=0)                              # doctest: +SKIP
    >>> w.finalize()["sequences"]                                        # doctest: +SKIP
    """

    def __init__(self, prefix: str | os.PathLike, *, vocab_size: int) -> None:
        self.prefix = Path(prefix)
        self.dtype = token_dtype(vocab_size, "megatron")
        self.vocab_size = int(vocab_size)
        self._max_id = int(np.iinfo(self.dtype).max)
        self._bin_tmp = temp_path(bin_path(self.prefix))
        self._idx_tmp = temp_path(idx_path(self.prefix))
        self.prefix.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self._bin_tmp, "wb")  # noqa: SIM115 - closed by finalize/abort
        self._hash = hashlib.sha256()
        self._sizes: list[np.ndarray] = []
        self._sequences = 0
        self._tokens = 0
        self._done = False

    # ------------------------------------------------------------------ state
    @property
    def sequences(self) -> int:
        """Sequences (documents) written so far."""
        return self._sequences

    @property
    def tokens(self) -> int:
        """Tokens written so far, end-of-document ids included."""
        return self._tokens

    def _where(self) -> str:
        return f"shard {self.prefix}"

    # ------------------------------------------------------------------ writing
    def add_batch(self, flat_ids: np.ndarray, lengths: np.ndarray, *, eos_id: int) -> None:
        """Append one sequence per document: its ids followed by one ``eos_id``.

        Parameters
        ----------
        flat_ids : np.ndarray
            Integer ids of all documents concatenated (as :meth:`curate.tokenizers.Tokenizer.encode_batch`).
        lengths : np.ndarray
            Ids per document; must sum to ``len(flat_ids)``.
        eos_id : int
            End-of-document id.

        Raises
        ------
        ShardError
            An id (or ``eos_id``) does not fit the shard dtype, or lengths and ids disagree.
        """
        if self._done:
            msg = f"{self._where()}: add_batch after finalize/abort; open a new writer"
            raise ShardError(msg)
        out, sizes = sequences_with_eos(flat_ids, lengths, eos_id=eos_id, dtype=self.dtype, where=self._where(),
                                        first_seq=self._sequences, vocab_size=self.vocab_size)
        if sizes is None:
            return
        self._append(out, sizes)

    def add_piece(self, ids: np.ndarray, *, ntok: int, start: int, eos_id: int) -> None:
        """Append ids ``[start, start + len(ids))`` of one document of ``ntok`` ids (:func:`piece_with_eos`).

        The pieces of a document come in order, with no other document between them; the last one adds the
        ``eos_id``. A document longer than a gather batch is written this way, never whole in memory.
        """
        if self._done:
            msg = f"{self._where()}: add_piece after finalize/abort; open a new writer"
            raise ShardError(msg)
        seq = self._sequences - (0 if start == 0 else 1)
        out, sizes = piece_with_eos(ids, ntok=ntok, start=start, eos_id=eos_id, dtype=self.dtype,
                                    where=self._where(), seq=seq, vocab_size=self.vocab_size)
        self._append(out, sizes)

    def _append(self, out: np.ndarray, sizes: np.ndarray) -> None:
        buf = out.tobytes()
        self._f.write(buf)
        self._hash.update(buf)
        if sizes.size:
            self._sizes.append(sizes.astype(np.int32))
        self._sequences += int(sizes.size)
        self._tokens += int(out.size)

    def add_sequences(self, docs: Iterable[np.ndarray | list[int]], *, eos_id: int) -> None:
        """Append documents given as separate id arrays (each gets one ``eos_id``)."""
        arrs = [np.asarray(d, dtype=np.int64).ravel() for d in docs]
        lens = np.fromiter((a.size for a in arrs), dtype=np.int64, count=len(arrs))
        flat = np.concatenate(arrs) if arrs else np.zeros(0, np.int64)
        self.add_batch(flat, lens, eos_id=eos_id)

    def finalize(self) -> dict[str, Any]:
        """Write the index and move both files to their final names.

        Returns
        -------
        dict
            ``sequences``, ``tokens``, ``bin_sha256``, ``idx_sha256``, ``bin_bytes``, ``idx_bytes``.
        """
        if self._done:
            msg = f"{self._where()}: finalize called twice"
            raise ShardError(msg)
        self._f.flush()
        os.fsync(self._f.fileno())
        bin_bytes = self._f.tell()
        self._f.close()

        sizes = np.concatenate(self._sizes) if self._sizes else np.zeros(0, np.int32)
        self._sizes = [sizes]
        h = hashlib.sha256()
        idx_bytes = 0
        with open(self._idx_tmp, "wb") as f:
            for part in _index_parts(sizes, self.dtype):
                f.write(part)
                h.update(part)
                idx_bytes += len(part)
            f.flush()
            os.fsync(f.fileno())
        os.replace(self._bin_tmp, bin_path(self.prefix))
        os.replace(self._idx_tmp, idx_path(self.prefix))
        self._done = True
        return {"sequences": int(sizes.size), "tokens": self._tokens, "bin_sha256": self._hash.hexdigest(),
                "idx_sha256": h.hexdigest(), "bin_bytes": bin_bytes, "idx_bytes": idx_bytes}

    def abort(self) -> None:
        """Close and delete the temporary files; no final file is written."""
        if self._done:
            return
        self._done = True
        try:
            self._f.close()
        except OSError:  # the disk that failed the write fails the close's flush too; the file goes anyway
            pass
        for p in (self._bin_tmp, self._idx_tmp):
            p.unlink(missing_ok=True)

    def __enter__(self) -> IndexedDatasetWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        """Abort on an exception; otherwise the caller must have called :meth:`finalize`."""
        if exc_type is not None:
            self.abort()
        elif not self._done:
            self.abort()
            msg = f"{self._where()}: writer closed without finalize(); nothing was written"
            raise ShardError(msg)


# ---------------------------------------------------------------------------- reader
@dataclass(frozen=True)
class IndexInfo:
    """A parsed ``.idx`` file.

    Attributes
    ----------
    dtype : np.dtype
        Token dtype of the ``.bin``.
    sizes : np.ndarray
        ``int32`` tokens per sequence.
    pointers : np.ndarray
        ``int64`` byte offset of each sequence in the ``.bin``.
    doc_idx : np.ndarray
        ``int64`` document boundaries (sequence indices), ``len(sizes) + 1`` long for curate's shards.
    path : Path
        The ``.idx`` file read.
    """

    dtype: np.dtype
    sizes: np.ndarray
    pointers: np.ndarray
    doc_idx: np.ndarray
    path: Path

    def __len__(self) -> int:
        return int(self.sizes.size)

    @property
    def tokens(self) -> int:
        """Total tokens in the shard."""
        return int(self.sizes.sum(dtype=np.int64))

    @property
    def bin_bytes(self) -> int:
        """Size the matching ``.bin`` must have."""
        return self.tokens * self.dtype.itemsize


def read_index(path: str | os.PathLike) -> IndexInfo:
    """Read and validate a ``.idx`` file.

    Checks the magic, version, dtype code, that the file is exactly as long as its counts say, that
    sizes are non-negative, that pointers are the running byte offsets of the sizes, and that ``doc_idx``
    runs from 0 to the sequence count without going back.

    Raises
    ------
    ShardError
        Naming the file and what is wrong (missing, truncated, not MMIDIDX, inconsistent).
    """
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        msg = f"{p}: index file missing; the shard was not finalized (rerun to rewrite it)"
        raise ShardError(msg) from None

    def bad(what: str) -> ShardError:
        return ShardError(f"{p}: {what}; the shard is corrupt or truncated, delete it and rerun to rewrite it")

    if len(raw) < HEADER.size:
        raise bad(f"{len(raw)} bytes, shorter than the {HEADER.size}-byte MMIDIDX header")
    magic, version, code, n_seq, n_doc = HEADER.unpack_from(raw, 0)
    if magic != MAGIC:
        raise bad(f"magic is {magic!r}, expected {MAGIC!r} (not a Megatron MMIDIDX index)")
    if version != VERSION:
        raise bad(f"version is {version}, expected {VERSION}")
    if code not in DTYPE_CODES:
        raise bad(f"dtype code is {code}, expected one of {sorted(DTYPE_CODES)}")
    dtype = DTYPE_CODES[code]
    expected = HEADER.size + 4 * n_seq + 8 * n_seq + 8 * n_doc
    if len(raw) != expected:
        raise bad(f"{len(raw)} bytes, but {n_seq} sequences and {n_doc} document indices need {expected}")
    off = HEADER.size
    sizes = np.frombuffer(raw, dtype="<i4", count=n_seq, offset=off).astype(np.int32, copy=False)
    off += 4 * n_seq
    pointers = np.frombuffer(raw, dtype="<i8", count=n_seq, offset=off).astype(np.int64, copy=False)
    off += 8 * n_seq
    doc_idx = np.frombuffer(raw, dtype="<i8", count=n_doc, offset=off).astype(np.int64, copy=False)
    if n_seq and int(sizes.min()) < 0:
        raise bad(f"sequence {int(np.argmin(sizes))} has negative size {int(sizes.min())}")
    want = np.zeros(n_seq, dtype=np.int64)
    if n_seq > 1:
        np.cumsum(sizes[:-1], dtype=np.int64, out=want[1:])
    want *= dtype.itemsize
    if not np.array_equal(pointers, want):
        i = int(np.flatnonzero(pointers != want)[0])
        raise bad(f"pointer of sequence {i} is {int(pointers[i])}, expected {int(want[i])} from the sizes")
    if n_doc == 0 or doc_idx[0] != 0 or doc_idx[-1] != n_seq or (n_doc > 1 and bool((np.diff(doc_idx) < 0).any())):
        raise bad(f"doc_idx must rise from 0 to the sequence count {n_seq}")
    return IndexInfo(dtype=dtype, sizes=sizes, pointers=pointers, doc_idx=doc_idx, path=p)


def _open_bin(prefix: str | os.PathLike, info: IndexInfo) -> np.memmap | np.ndarray:
    b = bin_path(prefix)
    if not b.is_file():
        msg = f"{b}: data file missing next to {info.path}; delete the shard and rerun to rewrite it"
        raise ShardError(msg)
    size = b.stat().st_size
    if size != info.bin_bytes:
        msg = (f"{b}: {size} bytes, but {info.path} describes {info.tokens} {info.dtype.name} tokens "
               f"({info.bin_bytes} bytes); the shard is truncated or mismatched, delete it and rerun")
        raise ShardError(msg)
    if size == 0:  # np.memmap refuses empty files
        return np.zeros(0, dtype=info.dtype)
    return np.memmap(b, dtype=info.dtype, mode="r")


def read_sequence(prefix: str | os.PathLike, i: int, *, info: IndexInfo | None = None) -> np.ndarray:
    """Sequence ``i`` of the shard (its ids and the trailing end-of-document id), as an array copy."""
    info = info or read_index(idx_path(prefix))
    n = len(info)
    if not -n <= i < n:
        msg = f"sequence {i} out of range for {info.path} ({n} sequences)"
        raise IndexError(msg)
    i %= n
    data = _open_bin(prefix, info)
    start = int(info.pointers[i]) // info.dtype.itemsize
    return np.array(data[start:start + int(info.sizes[i])])


def iter_sequences(prefix: str | os.PathLike) -> Iterator[np.ndarray]:
    """Yield every sequence of the shard in order (views into a read-only memmap)."""
    info = read_index(idx_path(prefix))
    data = _open_bin(prefix, info)
    for ptr, size in zip(info.pointers.tolist(), info.sizes.tolist()):
        start = ptr // info.dtype.itemsize
        yield data[start:start + size]


# ---------------------------------------------------------------------------- RWKV-LM
def _is_prime(n: int) -> bool:
    """Deterministic Miller-Rabin for n < 3.3e24 (bases 2..41)."""
    if n < 2:
        return False
    small = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41)
    for q in small:
        if n % q == 0:
            return n == q
    d, s = n - 1, 0
    while d % 2 == 0:
        d //= 2
        s += 1
    for a in small:
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def rwkv_magic_prime(total_tokens: int, ctx_len: int) -> int:
    """RWKV-LM's ``magic_prime``: the largest prime ``p <= total_tokens // ctx_len - 1`` with ``p % 3 == 2``.

    RWKV-LM's trainer reads window ``(factor * ii**3) % magic_prime`` (times ``ctx_len``) at step ``ii``; cubing is
    a permutation modulo a prime exactly when ``p % 3 == 2``, so an epoch visits each window once and never runs
    past the data. RWKV-LM's ``make_data.py`` prints this number for a ``.bin``/``.idx`` pair; with MiniPile's
    1,498,226,207 tokens it gives 2926181 at ctx_len 512 (the value in RWKV-LM's demo scripts).

    Raises
    ------
    ValueError
        When the shard holds too few tokens for any such prime (fewer than ``3 * ctx_len`` tokens).
    """
    if ctx_len <= 0:
        msg = f"`ctx_len` must be > 0, got {ctx_len}"
        raise ValueError(msg)
    top = total_tokens // ctx_len - 1
    p = top - (top - 2) % 3  # largest value <= top that is 2 mod 3
    while p >= 2:
        if _is_prime(p):
            return p
        p -= 3
    msg = (f"no prime p <= {top} with p % 3 == 2: {total_tokens} tokens are too few for ctx_len {ctx_len} "
           f"(need at least {3 * ctx_len})")
    raise ValueError(msg)
