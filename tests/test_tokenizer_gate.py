"""The fast encoder's identity gate: fastokens ids == tokenizers ids, or the gate falls back (and says why)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from curate.errors import RecipeError
from curate.tokenizer_gate import FAST_ENGINE, REFERENCE_ENGINE, probe_texts
from curate.tokenizers import load_tokenizer
from tests.test_tokenizers import real_text_columns

pytest.importorskip("fastokens")
from tokenizers import AddedToken, Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers  # noqa: E402


def _corpus() -> list[str]:
    from faker import Faker

    out = []
    for loc in ("en_US", "de_DE", "ja_JP", "ru_RU", "zh_CN"):
        fk = Faker(loc)
        fk.seed_instance(7)
        out += [fk.paragraph(nb_sentences=5) for _ in range(300)]
    out += [f"def f{i}(x):\n    return x * {i} + {i * 1.5}\n" for i in range(300)]
    return out


def _train(path: Path, *, pre, norm=None, model=None, trainer=None, added=(), special=("<|endoftext|>",)) -> Path:
    tok = Tokenizer(model or models.BPE())
    if norm is not None:
        tok.normalizer = norm
    tok.pre_tokenizer = pre
    tok.train_from_iterator(_corpus(), trainer or trainers.BpeTrainer(vocab_size=2000, show_progress=False))
    tok.add_special_tokens(list(special))
    if added:
        tok.add_tokens(list(added))
    tok.save(str(path))
    return path


@pytest.fixture(scope="module")
def own_bpe(tmp_path_factory) -> Path:
    """A byte-level BPE built here with `tokenizers`: digits split, added tokens (normalized and not, with
    lstrip/rstrip, single-word) and two special tokens."""
    p = tmp_path_factory.mktemp("tok") / "own-bpe.json"
    pre = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(r"\p{N}{1,3}"), behavior="isolated"),
                                   pre_tokenizers.ByteLevel(add_prefix_space=False)])
    added = [AddedToken("<code>", lstrip=True, rstrip=True), AddedToken("fox", single_word=True),
             AddedToken("    ", normalized=False), AddedToken("[MASK]", special=True)]
    return _train(p, pre=pre, norm=normalizers.NFC(), added=added, special=("<|endoftext|>", "<|pad|>"))


def _reference(path: Path) -> Tokenizer:
    ref = Tokenizer.from_file(str(path))
    ref.encode_special_tokens = True
    return ref


def _check_identical(path: Path, cols: list[tuple[str, list[str]]]) -> int:
    fast = load_tokenizer({"hf": str(path), "engine": "fastokens"})
    assert fast.engine.engine == FAST_ENGINE
    ref = _reference(path)
    n = 0
    for name, texts in cols:
        for i in range(0, len(texts), 512):
            batch = texts[i:i + 512]
            ids, lengths = fast.encode_batch(batch, num_threads=2)
            want = [e.ids for e in ref.encode_batch(batch, add_special_tokens=False)]
            assert lengths.tolist() == [len(w) for w in want], name
            flat = np.fromiter((t for w in want for t in w), dtype=np.uint32, count=int(lengths.sum()))
            if not np.array_equal(ids, flat):
                bad = next(j for j, w in enumerate(want) if ids[int(lengths[:j].sum()):][:len(w)].tolist() != w)
                pytest.fail(f"{name}: document {i + bad} encodes differently with {FAST_ENGINE}")
            n += len(batch)
    return n


@pytest.mark.real
@pytest.mark.slow
def test_fast_engine_is_id_identical_on_all_real_text_neox(real_data, neox_tokenizer):
    """Every document of every real sample, GPT-NeoX-20B: fastokens ids == tokenizers ids."""
    n = _check_identical(neox_tokenizer, real_text_columns(real_data))
    assert n > 10_000


@pytest.mark.real
@pytest.mark.slow
def test_fast_engine_is_id_identical_on_every_real_sample_own_bpe(real_data, own_bpe):
    """The same on a BPE file built here with added and special tokens: every sample file, its first 2,000
    documents (the NeoX test above reads them whole; this keeps the pair under a minute)."""
    cols = [(name, texts[:2000]) for name, texts in real_text_columns(real_data)]
    n = _check_identical(own_bpe, cols)
    assert n == sum(len(t) for _, t in cols) > 5_000


def test_auto_takes_the_fast_engine_after_the_probe(own_bpe):
    tok = load_tokenizer({"hf": str(own_bpe)})
    assert tok.engine.engine == FAST_ENGINE and tok.engine.requested == "auto" and tok.engine.reason is None
    assert tok.describe()["engine"]["engine"] == FAST_ENGINE
    # the added tokens are part of the probe set, and special tokens are text: no stray control ids
    texts = [t for ts in probe_texts(["<code>", "[MASK]", "<|endoftext|>"]).values() for t in ts]
    ids, _ = tok.encode_batch(texts, num_threads=1)
    ref = _reference(own_bpe)
    assert ids.tolist() == [i for e in ref.encode_batch(texts, add_special_tokens=False) for i in e.ids]
    assert tok.eos_id not in set(ids.tolist())


def test_serial_and_parallel_fast_encoding_agree(neox_tokenizer):
    tok = load_tokenizer({"hf": str(neox_tokenizer), "engine": "fastokens"})
    texts = [t for ts in probe_texts().values() for t in ts] + [""]
    a, la = tok.encode_batch(texts, num_threads=1)
    b, lb = tok.encode_batch(texts, num_threads=2)
    assert np.array_equal(a, b) and np.array_equal(la, lb) and la[-1] == 0


def test_probe_set_covers_the_hard_cases():
    p = probe_texts(["<|endoftext|>"])
    assert set(p) == {"whitespace", "newlines", "cjk", "emoji", "combining", "surrogates", "code", "numbers",
                      "added", "long"}
    assert all(p[k] for k in p)
    assert len(p["long"][0]) > 200_000
    assert any("<|endoftext|>" in t for t in p["added"])
    assert any("\t" in t for t in p["whitespace"]) and any("\u200d" in t for t in p["emoji"])


@pytest.fixture
def unloadable(tmp_path) -> Path:
    """A WordPiece-style file with a pre-tokenizer fastokens does not implement (`Whitespace`)."""
    return _train(tmp_path / "ws.json", pre=pre_tokenizers.Whitespace(),
                  model=models.BPE(unk_token="[UNK]"),
                  trainer=trainers.BpeTrainer(vocab_size=500, special_tokens=["[UNK]"], show_progress=False))


@pytest.fixture
def differing(tmp_path) -> Path:
    """BPE with byte_fallback + fuse_unk and `<unk>` as a special token: fastokens merges `<unk>` text
    differently, so the probe's added-token case differs."""
    return _train(tmp_path / "fb.json", pre=pre_tokenizers.Split(" ", "merged_with_previous"),
                  model=models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True),
                  trainer=trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>"], show_progress=False))


def test_gate_falls_back_when_the_fast_engine_cannot_load(unloadable, caplog):
    with caplog.at_level(logging.WARNING, logger="curate.tokenizer_gate"):
        tok = load_tokenizer({"hf": str(unloadable)})
    assert tok.engine.engine == REFERENCE_ENGINE
    assert "cannot load" in tok.engine.reason and "Whitespace" in tok.engine.reason
    assert "cannot load" in caplog.text
    ids, lengths = tok.encode_batch(["a b c", "hello world"], num_threads=1)
    ref = _reference(unloadable)
    assert ids.tolist() == [i for e in ref.encode_batch(["a b c", "hello world"], add_special_tokens=False)
                            for i in e.ids]


def test_gate_falls_back_when_the_fast_engine_encodes_differently(differing, caplog):
    with caplog.at_level(logging.WARNING, logger="curate.tokenizer_gate"):
        tok = load_tokenizer({"hf": str(differing), "engine": "auto"})
    assert tok.engine.engine == REFERENCE_ENGINE
    assert "not id-identical" in tok.engine.reason and "probe added[" in tok.engine.reason
    assert "not id-identical" in caplog.text


def test_engine_fastokens_insists(differing):
    with pytest.raises(RecipeError) as e:
        load_tokenizer({"hf": str(differing), "engine": "fastokens"})
    assert e.value.path == "tokenizer.engine" and "not id-identical" in str(e.value)


def test_engine_tokenizers_never_probes(differing, monkeypatch):
    import curate.tokenizer_gate as gate

    def boom(*a, **k):
        raise AssertionError("probed")

    monkeypatch.setattr(gate, "load_fast", boom)
    tok = load_tokenizer({"hf": str(differing), "engine": "tokenizers"})
    assert tok.engine.engine == REFERENCE_ENGINE and tok.engine.reason is None


def test_unknown_engine_names_the_yaml_path(neox_tokenizer):
    with pytest.raises(RecipeError) as e:
        load_tokenizer({"hf": str(neox_tokenizer), "engine": "tiktoken"})
    assert e.value.path == "tokenizer.engine"


def test_bpe_dropout_is_refused(tmp_path):
    """Dropout samples merges at random: no engine could give the same ids twice, so curate refuses it."""
    p = _train(tmp_path / "dropout.json", pre=pre_tokenizers.ByteLevel(), model=models.BPE(dropout=0.3))
    with pytest.raises(RecipeError) as e:
        load_tokenizer({"hf": str(p)})
    assert "dropout" in str(e.value) and e.value.path == "tokenizer.hf"


def _forget(gate, path: Path) -> None:
    """Drop this process's cached decisions (and probe-loaded encoders) for ``path``."""
    for d in (gate._DECISIONS, gate._LOADED, gate._FACTS):
        for k in [k for k in d if k[0] == str(path)]:
            del d[k]


def test_the_probes_encoder_is_reused_not_loaded_again(own_bpe, monkeypatch):
    import curate.tokenizer_gate as gate

    _forget(gate, own_bpe.resolve())
    loads = []
    real = gate.load_fast
    monkeypatch.setattr(gate, "load_fast", lambda p: loads.append(p) or real(p))
    tok = load_tokenizer({"hf": str(own_bpe)})
    ids, _ = tok.encode_batch(["reuse the probe's encoder"], num_threads=1)
    assert tok.fast and len(loads) == 1 and len(ids) > 0
    assert not [k for k in gate._LOADED if k[0] == str(own_bpe.resolve())]  # handed over, not kept twice


def test_a_worker_adopts_the_drivers_decision_and_does_not_probe(own_bpe, differing, monkeypatch):
    """The driver's decisions travel to the partition workers; a worker takes one only for the same file
    (path and sha256, which it hashes itself) and the same library versions, else it probes again."""
    import curate.tokenizer_gate as gate

    for p in (own_bpe, differing):
        load_tokenizer({"hf": str(p)})  # "the driver": one fast, one refused
    records = gate.decisions()
    assert {r["choice"]["engine"] for r in records if r["path"] in (str(own_bpe.resolve()),
                                                                      str(differing.resolve()))} == {
        FAST_ENGINE, REFERENCE_ENGINE}
    for p in (own_bpe, differing):
        _forget(gate, p.resolve())  # "a fresh worker"
    probed = []
    monkeypatch.setattr(gate, "_decide", lambda *a: probed.append(a[0]) or (_ for _ in ()).throw(
        AssertionError("probed")))
    assert gate.adopt(records) == len(records)
    fast = load_tokenizer({"hf": str(own_bpe)})
    slow = load_tokenizer({"hf": str(differing)})
    assert fast.engine.engine == FAST_ENGINE and slow.engine.engine == REFERENCE_ENGINE
    assert "not id-identical" in slow.engine.reason and probed == []
    ids, _ = fast.encode_batch(["adopted"], num_threads=1)
    assert ids.tolist() == _reference(own_bpe).encode("adopted", add_special_tokens=False).ids

    # another version of fastokens on the worker: the record is not taken, the file is probed again
    for p in (own_bpe, differing):
        _forget(gate, p.resolve())
    stale = [{**r, "versions": {**r["versions"], FAST_ENGINE: "0.0.1"}} for r in records]
    assert gate.adopt(stale) == 0
    with pytest.raises(AssertionError, match="probed"):
        load_tokenizer({"hf": str(own_bpe)})


def test_an_adopted_record_spares_the_worker_the_reference_load(own_bpe, monkeypatch):
    """With the driver's records a worker builds the tokenizer from the file's facts (vocab size, EOS) without
    loading the file with ``tokenizers``; it encodes the same ids. Another ``eos`` is read from the file."""
    import curate.tokenizer_gate as gate
    import curate.tokenizers as toks

    driver = load_tokenizer({"hf": str(own_bpe)})
    records = [r for r in gate.decisions() if r["path"] == str(own_bpe.resolve())]
    assert records[0]["facts"] == {"": {"vocab_size": driver.vocab_size, "eos_id": driver.eos_id,
                                        "eos_token": driver.eos_token}}
    _forget(gate, own_bpe.resolve())  # "a fresh worker"
    gate.adopt(records)
    loads = []
    real = toks._load_hf
    monkeypatch.setattr(toks, "_load_hf", lambda p: loads.append(p) or real(p))
    worker = load_tokenizer({"hf": str(own_bpe)})
    assert loads == [] and worker.engine == driver.engine
    assert (worker.vocab_size, worker.eos_id, worker.eos_token) == (driver.vocab_size, driver.eos_id,
                                                                    driver.eos_token)
    text = ["adopted facts <|pad|> and more"]
    assert worker.encode_batch(text, num_threads=1)[0].tolist() == driver.encode_batch(text, num_threads=1)[0].tolist()
    other = load_tokenizer({"hf": str(own_bpe), "eos": "<|pad|>"})  # not what the driver read: loaded here
    assert loads == [own_bpe.resolve()] and other.eos_token == "<|pad|>"


def test_a_changed_file_is_probed_again_despite_an_adopted_decision(own_bpe, tmp_path, monkeypatch):
    import shutil

    import curate.tokenizer_gate as gate

    p = tmp_path / "tok.json"
    shutil.copy(own_bpe, p)
    load_tokenizer({"hf": str(p)})
    records = [r for r in gate.decisions() if r["path"] == str(p.resolve())]
    _forget(gate, p.resolve())
    p.write_text(p.read_text().replace('"<|pad|>"', '"<|pad2|>"'))  # the worker reads another file
    gate.adopt(records)
    probed = []
    real = gate._decide
    monkeypatch.setattr(gate, "_decide", lambda *a: probed.append(a[0]) or real(*a))
    load_tokenizer({"hf": str(p)})
    assert probed == [p.resolve()]


@pytest.fixture
def disk_cache(tmp_path, monkeypatch) -> Path:
    """The gate's disk cache turned on, in a folder of this test's own."""
    monkeypatch.setenv("CURATE_TOKENIZER_GATE_CACHE", "1")
    monkeypatch.setenv("CURATE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "tokenizer-gate"


def test_a_later_run_takes_the_kept_decision_without_probing(own_bpe, differing, disk_cache, monkeypatch):
    import curate.tokenizer_gate as gate

    probes = []
    real = gate._probe
    monkeypatch.setattr(gate, "_probe", lambda *a: probes.append(a[0]) or real(*a))
    for p in (own_bpe, differing):
        _forget(gate, p.resolve())
        load_tokenizer({"hf": str(p)})  # the first run: probed, and kept on disk
    assert probes == [own_bpe.resolve(), differing.resolve()] and len(list(disk_cache.glob("*.json"))) == 2
    for p in (own_bpe, differing):
        _forget(gate, p.resolve())  # "a later run": a new process
    fast = load_tokenizer({"hf": str(own_bpe)})
    slow = load_tokenizer({"hf": str(differing)})
    assert len(probes) == 2, "a kept decision was probed again"
    assert fast.engine.engine == FAST_ENGINE and fast.engine.reason is None
    assert slow.engine.engine == REFERENCE_ENGINE and "not id-identical" in slow.engine.reason
    ids, _ = fast.encode_batch(["kept decision"], num_threads=1)  # the fast encoder is loaded on first use
    assert ids.tolist() == _reference(own_bpe).encode("kept decision", add_special_tokens=False).ids
    _forget(gate, differing.resolve())
    with pytest.raises(RecipeError, match="not id-identical"):  # `engine: fastokens` is a key of its own
        load_tokenizer({"hf": str(differing), "engine": "fastokens"})
    assert len(probes) == 3


def test_a_kept_decision_holds_only_for_its_versions_file_and_probe_set(own_bpe, tmp_path, disk_cache,
                                                                       monkeypatch):
    import shutil

    import curate.tokenizer_gate as gate

    p = tmp_path / "tok.json"
    shutil.copy(own_bpe, p)
    _forget(gate, p.resolve())
    load_tokenizer({"hf": str(p)})
    probes = []
    real = gate._probe
    monkeypatch.setattr(gate, "_probe", lambda *a: probes.append(a[0]) or real(*a))

    def again() -> None:
        _forget(gate, p.resolve())
        load_tokenizer({"hf": str(p)})

    versions = gate._engine_versions()
    monkeypatch.setattr(gate, "_engine_versions", lambda: {**versions, FAST_ENGINE: "9.9.9"})
    again()  # another fastokens
    monkeypatch.setattr(gate, "_engine_versions", lambda: versions)
    monkeypatch.setattr(gate, "_CODE", [*gate._CODE, "a new probe"])
    again()  # another probe set
    monkeypatch.setattr(gate, "_CODE", gate._CODE[:-1])
    p.write_text(p.read_text().replace('"<|pad|>"', '"<|pad2|>"'))
    again()  # another file at the same path
    assert probes == [p.resolve()] * 3
    for f in disk_cache.glob("*.json"):
        f.write_text("{not json")
    again()  # an unreadable kept decision: probed, and written again
    assert len(probes) == 4
    again()
    assert len(probes) == 4


def test_the_disk_cache_can_be_turned_off(own_bpe, disk_cache, monkeypatch):
    import curate.tokenizer_gate as gate

    monkeypatch.setenv("CURATE_TOKENIZER_GATE_CACHE", "0")
    _forget(gate, own_bpe.resolve())
    load_tokenizer({"hf": str(own_bpe)})
    assert not disk_cache.exists()


def test_a_kept_fast_decision_is_probed_again_when_the_module_is_gone(own_bpe, disk_cache, monkeypatch):
    import importlib.util

    import curate.tokenizer_gate as gate

    _forget(gate, own_bpe.resolve())
    load_tokenizer({"hf": str(own_bpe)})
    probes = []
    real_probe, real_spec = gate._probe, importlib.util.find_spec
    monkeypatch.setattr(gate, "_probe", lambda *a: probes.append(a[0]) or real_probe(*a))
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == FAST_ENGINE else real_spec(name, *a))
    _forget(gate, own_bpe.resolve())
    load_tokenizer({"hf": str(own_bpe)})
    assert probes == [own_bpe.resolve()]
