"""Read a run's shards with the trainers' own libraries; run inside a reader venv (.venv-readers/*), not .venv.

    python tests/readers/read_shards.py FORMAT RUN_DIR OUT_JSON

Writes ``{"sequences": [[ids], ...], "stream": [ids], "window": int, ...}`` for every shard of the run in
manifest order. ``sequences`` are the documents as the library's document-level reader returns them (so a
test compares them with the lineage); ``stream`` is what the library's fixed-length training dataset yields,
concatenated (the first ``len(stream)`` tokens of the run's stream, windows of ``window`` tokens). Imports only
the reader library and numpy: nothing of curate, which is not installed in these venvs.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np

WINDOW = 16


def megatron(run_dir: Path, manifest: dict) -> dict:
    from megatron.core.datasets.indexed_dataset import IndexedDataset
    from megatron.core.datasets.utils import get_blend_from_list, normalize

    seqs = []
    for s in manifest["shards"]:
        ds = IndexedDataset(str(run_dir / "shards" / s["name"]), multimodal=False, mmap=True)
        seqs += [np.asarray(ds[i]).tolist() for i in range(len(ds))]
    # the data-args file, parsed by Megatron itself: prefixes (each must exist) and normalized weights
    args = (run_dir / "megatron_data_args.txt").read_text().split()
    prefixes, weights = get_blend_from_list(args)
    per_split = json.loads((run_dir / "megatron_data_args.json").read_text())
    split_prefixes, split_weights = get_blend_from_list(per_split["train"])
    return {"sequences": seqs, "stream": [t for q in seqs for t in q], "window": 1,
            "blend": {"prefixes": prefixes, "weights": normalize(weights), "raw_weights": weights,
                      "exists": [IndexedDataset.exists(p) for p in prefixes],
                      "split_prefixes": split_prefixes, "split_weights": normalize(split_weights)}}


def olmo(run_dir: Path, manifest: dict) -> dict:
    from olmo_core.data.numpy_dataset import NumpyFSLDataset
    from olmo_core.data.utils import iter_document_indices, load_array_slice

    dtype = np.dtype(manifest["shards"][0]["formats"]["olmo-npy"]["dtype"]).type
    paths = [str(run_dir / "shards" / s["formats"]["olmo-npy"]["files"][0]["path"]) for s in manifest["shards"]]
    seqs = []
    for p in paths:
        # the metadata file, not the eos scan: the documents' boundaries as the writer recorded them
        for start, end in iter_document_indices(p, use_array_if_local=False, dtype=dtype):
            seqs.append(load_array_slice(p, start, end, dtype).tolist())
    ds = NumpyFSLDataset(*paths, sequence_length=WINDOW, pad_token_id=manifest["eos_id"],
                         eos_token_id=manifest["eos_id"], vocab_size=manifest["vocab_size"], dtype=dtype)
    ds.work_dir = Path(tempfile.mkdtemp())
    ds.prepare()
    stream = [t for i in range(len(ds)) for t in ds[i]["input_ids"].tolist()]
    # the run's olmo_mixture.yaml, as OLMo-core's own config builds it (the model's sequence length added)
    import yaml
    from olmo_core.data.numpy_dataset import NumpyFSLDatasetConfig

    y = yaml.safe_load((run_dir / "olmo_mixture.yaml").read_text())
    cfg = NumpyFSLDatasetConfig.from_dict({**y["dataset"], "sequence_length": WINDOW, "work_dir": tempfile.mkdtemp()})
    from_yaml = cfg.build()
    from_yaml.prepare()
    yaml_stream = [t for i in range(len(from_yaml)) for t in from_yaml[i]["input_ids"].tolist()]
    return {"sequences": seqs, "stream": stream, "window": WINDOW, "per_file_windows": True,
            "file_tokens": [int(Path(p).stat().st_size // np.dtype(dtype).itemsize) for p in paths],
            "yaml_stream": yaml_stream}


def datatrove(run_dir: Path, manifest: dict) -> dict:
    from datatrove.utils.dataset import DatatroveFileDataset, DatatroveFolderDataset

    size = np.dtype(manifest["shards"][0]["formats"]["datatrove"]["dtype"]).itemsize
    folder = run_dir / "shards" / "datatrove"
    seqs = []
    for s in manifest["shards"]:
        path = str(run_dir / "shards" / s["formats"]["datatrove"]["files"][0]["path"])
        n = s["formats"]["datatrove"]["tokens"]
        # one window over the whole file, with the positions datatrove derives from the .ds.index: a new
        # document starts wherever the position is 0
        item = DatatroveFileDataset(path, seq_len=n - 1, token_size=size, return_positions=True)[0]
        ids, pos = item["input_ids"].numpy(), item["positions"].numpy()
        starts = np.flatnonzero(pos == 0).tolist() + [len(ids)]
        seqs += [ids[a:b].tolist() for a, b in zip(starts[:-1], starts[1:])]
    ds = DatatroveFolderDataset(str(folder), seq_len=WINDOW - 1, token_size=size)
    stream = [t for i in range(len(ds)) for t in ds[i]["input_ids"].tolist()]
    return {"sequences": seqs, "stream": stream, "window": WINDOW, "per_file_windows": True,
            "file_tokens": [s["formats"]["datatrove"]["tokens"] for s in manifest["shards"]]}


def _streaming_dataset():
    """streaming's ``StreamingDataset``, without running ``streaming/__init__.py``.

    That file imports ``streaming.vision``, which needs torchvision, and no torchvision wheel imports beside
    the CPU torch 2.13 these venvs use ("operator torchvision::nms does not exist"); the matching CPU pair is
    not on this platform's index. ``streaming.base`` (StreamingDataset, MDSReader) needs no torchvision, so the
    top-level package is registered as a plain package of its folder and ``streaming.base`` imported from it.
    """
    import importlib.util
    import types

    spec = importlib.util.find_spec("streaming")
    pkg = types.ModuleType("streaming")
    pkg.__path__ = list(spec.submodule_search_locations)
    pkg.__spec__ = spec
    sys.modules.setdefault("streaming", pkg)
    from streaming.base import StreamingDataset

    return StreamingDataset


def mds(run_dir: Path, manifest: dict) -> dict:
    StreamingDataset = _streaming_dataset()  # noqa: N806 - the library's class

    ds = StreamingDataset(local=str(run_dir / "shards" / "mds"), shuffle=False, batch_size=1)
    seqs = [np.asarray(ds[i]["tokens"]).tolist() for i in range(ds.num_samples)]
    dtypes = sorted({str(np.asarray(ds[i]["tokens"]).dtype) for i in range(min(ds.num_samples, 3))})
    return {"sequences": seqs, "stream": [t for q in seqs for t in q], "window": 1, "dtypes": dtypes}


READERS = {"megatron": megatron, "olmo-npy": olmo, "datatrove": datatrove, "mds": mds}


def main(argv: list[str]) -> int:
    fmt, run_dir, out = argv
    run_dir = Path(run_dir)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    Path(out).write_text(json.dumps(READERS[fmt](run_dir, manifest)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
