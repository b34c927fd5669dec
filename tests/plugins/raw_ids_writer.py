"""A plugin shard writer (issue 15): ``shards.format: raw-ids``, the token stream and a sizes file.

One module and one ``register`` line, with the format's capabilities, are all a new shard format needs::

    shards/raw/<name>.ids    every sequence's ids and its end-of-document id, little endian, the shard's dtype
    shards/raw/<name>.lens   uint32 tokens of each sequence (the index the audit reads back)
    raw_ids.txt              the run-level file: every shard's ``.ids`` path, one a line

Both files are streamed through ``_HashedFile`` (temporary name, sha256 on the way, renamed at finalize).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from curate.errors import ShardError
from curate.io_utils import atomic_write_text
from curate.shard_formats import ShardFormatWriter, _check_data_size, _HashedFile, _raw_tokens, register, shard_formats


@register("raw-ids", files=("raw/{name}.ids", "raw/{name}.lens"), index=".lens", run_files=("raw_ids.txt",))
class RawIdsWriter(ShardFormatWriter):
    def __init__(self, shard_dir: Path, name: str, *, vocab_size: int, tokenizer: str) -> None:
        super().__init__(shard_dir, name, vocab_size=vocab_size, tokenizer=tokenizer)
        self.ids = _HashedFile(self.shard_dir / "raw" / f"{name}.ids")
        self.lens = _HashedFile(self.shard_dir / "raw" / f"{name}.lens")

    def add(self, batch) -> None:  # noqa: ANN001
        tokens, sizes = batch.tokens_sizes
        self.ids.write(tokens.astype(self.dtype.newbyteorder("<"), copy=False).tobytes())
        self.lens.write(sizes.astype("<u4").tobytes())
        self.sequences += int(sizes.size)
        self.tokens += int(tokens.size)

    def finalize(self) -> dict[str, Any]:
        for f in (self.ids, self.lens):
            f.commit()
        return self._entry([{"path": f.path.relative_to(self.shard_dir).as_posix(), "bytes": f.bytes,
                             "sha256": f.h.hexdigest()} for f in (self.ids, self.lens)])

    def abort(self) -> None:
        self.ids.abort()
        self.lens.abort()

    @classmethod
    def read_sizes(cls, shard_dir: Path, fentry: dict) -> np.ndarray:
        ids, lens = (shard_dir / f["path"] for f in fentry["files"])
        if not lens.is_file() or lens.stat().st_size % 4:
            msg = f"{lens}: missing or not a whole number of uint32 sizes; delete the shard and rerun"
            raise ShardError(msg)
        sizes = np.fromfile(lens, dtype="<u4").astype(np.int64)
        _check_data_size(ids, sizes, np.dtype(fentry["dtype"]), lens)
        return sizes

    @classmethod
    def read_tokens(cls, shard_dir: Path, fentry: dict) -> np.ndarray:
        return _raw_tokens(shard_dir / fentry["files"][0]["path"], np.dtype(fentry["dtype"]))

    @classmethod
    def write_run_files(cls, run_dir: Path, manifest: dict) -> list[str]:
        paths = [shard_formats(s)["raw-ids"]["files"][0]["path"] for s in manifest["shards"]]
        atomic_write_text(run_dir / "raw_ids.txt", "".join(f"shards/{p}\n" for p in paths))
        return ["raw_ids.txt"]

    @classmethod
    def check_run_files(cls, run_dir: Path, manifest: dict) -> list[dict]:
        p = run_dir / "raw_ids.txt"
        want = [f"shards/{shard_formats(s)['raw-ids']['files'][0]['path']}" for s in manifest["shards"]]
        if not p.is_file() or p.read_text().split() != want:
            return [{"kind": "trainer_config", "where": p.name, "message": f"{p.name} does not list every shard"}]
        return []
