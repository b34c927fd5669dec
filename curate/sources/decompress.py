"""Opening an input file: what its bytes are, and its decompressed bytes and lines.

Compression is chosen by file-name suffix (:data:`COMPRESSION_SUFFIXES`: ``.gz``, ``.zst``/``.zstd``, ``.bz2``;
anything else is read as plain bytes); multi-member gzip and multi-frame zstd are joined. Whether a native-format
file is Parquet is decided by its magic bytes (``PAR1``, :func:`is_parquet`), not its name.

File types
----------
Before a file is read its first 64 KiB (and, for Parquet, its last 4 bytes) are sniffed (:func:`sniff`):
Parquet (``PAR1`` header and footer), gzip, zstd, bz2, xz, zip, or text (JSON lines, CSV, plain, binary). A file
that is not what its name says (a CSV named ``.parquet``, gzip bytes named ``.jsonl``, a ``.jsonl`` holding
Parquet) is one quarantine record ``wrong_file_type`` naming what was found; a Parquet file cut before its
footer is one ``truncated_file`` record; ``.xz``/``.zip`` are one ``unsupported_file_type`` record; a Parquet
file whose footer or data cannot be decoded is one ``corrupt_file`` record (for everything from the row where
it breaks). ``on_error: error`` raises :class:`~curate.errors.InputError` instead. A name that promises nothing
(no known suffix) is read by its bytes, as before.

Truncated or corrupt compressed streams: :func:`iter_decompressed` yields every byte it could decode before the
break, then raises :class:`BrokenStream`, which says where the stream broke (the 0-based index of the first lost
line, once :func:`iter_lines` or :func:`read_all` set it) and estimates what was lost (:meth:`BrokenStream.loss`).
The readers turn it into a ``truncated_file`` quarantine record or, with ``on_error: error``, an
:class:`~curate.errors.InputError` (:mod:`curate.sources.rawbatch`). An empty file (zero bytes, or a compressed
stream of zero bytes) is zero records and no error.

The file-type checks' quarantine reasons are listed in :mod:`curate.sources.rawbatch`.
"""

from __future__ import annotations

import bz2
import os
import zlib
from collections.abc import Iterator
from typing import Any


#: Compression by file-name suffix; anything else is read as plain bytes.
COMPRESSION_SUFFIXES = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd", ".bz2": "bz2"}
#: Bytes read from disk per step of the decompressor.
CHUNK_BYTES = 4 << 20
#: Compressed bytes given to the decompressor per call: where a stream breaks is known to within this.
FEED_BYTES = 64 << 10
PARQUET_MAGIC = b"PAR1"


# ---------------------------------------------------------------------------- decompression and lines
class BrokenStream(Exception):  # noqa: N818 - a signal between io helpers and readers, never reaches the runner
    """A compressed stream ended early or is corrupt. ``line`` is the 0-based index of the first lost line."""

    def __init__(self, compression: str, reason: str, *, line: int = 0, partial_bytes: int = 0,
                 at_byte: int | None = None, file_bytes: int | None = None) -> None:
        self.compression, self.reason, self.line, self.partial_bytes = compression, reason, line, partial_bytes
        self.at_byte, self.file_bytes = at_byte, file_bytes
        super().__init__(f"truncated or corrupt {compression} stream ({reason})")

    def message(self) -> str:
        """Human text: ``truncated or corrupt gzip stream at line N (reason)``; N is 1-based."""
        return f"truncated or corrupt {self.compression} stream at line {self.line + 1} ({self.reason})"

    def loss(self) -> str:
        """What the break cost: lines read before it, and the compressed bytes (and estimated lines) after it.

        The lines after a break cannot be counted (the stream cannot be decoded past it); they are estimated
        at the rate of the lines read (lines per compressed byte), which is exact for a uniform file.
        """
        text = f"{self.line:,} line(s) were read before the break"
        if self.at_byte is None or not self.file_bytes:
            return text
        left = max(0, self.file_bytes - self.at_byte)
        if left == 0:
            return text + "; the break is at the end of the file, so only the line in progress is lost"
        est = round(self.line * left / self.at_byte) if self.at_byte else 0
        return (text + f"; the remaining {left:,} of {self.file_bytes:,} compressed bytes "
                f"({left / self.file_bytes:.0%}) cannot be decoded: about {est:,} more line(s) lost")


def compression_of(path: str) -> str | None:
    """Return ``gzip``/``zstd``/``bz2`` from the file-name suffix, or None for an uncompressed file."""
    return COMPRESSION_SUFFIXES.get(os.path.splitext(path)[1].lower())


def _decompressor(kind: str) -> Any:
    if kind == "gzip":
        return zlib.decompressobj(wbits=31)
    if kind == "zstd":
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj()
    return bz2.BZ2Decompressor()


def iter_decompressed(path: str, *, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    """Yield the decompressed bytes of ``path`` in chunks; multi-member gzip and multi-frame zstd are joined.

    Raises
    ------
    BrokenStream
        When the stream ends inside a member/frame or the decompressor rejects the data. Every byte that
        could be decompressed before the break has been yielded.
    """
    kind = compression_of(path)
    with open(path, "rb") as fh:
        if kind is None:
            while chunk := fh.read(chunk_bytes):
                yield chunk
            return
        size = os.fstat(fh.fileno()).st_size
        dec, fed = _decompressor(kind), False
        pos = 0  # compressed bytes given to the decompressors so far
        while raw := fh.read(chunk_bytes):
            # fed in FEED_BYTES pieces: a break is located (and the output before it kept) to within one piece
            for lo in range(0, len(raw), FEED_BYTES):
                data = raw[lo:lo + FEED_BYTES]
                while data:
                    try:
                        out = dec.decompress(data)
                    except Exception as e:  # zlib.error, OSError (bz2), zstandard.ZstdError: all mean corrupt data
                        raise BrokenStream(kind, f"corrupt data: {e}", at_byte=pos, file_bytes=size) from None
                    fed = True
                    if out:
                        yield out
                    if dec.eof:
                        data = dec.unused_data
                        dec, fed = _decompressor(kind), False
                    else:
                        data = b""
                pos += min(FEED_BYTES, len(raw) - lo)
        if fed and not dec.eof:
            raise BrokenStream(kind, "the file ends inside a compressed block", at_byte=size, file_bytes=size)


def iter_lines(path: str, *, chunk_bytes: int = CHUNK_BYTES) -> Iterator[tuple[int, list[bytes]]]:
    """Yield ``(index_of_first_line, lines)`` over the decompressed file; lines exclude the ``\\n``.

    A final line without a newline is yielded if the stream is intact. On a broken stream the complete
    lines are yielded first, then :class:`BrokenStream` is raised with ``line`` set to the index of the first
    incomplete line and ``partial_bytes`` to the bytes read of it.
    """
    pieces: list[bytes] = []
    line_no = 0
    try:
        for chunk in iter_decompressed(path, chunk_bytes=chunk_bytes):
            if b"\n" not in chunk:
                pieces.append(chunk)
                continue
            if pieces:
                pieces.append(chunk)
                chunk = b"".join(pieces)
                pieces = []
            lines = chunk.split(b"\n")
            tail = lines.pop()
            if tail:
                pieces.append(tail)
            yield line_no, lines
            line_no += len(lines)
    except BrokenStream as e:
        e.line, e.partial_bytes = line_no, sum(len(p) for p in pieces)
        raise
    if pieces:
        yield line_no, [b"".join(pieces)]


def read_all(path: str) -> bytes:
    """Return the whole decompressed content of ``path``; raises :class:`BrokenStream` with the line set."""
    parts: list[bytes] = []
    try:
        for chunk in iter_decompressed(path):
            parts.append(chunk)
    except BrokenStream as e:
        data = b"".join(parts)
        e.line, e.partial_bytes = data.count(b"\n"), len(data)
        raise
    return b"".join(parts)


def is_parquet(path: str) -> bool:
    """True when ``path`` starts with the Parquet magic bytes."""
    with open(path, "rb") as fh:
        return fh.read(4) == PARQUET_MAGIC


# ---------------------------------------------------------------------------- file types
#: Leading bytes of the containers a file may hold, and the name of each.
MAGIC = ((PARQUET_MAGIC, "parquet"), (b"\x1f\x8b", "gzip"), (b"\x28\xb5\x2f\xfd", "zstd"), (b"BZh", "bz2"),
         (b"\xfd7zXZ\x00", "xz"), (b"PK\x03\x04", "zip"))
#: Suffixes that name a container; ``.xz`` and ``.zip`` are recognised but not read.
NAMED_TYPES = {".parquet": "parquet", ".pq": "parquet", ".gz": "gzip", ".zst": "zstd", ".zstd": "zstd",
               ".bz2": "bz2", ".xz": "xz", ".zip": "zip"}
#: Suffixes that name uncompressed text (JSON lines, or a one-document text file).
TEXT_SUFFIXES = frozenset({".jsonl", ".json", ".ndjson", ".txt", ".text", ".md", ".csv", ".tsv"})
SNIFF_BYTES = 1 << 16
_READABLE = frozenset({"parquet", "gzip", "zstd", "bz2"})


def sniff(path: str) -> str:
    """What ``path`` holds, from its bytes: a container of :data:`MAGIC`, ``truncated parquet`` (the ``PAR1`` header
    without the ``PAR1`` footer), ``empty``, ``blank text`` (only whitespace), or for text ``JSON lines`` (a
    line of the first 64 KiB starts with ``{`` or ``[``), ``CSV text`` (the first line has a comma or tab),
    ``text``, or ``binary data`` (NUL bytes or mostly undecodable bytes in the first 64 KiB).
    """
    with open(path, "rb") as fh:
        head = fh.read(SNIFF_BYTES)
        if not head:
            return "empty"
        for magic, name in MAGIC:
            if head.startswith(magic):
                if name == "parquet":
                    size = os.fstat(fh.fileno()).st_size
                    if size < 12:
                        return "truncated parquet"
                    fh.seek(size - 4)
                    return "parquet" if fh.read(4) == PARQUET_MAGIC else "truncated parquet"
                return name
    body = head[3:] if head.startswith(b"\xef\xbb\xbf") else head
    if not body.strip():
        return "blank text"
    if b"\x00" in body or len(body.decode("utf-8", "ignore")) < 0.7 * len(body.decode("latin-1")):
        return "binary data"
    lines = [x.strip() for x in body.split(b"\n")]
    if any(x[:1] in (b"{", b"[") for x in lines):
        return "JSON lines"
    first = next((x for x in lines if x), b"")
    return "CSV text" if (b"," in first or b"\t" in first) else "text"


def _named_type(path: str, kind: str) -> str | None:
    """The type the file's name (and the reader's ``kind``) promises; None when the name promises nothing."""
    ext = os.path.splitext(path)[1].lower()
    if ext in NAMED_TYPES:
        return NAMED_TYPES[ext]
    if kind == "parquet":
        return "parquet"
    if ext in TEXT_SUFFIXES or kind in ("jsonl", "text"):
        return "text" if kind == "text" else "JSON lines"
    return None


def file_type_problem(path: str, kind: str) -> tuple[str, str] | None:
    """``(reason, message)`` when a file is not what its name says, else None.

    ``kind`` is ``parquet``, ``jsonl`` (JSON lines, also compressed), ``text`` (a one-document file) or
    ``auto`` (a native format: Parquet or JSON lines; a name that promises nothing is taken by its bytes).
    Reasons: ``wrong_file_type`` (named one thing, holds another: the message names both),
    ``truncated_file`` (a Parquet file cut before its footer), ``unsupported_file_type`` (``.xz``, ``.zip``).
    """
    named = _named_type(path, kind)
    got = sniff(path)
    if got == "empty":
        return None
    name = os.path.basename(path)
    if got == "truncated parquet" and named in (None, "parquet"):
        return ("truncated_file", "truncated Parquet file: it starts with the PAR1 magic bytes but has no PAR1 "
                                  "footer (the end of the file is missing); re-download or re-export it")
    if named in ("xz", "zip") or (named is None and got in ("xz", "zip")):
        return ("unsupported_file_type", f"{got} files are not read (gzip, zstd and bz2 are); decompress it, or "
                                         "recompress it with gzip or zstd")
    if named is None:
        return None if got in ("parquet", "JSON lines", "text", "CSV text", "blank text") or kind == "text" else (
            "wrong_file_type", f"the file holds {got}, which format `{kind}` cannot read")
    if kind == "jsonl" and got == "parquet":
        return ("wrong_file_type", "the file holds parquet, but the source's format `jsonl` reads JSON lines; use "
                                   "format `parquet`")
    if named in _READABLE:
        ok = got == named
    elif named == "JSON lines":
        ok = got in ("JSON lines", "blank text")
    else:  # a one-document text file: any text; its encoding is checked when it is decoded
        ok = got not in {n for _m, n in MAGIC} and got != "truncated parquet"
    if ok:
        return None
    hint = {"parquet": "a .parquet name", "gzip": "a .gz name", "zstd": "a .zst name", "bz2": "a .bz2 name"}
    fix = f"; rename it to match ({hint[got]})" if got in hint else "; fix or remove the file"
    return ("wrong_file_type", f"not {named} as its name {name!r} says: the file holds {got}{fix}")


def count_lines(path: str) -> int:
    """Records of a JSON-lines file: non-blank lines, plus one when the compressed stream is truncated."""
    n = 0
    try:
        for _, lines in iter_lines(path):
            n += sum(1 for line in lines if line and not line.isspace())
    except BrokenStream:
        n += 1
    return n
