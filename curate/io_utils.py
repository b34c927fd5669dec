"""Atomic file writes and small IO helpers.

Every file in a run directory is written under a temporary name in the same folder and renamed into
place (``os.replace`` is atomic on POSIX), so a crash never leaves a half-written file under a final
name, and a file's presence means it is complete. Done-markers build on this: a partition or shard is
finished exactly when its marker exists. A write that fails (disk full, read-only folder) removes its temporary
file before the error propagates, so a failed run leaves nothing behind but complete files.

:func:`file_identity` is what a partition's done marker records about its input file, so a resume notices a
file that changed since it was processed (see ``curate.runner``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq


def temp_path(path: str | os.PathLike) -> Path:
    """The one temporary name of a file being written: ``.<name>.<pid>.tmp`` in the same folder.

    Hidden, so a glob for final names never matches it; per process, so two writers never share one; ending in
    ``.tmp``, so ``curate.runner.remove_stale_temps`` finds what a killed process left.
    """
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


@contextlib.contextmanager
def _atomic(path: str | os.PathLike) -> Iterator[Path]:
    """Yield the temporary name to write ``path`` under; rename it into place on success, delete it on failure.

    An ``OSError`` without a file name (a failed flush on a full disk) is re-raised naming ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(e, OSError) and e.filename is None and e.errno is not None:
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with _atomic(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True, default=str))


def atomic_write_parquet(path: str | os.PathLike, table: pa.Table, **kwargs: Any) -> None:
    """Write ``table`` to ``path`` atomically (zstd-compressed unless told otherwise)."""
    kwargs.setdefault("compression", "zstd")
    with _atomic(path) as tmp:
        pq.write_table(table, tmp, **kwargs)


def user_cache_dir() -> Path:
    """curate's folder in the user's cache: ``$CURATE_CACHE_DIR``, else ``$XDG_CACHE_HOME/curate``, else
    ``~/.cache/curate``. It holds what is costly to rebuild and depends only on installed versions and file
    hashes (the report's Vega bundle, the tokenizer gate's decisions); deleting it only costs time."""
    env = os.environ.get("CURATE_CACHE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "curate"


def sha256_file(path: str | os.PathLike, *, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()


#: Bytes hashed at each end of a file by :func:`file_identity`.
IDENTITY_SAMPLE = 64 << 10


def file_identity(path: str | os.PathLike) -> dict[str, Any]:
    """``{"size", "mtime_ns", "xxh64"}`` of a local file; ``xxh64`` hashes its first and last 64 KiB.

    Cheap at any scale (two small reads per file), and it catches what a size-and-time check alone can miss:
    an edit that keeps the size (a fixed character) or a copy that keeps the time (``cp -p``, ``rsync -t``).
    An edit in the middle of a large file that keeps both size and time is the one change it cannot see.
    """
    import xxhash

    st = os.stat(path)
    h = xxhash.xxh64()
    with open(path, "rb") as f:
        h.update(f.read(IDENTITY_SAMPLE))
        if st.st_size > IDENTITY_SAMPLE:
            f.seek(max(IDENTITY_SAMPLE, st.st_size - IDENTITY_SAMPLE))
            h.update(f.read(IDENTITY_SAMPLE))
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "xxh64": h.hexdigest()}


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))
