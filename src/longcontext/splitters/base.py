"""The splitter contract: what every splitter is, takes and returns.

Exact token counts of slices live in :mod:`longcontext.splitters.slices`.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from longcontext.chunk import Chunk
from longcontext.tokenizers import Tokenizer, TokenizerLike

T = TypeVar("T")
R = TypeVar("R")

# The default character bound of a chunk is this many characters per token of its budget:
# far above any natural text (about 4 characters a token in English, fewer in CJK), so it
# binds only where a tokenizer maps a long run to few tokens (WordPiece's [UNK] for any word
# over 100 characters, long runs of one symbol).
CHARS_PER_TOKEN_BOUND = 32


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


def check_max_chars(max_chars: Any, chunk_size: int) -> int:
    """The character bound of chunks: ``max_chars``, or ``chunk_size * CHARS_PER_TOKEN_BOUND``."""
    if max_chars is None:
        return chunk_size * CHARS_PER_TOKEN_BOUND
    if isinstance(max_chars, bool) or not isinstance(max_chars, int):
        raise TypeError(f"max_chars must be an int or None, got {max_chars!r}")
    if max_chars <= 0:
        raise ValueError(
            f"max_chars must be a positive number of characters, got max_chars={max_chars}; "
            "leave it None for the default of chunk_size * 32"
        )
    return max_chars


class Splitter(ABC):
    """A splitter turns a string into exact, in-order, covering chunks."""

    tokenizer: Tokenizer

    @abstractmethod
    def split(self, text: str) -> list[Chunk]:
        """Split ``text`` into chunks; ``text[c.start:c.end] == c.text`` for every chunk."""

    def split_many(self, texts: Iterable[str], num_threads: int | None = None) -> list[list[Chunk]]:
        """Split several texts. tiktoken and Hugging Face release the GIL, so threads use cores."""
        return self.map_threads(self.split, [check_text(t) for t in texts], num_threads)

    @staticmethod
    def map_threads(
        function: Callable[[T], R], items: Sequence[T], num_threads: int | None = None
    ) -> list[R]:
        """``function`` over ``items`` in up to ``num_threads`` threads (all cores by default)."""
        workers = min(num_threads or os.cpu_count() or 1, len(items))
        if workers <= 1:
            return [function(t) for t in items]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(function, items))

    def __call__(self, text: str) -> list[Chunk]:
        return self.split(text)


def resolve(tokenizer: TokenizerLike) -> Tokenizer:
    from longcontext.tokenizers import get_tokenizer

    return get_tokenizer(tokenizer)


def make_chunks(text: str, bounds: Sequence[tuple[int, int, int]]) -> list[Chunk]:
    """Chunks from (start, end, token_count) triples: the text is always a slice of the source."""
    return [
        Chunk(text=text[start:end], start=start, end=end, token_count=count, index=index)
        for index, (start, end, count) in enumerate(bounds)
    ]
