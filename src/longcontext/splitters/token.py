"""TokenSplitter: fixed token windows with overlap, cut on character boundaries."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from longcontext.chunk import Chunk
from longcontext.spans import TokenSpans
from longcontext.splitters import boundaries
from longcontext.splitters.base import (
    SliceCounter,
    Splitter,
    check_budget,
    check_text,
    make_chunks,
    resolve,
)
from longcontext.splitters.counting import split_by_counting
from longcontext.tokenizers import TokenizerLike

Align = Literal["token", "word", "sentence"]
ALIGNS: tuple[Align, ...] = ("token", "word", "sentence")
# How far back from the window's end a word or sentence boundary may be and still be used.
_ALIGN_REACH = {"token": 0.0, "word": 0.25, "sentence": 0.5}


class TokenSplitter(Splitter):
    """Split text into windows of at most ``chunk_size`` tokens overlapping by ``chunk_overlap``.

    Every chunk is an exact slice of the input, re-tokenizes to at most ``chunk_size`` tokens,
    and never cuts a character in two. With ``align="word"`` or ``"sentence"`` a chunk ends at
    the last word or sentence boundary inside its window when one is near.

    Example:
        >>> from longcontext import TokenSplitter
        >>> chunks = TokenSplitter(chunk_size=8, chunk_overlap=2).split("one two three " * 4)
        >>> all(c.token_count <= 8 for c in chunks)
        True
    """

    def __init__(
        self,
        tokenizer: TokenizerLike = "cl100k_base",
        chunk_size: int = 512,
        chunk_overlap: int = 64,
        align: Align = "token",
    ) -> None:
        check_budget("chunk_size", chunk_size)
        if isinstance(chunk_overlap, bool) or not isinstance(chunk_overlap, int):
            raise TypeError(f"chunk_overlap must be an int, got {chunk_overlap!r}")
        if chunk_overlap < 0:
            raise ValueError(f"chunk_overlap must be >= 0, got chunk_overlap={chunk_overlap}")
        if chunk_overlap >= chunk_size:
            raise ValueError(
                f"chunk_overlap={chunk_overlap} must be smaller than chunk_size={chunk_size}; "
                "lower the overlap or raise the chunk size"
            )
        if align not in ALIGNS:
            raise ValueError(f"align={align!r} is not one of {ALIGNS}")
        self.tokenizer = resolve(tokenizer)
        self.chunk_size = chunk_size
        self.chunk_overlap = chunk_overlap
        self.align = align

    def __repr__(self) -> str:
        return (
            f"TokenSplitter(tokenizer={self.tokenizer!r}, chunk_size={self.chunk_size}, "
            f"chunk_overlap={self.chunk_overlap}, align={self.align!r})"
        )

    def split(self, text: str) -> list[Chunk]:
        text = check_text(text)
        if not text.strip():
            return []
        return make_chunks(text, self.bounds(text))

    def bounds(self, text: str) -> list[tuple[int, int, int]]:
        """(start, end, token_count) of each chunk of a non-empty ``text``, whitespace or not."""
        spans = self.tokenizer.spans(text)
        if spans is None:
            return split_by_counting(
                text, self.tokenizer.count, self.chunk_size, self.chunk_overlap
            )
        return self.windows(text, spans)

    def windows(self, text: str, spans: TokenSpans) -> list[tuple[int, int, int]]:
        """(start, end, token_count) of each window over one encoding of ``text``."""
        n = len(spans)
        counter = SliceCounter(self.tokenizer, text, spans)
        is_cut_ok = self._cut_rule(text, spans)
        windows: list[tuple[int, int, int]] = []  # in tokens; characters are found at the end
        i = 0
        while True:
            j = min(i + self.chunk_size, n)
            if j < n:
                j = _last_cut(i, j, spans, is_cut_ok, self._reach())
            count = counter.count_span(i, j)
            while count > self.chunk_size:  # the slice re-encodes longer: step back a token
                shorter = _last_cut(i, j - 1, spans, is_cut_ok, 0)
                if shorter >= j:
                    raise _indivisible(text, spans.start(i), self.chunk_size)
                j = shorter
                count = counter.count_span(i, j)
            windows.append((i, j, count))
            if j >= n:
                break
            next_i = j - self.chunk_overlap
            while next_i > i and not spans.is_char_boundary(next_i):
                next_i -= 1
            i = next_i if next_i > i else j
        starts = spans.char_starts([i for i, _, _ in windows])
        ends = [*spans.char_starts([j for _, j, _ in windows[:-1]]), len(text)]  # last j is n
        return [(starts[w], ends[w], count) for w, (_, _, count) in enumerate(windows)]

    def _reach(self) -> int:
        return int(self.chunk_size * _ALIGN_REACH[self.align])

    def _cut_rule(self, text: str, spans: TokenSpans) -> Callable[[int], bool]:
        """Whether a window may end before token k: char boundaries, plus word/sentence ends."""
        if self.align == "token":
            return spans.is_char_boundary
        if self.align == "word":

            def is_word_cut(k: int) -> bool:
                position = spans.start(k)
                return spans.is_char_boundary(k) and (
                    text[position].isspace() or (position > 0 and text[position - 1].isspace())
                )

            return is_word_cut
        sentence_ends = set(boundaries.sentence_ends(text))

        def is_sentence_cut(k: int) -> bool:
            return spans.is_char_boundary(k) and spans.start(k) in sentence_ends

        return is_sentence_cut


def _last_cut(
    i: int, j: int, spans: TokenSpans, is_cut_ok: Callable[[int], bool], reach: int
) -> int:
    """The last token index in (i, j] where a window may end.

    Prefers a preferred cut within ``reach`` tokens of ``j``, then any character boundary.
    A character that alone spans more tokens than the window cannot be cut: it is kept whole.
    """
    for k in range(j, max(i, j - reach), -1):
        if is_cut_ok(k):
            return k
    for k in range(j, i, -1):
        if spans.is_char_boundary(k):
            return k
    k = j + 1
    while k < len(spans) and not spans.is_char_boundary(k):
        k += 1
    return k


def _indivisible(text: str, start: int, chunk_size: int) -> ValueError:
    return ValueError(
        f"the character {text[start]!r} at offset {start} alone takes more than "
        f"chunk_size={chunk_size} tokens and cannot be cut; raise chunk_size"
    )
