"""Tokenizers: rwkv-world against the rwkv package's reference TRIE_TOKENIZER, and Hugging Face EOS handling."""

from __future__ import annotations

import json
import pickle
import random
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from curate.errors import RecipeError
from curate.recipe import HfTokenizer
from curate.shards import IndexedDatasetWriter, iter_sequences
from curate.tokenizers import RWKV_EOS_ID, RWKV_VOCAB_SIZE, Tokenizer, load_tokenizer, rwkv_vocab_path

NEOX_EOS = 50279


@pytest.fixture(scope="module")
def reference():
    """The rwkv package's pure-Python reference tokenizer (~3 s to build its trie)."""
    from rwkv.rwkv_tokenizer import TRIE_TOKENIZER

    return TRIE_TOKENIZER(str(rwkv_vocab_path()))


@pytest.fixture(scope="module")
def rwkv() -> Tokenizer:
    return load_tokenizer("rwkv-world")


def split_flat(ids: np.ndarray, lengths: np.ndarray) -> list[list[int]]:
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    return [ids[a:b].tolist() for a, b in zip(bounds[:-1], bounds[1:])]


def generated_texts(n: int = 300, seed: int = 7) -> list[str]:
    """Random strings over scripts and edge cases where a byte-level greedy match can go wrong."""
    rng = random.Random(seed)
    pools = [
        "abcdefghijklmnopqrstuvwxyz ABCXYZ 0123456789 .,;:!?'\"()[]{}<>/\\|@#$%^&*-_=+~`",
        "àáâãäåæçèéêëìíîïñòóôõöøùúûüýÿßœŒ",
        "".join(chr(c) for c in range(0x300, 0x370)),  # combining diacritics
        "".join(chr(c) for c in range(0x4E00, 0x4E00 + 400)),  # CJK
        "".join(chr(c) for c in range(0xAC00, 0xAC00 + 200)),  # Hangul
        "".join(chr(c) for c in range(0x3040, 0x30FF)),  # kana
        "".join(chr(c) for c in range(0x0600, 0x06FF)),  # Arabic
        "".join(chr(c) for c in range(0x0900, 0x097F)),  # Devanagari
        "".join(chr(c) for c in range(0x0E00, 0x0E5B)),  # Thai
        "".join(chr(c) for c in range(0x1F600, 0x1F650)) + "\u200d\ufe0f👨‍👩‍👧‍👦🏳️‍🌈",  # emoji, ZWJ
        "\r\n\t\x00\x0b\x0c\x1b\x7f\u2028\u00a0\ufeff",  # controls and odd whitespace
        "".join(chr(c) for c in range(0x10330, 0x1034A)) + "\U0010ffff\U000e0001",  # astral planes
        "    \n\n\n        ",
    ]
    out = ["", " ", "\r\n", "a", "\x00", "😀", "e\u0301", "\r\n\r\n"]
    while len(out) < n:
        k = rng.randint(1, 400)
        out.append("".join(rng.choice(rng.choice(pools)) for _ in range(k)))
    return out


# ---------------------------------------------------------------------------- rwkv-world
def test_rwkv_world_config(rwkv):
    assert (rwkv.name, rwkv.vocab_size, rwkv.eos_id) == ("rwkv-world", RWKV_VOCAB_SIZE, RWKV_EOS_ID)
    assert rwkv.path.name == "rwkv_vocab_v20230424.txt" and rwkv.path.parent.name == "rwkv"


def test_rwkv_world_matches_reference_on_generated_text(rwkv, reference):
    texts = generated_texts()
    ids, lengths = rwkv.encode_batch(texts, num_threads=2)
    assert ids.dtype == np.uint32 and lengths.dtype == np.int64 and lengths.size == len(texts)
    assert int(lengths.sum()) == ids.size
    got = split_flat(ids, lengths)
    for i, t in enumerate(texts):
        assert got[i] == reference.encode(t), f"text {i}: {t[:40]!r}"
    assert lengths[0] == 0  # the empty document has no tokens: the shard writer adds the only EOS
    assert RWKV_EOS_ID not in ids  # id 0 never comes out of encoding
    serial_ids, serial_lengths = rwkv.encode_batch(texts, num_threads=1)
    assert np.array_equal(serial_ids, ids) and np.array_equal(serial_lengths, lengths)
    assert np.array_equal(rwkv.count_tokens(texts), lengths)


def test_rwkv_world_every_vocab_entry(rwkv, reference):
    # Every token that is valid UTF-8 on its own encodes to exactly itself, and all of them run together
    # (greedy matches across token boundaries) encode as the reference does.
    toks = {}
    for i, b in reference.idx2token.items():
        try:
            toks[i] = b.decode("utf-8")
        except UnicodeDecodeError:
            continue
    assert len(toks) > 60_000
    ids, lengths = rwkv.encode_batch(list(toks.values()))
    assert np.array_equal(lengths, np.ones(len(toks)))
    assert ids.tolist() == list(toks)
    joined = "".join(toks.values())
    ids, _ = rwkv.encode_batch([joined])
    assert ids.tolist() == reference.encode(joined)


def real_text_columns(real_data: Path) -> list[tuple[str, list[str]]]:
    out = []
    for f in sorted(real_data.rglob("*.parquet")):
        schema = pq.read_schema(f)
        for col in ("text", "content"):
            if col in schema.names:
                vals = pq.read_table(f, columns=[col])[col].to_pylist()
                out.append((f"{f.relative_to(real_data)}:{col}", [v for v in vals if v is not None]))
    return out


@pytest.mark.slow
@pytest.mark.real
def test_rwkv_world_matches_reference_on_all_real_text(rwkv, reference, real_data):
    """Every document of every real sample (~89 MB; Gutenberg books whole), ~70 s for the reference."""
    cols = real_text_columns(real_data)
    assert {name.split(":")[0] for name, _ in cols} >= {"gutenberg.parquet", "thestack.parquet", "wikipedia.parquet",
                                                         "culturax.parquet", "refinedweb.parquet",
                                                         "openwebmath.parquet"}
    for name, texts in cols:
        ids, lengths = rwkv.encode_batch(texts)
        got = split_flat(ids, lengths)
        for i, t in enumerate(texts):
            want = reference.encode(t)
            if got[i] != want:
                k = next((j for j, (a, b) in enumerate(zip(got[i], want)) if a != b), min(len(got[i]), len(want)))
                pytest.fail(f"{name} row {i}: first difference at token {k}: {got[i][k:k + 5]} != {want[k:k + 5]}")


def test_rwkv_world_pickles_without_native_state(rwkv):
    rwkv.encode_batch(["warm up"])
    blob = pickle.dumps(rwkv)
    assert len(blob) < 2_000
    clone = pickle.loads(blob)
    assert clone._impl is None
    a = rwkv.encode_batch(["Grüße, 世界 🌍\r\n"])
    b = clone.encode_batch(["Grüße, 世界 🌍\r\n"])
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_non_string_document_is_named():
    tok = load_tokenizer("rwkv-world")
    with pytest.raises(TypeError, match="document 2 is NoneType"):
        tok.encode_batch(["a", "b", None, "c"], num_threads=2)
    with pytest.raises(ValueError, match="document 1 is not valid Unicode"):
        tok.encode_batch(["a", "b\ud800"], num_threads=1)


def test_unknown_spec_is_a_recipe_error():
    with pytest.raises(RecipeError, match="`tokenizer`"):
        load_tokenizer("gpt2")


# ---------------------------------------------------------------------------- Hugging Face
def _write_shard(tok: Tokenizer, texts: list[str], prefix: Path) -> list[list[int]]:
    ids, lengths = tok.encode_batch(texts)
    w = IndexedDatasetWriter(prefix, vocab_size=tok.vocab_size)
    w.add_batch(ids, lengths, eos_id=tok.eos_id)
    w.finalize()
    return [s.tolist() for s in iter_sequences(prefix)]


HF_TEXTS = ["Hello world.", "", "a document that mentions <|endoftext|> in its text", "Grüße 世界\r\n"]


def test_hf_eos_appended_exactly_once(neox_tokenizer, tmp_path):
    from tokenizers import Tokenizer as HfTok

    tok = load_tokenizer(HfTokenizer(hf=str(neox_tokenizer)))
    assert (tok.eos_id, tok.eos_token, tok.vocab_size) == (NEOX_EOS, "<|endoftext|>", 50280)
    ids, lengths = tok.encode_batch(HF_TEXTS)
    assert NEOX_EOS not in ids  # not even from the literal string inside document 2
    raw = HfTok.from_file(str(neox_tokenizer))
    assert NEOX_EOS in raw.encode(HF_TEXTS[2]).ids  # ... which the library's default would have emitted
    for i in (0, 3):
        assert split_flat(ids, lengths)[i] == raw.encode(HF_TEXTS[i], add_special_tokens=False).ids
    seqs = _write_shard(tok, HF_TEXTS, tmp_path / "neox")
    assert [s[-1] for s in seqs] == [NEOX_EOS] * len(HF_TEXTS)
    assert [s.count(NEOX_EOS) for s in seqs] == [1] * len(HF_TEXTS)
    assert seqs[1] == [NEOX_EOS]
    assert tok.decode(seqs[2][:-1]) == HF_TEXTS[2]


def test_hf_post_processor_does_not_double_eos(neox_tokenizer, tmp_path):
    from tokenizers import Tokenizer as HfTok

    spec = json.loads(neox_tokenizer.read_text(encoding="utf-8"))
    spec["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}}],
        "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {"<|endoftext|>": {"id": "<|endoftext|>", "ids": [NEOX_EOS], "tokens": ["<|endoftext|>"]}},
    }
    path = tmp_path / "neox-eos-post.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    assert HfTok.from_file(str(path)).encode("Hello world.").ids[-1] == NEOX_EOS  # the template does add one

    tok = load_tokenizer({"hf": path.name}, base_dir=tmp_path)
    seqs = _write_shard(tok, HF_TEXTS, tmp_path / "post")
    assert [s.count(NEOX_EOS) for s in seqs] == [1] * len(HF_TEXTS)
    assert all(s[-1] == NEOX_EOS for s in seqs)


def _tiny_tokenizer(path: Path, vocab: dict[str, int]) -> Path:
    from tokenizers import Tokenizer as HfTok
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    t = HfTok(WordLevel(vocab, unk_token="[UNK]"))
    t.pre_tokenizer = Whitespace()
    t.save(str(path))
    return path


def test_hf_without_eos_is_a_clear_error(tmp_path):
    path = _tiny_tokenizer(tmp_path / "tiny.json", {"[UNK]": 0, "a": 1, "b": 2, "[END]": 3})
    with pytest.raises(RecipeError) as e:
        load_tokenizer({"hf": str(path)})
    assert str(path) in str(e.value) and "tokenizer.eos" in str(e.value) and e.value.path == "tokenizer.eos"

    tok = load_tokenizer({"hf": str(path), "eos": "[END]"})
    assert (tok.eos_id, tok.vocab_size) == (3, 4)
    ids, lengths = tok.encode_batch(["a b a", "b"])
    assert ids.tolist() == [1, 2, 1, 2] and lengths.tolist() == [3, 1]

    with pytest.raises(RecipeError, match="not a token of"):
        load_tokenizer({"hf": str(path), "eos": "</s>"})


def test_hf_missing_file_names_the_yaml_path(tmp_path):
    with pytest.raises(RecipeError) as e:
        load_tokenizer(HfTokenizer(hf="nope.json"), base_dir=tmp_path)
    assert e.value.path == "tokenizer.hf" and str(tmp_path / "nope.json") in str(e.value)


def test_hf_pickles_and_counts(neox_tokenizer):
    tok = load_tokenizer({"hf": str(neox_tokenizer)})
    clone = pickle.loads(pickle.dumps(tok))
    assert clone._impl is None and (clone.eos_id, clone.vocab_size) == (tok.eos_id, tok.vocab_size)
    a_ids, a_len = tok.encode_batch(HF_TEXTS, num_threads=2)
    b_ids, b_len = clone.encode_batch(HF_TEXTS, num_threads=1)
    assert np.array_equal(a_ids, b_ids) and np.array_equal(a_len, b_len)
    assert np.array_equal(tok.count_tokens(HF_TEXTS), a_len)
    assert tok.describe()["sha256"] == clone.describe()["sha256"]


def test_tokenizer_ships_to_a_ray_task(ray_session, rwkv):
    """The configuration pickles to a worker, which builds its encoder and sizes threads from its CPUs."""
    from curate.tokenizers import default_num_threads

    @ray_session.remote(num_cpus=1)
    def encode(tok: Tokenizer, texts: list[str]) -> tuple[int, list[int], list[int]]:
        ids, lengths = tok.encode_batch(texts)
        return default_num_threads(), ids.tolist(), lengths.tolist()

    texts = ["Grüße, 世界 🌍", "", "def f(x):\r\n    return x"]
    threads, ids, lengths = ray_session.get(encode.remote(rwkv, texts))
    want_ids, want_lengths = rwkv.encode_batch(texts)
    assert threads == 1 and ids == want_ids.tolist() and lengths == want_lengths.tolist()


def test_chunked_encoding_is_seamless(rwkv, monkeypatch):
    """Batches are handed to the native encoder in chunks; results and error indices are batch-wide."""
    import curate.tokenizers as tk

    texts = generated_texts(40, seed=3)
    whole = rwkv.encode_batch(texts, num_threads=2)
    monkeypatch.setattr(tk, "_CHUNK_CHARS", 50)
    assert len(tk._chunks(texts, 50)) > 10
    for n in (1, 2):
        ids, lengths = rwkv.encode_batch(texts, num_threads=n)
        assert np.array_equal(ids, whole[0]) and np.array_equal(lengths, whole[1])
    with pytest.raises(ValueError, match="document 39 is not valid Unicode"):
        rwkv.encode_batch([*texts[:39], "x\udfff"], num_threads=2)
