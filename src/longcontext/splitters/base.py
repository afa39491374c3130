"""What both splitters share: argument checks, batching, and exact token counts of slices."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from longcontext.chunk import Chunk
from longcontext.tokenizers import TiktokenTokenizer, Tokenizer, TokenizerLike, TokenSpans


def check_text(text: Any) -> str:
    if not isinstance(text, str):
        raise TypeError(f"text must be str, got {type(text).__name__}; decode bytes first")
    return text


def check_budget(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be a positive number of tokens, got {name}={value}")
    return value


class Splitter(ABC):
    """A splitter turns a string into exact, in-order, covering chunks."""

    tokenizer: Tokenizer

    @abstractmethod
    def split(self, text: str) -> list[Chunk]:
        """Split ``text`` into chunks; ``text[c.start:c.end] == c.text`` for every chunk."""

    def split_many(self, texts: Iterable[str], num_threads: int | None = None) -> list[list[Chunk]]:
        """Split several texts. tiktoken and Hugging Face release the GIL, so threads use cores."""
        items = [check_text(t) for t in texts]
        workers = min(num_threads or os.cpu_count() or 1, len(items))
        if workers <= 1:
            return [self.split(t) for t in items]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(self.split, items))

    def __call__(self, text: str) -> list[Chunk]:
        return self.split(text)


def is_whitespace_edge(text: str, position: int) -> bool:
    """Whether a cut at ``position`` touches whitespace (or an end of the text)."""
    return (
        position <= 0
        or position >= len(text)
        or text[position].isspace()
        or text[position - 1].isspace()
    )


class SliceCounter:
    """Exact token counts of slices of one text, re-encoding only when it matters.

    With tiktoken, a slice cut where the first encoding put token boundaries (on character
    boundaries) re-encodes to the very tokens it was cut from: BPE never merges across a token
    boundary, so a token-aligned prefix or suffix of a pre-tokenizer piece re-encodes to the same
    tokens, and the pieces between restart at the cut. Such slices are counted from the first
    encoding (the property tests re-encode every chunk to hold us to this); any other slice, and
    any slice for other tokenizers, whose normalizers may not be local, is re-encoded.
    """

    def __init__(self, tokenizer: Tokenizer, text: str, spans: TokenSpans) -> None:
        self.tokenizer = tokenizer
        self.text = text
        self.spans = spans
        self.trusts_slices = isinstance(tokenizer, TiktokenTokenizer)

    def count(self, start: int, end: int, token_start: int, token_end: int) -> int:
        """Tokens in ``text[start:end]``, the first encoding's tokens [token_start, token_end)."""
        if (
            self.trusts_slices
            and self._is_token_edge(start, token_start)
            and self._is_token_edge(end, token_end)
        ):
            return token_end - token_start
        return self.tokenizer.count(self.text[start:end])

    def _is_token_edge(self, position: int, token: int) -> bool:
        """Whether ``position`` is where token ``token`` starts (or an end of the text)."""
        n = len(self.spans)
        if token >= n:
            return position == len(self.text)
        if token == 0 and position == 0:
            return True
        return self.spans.is_char_boundary(token) and int(self.spans.starts[token]) == position


def resolve(tokenizer: TokenizerLike) -> Tokenizer:
    from longcontext.tokenizers import get_tokenizer

    return get_tokenizer(tokenizer)


def make_chunks(text: str, bounds: Sequence[tuple[int, int, int]]) -> list[Chunk]:
    """Chunks from (start, end, token_count) triples: the text is always a slice of the source."""
    return [
        Chunk(text=text[start:end], start=start, end=end, token_count=count, index=index)
        for index, (start, end, count) in enumerate(bounds)
    ]
