"""langchain_longcontext.TokenSplitter side by side with LangChain's real TokenTextSplitter.

Every constructor argument and classmethod of TokenTextSplitter must work on ours with the same
meaning; offsets must be exact where LangChain's are searched for. Real tiktoken encodings
(cl100k_base, o200k_base, offline) and a real Hugging Face tokenizer (Qwen2.5).
"""

from __future__ import annotations

import inspect
import itertools
from functools import cache
from typing import Any

import pytest
import tiktoken
from conftest import SHARED
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from langchain_core.documents import Document
from langchain_longcontext import SemanticSplitter, TokenSplitter
from langchain_text_splitters import TextSplitter, TokenTextSplitter
from retrieval_fixtures import corpus_excerpt, minilm_path

from longcontext import get_tokenizer

TEXT = corpus_excerpt(chars=8000)  # ASCII English: TokenTextSplitter's decoded windows are exact
REPEATS = "The motion carries. " * 150  # where searching for a chunk's text finds a wrong repeat
QWEN = SHARED / "data" / "tokenizers" / "qwen2.5" / "tokenizer.json"


@cache
def qwen() -> Any:
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_file=str(QWEN))


def token_window_starts(ids: list[int], decode: Any, size: int, overlap: int) -> list[int]:
    """Character offsets of the token windows TokenTextSplitter cuts (ASCII text: exact)."""
    starts, i = [], 0
    while True:
        starts.append(len(decode(ids[:i])))
        if i + size >= len(ids):
            return starts
        i += size - overlap


def assert_exact(text: str, docs: list[Document]) -> None:
    for doc in docs:
        start, end = doc.metadata["start_index"], doc.metadata["end_index"]
        assert text[start:end] == doc.page_content


# ---------------------------------------------------------------------------------- signature
def test_every_argument_of_token_text_splitter_is_accepted() -> None:
    names = {
        *inspect.signature(TokenTextSplitter.__init__).parameters,
        *inspect.signature(TextSplitter.__init__).parameters,
    } - {"self", "kwargs"}
    arguments: dict[str, Any] = {
        "encoding_name": "cl100k_base",
        "model_name": "gpt-4",
        "allowed_special": {"<|endoftext|>"},
        "disallowed_special": (),
        "chunk_size": 64,
        "chunk_overlap": 8,
        "keep_separator": True,
        "add_start_index": True,
        "strip_whitespace": True,
        "length_function": len,
    }
    assert names == set(arguments)  # a new LangChain argument fails here until ours takes it

    theirs = TokenTextSplitter(**arguments)
    with pytest.warns(UserWarning, match="ignores length_function"):
        ours = TokenSplitter(**arguments)
    text = "Before <|endoftext|> after. " + TEXT[:2000]
    assert theirs.split_text(text)  # both accept the special token's text, as allowed
    assert ours.split_text(text)


def test_every_public_classmethod_of_token_text_splitter_exists_with_its_parameters() -> None:
    for name, member in inspect.getmembers(TokenTextSplitter, inspect.ismethod):
        if name.startswith("_"):
            continue
        theirs = inspect.signature(member).parameters
        ours = inspect.signature(getattr(TokenSplitter, name)).parameters
        assert set(theirs) <= set(ours), name


# ------------------------------------------------------------------------- tiktoken, by name
@pytest.mark.parametrize(("size", "overlap"), [(64, 16), (128, 0), (200, 50), (17, 16)])
def test_same_chunks_as_token_text_splitter_and_exact_start_index(size: int, overlap: int) -> None:
    kwargs = {"chunk_size": size, "chunk_overlap": overlap, "add_start_index": True}
    for text in (TEXT, REPEATS):
        theirs = TokenTextSplitter(encoding_name="cl100k_base", **kwargs).create_documents([text])
        ours = TokenSplitter(encoding_name="cl100k_base", **kwargs).create_documents([text])
        assert [d.page_content for d in ours] == [d.page_content for d in theirs]

        encoding = tiktoken.get_encoding("cl100k_base")
        true_starts = token_window_starts(encoding.encode(text), encoding.decode, size, overlap)
        assert [d.metadata["start_index"] for d in ours] == true_starts
        assert_exact(text, ours)
    # LangChain searches for each chunk's text: with overlap, in repeating text, it finds the
    # wrong repeat.
    their_starts = [d.metadata["start_index"] for d in theirs]
    assert (their_starts != true_starts) == (overlap > 0)


@pytest.mark.parametrize(
    ("model", "encoding"), [("gpt-4", "cl100k_base"), ("gpt-4o", "o200k_base")]
)
def test_from_tiktoken_encoder_and_model_name_pick_the_models_encoding(
    model: str, encoding: str
) -> None:
    kwargs = {"chunk_size": 50, "chunk_overlap": 10}
    theirs = TokenTextSplitter.from_tiktoken_encoder(model_name=model, **kwargs)
    for ours in (
        TokenSplitter.from_tiktoken_encoder(model_name=model, **kwargs),
        TokenSplitter.from_tiktoken_encoder(encoding_name=encoding, **kwargs),
        TokenSplitter(model_name=model, **kwargs),
        TokenSplitter(encoding_name="gpt2", model_name=model, **kwargs),  # model_name wins
    ):
        assert isinstance(ours, TokenSplitter)
        assert ours.core.tokenizer.name == encoding
        assert ours.split_text(TEXT) == theirs.split_text(TEXT)
    docs = TokenSplitter(model_name=model, **kwargs).create_documents([TEXT])
    count = get_tokenizer(encoding).count
    assert all(d.metadata["token_count"] == count(d.page_content) <= 50 for d in docs)
    assert_exact(TEXT, docs)


def test_unknown_model_name_raises_as_tiktoken_does() -> None:
    with pytest.raises(KeyError, match="Could not automatically map"):
        TokenTextSplitter(model_name="no-such-model")
    with pytest.raises(KeyError, match="Could not automatically map"):
        TokenSplitter(model_name="no-such-model")


def test_a_tokenizer_and_an_encoding_name_together_are_an_error() -> None:
    with pytest.raises(ValueError, match="give the tokenizer once"):
        TokenSplitter("o200k_base", encoding_name="cl100k_base")


# ----------------------------------------------------------------------- Hugging Face tokenizer
def test_from_huggingface_tokenizer_cuts_that_tokenizers_token_windows() -> None:
    tok = qwen()
    splitter = TokenSplitter.from_huggingface_tokenizer(tok, chunk_size=64, chunk_overlap=16)
    assert isinstance(splitter, TokenSplitter)
    docs = splitter.create_documents([TEXT])

    encoded = tok(TEXT, add_special_tokens=False, return_offsets_mapping=True)
    offsets = encoded["offset_mapping"]
    starts, i = [], 0
    while True:
        starts.append(offsets[i][0])
        if i + 64 >= len(offsets):
            break
        i += 64 - 16
    assert [d.metadata["start_index"] for d in docs] == starts
    assert_exact(TEXT, docs)
    for doc in docs:
        ids = tok.encode(doc.page_content, add_special_tokens=False)
        assert doc.metadata["token_count"] == len(ids) <= 64
    # LangChain's TokenTextSplitter built this way only measures with Qwen and cuts gpt2 tokens.


def test_from_huggingface_tokenizer_passes_other_arguments_through() -> None:
    splitter = TokenSplitter.from_huggingface_tokenizer(
        qwen(), chunk_size=32, chunk_overlap=4, add_start_index=False, strip_whitespace=True
    )
    docs = splitter.create_documents([TEXT[:3000]], [{"source": "sotu"}])
    assert all(set(d.metadata) == {"source", "token_count", "chunk_index"} for d in docs)
    assert all(d.page_content == d.page_content.strip() for d in docs)


# ------------------------------------------------------------------------------ add_start_index
def test_add_start_index_false_adds_no_offsets_as_in_langchain() -> None:
    kwargs = {"encoding_name": "cl100k_base", "chunk_size": 64, "chunk_overlap": 8}
    meta = [{"source": "sotu"}]
    theirs = TokenTextSplitter(add_start_index=False, **kwargs).create_documents([TEXT], meta)
    ours = TokenSplitter(add_start_index=False, **kwargs).create_documents([TEXT], meta)
    assert all(d.metadata == {"source": "sotu"} for d in theirs)
    assert all(set(d.metadata) == {"source", "token_count", "chunk_index"} for d in ours)


def test_re_splitting_replaces_the_parents_offsets() -> None:
    parents = TokenSplitter(chunk_size=128, chunk_overlap=0).create_documents([TEXT])
    for add in (True, False):
        children = TokenSplitter(
            chunk_size=32, chunk_overlap=4, add_start_index=add
        ).split_documents(parents[1:2])
        for child in children:
            if add:  # offsets into the document that was split, as LangChain defines them
                span = slice(child.metadata["start_index"], child.metadata["end_index"])
                assert parents[1].page_content[span] == child.page_content
            else:  # never the parent's offsets, which would point elsewhere
                assert "start_index" not in child.metadata and "end_index" not in child.metadata


# ----------------------------------------------------------------------------- strip_whitespace
SPACED = "\n\n".join(f"  Paragraph {i}.\tIt has words.   \n" for i in range(60))


def test_token_text_splitter_never_strips_and_ours_strips_with_exact_offsets() -> None:
    kwargs = {"encoding_name": "cl100k_base", "chunk_size": 12, "chunk_overlap": 3}
    theirs = TokenTextSplitter(strip_whitespace=True, **kwargs).split_text(SPACED)
    assert any(t != t.strip() for t in theirs)  # accepted, but it has no effect there

    assert TokenSplitter(**kwargs).split_text(SPACED) == theirs  # our default: not stripping
    docs = TokenSplitter(strip_whitespace=True, **kwargs).create_documents([SPACED])
    assert all(d.page_content == d.page_content.strip() != "" for d in docs)
    assert_exact(SPACED, docs)
    count = get_tokenizer("cl100k_base").count
    assert all(d.metadata["token_count"] == count(d.page_content) <= 12 for d in docs)
    assert [d.metadata["chunk_index"] for d in docs] == list(range(len(docs)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pieces=st.lists(
        st.sampled_from(
            ["word", " ", "  ", "\n", "\n\n", "\t", "Ünï", "北京", "😀", ". ", "\u3000"]
        ),
        max_size=80,
    ),
    size=st.integers(2, 12),
    tokenizer=st.sampled_from(["cl100k_base", "o200k_base", "qwen"]),
)
# Stripped, " 😀word" (2 cl100k tokens) is "😀word" (3): it must be split again.
@example(pieces=[" ", "😀", "word"], size=2, tokenizer="cl100k_base")
def test_stripped_chunks_are_exact_slices_within_the_budget(
    pieces: list[str], size: int, tokenizer: str
) -> None:
    text = "".join(pieces)
    tok: Any = qwen() if tokenizer == "qwen" else tokenizer
    splitter = TokenSplitter(tok, chunk_size=size, chunk_overlap=size // 3, strip_whitespace=True)
    docs = splitter.create_documents([text])
    count = get_tokenizer(tok).count
    for i, doc in enumerate(docs):
        assert doc.page_content and doc.page_content == doc.page_content.strip()
        assert text[doc.metadata["start_index"] : doc.metadata["end_index"]] == doc.page_content
        assert doc.metadata["token_count"] == count(doc.page_content) <= size
        assert doc.metadata["chunk_index"] == i
    # Nothing but whitespace is lost: every non-space character is in some chunk.
    covered = set(
        itertools.chain.from_iterable(
            range(d.metadata["start_index"], d.metadata["end_index"]) for d in docs
        )
    )
    assert all(i in covered for i, c in enumerate(text) if not c.isspace())


# ------------------------------------------------------------------------------ special tokens
SPECIAL = "Before <|endoftext|> after. " * 20


def test_disallowed_special_tokens_raise_as_in_token_text_splitter() -> None:
    with pytest.raises(ValueError, match="disallowed special token"):
        TokenTextSplitter(encoding_name="cl100k_base").split_text(SPECIAL)
    with pytest.raises(ValueError, match=r"special token '<\|endoftext\|>'.*allowed_special="):
        TokenSplitter(encoding_name="cl100k_base").split_text(SPECIAL)
    with pytest.raises(ValueError, match="special token"):
        TokenSplitter(disallowed_special={"<|endoftext|>"}).create_documents([SPECIAL])


def test_special_tokens_split_as_text_when_not_disallowed() -> None:
    kwargs = {"encoding_name": "cl100k_base", "chunk_size": 16, "chunk_overlap": 4}
    theirs = TokenTextSplitter(disallowed_special=(), **kwargs).split_text(SPECIAL)
    assert TokenSplitter(disallowed_special=(), **kwargs).split_text(SPECIAL) == theirs
    # Allowed: TokenTextSplitter counts the token as one; ours counts its text, never more.
    docs = TokenSplitter(allowed_special="all", **kwargs).create_documents([SPECIAL])
    assert_exact(SPECIAL, docs)
    assert all(d.metadata["token_count"] <= 16 for d in docs)


def test_hugging_face_tokenizers_have_no_tiktoken_special_check() -> None:
    assert TokenSplitter(qwen(), chunk_size=16, chunk_overlap=0).split_text(SPECIAL)


# -------------------------------------------------------------------------- semantic splitter
def test_semantic_splitter_takes_chunk_size_and_the_old_max_tokens_with_a_warning() -> None:
    new = SemanticSplitter(chunk_size=60).create_documents([TEXT])
    with pytest.warns(DeprecationWarning, match="max_tokens=.*chunk_size="):
        old = SemanticSplitter(max_tokens=60).create_documents([TEXT])
    assert old == new
    assert all(d.metadata["token_count"] <= 60 for d in new)
    with pytest.raises(ValueError, match="give chunk_size only"):
        SemanticSplitter(chunk_size=60, max_tokens=60)


def test_semantic_splitter_shares_the_tokenizer_arguments() -> None:
    splitter = SemanticSplitter.from_tiktoken_encoder(model_name="gpt-4o", chunk_size=80)
    assert splitter.core.tokenizer.name == "o200k_base"
    docs = splitter.create_documents([TEXT])
    assert_exact(TEXT, docs)
    hf = SemanticSplitter.from_huggingface_tokenizer(qwen(), chunk_size=80, strip_whitespace=True)
    docs = hf.create_documents([TEXT])
    assert all(len(qwen().encode(d.page_content, add_special_tokens=False)) <= 80 for d in docs)
    assert_exact(TEXT, docs)


# --------------------------------------------------------------------------- character bound
def test_chunks_are_bounded_in_characters_too() -> None:
    run = "Before the run. " + "a" * 200_000 + " after it."  # WordPiece: one [UNK] token
    for splitter in (
        TokenSplitter(minilm_path(), chunk_size=64, chunk_overlap=8),
        SemanticSplitter(minilm_path(), chunk_size=64),
    ):
        docs = splitter.create_documents([run])
        assert max(len(d.page_content) for d in docs) <= 64 * 32  # the default bound
        assert_exact(run, docs)
    for splitter in (
        TokenSplitter(chunk_size=64, chunk_overlap=8, max_chars=100),
        SemanticSplitter(chunk_size=64, max_chars=100),
    ):
        docs = splitter.create_documents([TEXT])
        assert max(len(d.page_content) for d in docs) <= 100
        assert_exact(TEXT, docs)
