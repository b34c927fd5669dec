"""Language-aware word splitting (curate.quality.words)."""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import pytest

from curate.quality import words as W
from tests.quality.texts import JA, TH, ZH


def test_spaced_scripts_split_on_spaces_and_punctuation():
    assert W.split_words("Hello, world! (ok)") == ["Hello", ",", "world", "!", "(", "ok", ")"]
    assert W.split_words("Привет, мир") == ["Привет", ",", "мир"]
    assert W.split_words("한국어 문장입니다.") == ["한국어", "문장입니다", "."]


def test_spacy_like_special_cases():
    # numbers, dates, dotted abbreviations and URLs stay whole; clitics are words of their own
    assert W.split_words("3.14 1,000 9/11 and/or U.S. e.g. a.m.") == ["3.14", "1,000", "9/11", "and/or", "U.S.",
                                                                     "e.g.", "a.m."]
    assert W.split_words("see https://example.org/a_b?x=1 now") == ["see", "https://example.org/a_b?x=1", "now"]
    assert W.split_words("I don't know... it's -- fine") == ["I", "don", "'t", "know", "...", "it", "'s", "--", "fine"]
    # a quote is a symbol, not a clitic
    assert W.split_words("'sorry'") == ["'", "sorry", "'"]


def test_kinds_and_alpha():
    text = "Hello, 2023 's 今天 ภาษา ..."
    toks = W.split_words(text)
    assert toks == ["Hello", ",", "2023", "'s", "今", "天", "ภ", "า", "ษ", "า", "..."]
    t = W.tokenize([text])
    assert t.kind.tolist() == [W.WORD, W.SYMBOL, W.WORD, W.WORD, W.CJK, W.CJK, W.SEA, W.SEA, W.SEA, W.SEA, W.SYMBOL]
    assert t.alpha.tolist() == [True, False, False, True, True, True, True, True, True, True, False]
    assert t.length.tolist() == [5, 1, 4, 2, 1, 1, 1, 1, 1, 1, 3]


def test_thai_marks_stay_with_their_letter():
    # ที่ = letter + two combining marks: one token, an alphabetic one
    t = W.tokenize(["ที่"])
    assert W.split_words("ที่") == ["ที่"] and t.kind.tolist() == [W.SEA] and t.alpha.tolist() == [True]


def test_supplementary_plane_characters_are_classified():
    # CJK extension B (outside the BMP lookup table) and an emoji
    t = W.tokenize(["𠀀𠀁 😀"])
    assert t.kind.tolist() == [W.CJK, W.CJK, W.WORD]
    assert t.alpha.tolist() == [True, True, False]


def test_weights_follow_chars_per_word():
    t = W.tokenize(["abc", "今天天气", "ภาษา"])
    words = t.per_doc(t.weight * (t.kind != W.SYMBOL))
    np.testing.assert_allclose(words, [1.0, 4 / 1.5, 4 / 3.0])


@pytest.mark.parametrize("text", [ZH, JA, TH])
def test_no_space_paragraphs_have_prose_word_counts(text):
    t = W.tokenize([text])
    n_words = t.per_doc(t.weight * (t.kind != W.SYMBOL))[0]
    assert 60 <= n_words <= 200  # an ordinary paragraph, not one giant "word"


def test_batch_tokenize_matches_single_texts():
    texts = ["Hello, world!", "", None, "今天 ok 3rd", "a\nb\n\nc"]
    t = W.tokenize(pa.array(texts, pa.large_string()))
    assert t.n_docs == 5
    for i, s in enumerate(texts):
        rows = t.doc == i
        assert int(rows.sum()) == len(W.split_words(s or ""))
        assert t.hash[rows].tolist() == W.hash_words(W.split_words(s or "")).tolist()


def test_long_document_is_linear():
    # a 2 MB "book": splitting must not blow up (no per-token Python work)
    text = ("It was a quiet morning, and the village slept. " * 45000)[:2_000_000]
    start = time.perf_counter()
    t = W.tokenize([text])
    assert len(t.doc) > 400_000
    assert time.perf_counter() - start < 30
