"""Bad input: a clear error naming the value, or an empty result, never lost text."""

from __future__ import annotations

import pytest

from longcontext import SemanticSplitter, TokenSplitter, get_tokenizer


@pytest.mark.parametrize(
    ("size", "overlap", "match"),
    [
        (100, 100, "chunk_overlap=100 must be smaller than chunk_size=100"),
        (100, 150, "chunk_overlap=150 must be smaller than chunk_size=100"),
        (0, 0, "chunk_size=0"),
        (-5, 0, "chunk_size=-5"),
        (100, -1, "chunk_overlap=-1"),
    ],
)
def test_bad_sizes_raise_value_error_naming_them(size: int, overlap: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        TokenSplitter("cl100k_base", chunk_size=size, chunk_overlap=overlap)


def test_semantic_budget_must_be_positive() -> None:
    with pytest.raises(ValueError, match="chunk_size=0"):
        SemanticSplitter("cl100k_base", chunk_size=0)
    with pytest.raises(ValueError, match="min_tokens=600"):
        SemanticSplitter("cl100k_base", chunk_size=512, min_tokens=600)
    with pytest.raises(ValueError, match="threshold='median'"):
        SemanticSplitter("cl100k_base", threshold="median")  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [b"bytes", None, 42, ["a list"]])
def test_non_str_text_raises_type_error(bad: object) -> None:
    with pytest.raises(TypeError, match="text must be str"):
        TokenSplitter().split(bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="text must be str"):
        SemanticSplitter().split(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("blank", ["", " ", "\n\n\t ", "\r\n"])
def test_empty_or_whitespace_text_gives_no_chunks(blank: str) -> None:
    assert TokenSplitter().split(blank) == []
    assert SemanticSplitter().split(blank) == []


def test_unknown_tokenizer_name_lists_accepted_values() -> None:
    with pytest.raises(ValueError, match="Accepted: a tiktoken encoding name"):
        TokenSplitter("not-a-tokenizer")


def test_indivisible_unit_longer_than_budget_is_split_not_dropped() -> None:
    word = "supercalifragilistic" * 50  # one "word", hundreds of tokens, no boundaries
    tokenizer = get_tokenizer("cl100k_base")
    for splitter in (TokenSplitter(tokenizer, 16, 4), SemanticSplitter(tokenizer, chunk_size=16)):
        chunks = splitter.split(word)
        assert len(chunks) > 1
        assert all(tokenizer.count(c.text) <= 16 for c in chunks)
        covered = "".join(c.text for c in SemanticSplitter(tokenizer, chunk_size=16).split(word))
        assert covered == word


def test_a_character_larger_than_the_budget_is_an_error_not_a_drop() -> None:
    family = "👨‍👩‍👧"  # the ZWJ pieces take several tokens each
    tokenizer = get_tokenizer("cl100k_base")
    assert tokenizer.count("\U0001f468") > 1
    with pytest.raises(ValueError, match="raise chunk_size"):
        TokenSplitter(tokenizer, chunk_size=1, chunk_overlap=0).split(family)


def test_semantic_max_tokens_is_the_deprecated_name_of_chunk_size() -> None:
    with pytest.warns(DeprecationWarning, match="max_tokens is now chunk_size"):
        splitter = SemanticSplitter("cl100k_base", max_tokens=100)
    assert splitter.chunk_size == 100
    with pytest.warns(DeprecationWarning, match="max_tokens is now chunk_size"):
        assert splitter.max_tokens == 100
    with pytest.raises(TypeError, match="pass chunk_size only"):
        SemanticSplitter("cl100k_base", chunk_size=100, max_tokens=100)
    assert SemanticSplitter("cl100k_base", 64).chunk_size == 64
    assert SemanticSplitter().chunk_size == 512
