"""Hugging Face datasets as inputs: ``hf://datasets/ORG/NAME[/CONFIG]``.

A path of this form names the ``train`` split of a dataset on the Hub (``CONFIG`` picks a configuration).
It is read with ``datasets.load_dataset(..., split="train", streaming=True)``, turned into Arrow tables with
``with_format("arrow")``, and fed to the same normalizer as a local file of the source's ``format``: an
``hf://`` path under ``format: culturax`` must have CulturaX's columns, under ``format: parquet`` the columns
named by ``text_column`` and friends.

Partitions: the streaming dataset's shards (its data files) are split into one partition each, named
``hf://datasets/ORG/NAME[/CONFIG]#shard=I/N``; a dataset with one shard is one partition with the plain path.
``nbytes`` is the dataset's download size split evenly over shards when the Hub reports it, else 0.

Offline and air-gapped use: when the environment variable ``CURATE_HF_MIRROR`` names a folder and
``$CURATE_HF_MIRROR/ORG/NAME`` exists, that local copy of the dataset repository (its data files and README
configs, laid out as on the Hub) is loaded instead of the Hub repository; ``load_dataset`` resolves configs,
data files and shards of a local repository folder with the same machinery as for a Hub repository. Ray
workers must see the variable too (pass it in the runtime environment). The tests use exactly this, with
``HF_HUB_OFFLINE=1``, so the real ``load_dataset`` streaming path runs without network.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from curate.errors import InputError

HF_DATASETS_PREFIX = "hf://datasets/"
#: Folder holding local copies of Hub dataset repositories as ``ORG/NAME``.
MIRROR_ENV = "CURATE_HF_MIRROR"
_SHARD = re.compile(r"#shard=(\d+)/(\d+)$")


@dataclass(frozen=True)
class HfRef:
    """A parsed ``hf://`` path: repository, configuration and (for a partition) shard ``index`` of ``count``."""

    repo: str
    config: str | None = None
    shard: int | None = None
    n_shards: int | None = None

    @property
    def base(self) -> str:
        """The path without the shard suffix."""
        return HF_DATASETS_PREFIX + self.repo + (f"/{self.config}" if self.config else "")

    def with_shard(self, index: int, count: int) -> str:
        """The partition path of shard ``index`` of ``count``."""
        return f"{self.base}#shard={index}/{count}"


def parse(path: str) -> HfRef:
    """Parse ``hf://datasets/ORG/NAME[/CONFIG][#shard=I/N]``; anything else raises ``InputError``."""
    if not path.startswith(HF_DATASETS_PREFIX):
        msg = "Hugging Face paths must look like hf://datasets/ORG/NAME or hf://datasets/ORG/NAME/CONFIG"
        raise InputError(msg, file=path)
    rest = path[len(HF_DATASETS_PREFIX):]
    shard = n = None
    m = _SHARD.search(rest)
    if m:
        shard, n = int(m.group(1)), int(m.group(2))
        rest = rest[: m.start()]
    parts = [p for p in rest.split("/") if p]
    if len(parts) not in (2, 3):
        msg = (f"expected hf://datasets/ORG/NAME[/CONFIG], got {len(parts)} path parts after hf://datasets/; "
               "name the configuration as the third part")
        raise InputError(msg, file=path)
    return HfRef(repo=f"{parts[0]}/{parts[1]}", config=parts[2] if len(parts) == 3 else None, shard=shard,
                 n_shards=n)


def local_copy(ref: HfRef) -> str | None:
    """The mirror folder of ``ref`` under ``$CURATE_HF_MIRROR``, or None when there is none."""
    root = os.environ.get(MIRROR_ENV)
    if not root:
        return None
    d = os.path.join(root, *ref.repo.split("/"))
    return d if os.path.isdir(d) else None


def load(ref: HfRef, *, path: str) -> Any:
    """``datasets.load_dataset(..., split="train", streaming=True)`` for ``ref``, sharded when it names a shard."""
    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets is a core dependency
        msg = "reading hf:// paths needs the `datasets` package: pip install 'datasets>=2.19'"
        raise InputError(msg, file=path) from None
    target = local_copy(ref) or ref.repo
    try:
        ds = datasets.load_dataset(target, name=ref.config, split="train", streaming=True)
    except Exception as e:  # datasets raises many kinds (ConnectionError, DatasetNotFoundError, ValueError, ...)
        hint = (f"check the name and configuration, that the Hub is reachable (HF_HUB_OFFLINE is "
                f"{os.environ.get('HF_HUB_OFFLINE', 'unset')}), or point {MIRROR_ENV} at a folder holding "
                f"{ref.repo}")
        msg = f"cannot load Hugging Face dataset {target!r} (config {ref.config!r}): {type(e).__name__}: {e}; {hint}"
        raise InputError(msg, file=path) from None
    if ref.shard is not None:
        if ds.num_shards != ref.n_shards:
            msg = (f"the dataset now has {ds.num_shards} shards, but this partition was planned for "
                   f"{ref.n_shards}; the dataset changed since the run was planned: start a new run")
            raise InputError(msg, file=path)
        ds = ds.shard(num_shards=ref.n_shards, index=ref.shard, contiguous=True)
    return ds


def expand(path: str) -> list[tuple[str, int]]:
    """Partition paths of an ``hf://`` dataset and their estimated byte sizes (see the module docstring)."""
    ref = parse(path)
    ds = load(ref, path=path)
    n = max(int(ds.num_shards), 1)
    size = (ds.info.download_size or ds.info.dataset_size or 0) if ds.info is not None else 0
    if n == 1:
        return [(ref.base, int(size))]
    return [(ref.with_shard(i, n), int(size) // n) for i in range(n)]


def iter_tables(path: str, *, batch_rows: int) -> Iterator[pa.Table]:
    """Arrow tables of the ``train`` split (or of the partition's shard), ``batch_rows`` rows at most each."""
    ref = parse(path)
    ds = load(ref, path=path)
    try:
        for table in ds.with_format("arrow").iter(batch_size=batch_rows):
            yield table.replace_schema_metadata(None)
    except InputError:
        raise
    except Exception as e:  # a broken data file surfaces here as whatever its reader raises
        msg = f"cannot read Hugging Face dataset: {type(e).__name__}: {e}"
        raise InputError(msg, file=path) from None


def count(path: str) -> int:
    """Number of rows of the partition: from the split metadata when the Hub has it, else by streaming."""
    ref = parse(path)
    ds = load(ref, path=path)
    if ref.shard is None and ds.info is not None and ds.info.splits and "train" in ds.info.splits:
        n = ds.info.splits["train"].num_examples
        if n:
            return int(n)
    first = next(iter(ds.features), None) if ds.features else None
    if first is not None:
        ds = ds.select_columns([first])
    return sum(t.num_rows for t in ds.with_format("arrow").iter(batch_size=65536))


def revision(path: str) -> dict[str, Any]:
    """What identifies the version of the dataset behind ``path``, for a resume to notice a changed dataset.

    A local mirror: an xxh64 over the relative path, size and mtime of every file of the mirrored repository.
    The Hub: the repository's commit sha (``huggingface_hub.dataset_info``). Offline with no mirror the
    revision cannot be known: ``{"revision": None}``, and a resume trusts what it processed before.
    """
    import xxhash

    ref = parse(path)
    local = local_copy(ref)
    if local is not None:
        h = xxhash.xxh64()
        for root, dirs, files in os.walk(local):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for name in sorted(files):
                full = os.path.join(root, name)
                st = os.stat(full)
                h.update(f"{os.path.relpath(full, local)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return {"revision": f"mirror:{h.hexdigest()}"}
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return {"revision": None}
    try:
        from huggingface_hub import HfApi

        return {"revision": HfApi().dataset_info(ref.repo, timeout=10).sha}
    except Exception:  # noqa: BLE001 - offline, unreachable or unknown: the revision is simply not known
        return {"revision": None}
