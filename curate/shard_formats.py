"""Shard formats: the files one shard is written as, for each trainer, all from the same ordered sequences.

``shards.format`` names one format or a list. :func:`curate.mix.writer.write_shard` gathers each batch of a
shard's sequences once (a :class:`SeqBatch`) and hands the same batch to one writer per format, so the token
streams of all formats are identical; every sequence is a document's ids then one end-of-document id. A writer
writes its files under their temporary names (:func:`curate.io_utils.temp_path`, the one rule) and renames them
in :meth:`ShardFormatWriter.finalize`, which returns the format's manifest entry (paths relative to ``shards/``)::

    {"dtype": "uint16", "sequences": n, "tokens": t,
     "files": [{"path": "olmo/mix_00000.npy", "bytes": ..., "sha256": ...}, ...]}

The audit reads each format's own index back (:meth:`ShardFormatWriter.read_sizes`: sequence sizes from the
``.idx``, the ``.csv.gz``, the ``.ds.index`` or the MDS sample headers, checked against the data file's size)
and ``--verify`` rehashes every listed file. Layouts under ``shards/`` (``<name>`` is e.g. ``mix_00000``)::

    megatron   <name>.bin, <name>.idx      Megatron MMIDIDX (curate.shards): Megatron-LM, GPT-NeoX, RWKV-LM
    olmo-npy   olmo/<name>.npy             raw little-endian ids with no .npy header: dolma's memmap layout,
                                           which OLMo-core's NumpyFSLDataset opens with np.memmap
               olmo/<name>.csv.gz          dolma's metadata, one line per sequence: start,end,id,source
                                           (token offsets, end exclusive; OLMo-core reads start,end)
    datatrove  datatrove/<name>.ds         raw little-endian ids (datatrove's TokenizedFile)
               datatrove/<name>.ds.index   uint64 end offset (exclusive, in tokens) of every sequence
               datatrove/<name>.ds.metadata  "<tokenizer>|<token_size>" then the token count
    mds        mds/<name>.mds              one MosaicML-streaming MDS shard (layout below), one sample per
                                           sequence, column ``tokens`` encoded ``ndarray:<dtype>``
               mds/index.json              every shard of the run, written by :func:`write_run_files`

Token dtype (:func:`token_dtype`): ``uint16`` when ``vocab_size <= 65536``, else 4 bytes: ``int32`` for Megatron
(its dtype codes have no uint32; megatron-core's ``DType.optimal_dtype`` picks int32 too), ``uint32`` for the
others (OLMo-core's ``NumpyDatasetDType.uint32``, datatrove's ``token_size=4``, MDS ``ndarray:uint32``). So a
Llama-3 (128k) run writes 4-byte ids everywhere, and each format records it its own way (the .idx dtype code,
the config's dtype, the .ds.metadata token size, the MDS column encoding).

MDS shard layout (streaming's ``MDSWriter.encode_joint_shard``, little endian): ``uint32`` sample count n,
``uint32`` offsets[n + 1] (absolute byte offsets of the samples and of the end), the shard's config JSON
(sorted keys), then the samples. A sample of one variable-size column is ``uint32`` datum size then the datum:
one byte ``ndim << 2 | shape_code`` (shape_code 0..3 = uint8/16/32/64, the smallest that holds the length), the
length in that type, then the ids. Offsets are uint32, so one MDS shard must stay under 4 GiB.

A format is a :class:`ShardFormatWriter` subclass registered with :func:`register`, whose keywords carry what
it writes and can do (:class:`WriterInfo`: files, the index the audit reads, token dtypes, bytes held a
sequence, run-level files); no table elsewhere lists formats, and ``shards.format`` is checked against
:data:`WRITERS` after the recipe's plugins load (:func:`check_formats`).

Memory: every writer streams its data file; an index that needs the sizes of all sequences before it is written
keeps only those (Megatron's int32 sizes, MDS's uint32 sample lengths: 4 bytes a sequence each, the rest written
in blocks at :meth:`ShardFormatWriter.finalize`); olmo-npy and datatrove write their index as they go. Batches
come from :class:`SequenceGather` (at most :data:`GATHER_ROWS` sequences and :data:`GATHER_TOKENS` ids; a longer
document in pieces, :meth:`SeqBatch.of_piece`) and the lineage from :class:`LineageWriter` (one row group at a
time): the bytes do not depend on the batch sizes.

Trainer configs derived from the manifest (:func:`write_run_files`), in the run directory:
``megatron_data_args.txt`` (``w1 p1 w2 p2 ...`` for ``--data-path``, weights = shard tokens) and
``megatron_data_args.json`` (for ``--per-split-data-args-path``), ``olmo_mixture.yaml`` (OLMo-core dataset
paths, dtype and a one-source ``source_mixture``), ``mds_streams.yaml`` (a ``streams:`` entry).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from curate.errors import ShardError
from curate.io_utils import atomic_write_bytes, atomic_write_json, atomic_write_text, sha256_file, temp_path
from curate.layout import RunLayout
from curate.schema import token_dtype
from curate.shards import IndexedDatasetWriter, piece_with_eos, read_index, sequences_with_eos

if TYPE_CHECKING:
    from curate.recipe import Recipe

_UINT32_MAX = (1 << 32) - 1


class SeqBatch:
    """One batch of a shard's sequences, shared by every format's writer.

    ``flat``/``lens`` are the documents' ids without end-of-document ids (what the Megatron writer takes);
    :attr:`tokens_sizes` adds one ``eos_id`` per sequence, once, for the other formats. ``meta`` holds the
    batch's ``doc_id``, ``source`` and ``subset`` columns (one row per sequence).

    A *piece* (:meth:`piece`, ``self.piece`` is ``(ntok, start)``) is part of one document too long for a
    batch: ids ``[start, start + len(flat))`` of its ``ntok``. Its :attr:`tokens_sizes` are that stretch of the
    token stream (the eos on the last piece) and ``[ntok + 1]`` as sizes on the first piece only (empty after),
    and ``meta`` has the document's row on the first piece only: a writer that appends the tokens and indexes
    the sizes writes the same bytes whether the document came whole or in pieces.
    """

    def __init__(self, flat: np.ndarray, lens: np.ndarray, *, eos_id: int, vocab_size: int, meta: pa.Table,
                 where: str, first_seq: int) -> None:
        self.flat, self.lens, self.eos_id, self.vocab_size = flat, np.asarray(lens, np.int64), int(eos_id), vocab_size
        self.meta, self.where, self.first_seq = meta, where, first_seq
        self.piece: tuple[int, int] | None = None

    @classmethod
    def of_piece(cls, ids: np.ndarray, *, ntok: int, start: int, eos_id: int, vocab_size: int, meta: pa.Table,
                 where: str, seq: int) -> SeqBatch:
        """The piece ``[start, start + len(ids))`` of document ``seq`` of the shard, which has ``ntok`` ids."""
        b = cls(ids, np.array([ids.size]), eos_id=eos_id, vocab_size=vocab_size,
                meta=meta if start == 0 else meta.slice(0, 0), where=where, first_seq=seq)
        b.piece = (int(ntok), int(start))
        return b

    @cached_property
    def tokens_sizes(self) -> tuple[np.ndarray, np.ndarray]:
        if self.piece is not None:
            ntok, start = self.piece
            return piece_with_eos(self.flat, ntok=ntok, start=start, eos_id=self.eos_id,
                                  dtype=token_dtype(self.vocab_size), where=self.where, seq=self.first_seq,
                                  vocab_size=self.vocab_size)
        out, sizes = sequences_with_eos(self.flat, self.lens, eos_id=self.eos_id, dtype=token_dtype(self.vocab_size),
                                        where=self.where, first_seq=self.first_seq, vocab_size=self.vocab_size)
        return out, (np.zeros(0, np.int64) if sizes is None else sizes)


def _file_entry(shard_dir: Path, path: Path, sha: str | None = None) -> dict:
    return {"path": path.relative_to(shard_dir).as_posix(), "bytes": path.stat().st_size,
            "sha256": sha or sha256_file(path)}


class _HashedFile:
    """A file written under its temporary name (:func:`curate.io_utils.temp_path`), hashed on the way, renamed
    by :meth:`commit`."""

    def __init__(self, path: Path) -> None:
        self.path, self.tmp = path, temp_path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.f = open(self.tmp, "wb")  # noqa: SIM115 - closed by close/abort
        self.h = hashlib.sha256()
        self.bytes = 0

    def write(self, data: bytes) -> None:
        self.f.write(data)
        self.h.update(data)
        self.bytes += len(data)

    def close(self) -> None:
        if not self.f.closed:
            self.f.flush()
            os.fsync(self.f.fileno())
            self.f.close()

    def commit(self) -> None:
        self.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self.f.close()
        self.tmp.unlink(missing_ok=True)


@dataclass(frozen=True)
class WriterInfo:
    """What a registered shard format writes and can do (the keywords of :func:`register`).

    ``files``: its files of one shard, relative to ``shards/`` (``{name}`` is the shard name), the token data
    file first (named in write errors). ``glob``: finds its shards under ``shards/`` (the audit's files not in
    the manifest; default: the data file's pattern). ``index``: what its sequence sizes are read back from (the
    audit's messages). ``dtypes``: the token dtypes it stores (:func:`curate.schema.token_dtype` picks one from
    the vocabulary; a vocabulary it cannot store is an error naming the format). ``held_bytes``: bytes a
    sequence its writer holds until :meth:`ShardFormatWriter.finalize`, because its index needs every size
    before it is written (0: it writes as it goes). ``run_files``: the run-level files its
    :meth:`ShardFormatWriter.write_run_files` writes.
    """

    name: str
    files: tuple[str, ...]
    glob: str
    index: str
    dtypes: tuple[str, ...] = ("uint16", "uint32")
    held_bytes: int = 0
    run_files: tuple[str, ...] = ()


class ShardFormatWriter:
    """Interface of one format's writer for one shard; subclasses register with :func:`register`.

    ``__init__(shard_dir, name, vocab_size=, tokenizer=)``, then :meth:`add` per batch in order, then
    :meth:`finalize` (files renamed into place, manifest entry returned) or :meth:`abort` (nothing left).
    The class methods read a finished shard back from its own files, and write and check the run-level files.
    """

    format: ClassVar[str]
    #: the capabilities :func:`register` recorded
    info: ClassVar[WriterInfo]
    #: glob under ``shards/`` that finds this format's shards (audit: files not in the manifest)
    glob: ClassVar[str]
    #: the shard's token data file, relative to ``shards/`` (``{name}`` is the shard name): named in write errors
    data_file: ClassVar[str]

    def __init__(self, shard_dir: Path, name: str, *, vocab_size: int, tokenizer: str) -> None:
        self.shard_dir, self.name, self.vocab_size, self.tokenizer = Path(shard_dir), name, vocab_size, tokenizer
        self.dtype = token_dtype(vocab_size, self.format)
        if self.dtype.name not in self.info.dtypes:
            msg = (f"shard format {self.format!r} stores {'/'.join(self.info.dtypes)} token ids, but vocab_size "
                   f"{vocab_size} needs {self.dtype.name}; pick another `shards.format` for this tokenizer")
            raise ShardError(msg)
        self.sequences = 0
        self.tokens = 0

    def add(self, batch: SeqBatch) -> None:
        raise NotImplementedError

    def finalize(self) -> dict[str, Any]:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError

    def _entry(self, files: list[dict]) -> dict[str, Any]:
        return {"dtype": self.dtype.name, "sequences": self.sequences, "tokens": self.tokens, "files": files}

    # ------------------------------------------------------------------ reading back
    @classmethod
    def read_sizes(cls, shard_dir: Path, fentry: dict) -> np.ndarray:
        """Tokens per sequence from the format's own index, after checking the data file's size against it."""
        raise NotImplementedError

    @classmethod
    def read_tokens(cls, shard_dir: Path, fentry: dict) -> np.ndarray:
        """The shard's token stream (every sequence back to back), as the format stores it."""
        raise NotImplementedError

    # ------------------------------------------------------------------ run-level files
    @classmethod
    def write_run_files(cls, run_dir: Path, manifest: dict) -> list[str]:
        """Write the format's run-level files (trainer configs, a shard index) from the manifest; their names."""
        return []

    @classmethod
    def check_run_files(cls, run_dir: Path, manifest: dict) -> list[dict]:
        """Violations (``kind: trainer_config``) in the format's run-level files of a complete run."""
        return []


#: every registered shard format's writer, in registration order (the built-ins first, then plugins')
WRITERS: dict[str, type[ShardFormatWriter]] = {}


def register(fmt: str, *, files: tuple[str, ...], index: str, glob: str | None = None,
             dtypes: tuple[str, ...] = ("uint16", "uint32"), held_bytes: int = 0,
             run_files: tuple[str, ...] = ()) -> Callable[[type[ShardFormatWriter]], type[ShardFormatWriter]]:
    """Register a :class:`ShardFormatWriter` subclass for ``shards.format: fmt`` with its capabilities.

    A plugin module (the recipe's ``plugins:``) that registers a writer is all a new shard format needs: the
    recipe's ``shards.format`` is checked against :data:`WRITERS` after the plugins load (:func:`check_formats`).
    """
    bad = [d for d in dtypes if d not in ("uint16", "int32", "uint32")]
    if bad or not files:
        msg = f"shard format {fmt!r}: dtypes must be uint16/int32/uint32 and files non-empty, got {dtypes}, {files}"
        raise ValueError(msg)
    info = WriterInfo(fmt, files=tuple(files), glob=glob or files[0].format(name="*"), index=index,
                      dtypes=tuple(dtypes), held_bytes=held_bytes, run_files=tuple(run_files))

    def deco(cls: type[ShardFormatWriter]) -> type[ShardFormatWriter]:
        cls.format, cls.info, cls.data_file, cls.glob = fmt, info, info.files[0], info.glob
        WRITERS[fmt] = cls
        return cls

    return deco


def check_formats(recipe: Recipe) -> None:
    """Every format of ``shards.format`` is a registered writer (after the plugins loaded); the error lists them."""
    from curate.errors import RecipeError

    fmts = recipe.shards.format
    for i, fmt in enumerate([fmts] if isinstance(fmts, str) else fmts):
        if fmt not in WRITERS:
            msg = (f"unknown shard format, got {fmt!r}; registered writers: {sorted(WRITERS)} (a plugin named in "
                   "`plugins` can register more, with curate.shard_formats.register)")
            raise RecipeError(msg, path="shards.format" if isinstance(fmts, str) else f"shards.format[{i}]")


def _raw_tokens(path: Path, dtype: np.dtype) -> np.ndarray:
    if not path.is_file():
        msg = f"{path}: data file missing; delete the shard's files and rerun to rewrite it"
        raise ShardError(msg)
    return np.fromfile(path, dtype=np.dtype(dtype).newbyteorder("<")) if path.stat().st_size else np.zeros(0, dtype)


def _check_data_size(path: Path, sizes: np.ndarray, dtype: np.dtype, index: Path) -> None:
    want = int(sizes.sum()) * np.dtype(dtype).itemsize
    if not path.is_file():
        msg = f"{path}: data file missing next to {index}; delete the shard and rerun to rewrite it"
        raise ShardError(msg)
    got = path.stat().st_size
    if got != want:
        msg = (f"{path}: {got} bytes, but {index.name} describes {int(sizes.sum())} {np.dtype(dtype).name} tokens "
               f"({want} bytes); the shard is truncated or mismatched, delete it and rerun")
        raise ShardError(msg)


# ---------------------------------------------------------------------------- megatron
@register("megatron", files=("{name}.bin", "{name}.idx"), glob="*.idx", index=".idx", dtypes=("uint16", "int32"),
          held_bytes=4, run_files=("megatron_data_args.txt", "megatron_data_args.json"))
class MegatronWriter(ShardFormatWriter):
    """``<name>.bin``/``.idx`` through :class:`curate.shards.IndexedDatasetWriter` (byte-identical to before).

    Holds the int32 size of every sequence until the ``.idx`` is written (4 bytes a sequence).
    """

    def __init__(self, shard_dir: Path, name: str, *, vocab_size: int, tokenizer: str) -> None:
        super().__init__(shard_dir, name, vocab_size=vocab_size, tokenizer=tokenizer)
        self.w = IndexedDatasetWriter(self.shard_dir / name, vocab_size=vocab_size)
        self.info: dict[str, Any] = {}

    def add(self, batch: SeqBatch) -> None:
        if batch.piece is not None:
            ntok, start = batch.piece
            self.w.add_piece(batch.flat, ntok=ntok, start=start, eos_id=batch.eos_id)
        else:
            self.w.add_batch(batch.flat, batch.lens, eos_id=batch.eos_id)

    def finalize(self) -> dict[str, Any]:
        self.info = self.w.finalize()
        self.sequences, self.tokens = self.info["sequences"], self.info["tokens"]
        return self._entry([
            {"path": f"{self.name}.bin", "bytes": self.info["bin_bytes"], "sha256": self.info["bin_sha256"]},
            {"path": f"{self.name}.idx", "bytes": self.info["idx_bytes"], "sha256": self.info["idx_sha256"]}])

    def abort(self) -> None:
        self.w.abort()

    @classmethod
    def write_run_files(cls, run_dir: Path, manifest: dict) -> list[str]:
        args = megatron_data_args(manifest, RunLayout(run_dir).shards_dir)
        atomic_write_text(run_dir / "megatron_data_args.txt", " ".join(args) + "\n")
        # --per-split-data-args-path: the whole mix is the training split; `valid` lists the held-out sets, one
        # prefix each (--multiple-validation-sets), when the recipe has `validation:` (curate.validation)
        from curate.validation_rules import valid_prefixes, write_trainer_files

        atomic_write_json(run_dir / "megatron_data_args.json",
                          {"train": args, "valid": valid_prefixes(run_dir, manifest), "test": None})
        return ["megatron_data_args.txt", "megatron_data_args.json", *write_trainer_files(run_dir, manifest)]

    @classmethod
    def check_run_files(cls, run_dir: Path, manifest: dict) -> list[dict]:
        p = run_dir / "megatron_data_args.txt"
        if not p.is_file():
            return [_trainer_config(p.name, f"{p.name} is missing: Megatron-LM's --data-path cannot be taken from "
                                            "the run")]
        prefixes, weights = parse_data_args(p.read_text().split())
        want = [s["name"] for s in manifest["shards"]]
        got = [Path(x).name for x in prefixes]
        tokens = np.array([s["tokens"] for s in manifest["shards"]], dtype=np.float64)
        if got != want:
            diff = sorted(set(want) ^ set(got)) or got
            return [_trainer_config(p.name, f"{p.name} lists shards {diff} differently from the manifest "
                                            f"({len(got)} prefixes, {len(want)} shards)")]
        if weights is None or (tokens.sum() and not np.allclose(normalize_weights(weights), tokens / tokens.sum())):
            return [_trainer_config(p.name, f"{p.name}: weights are not the shards' token shares")]
        return []

    @classmethod
    def read_sizes(cls, shard_dir: Path, fentry: dict) -> np.ndarray:
        bin_p, idx_p = (shard_dir / f["path"] for f in fentry["files"])
        info = read_index(idx_p)
        sizes = np.asarray(info.sizes, dtype=np.int64)
        _check_data_size(bin_p, sizes, info.dtype, idx_p)
        return sizes

    @classmethod
    def read_tokens(cls, shard_dir: Path, fentry: dict) -> np.ndarray:
        bin_p, idx_p = (shard_dir / f["path"] for f in fentry["files"])
        return _raw_tokens(bin_p, read_index(idx_p).dtype)


# ---------------------------------------------------------------------------- olmo-npy
def _csv_field(arr: pa.ChunkedArray | pa.Array) -> pa.Array:
    """A string column safe for OLMo-core's line-by-line metadata reader: no line breaks inside a field."""
    return pc.replace_substring_regex(pc.cast(arr, pa.string()), pattern=r"[\r\n]", replacement=" ")


@register("olmo-npy", files=("olmo/{name}.npy", "olmo/{name}.csv.gz"), index=".csv.gz",
          run_files=("olmo_mixture.yaml",))
class OlmoNpyWriter(ShardFormatWriter):
    """``olmo/<name>.npy`` (raw ids) + ``olmo/<name>.csv.gz`` (start,end,id,source per sequence), both streamed."""

    def __init__(self, shard_dir: Path, name: str, *, vocab_size: int, tokenizer: str) -> None:
        super().__init__(shard_dir, name, vocab_size=vocab_size, tokenizer=tokenizer)
        self.npy = _HashedFile(self.shard_dir / "olmo" / f"{name}.npy")
        self.csv = _HashedFile(self.shard_dir / "olmo" / f"{name}.csv.gz")
        # mtime=0 and no file name in the gzip header: the same shard gives the same bytes
        self.gz = gzip.GzipFile(filename="", mode="wb", fileobj=self.csv, mtime=0)

    def add(self, batch: SeqBatch) -> None:
        tokens, sizes = batch.tokens_sizes
        if not tokens.size:
            return
        self.npy.write(tokens.astype(self.dtype.newbyteorder("<"), copy=False).tobytes())
        if not sizes.size:  # a later piece of a long document: its row went with the first piece
            self.tokens += int(tokens.size)
            return
        end = self.tokens + np.cumsum(sizes)
        src, sub = batch.meta["source"], batch.meta["subset"]
        source = pc.if_else(pc.equal(pc.fill_null(sub, ""), ""), src,
                            pc.binary_join_element_wise(src, pc.fill_null(sub, ""), "/"))
        t = pa.table({"start": pa.array(end - sizes), "end": pa.array(end), "id": _csv_field(batch.meta["doc_id"]),
                      "source": _csv_field(source)})
        buf = io.BytesIO()
        pacsv.write_csv(t, buf, write_options=pacsv.WriteOptions(include_header=False, quoting_style="needed"))
        self.gz.write(buf.getvalue())
        self.sequences += int(sizes.size)
        self.tokens += int(tokens.size)

    def finalize(self) -> dict[str, Any]:
        self.gz.close()
        for f in (self.npy, self.csv):
            f.commit()
        return self._entry([_file_entry(self.shard_dir, f.path, f.h.hexdigest()) for f in (self.npy, self.csv)])

    def abort(self) -> None:
        self.npy.abort()
        self.csv.abort()

    @classmethod
    def write_run_files(cls, run_dir: Path, manifest: dict) -> list[str]:
        import yaml

        shard_dir = RunLayout(run_dir).shards_dir
        paths = [str((shard_dir / shard_formats(s)["olmo-npy"]["files"][0]["path"]).resolve())
                 for s in manifest["shards"]]
        dtype = manifest["shards"][0]["formats"]["olmo-npy"]["dtype"] if manifest["shards"] else "uint16"
        tokenizer = {"vocab_size": manifest["vocab_size"], "eos_token_id": manifest["eos_id"],
                     "pad_token_id": manifest["eos_id"], "identifier": manifest["tokenizer"]}
        # `dataset`: olmo_core.data.NumpyFSLDatasetConfig fields (add the model's sequence_length);
        # `source_mixture`: a SourceMixtureDatasetConfig of the one pre-mixed source (add global_batch_size)
        doc = {"dataset": {"paths": paths, "dtype": dtype, "tokenizer": tokenizer},
               "source_mixture": {"source_list": {"sources": [{"source_name": manifest["name"], "target_ratio": 1.0,
                                                              "paths": paths}]},
                                  "requested_tokens": manifest["tokens"]}}
        atomic_write_text(run_dir / "olmo_mixture.yaml", yaml.safe_dump(doc, sort_keys=False))
        return ["olmo_mixture.yaml"]

    @classmethod
    def read_sizes(cls, shard_dir: Path, fentry: dict) -> np.ndarray:
        npy, meta = (shard_dir / f["path"] for f in fentry["files"])
        if not meta.is_file():
            msg = f"{meta}: metadata file missing; delete the shard and rerun to rewrite it"
            raise ShardError(msg)
        try:
            with gzip.open(meta, "rb") as f:
                raw = f.read()
            t = pacsv.read_csv(io.BytesIO(raw), read_options=pacsv.ReadOptions(
                column_names=["start", "end", "id", "source"]), convert_options=pacsv.ConvertOptions(
                column_types={"start": pa.int64(), "end": pa.int64(), "id": pa.string(), "source": pa.string()}))
        except (OSError, pa.ArrowInvalid, EOFError) as e:
            msg = f"{meta}: not a readable start,end,id,source .csv.gz ({e}); delete the shard and rerun"
            raise ShardError(msg) from None
        start, end = t["start"].to_numpy(), t["end"].to_numpy()
        if len(start) and (start[0] != 0 or np.any(start[1:] != end[:-1]) or np.any(end < start)):
            msg = f"{meta}: document spans are not back to back from offset 0; the metadata is corrupt"
            raise ShardError(msg)
        sizes = (end - start).astype(np.int64)
        _check_data_size(npy, sizes, np.dtype(fentry["dtype"]), meta)
        return sizes

    @classmethod
    def read_tokens(cls, shard_dir: Path, fentry: dict) -> np.ndarray:
        return _raw_tokens(shard_dir / fentry["files"][0]["path"], np.dtype(fentry["dtype"]))


# ---------------------------------------------------------------------------- datatrove
@register("datatrove", files=("datatrove/{name}.ds", "datatrove/{name}.ds.index", "datatrove/{name}.ds.metadata"),
          index=".ds.index")
class DatatroveWriter(ShardFormatWriter):
    """``datatrove/<name>.ds`` + ``.ds.index`` (uint64 ends) + ``.ds.metadata``, as datatrove's TokenizedFile.

    The data and the index are streamed; nothing a sequence is held.
    """

    def __init__(self, shard_dir: Path, name: str, *, vocab_size: int, tokenizer: str) -> None:
        super().__init__(shard_dir, name, vocab_size=vocab_size, tokenizer=tokenizer)
        self.ds = _HashedFile(self.shard_dir / "datatrove" / f"{name}.ds")
        self.index = _HashedFile(self.shard_dir / "datatrove" / f"{name}.ds.index")

    def add(self, batch: SeqBatch) -> None:
        tokens, sizes = batch.tokens_sizes
        if not tokens.size:
            return
        self.ds.write(tokens.astype(self.dtype.newbyteorder("<"), copy=False).tobytes())
        self.index.write((self.tokens + np.cumsum(sizes)).astype("<u8").tobytes())  # nothing for a later piece
        self.sequences += int(sizes.size)
        self.tokens += int(tokens.size)

    def finalize(self) -> dict[str, Any]:
        meta = self.shard_dir / "datatrove" / f"{self.name}.ds.metadata"
        atomic_write_text(meta, f"{self.tokenizer}|{self.dtype.itemsize}\n{self.tokens}")
        self.ds.commit()
        self.index.commit()  # the index last: a final .ds.index exists only when its .ds is complete
        return self._entry([_file_entry(self.shard_dir, self.ds.path, self.ds.h.hexdigest()),
                            _file_entry(self.shard_dir, self.index.path, self.index.h.hexdigest()),
                            _file_entry(self.shard_dir, meta)])

    def abort(self) -> None:
        self.ds.abort()
        self.index.abort()

    @classmethod
    def read_sizes(cls, shard_dir: Path, fentry: dict) -> np.ndarray:
        ds, index, _meta = (shard_dir / f["path"] for f in fentry["files"])
        if not index.is_file() or index.stat().st_size % 8:
            msg = f"{index}: missing or not a whole number of uint64 ends; delete the shard and rerun"
            raise ShardError(msg)
        ends = np.fromfile(index, dtype="<u8").astype(np.int64)
        sizes = np.diff(ends, prepend=0)
        if sizes.size and int(sizes.min()) < 0:
            msg = f"{index}: document ends go backwards at {int(np.argmin(sizes))}; the index is corrupt"
            raise ShardError(msg)
        _check_data_size(ds, sizes, np.dtype(fentry["dtype"]), index)
        return sizes

    @classmethod
    def read_tokens(cls, shard_dir: Path, fentry: dict) -> np.ndarray:
        return _raw_tokens(shard_dir / fentry["files"][0]["path"], np.dtype(fentry["dtype"]))


# ---------------------------------------------------------------------------- mds
def mds_config(dtype: np.dtype) -> dict[str, Any]:
    """The writer config MDS embeds in every shard and repeats in index.json (MDSWriter.get_config)."""
    return {"column_encodings": [f"ndarray:{np.dtype(dtype).name}"], "column_names": ["tokens"],
            "column_sizes": [None], "compression": None, "format": "mds", "hashes": [], "size_limit": None,
            "version": 2}


_SHAPE_WIDTH = np.array([1, 2, 4, 8], dtype=np.int64)
#: samples per block of offsets written by MdsWriter.finalize (8 MiB of int64 a block)
_OFFSET_BLOCK = 1 << 20


def _mds_samples(tokens: np.ndarray, sizes: np.ndarray, dtype: np.dtype, *,
                 ids: bool = True) -> tuple[bytes, np.ndarray]:
    """Encode sequences as MDS samples of one ``ndarray:<dtype>`` column; returns the bytes and sample lengths.

    Vectorized: every byte's destination is computed with numpy, no per-sample Python. ``ids=False``: the
    samples' headers only, for a sequence whose ids follow in pieces (``tokens`` is then ignored).
    """
    item = np.dtype(dtype).itemsize
    code = np.where(sizes < 1 << 8, 0, np.where(sizes < 1 << 16, 1, np.where(sizes < 1 << 32, 2, 3)))
    width = _SHAPE_WIDTH[code]
    datum = 1 + width + sizes * item
    sample = 4 + datum
    if not ids:
        head = 5 + width
        out = np.zeros(int(head.sum()), dtype=np.uint8)
        start = (np.cumsum(head) - head).astype(np.int64)
    else:
        start = (np.cumsum(sample) - sample).astype(np.int64)
        out = np.zeros(int(sample.sum()), dtype=np.uint8)
    # uint32 datum size, then the ndim/shape-dtype byte (ndim is 1)
    out[start[:, None] + np.arange(4)] = datum.astype("<u4").view(np.uint8).reshape(-1, 4)
    out[start + 4] = (1 << 2) | code
    # the length in its width: the first `width` little-endian bytes of a uint64
    len_bytes = sizes.astype("<u8").view(np.uint8).reshape(-1, 8)
    k = np.arange(8)
    keep = k[None, :] < width[:, None]
    out[(start[:, None] + 5 + k[None, :])[keep]] = len_bytes[keep]
    if not ids:
        return out.tobytes(), sample
    # the ids
    body = tokens.astype(np.dtype(dtype).newbyteorder("<"), copy=False).view(np.uint8)
    vstart = start + 5 + width
    nbytes = sizes * item
    first = np.repeat(vstart - np.concatenate([[0], np.cumsum(nbytes)[:-1]]), nbytes)
    out[first + np.arange(body.size)] = body
    return out.tobytes(), sample


@register("mds", files=("mds/{name}.mds",), index="MDS sample headers", held_bytes=4,
          run_files=("shards/mds/index.json", "mds_streams.yaml"))
class MdsWriter(ShardFormatWriter):
    """``mds/<name>.mds``: one MDS shard; ``mds/index.json`` lists them all (:func:`write_run_files`).

    Samples stream to the temporary file of ``<name>.mds.body``; :meth:`finalize` writes the header (count,
    offsets, config) and copies the body after it, since the header's size depends on the sample count. Held in
    memory: the uint32 length of every sample (4 bytes a sequence); the offsets are written from them in blocks.
    """

    def __init__(self, shard_dir: Path, name: str, *, vocab_size: int, tokenizer: str) -> None:
        super().__init__(shard_dir, name, vocab_size=vocab_size, tokenizer=tokenizer)
        self.path = self.shard_dir / "mds" / f"{name}.mds"
        self.body = _HashedFile(Path(f"{self.path}.body"))
        self.lengths: list[np.ndarray] = []

    def _too_big(self, nbytes: int) -> ShardError:
        return ShardError(f"{self.path}: {nbytes} bytes, over the 4 GiB an MDS shard's uint32 offsets address; "
                          "lower shards.max_tokens")

    def add(self, batch: SeqBatch) -> None:
        tokens, sizes = batch.tokens_sizes
        if not tokens.size:
            return
        if batch.piece is None:
            data, lengths = _mds_samples(tokens, sizes, self.dtype)
        else:  # a long document in pieces: its sample header before the first piece's ids, then ids only
            head, lengths = _mds_samples(np.zeros(0, self.dtype), sizes, self.dtype, ids=False)
            data = head + tokens.astype(self.dtype.newbyteorder("<"), copy=False).tobytes()
        if self.body.bytes + len(data) > _UINT32_MAX:  # fail before writing gigabytes that cannot be addressed
            raise self._too_big(self.body.bytes + len(data))
        self.body.write(data)
        if lengths.size:
            self.lengths.append(lengths.astype(np.uint32))
        self.sequences += int(sizes.size)
        self.tokens += int(tokens.size)

    def finalize(self) -> dict[str, Any]:
        self.body.close()
        config = json.dumps(mds_config(self.dtype), sort_keys=True).encode()
        lengths = np.concatenate(self.lengths) if self.lengths else np.zeros(0, np.uint32)
        self.lengths = [lengths]
        head = 4 + 4 * (lengths.size + 1) + len(config)
        if head + self.body.bytes > _UINT32_MAX:
            self.abort()
            raise self._too_big(head + self.body.bytes)
        out = _HashedFile(self.path)
        try:
            out.write(np.uint32(lengths.size).astype("<u4").tobytes())
            base = head  # the offsets, a block at a time: absolute starts of the samples, then the end
            out.write(np.array([base], "<u4").tobytes())
            for s in range(0, lengths.size, _OFFSET_BLOCK):
                ends = base + np.cumsum(lengths[s:s + _OFFSET_BLOCK], dtype=np.int64)
                out.write(ends.astype("<u4").tobytes())
                base = int(ends[-1])
            out.write(config)
            with open(self.body.tmp, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):  # 1 MiB at a time
                    out.write(block)
            out.commit()
        except BaseException:
            out.abort()
            raise
        finally:
            self.body.tmp.unlink(missing_ok=True)
        entry = self._entry([_file_entry(self.shard_dir, self.path, out.h.hexdigest())])
        entry["samples"] = int(lengths.size)
        return entry

    def abort(self) -> None:
        self.body.abort()

    @classmethod
    def write_run_files(cls, run_dir: Path, manifest: dict) -> list[str]:
        import yaml

        shard_dir = RunLayout(run_dir).shards_dir
        shards = []
        for s in manifest["shards"]:
            f = shard_formats(s)["mds"]
            fe = f["files"][0]
            shards.append({**mds_config(np.dtype(f["dtype"])), "samples": f["samples"], "zip_data": None,
                           "raw_data": {"basename": Path(fe["path"]).name, "bytes": fe["bytes"], "hashes": {}}})
        atomic_write_bytes(shard_dir / "mds" / "index.json",
                           json.dumps({"shards": shards, "version": 2}, sort_keys=True).encode())
        doc = {"streams": {manifest["name"]: {"local": str((shard_dir / "mds").resolve()), "remote": None,
                                              "proportion": 1.0}}}
        atomic_write_text(run_dir / "mds_streams.yaml", yaml.safe_dump(doc, sort_keys=False))
        return ["mds_streams.yaml"]

    @classmethod
    def check_run_files(cls, run_dir: Path, manifest: dict) -> list[dict]:
        p = RunLayout(run_dir).shard_file("mds/index.json")
        try:
            idx = json.loads(p.read_text())
            got = [(s["raw_data"]["basename"], s["samples"], s["raw_data"]["bytes"]) for s in idx["shards"]]
        except (OSError, ValueError, KeyError, TypeError) as e:
            return [_trainer_config("mds/index.json", f"{p}: missing or unreadable ({e}); StreamingDataset cannot "
                                                      "open the MDS shards")]
        want = [(Path(f["files"][0]["path"]).name, f["samples"], f["files"][0]["bytes"])
                for f in (shard_formats(s)["mds"] for s in manifest["shards"])]
        if got != want:
            return [_trainer_config("mds/index.json", f"{p}: lists {len(got)} shards that differ from the "
                                                      f"manifest's {len(want)} (names, samples or bytes)")]
        return []

    @classmethod
    def read_sizes(cls, shard_dir: Path, fentry: dict) -> np.ndarray:
        p = shard_dir / fentry["files"][0]["path"]
        if not p.is_file():
            msg = f"{p}: MDS shard missing; delete the shard and rerun to rewrite it"
            raise ShardError(msg)
        raw = np.fromfile(p, dtype=np.uint8)

        def bad(what: str) -> ShardError:
            return ShardError(f"{p}: {what}; the MDS shard is corrupt or truncated, delete it and rerun")

        if raw.size < 8:
            raise bad(f"{raw.size} bytes, shorter than an MDS header")
        n = int(raw[:4].view("<u4")[0])
        if raw.size < 4 + 4 * (n + 1):
            raise bad(f"{raw.size} bytes, too short for the offsets of {n} samples")
        offsets = raw[4:4 + 4 * (n + 1)].view("<u4").astype(np.int64)
        if int(offsets[-1]) != raw.size or bool(np.any(np.diff(offsets) < 6)):
            raise bad(f"offsets end at {int(offsets[-1])} of {raw.size} bytes or a sample is under 6 bytes")
        starts = offsets[:-1]
        datum = raw[starts[:, None] + np.arange(4)].copy().view("<u4").ravel().astype(np.int64)
        code = (raw[starts + 4] & 3).astype(np.int64)
        width = _SHAPE_WIDTH[code]
        item = np.dtype(fentry["dtype"]).itemsize
        sizes = (datum - 1 - width) // item
        if not np.array_equal(4 + datum, np.diff(offsets)) or bool(np.any((raw[starts + 4] >> 2) != 1)):
            raise bad("a sample's size or shape header disagrees with the offsets")
        return sizes

    @classmethod
    def read_tokens(cls, shard_dir: Path, fentry: dict) -> np.ndarray:
        p = shard_dir / fentry["files"][0]["path"]
        sizes = cls.read_sizes(shard_dir, fentry)
        raw = np.fromfile(p, dtype=np.uint8)
        n = sizes.size
        offsets = raw[4:4 + 4 * (n + 1)].view("<u4").astype(np.int64)
        width = _SHAPE_WIDTH[(raw[offsets[:-1] + 4] & 3).astype(np.int64)]
        item = np.dtype(fentry["dtype"]).itemsize
        nbytes = sizes * item
        vstart = offsets[:-1] + 5 + width
        first = np.repeat(vstart - np.concatenate([[0], np.cumsum(nbytes)[:-1]]), nbytes)
        return raw[first + np.arange(int(nbytes.sum()))].view(np.dtype(fentry["dtype"]).newbyteorder("<"))


#: the built-in shard formats (a plugin's register adds to :data:`WRITERS`, not to this)
FORMATS = tuple(WRITERS)
#: the built-in formats' run-level files
RUN_LEVEL_FILES = tuple(f for cls in WRITERS.values() for f in cls.info.run_files)


# ---------------------------------------------------------------------------- a shard, all formats
@contextlib.contextmanager
def _names_the_file(w: ShardFormatWriter):
    """An OSError without a file name (a failed flush: disk full) gets the writer's data file as its name."""
    try:
        yield
    except OSError as e:
        if e.filename is None and e.errno is not None:
            raise OSError(e.errno, e.strerror, str(w.shard_dir / w.data_file.format(name=w.name))) from e
        raise


class ShardWriters:
    """Every format's writer of one shard, as one: :meth:`add` feeds each the same batch, :meth:`finalize`
    checks that their counts agree (one mix, one stream). Used as a context manager, an exception aborts every
    writer, so no format keeps a partial or temporary file.
    """

    def __init__(self, formats: tuple[str, ...] | list[str], shard_dir: Path, name: str, *, vocab_size: int,
                 tokenizer: str) -> None:
        self.name = name
        self.writers: list[ShardFormatWriter] = []
        try:
            for fmt in formats:
                self.writers.append(WRITERS[fmt](shard_dir, name, vocab_size=vocab_size, tokenizer=tokenizer))
        except BaseException:
            self.abort()
            raise

    def add(self, batch: SeqBatch) -> None:
        for w in self.writers:
            with _names_the_file(w):
                w.add(batch)

    def finalize(self) -> dict[str, dict]:
        entries = {}
        for w in self.writers:
            with _names_the_file(w):
                entries[w.format] = w.finalize()
        counts = {f: (e["sequences"], e["tokens"]) for f, e in entries.items()}
        if len(set(counts.values())) > 1:
            msg = f"shard {self.name}: the formats disagree on (sequences, tokens): {counts}"
            raise ShardError(msg)
        return entries

    def get(self, fmt: str) -> ShardFormatWriter | None:
        return next((w for w in self.writers if w.format == fmt), None)

    def abort(self) -> None:
        for w in self.writers:
            w.abort()

    def __enter__(self) -> ShardWriters:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:  # noqa: ANN001
        if exc_type is not None:
            self.abort()


def shard_formats(entry: dict) -> dict[str, dict]:
    """A manifest shard entry's per-format entries (entries from before ``formats`` existed are Megatron's)."""
    if "formats" in entry:
        return entry["formats"]
    return {"megatron": {"dtype": None, "sequences": entry["sequences"], "tokens": entry["tokens"], "files": [
        {"path": entry["bin"], "bytes": entry.get("bin_bytes"), "sha256": entry["bin_sha256"]},
        {"path": entry["idx"], "bytes": entry.get("idx_bytes"), "sha256": entry["idx_sha256"]}]}}


# ---------------------------------------------------------------------------- run-level files
def megatron_data_args(manifest: dict, shard_dir: Path) -> list[str]:
    """``w1 p1 w2 p2 ...``: each Megatron shard's prefix (absolute) weighted by its tokens."""
    out: list[str] = []
    for s in manifest["shards"]:
        f = shard_formats(s).get("megatron")
        if f is not None:
            out += [str(f["tokens"]), str((shard_dir / s["name"]).resolve())]
    return out


def write_run_files(run_dir: Path, manifest: dict) -> list[str]:
    """Write the run-level files of the run's formats, derived from the manifest; return their names.

    Each registered format's :meth:`ShardFormatWriter.write_run_files`, in registration order: e.g.
    ``shards/mds/index.json`` (every MDS shard in order) and the trainer configs (module docstring).
    """
    run_dir = Path(run_dir)
    formats = manifest.get("formats") or ["megatron"]
    written: list[str] = []
    for fmt, cls in WRITERS.items():
        if fmt in formats:
            written += cls.write_run_files(run_dir, manifest)
    return written


def parse_data_args(args: list[str]) -> tuple[list[str], list[float] | None]:
    """``(prefixes, weights)`` from a ``--data-path`` list, as megatron-core's ``get_blend_from_list`` parses it.

    An odd-length list, or one whose every other item is not a number, is prefixes only (weights ``None``);
    else items alternate weight, prefix. Weights come back as written: Megatron normalizes them later
    (:func:`normalize_weights`, its ``datasets.utils.normalize``).
    """
    if len(args) % 2 == 1:
        return [p.strip() for p in args], None
    weights: list[float] | None = []
    for w in args[0::2]:
        try:
            weights.append(float(w))
        except ValueError:
            weights = None
            break
    prefixes = args[1::2] if weights is not None else args
    return [p.strip() for p in prefixes], weights


def normalize_weights(weights: list[float]) -> list[float]:
    """Megatron's non-exponentiated normalization: each weight over their sum."""
    w = np.asarray(weights, dtype=np.float64)
    return (w / w.sum()).tolist()


def check_run_files(run_dir: Path, manifest: dict) -> list[dict]:
    """Violations in the run-level files of a complete run: a shard that MDS's ``index.json`` or the Megatron
    data-args file leaves out (or weighs wrongly) is a shard the trainer never reads.

    Each registered format of the run checks its own files (:meth:`ShardFormatWriter.check_run_files`).
    Prefixes are compared by name, so a run directory moved elsewhere still audits (its absolute prefixes then
    need rewriting, which the message says).
    """
    run_dir = Path(run_dir)
    formats = manifest.get("formats") or ["megatron"]
    out: list[dict] = []
    for fmt, cls in WRITERS.items():
        if fmt in formats:
            out += cls.check_run_files(run_dir, manifest)
    return out


def _trainer_config(where: str, msg: str) -> dict:
    return {"kind": "trainer_config", "where": where, "message": msg}


# ---------------------------------------------------------------------------- gathering sequences
#: A gather batch holds at most this many sequences (a shard's order is cut into batches from its first row).
GATHER_ROWS = 4096
#: ... and at most this many token ids; a longer sequence is gathered and written in pieces of this many ids.
#: A batch costs about 38 bytes a token while it is written in all four formats (measured with tracemalloc: the
#: gather's index arrays, the ids with their eos ids, each format's encoding), so 160 MB at most, whatever the
#: shard or document size.
GATHER_TOKENS = 4 << 20
#: Rows of an order file read at a time (:func:`iter_order`); a multiple of :data:`GATHER_ROWS`.
ORDER_READ_ROWS = 16 * GATHER_ROWS

#: the columns of an order file the gather reads
_GATHER_COLUMNS = ("pid", "tok_offset", "ntok", "doc_id", "source", "subset")


def iter_order(path: Path, *, rows: int | None = None) -> Iterator[pa.Table]:
    """An order file in tables of at most ``rows`` (:data:`ORDER_READ_ROWS`) rows: never whole in memory.

    An empty order gives one empty table (with the file's schema, which the lineage is written with)."""
    pf = pq.ParquetFile(path)
    empty = True
    for b in pf.iter_batches(batch_size=rows or ORDER_READ_ROWS):
        empty = False
        yield pa.Table.from_batches([b])
    if empty:
        yield pf.schema_arrow.empty_table()


def gather_cuts(ntok: np.ndarray, *, rows: int, tokens: int) -> list[tuple[int, int]]:
    """Consecutive ``(start, stop)`` batches of sequences with ``ntok`` ids: each at most ``rows`` sequences and
    ``tokens`` ids, cut greedily from the first; a sequence of more than ``tokens`` ids is a batch of its own."""
    n = int(ntok.size)
    cum = np.cumsum(ntok, dtype=np.int64)
    out, s = [], 0
    while s < n:
        before = int(cum[s - 1]) if s else 0
        e = min(s + rows, int(np.searchsorted(cum, before + tokens, side="right")))
        e = max(e, s + 1)
        out.append((s, e))
        s = e
    return out


class SequenceGather:
    """Gather a shard's sequences from the partitions' memory-mapped ``.tok`` files and feed the writers.

    :meth:`add` takes the order a table at a time (any number of rows: an order file is read in
    :data:`ORDER_READ_ROWS`); the sequences are cut into gather batches of at most :data:`GATHER_ROWS`
    sequences and :data:`GATHER_TOKENS` ids counted from the shard's first sequence, so the batches, and the
    bytes written, do not depend on how the order was read. Rows short of a full batch wait for the next
    :meth:`add`; :meth:`finish` writes them. A batch is gathered with one fancy index per partition
    (no per-sequence Python); a sequence longer than :data:`GATHER_TOKENS` goes to the writers in pieces.
    A partition's ``.tok`` map lives while that partition's ids of one batch are gathered (or for one piece).
    """

    def __init__(self, ws, run_dir: Path, plan: dict, *, where: str, rows: int | None = None,
                 tokens: int | None = None) -> None:
        from curate.layout import RunLayout

        self.ws, self.plan, self.where = ws, plan, where
        self.rows, self.tokens = rows or GATHER_ROWS, tokens or GATHER_TOKENS
        self.tok_dtype = token_dtype(plan["vocab_size"])  # the partitions' .tok files (fmt None)
        self.layout = RunLayout(run_dir)
        self.maps: dict[int, np.ndarray] = {}
        self.tok_files: dict[int, tuple[str, int]] = {}
        self.pending: pa.Table | None = None
        self.seq = 0  # sequences handed to the writers so far

    def _map(self, pid: int, ends: np.ndarray) -> np.ndarray:
        """Partition ``pid``'s ``.tok`` ids, memory-mapped; ``ends`` (token offsets the batch reads up to) must
        lie inside it, else the order and the partition disagree: a :class:`ShardError` naming both."""
        if pid not in self.maps:
            if pid not in self.tok_files:  # path and size once per partition: it is mapped again every batch
                f = self.layout.part(pid).tok
                self.tok_files[pid] = (str(f), f.stat().st_size)
            f, size = self.tok_files[pid]
            self.maps[pid] = np.memmap(f, dtype=self.tok_dtype, mode="r") if size else np.zeros(0, self.tok_dtype)
        mm = self.maps[pid]
        if ends.size and int(ends.max()) > mm.size:
            msg = (f"{self.where}: the order reads token {int(ends.max())} of {self.layout.part(pid).tok}, which "
                   f"holds {mm.size}; the partition changed after the mix, rerun with --force")
            raise ShardError(msg)
        return mm

    def add(self, order: pa.Table) -> None:
        t = order.select(list(_GATHER_COLUMNS))
        if self.pending is not None:
            t = pa.concat_tables([self.pending, t])
        self.pending = None
        ntok = t["ntok"].to_numpy()
        cuts = gather_cuts(ntok, rows=self.rows, tokens=self.tokens)
        if cuts:
            # a batch cut before the last row met a bound; the last batch waits for more rows unless it is full
            # already (or one long document, always a batch of its own)
            s, e = cuts[-1]
            if e - s < self.rows and not (e == s + 1 and ntok[s] > self.tokens):
                self.pending = t.slice(s, e - s)
                cuts = cuts[:-1]
        self._write(t, ntok, cuts)

    def finish(self) -> None:
        if self.pending is not None:
            t, self.pending = self.pending, None
            ntok = t["ntok"].to_numpy()
            self._write(t, ntok, gather_cuts(ntok, rows=self.rows, tokens=self.tokens))

    def _write(self, t: pa.Table, ntok: np.ndarray, cuts: list[tuple[int, int]]) -> None:
        pid = t["pid"].to_numpy()
        off = t["tok_offset"].to_numpy()
        meta = t.select(["doc_id", "source", "subset"])
        kw = {"eos_id": self.plan["eos_id"], "vocab_size": self.plan["vocab_size"], "where": self.where}
        for s, e in cuts:
            if e == s + 1 and ntok[s] > self.tokens:  # one long document, in pieces
                n, p, o = int(ntok[s]), int(pid[s]), int(off[s])
                for a in range(0, n, self.tokens):
                    # a fresh map per piece (its view lives while the writers take the piece): a document of any
                    # length keeps at most one piece of its pages mapped
                    ids = self._map(p, np.array([o + n]))[o + a:o + min(a + self.tokens, n)]
                    self.unmap()
                    self.ws.add(SeqBatch.of_piece(ids, ntok=n, start=a, meta=meta.slice(s, 1), seq=self.seq, **kw))
                    del ids
            else:
                flat = self._gather(pid[s:e], off[s:e], ntok[s:e])
                self.ws.add(SeqBatch(flat, ntok[s:e], meta=meta.slice(s, e - s), first_seq=self.seq, **kw))
            self.seq += e - s
            self.unmap()

    def unmap(self) -> None:
        """Drop the memory maps (after each batch): the pages a map has read count in this process's RSS
        until it is unmapped (page cache then, shared and reclaimable), and a shard reads scattered documents
        of every partition, so kept maps grew to every ``.tok`` of the run (314 MB of file-backed RSS at 1M
        scale-bench documents, one shard). Mapping again costs one ``mmap`` per partition and batch."""
        self.maps.clear()

    def _gather(self, pid: np.ndarray, off: np.ndarray, ntok: np.ndarray) -> np.ndarray:
        """The ids of sequences ``(pid, off, ntok)`` back to back: per partition one index array and one take.

        Indices within the batch are int32 (a batch holds at most :data:`GATHER_TOKENS` < 2**31 ids), offsets
        into a ``.tok`` file int64: 16 bytes a token of the partition being gathered, transient.
        """
        ntok = ntok.astype(np.int64)
        dest = np.zeros(ntok.size, np.int64)  # where each sequence starts in the batch
        np.cumsum(ntok[:-1], out=dest[1:])
        flat = np.empty(int(ntok.sum()), self.tok_dtype)
        by_pid = np.argsort(pid, kind="stable")
        uniq, first_at = np.unique(pid[by_pid], return_index=True)
        for p, at in zip(uniq.tolist(), np.split(by_pid, first_at[1:])):
            n = ntok[at]
            total = int(n.sum())
            if not total:
                continue
            # token k of this partition's run is token k - start(k) of its sequence
            step = np.arange(total, dtype=np.int32)
            step -= np.repeat((np.cumsum(n) - n).astype(np.int32), n)
            src = np.repeat(off[at].astype(np.int64), n)
            src += step
            vals = self._map(p, off[at] + n)[src]
            # unmapped at once: reading scattered documents maps far more than they hold (the kernel maps up to
            # 16 cached pages around each one it faults in), so maps kept for the whole batch held every .tok
            # file of the run in this process's RSS (scale bench: 794 -> 1,214 -> 1,341 MB at 1M -> 4M -> 16M
            # documents, anonymous memory flat at 505-513 MB); now one partition's at a time
            self.maps.pop(p, None)
            del src
            dst = np.repeat(dest[at].astype(np.int32), n)
            dst += step
            flat[dst] = vals
        return flat


def write_sequences(ws, run_dir: Path, order: pa.Table, plan: dict, *, where: str) -> None:
    """Gather each sequence of ``order`` (pid, tok_offset, ntok) from the partitions' memory-mapped ``.tok``
    files and hand them, in bounded batches (:class:`SequenceGather`), to the writers ``ws`` (one eos appended
    per sequence by the writers)."""
    g = SequenceGather(ws, run_dir, plan, where=where)
    for s in range(0, order.num_rows, ORDER_READ_ROWS):
        g.add(order.slice(s, ORDER_READ_ROWS))
    g.finish()


def lineage_table(order: pa.Table, name: str) -> pa.Table:
    """A shard's (or validation set's) lineage: the order's columns a reader needs, with the shard's name."""
    lineage = order.select(["seq", "source", "subset", "group", "doc_id", "uid", "tokens", "epoch", "chunk", "lang",
                            "license"] + [c for c in ("trimmed", "balance") if c in order.column_names])
    return lineage.add_column(0, "shard", pa.array([name] * lineage.num_rows, pa.string()))


#: Rows per row group of a lineage file. The rows of one row group are buffered (about 100 bytes a row, twice that
#: while they are combined into one table): 2**16 rows hold about 13 MB, whatever the shard size. (It was
#: ``pq.write_table``'s default of 2**20, 200 MB buffered once a shard passes a million sequences; the scale bench's
#: 50M-token shards of tiny documents have about 500k.) A lineage of more rows than this is no longer byte-identical
#: to one written whole with ``pq.write_table``'s defaults, only to one written with ``row_group_size`` this.
LINEAGE_ROW_GROUP = 1 << 16

#: The shard entry's aggregates of the lineage: entry key -> the lineage columns it groups by
AGGREGATES = {"by_group": ("group",), "by_source": ("source", "subset"),
              "by_license": ("source", "subset", "group", "license")}


class LineageWriter:
    """A shard's lineage (:func:`lineage_table`) written a batch of the order at a time, and its aggregates.

    Rows go to a ``pq.ParquetWriter`` on the file's temporary name (:func:`curate.io_utils.temp_path`), one
    row group of :data:`LINEAGE_ROW_GROUP` rows at a time, and :meth:`close` renames it into place: the bytes
    are those of ``pq.write_table(lineage_table(order, name), row_group_size=LINEAGE_ROW_GROUP,
    compression="zstd")``. :attr:`aggregates` (the entry's
    ``by_group``, ``by_source``, ``by_license``) are summed per batch; they hold one row per distinct key.
    """

    def __init__(self, path: Path, name: str, *, row_group: int | None = None) -> None:
        self.path, self.name = Path(path), name
        self.tmp = temp_path(self.path)
        self.row_group = row_group or LINEAGE_ROW_GROUP
        self.writer: pq.ParquetWriter | None = None
        self.buffer: list[pa.Table] = []
        self.buffered = 0
        self.partial: dict[str, pa.Table | None] = dict.fromkeys(AGGREGATES)
        self.schema: pa.Schema | None = None

    def add(self, order: pa.Table) -> None:
        lin = lineage_table(order, self.name)
        if self.schema is None:
            self.schema = lin.schema
        if not lin.num_rows:
            return
        for key, cols in AGGREGATES.items():
            part = lin.group_by(list(cols)).aggregate([("tokens", "sum"), ("seq", "count")])
            part = part.rename_columns({"tokens_sum": "tokens", "seq_count": "sequences"})
            prev = self.partial[key]
            if prev is not None:
                part = pa.concat_tables([prev, part.select(prev.column_names)]).group_by(list(cols)).aggregate(
                    [("tokens", "sum"), ("sequences", "sum")]).rename_columns(
                    {"tokens_sum": "tokens", "sequences_sum": "sequences"})
            self.partial[key] = part
        self.buffer.append(lin)
        self.buffered += lin.num_rows
        while self.buffered >= self.row_group:
            self._flush(self.row_group)

    def _flush(self, n: int) -> None:
        t = pa.concat_tables(self.buffer).combine_chunks() if len(self.buffer) > 1 else self.buffer[0]
        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = pq.ParquetWriter(self.tmp, t.schema, compression="zstd")
        self.writer.write_table(t.slice(0, n).combine_chunks(), row_group_size=self.row_group)
        rest = t.slice(n)
        self.buffer, self.buffered = ([rest] if rest.num_rows else []), rest.num_rows

    def close(self) -> None:
        """Write the last rows and rename the file into place (an empty lineage is one empty row group)."""
        try:
            if self.buffered:
                self._flush(self.buffered)
            if self.writer is None:  # no rows: what pq.write_table writes for an empty table
                self.writer = pq.ParquetWriter(self.tmp, self.schema, compression="zstd")
                self.writer.write_table(self.schema.empty_table())
            self.writer.close()
            os.replace(self.tmp, self.path)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        if self.writer is not None:
            with contextlib.suppress(OSError):
                self.writer.close()
        self.tmp.unlink(missing_ok=True)

    def aggregates(self) -> dict[str, list[dict]]:
        """``by_group``, ``by_source`` and ``by_license`` of the shard's entry, sorted by their keys."""
        out = {}
        for key, cols in AGGREGATES.items():
            t = self.partial[key]
            rows = [] if t is None else sorted(
                ({**{k: r[k] for k in cols}, "tokens": r["tokens"], "sequences": r["sequences"]}
                 for r in t.to_pylist()), key=lambda r: tuple(str(r[k]) for k in cols))
            out[key] = rows
        out["by_license"] = [{k: r[k] for k in ("source", "subset", "group", "license", "tokens")}
                             for r in out["by_license"]]
        return out
