"""Issue 11: Hugging Face tokenizers encode long texts in segments, streamed through the splitter.

The segmented encoding must be the whole-text encoding (same ids, same offsets), and the
streamed windows the ones the whole-text spans and a re-encoding of every window give, for
WordPiece with BERT's normalizer (lowercasing, accents stripped, control characters dropped,
CJK padded) and for byte-level BPE (Qwen2.5's Split pattern with NFC, and GPT-2's ByteLevel
regex). Segments are made tiny here so that random text puts cuts everywhere.
"""

from __future__ import annotations

import itertools
import json
from functools import cache
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from splitter_fixtures import byte_level_bpe, check_chunks
from test_splitter_bounds import minilm, qwen

import longcontext.tokenizers as tokenizers_module
from longcontext import SemanticSplitter, TokenSplitter
from longcontext.splitters.slices import SliceCounter, StreamedSpans
from longcontext.tokenizers import HuggingFaceTokenizer, local_cut_rule, segment_cuts

SETTINGS = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
# Where segment cuts and the cut rules could go wrong: lone and repeated spaces next to
# newlines and tabs, marks after a space, CJK (BERT pads it with spaces), dropped characters,
# NFC compositions, spaces of other kinds, apostrophes, digits, and special tokens' text.
PIECES = [
    " ",
    " ",
    "  ",
    "\n",
    "\r\n",
    "\t",
    "\u00a0",
    "\u3000",
    "\x1c",
    "\x85",
    "word",
    "Word",
    "ÉCOLE",
    "naïve",
    "e\u0301",
    "\u0301",
    "a\u0323\u0302",
    "\u1e0b\u0323",
    "İ",
    "ß",
    "ﬁ",
    "¨",
    "今日は",
    "北京",
    "😀",
    "👨‍👩‍👧",
    "123",
    "4",
    "'s",
    "'t",
    "don't",
    ".",
    ",",
    "/",
    ":",
    "#",
    "```",
    "<p>",
    "-",
    "\ufeff",
    "\x00",
    "\x01",
    "\u200b",
    "\u00ad",
    "[SEP]",
    "[MASK]",
    "<|endoftext|>",
    "<|im_start|>",
    "Ġ",
    "##",
]
TEXTS = st.one_of(
    st.lists(st.sampled_from(PIECES), min_size=1, max_size=120).map("".join),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=200),
)


def gpt2_style() -> HuggingFaceTokenizer:
    tokenizer = HuggingFaceTokenizer(byte_level_bpe())
    assert tokenizer.cut_rule == "space"
    return tokenizer


@pytest.fixture(scope="module", params=["minilm", "qwen2.5", "gpt2-style"])
def tokenizer(request: pytest.FixtureRequest) -> HuggingFaceTokenizer:
    found = {"minilm": minilm, "qwen2.5": qwen, "gpt2-style": gpt2_style}[request.param]()
    assert isinstance(found, HuggingFaceTokenizer)
    return found


@pytest.fixture(autouse=True)
def tiny_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokenizers_module, "SEGMENT_CHARS", 8)
    monkeypatch.setattr(tokenizers_module, "SEGMENTS_PER_BATCH", 3)


@cache
def whole_text(tokenizer: HuggingFaceTokenizer) -> HuggingFaceTokenizer:
    """The same tokenizer with no cut rule: one encoding of the whole text, every window
    re-encoded to be counted (the path every HF tokenizer took before segments)."""
    reference = HuggingFaceTokenizer(tokenizer.backend, name=tokenizer.name)
    reference.cut_rule = None
    return reference


def old_spans(tokenizer: HuggingFaceTokenizer, text: str) -> tuple[list[int], Any, Any]:
    """The spans as computed before segments: one encode of the whole text."""
    encoding = tokenizer.backend.encode(text, add_special_tokens=False)
    offsets = np.asarray(encoding.offsets, dtype=np.int64).reshape(-1, 2)
    starts = np.maximum.accumulate(offsets[:, 0]) if len(offsets) else offsets[:, 0]
    ends = np.maximum.accumulate(offsets[:, 1]) if len(offsets) else offsets[:, 1]
    if len(starts):
        starts[0] = 0
    return encoding.ids, starts, ends


@given(text=TEXTS, size=st.integers(1, 40))
@SETTINGS
def test_segmented_spans_are_the_whole_text_encoding(
    tokenizer: HuggingFaceTokenizer, text: str, size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tokenizers_module, "SEGMENT_CHARS", size)
    spans = tokenizer.spans(text)
    ids, starts, ends = old_spans(tokenizer, text)
    assert list(spans.ids) == ids
    assert spans.starts.tolist() == starts.tolist()
    assert spans.ends.tolist() == ends.tolist()


@given(text=TEXTS, size=st.integers(1, 60))
@SETTINGS
def test_every_segment_cut_is_a_cut_of_the_rule(
    tokenizer: HuggingFaceTokenizer, text: str, size: int
) -> None:
    assert tokenizer.cut_rule is not None
    cuts = segment_cuts(text, tokenizer.cut_rule, size)
    assert cuts[0] == 0 and cuts[-1] == len(text)
    assert all(a < b for a, b in itertools.pairwise(cuts))
    assert all(tokenizer.is_cut(text, p) for p in cuts[1:-1])
    for a, b in itertools.pairwise(cuts):  # a segment longer than asked has no cut in reach
        if b - a > size:
            assert not any(tokenizer.is_cut(text, p) for p in range(a + 1, a + size + 1))


@given(text=TEXTS, size=st.integers(1, 40))
@SETTINGS
def test_streamed_spans_read_token_by_token_are_the_whole_text_spans(
    tokenizer: HuggingFaceTokenizer, text: str, size: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plain segments keep their encoding and are asked token by token; others are arrays."""
    monkeypatch.setattr(tokenizers_module, "SEGMENT_CHARS", size)
    _, starts, ends = old_spans(tokenizer, text)
    streamed = StreamedSpans(tokenizer.span_parts(text), len(text))
    streamed.extend_to(len(starts) + 1)
    assert streamed.done and len(streamed) == len(starts)
    assert [streamed.start(k) for k in range(len(starts) + 1)] == [*starts.tolist(), len(text)]
    boundary = [
        k <= 0 or k >= len(starts) or ends[k - 1] <= starts[k] for k in range(len(starts) + 1)
    ]
    assert [streamed.is_char_boundary(k) for k in range(len(starts) + 1)] == boundary


@given(
    text=TEXTS,
    size=st.integers(2, 24),
    overlap_ratio=st.floats(0, 0.6),
    align=st.sampled_from(["token", "word", "sentence"]),
)
@SETTINGS
def test_streamed_windows_are_the_whole_text_windows(
    tokenizer: HuggingFaceTokenizer, text: str, size: int, overlap_ratio: float, align: str
) -> None:
    overlap = min(int(size * overlap_ratio), size - 1)
    streamed = TokenSplitter(tokenizer, size, overlap, align=align)  # type: ignore[arg-type]
    reference = TokenSplitter(whole_text(tokenizer), size, overlap, align=align)  # type: ignore[arg-type]
    try:
        expected = reference.split(text)
    except ValueError:  # one character alone over the budget: both must say so
        with pytest.raises(ValueError, match="cannot be cut"):
            streamed.split(text)
        return
    chunks = streamed.split(text)
    assert [(c.start, c.end, c.token_count) for c in chunks] == [
        (c.start, c.end, c.token_count) for c in expected
    ]
    check_chunks(text, chunks, tokenizer, size)


@given(text=TEXTS, data=st.data())
@SETTINGS
def test_counts_between_token_starts_are_exact(
    tokenizer: HuggingFaceTokenizer, text: str, data: st.DataObject
) -> None:
    spans = tokenizer.spans(text)
    counter = SliceCounter(tokenizer, text, spans)
    n = len(spans)
    for _ in range(8):
        i = data.draw(st.integers(0, n))
        j = data.draw(st.integers(i, n))
        if not (spans.is_char_boundary(i) and spans.is_char_boundary(j)):
            continue
        start = 0 if i == 0 else spans.start(i)
        assert counter.count_span(i, j) == tokenizer.count(text[start : spans.start(j)])


@given(text=TEXTS, size=st.integers(4, 40))
@SETTINGS
def test_semantic_splitter_sees_the_same_spans(
    tokenizer: HuggingFaceTokenizer, text: str, size: int
) -> None:
    try:
        expected = SemanticSplitter(whole_text(tokenizer), size).split(text)
    except ValueError:
        return
    chunks = SemanticSplitter(tokenizer, size).split(text)
    assert [(c.start, c.end, c.token_count) for c in chunks] == [
        (c.start, c.end, c.token_count) for c in expected
    ]


class _Watched(StreamedSpans):
    """Streamed spans that remember the most tokens they ever held at once."""

    most = 0

    def extend_to(self, k: int) -> None:
        super().extend_to(k)
        self.most = max(self.most, len(self) - self.base)


def test_a_long_text_is_held_a_few_segments_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokenizers_module, "SEGMENT_CHARS", 2_000)
    monkeypatch.setattr(tokenizers_module, "SEGMENTS_PER_BATCH", 2)
    tokenizer = minilm()
    assert isinstance(tokenizer, HuggingFaceTokenizer)
    text = "".join(
        f"Paragraph {k}: the quick brown fox jumps over the lazy dog.\n" for k in range(4000)
    )
    splitter = TokenSplitter(tokenizer, 64, 16)
    spans = _Watched(tokenizer.span_parts(text), len(text))
    bounds = splitter.windows(text, spans)
    total = len(tokenizer.encode(text))
    assert spans.done and len(spans) == total
    assert spans.most < total / 20  # a few blocks of 2 x 2,000 characters, not the whole text
    assert bounds == TokenSplitter(whole_text(tokenizer), 64, 16).bounds(text)


def _config(**parts: Any) -> dict[str, Any]:
    return {"added_tokens": [], "model": {"type": "BPE"}, **parts}


def test_cut_rules_come_from_the_components() -> None:
    minilm_rule = minilm()
    assert isinstance(minilm_rule, HuggingFaceTokenizer) and minilm_rule.cut_rule == "word"
    qwen_rule = qwen()
    assert isinstance(qwen_rule, HuggingFaceTokenizer) and qwen_rule.cut_rule == "space"
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}
    assert local_cut_rule(_config(pre_tokenizer=byte_level)) == "space"
    # No pre-tokenizer (the whole text is one piece), Metaspace, a prefix space, NFKC before a
    # byte-level cut, a Replace normalizer, BPE dropout, an added token with a space: unknown.
    unknown = [
        _config(),
        _config(pre_tokenizer={"type": "Metaspace", "replacement": "▁"}),
        _config(pre_tokenizer={**byte_level, "add_prefix_space": True}),
        _config(pre_tokenizer=byte_level, normalizer={"type": "NFKC"}),
        _config(
            pre_tokenizer={"type": "WhitespaceSplit"},
            normalizer={"type": "Replace", "pattern": {"String": " "}, "content": "▁"},
        ),
        {**_config(pre_tokenizer=byte_level), "model": {"type": "BPE", "dropout": 0.1}},
        {**_config(pre_tokenizer=byte_level), "added_tokens": [{"content": "a b"}]},
        {**_config(pre_tokenizer=byte_level), "added_tokens": [{"content": "<m>", "lstrip": True}]},
    ]
    assert [local_cut_rule(config) for config in unknown] == [None] * len(unknown)


def test_an_added_token_that_strips_spaces_takes_the_rule_away() -> None:
    """RoBERTa's "<mask>" eats the spaces around it: a segment cut at the space after it would
    encode " bar" where the whole text encodes "bar"."""
    from tokenizers import AddedToken, Tokenizer

    backend = Tokenizer.from_str(byte_level_bpe().to_str())  # a copy: the fixture is shared
    backend.add_special_tokens([AddedToken("<mask>", rstrip=True)])
    tokenizer = HuggingFaceTokenizer(backend)
    assert tokenizer.cut_rule is None
    text = "see <mask> bar and <mask> baz " * 20
    whole = tokenizer.backend.encode(text, add_special_tokens=False)
    assert tokenizer.spans(text).ids.tolist() == whole.ids  # type: ignore[union-attr]
    expected = TokenSplitter(whole_text(tokenizer), 6, 2).bounds(text)
    assert TokenSplitter(tokenizer, 6, 2).bounds(text) == expected


def test_a_tokenizer_without_a_rule_still_splits_exactly() -> None:
    from tokenizers import Tokenizer, models, normalizers

    backend = Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    backend.normalizer = normalizers.Replace(" ", "a")
    tokenizer = HuggingFaceTokenizer(backend)
    assert tokenizer.cut_rule is None
    assert json.loads(backend.to_str())["pre_tokenizer"] is None
    text = "a b " * 30
    check_chunks(text, TokenSplitter(tokenizer, 4, 1).split(text), tokenizer, 4)
