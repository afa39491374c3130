"""TokenSplitter: fixed token windows with overlap, cut on character boundaries."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from longcontext.chunk import Chunk
from longcontext.spans import ByteTokenSpans, TokenSpans
from longcontext.splitters import boundaries
from longcontext.splitters.base import (
    Splitter,
    check_budget,
    check_max_chars,
    check_text,
    make_chunks,
    resolve,
)
from longcontext.splitters.counting import split_by_counting
from longcontext.splitters.slices import SliceCounter, StreamedSpans
from longcontext.tokenizers import HuggingFaceTokenizer, TokenizerLike

Align = Literal["token", "word", "sentence"]
ALIGNS: tuple[Align, ...] = ("token", "word", "sentence")
# How far back from the window's end a word or sentence boundary may be and still be used.
_ALIGN_REACH = {"token": 0.0, "word": 0.25, "sentence": 0.5}
# Tokens read past a window's furthest end before it is cut: a scan past its end for a character
# boundary crosses at most the tokens of one character.
_LOOKAHEAD = 64


class TokenSplitter(Splitter):
    """Split text into windows of at most ``chunk_size`` tokens overlapping by ``chunk_overlap``.

    Every chunk is an exact slice of the input, re-tokenizes to at most ``chunk_size`` tokens,
    is at most ``max_chars`` characters long, and never cuts a character in two. The chunks
    cover the text from its first character to its last: characters a tokenizer drops (a
    byte-order mark, control characters, combining marks) belong to a neighbouring chunk.

    With ``align="word"`` or ``"sentence"`` a chunk ends at the last word or sentence boundary
    inside its window when one is near, and the next chunk starts at the first such boundary
    inside the overlap (so the overlap may be shorter than ``chunk_overlap``, down to none).

    ``max_chars`` defaults to ``chunk_size * 32``: it binds only where a tokenizer maps a long
    run to few tokens (WordPiece's one ``[UNK]`` for any word over 100 characters); such a run
    is then cut inside its token, and the pieces are counted by re-encoding them.

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
        max_chars: int | None = None,
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
        self.max_chars = check_max_chars(max_chars, chunk_size)

    def __repr__(self) -> str:
        return (
            f"TokenSplitter(tokenizer={self.tokenizer!r}, chunk_size={self.chunk_size}, "
            f"chunk_overlap={self.chunk_overlap}, align={self.align!r}, max_chars={self.max_chars})"
        )

    def split(self, text: str) -> list[Chunk]:
        text = check_text(text)
        if not text.strip():
            return []
        return make_chunks(text, self.bounds(text))

    def bounds(self, text: str) -> list[tuple[int, int, int]]:
        """(start, end, token_count) of each chunk of a non-empty ``text``, whitespace or not."""
        spans: TokenSpans | None
        if isinstance(self.tokenizer, HuggingFaceTokenizer):
            # Streamed: the text is encoded a block of segments at a time, as windows need it.
            streamed = StreamedSpans(self.tokenizer.span_parts(text), len(text))
            streamed.extend_to(self.chunk_size + _LOOKAHEAD)
            spans = streamed
        else:
            spans = self.tokenizer.spans(text)
        if spans is None or len(spans) == 0:  # no offsets, or every character dropped
            return split_by_counting(
                text, self.tokenizer.count, self.chunk_size, self.chunk_overlap, self.max_chars
            )
        return self.windows(text, spans)

    def windows(self, text: str, spans: TokenSpans) -> list[tuple[int, int, int]]:
        """(start, end, token_count) of each window over one encoding of ``text``.

        With :class:`StreamedSpans`, tokens are read up to a window's furthest end (plus a
        margin) and forgotten once every later window starts past them.
        """
        n = len(spans)
        stream = spans if isinstance(spans, StreamedSpans) else None
        counter = SliceCounter(self.tokenizer, text, spans)
        is_cut_ok = self._cut_rule(text, spans)
        bounds: list[tuple[int, int, int]] = []
        # Windows in tokens (or pieces already in characters), turned into characters in one
        # batch: at the end, or before streamed tokens are forgotten.
        pending: list[tuple[int, int, int] | list[tuple[int, int, int]]] = []
        last_end = -1  # the last window's end, in tokens
        i = 0
        while True:
            if stream is not None:
                bounds.extend(self._in_characters(text, spans, pending))
                stream.extend_to(i + self.chunk_size + _LOOKAHEAD)
                stream.release(i - 1)  # token i - 1 tells whether a cut before token i is whole
                n = len(stream)
            bound = self._char_bound(text, spans, i, min(i + self.chunk_size, n))
            j = _last_cut(i, bound, spans, is_cut_ok, self._reach()) if i < bound < n else bound
            if j == i or (j > bound and not self._fits_chars(text, spans, i, j)):
                # No cut between tokens within max_chars (token i alone is longer, or it ends
                # inside a character the next token finishes): cut in characters instead.
                j = max(j, i + 1)
                while j < n and not spans.is_char_boundary(j):
                    j += 1
                pending.append(self._cut_in_chars(text, spans, i, j))
                last_end = j
                if j >= n:
                    break
                i = j  # no overlap: a token cannot be shared in part
                continue
            count = counter.count_span(i, j)
            while count > self.chunk_size:  # the slice re-encodes longer: step back a token
                shorter = _last_cut(i, j - 1, spans, is_cut_ok, 0)
                if shorter >= j:
                    raise _indivisible(text, spans.start(i), self.chunk_size)
                j = shorter
                count = counter.count_span(i, j)
            if j <= last_end:
                i = last_end  # nothing past the last window: go on from its end
                continue
            pending.append((i, j, count))
            last_end = j
            if j >= n:
                break
            i = self._next_start(spans, is_cut_ok, i, j)
        bounds.extend(self._in_characters(text, spans, pending))
        return bounds

    @staticmethod
    def _in_characters(
        text: str,
        spans: TokenSpans,
        pending: list[tuple[int, int, int] | list[tuple[int, int, int]]],
    ) -> list[tuple[int, int, int]]:
        """(start, end, count) in characters of windows in tokens, emptying ``pending``.

        The first window also takes the characters before the first token (dropped by the
        tokenizer); the last one runs to the text's end.
        """
        windows = [w for w in pending if isinstance(w, tuple)]
        starts = iter(spans.char_starts([i for i, _, _ in windows]))
        ends = iter(spans.char_starts([j for _, j, _ in windows if j < len(spans)]))
        bounds: list[tuple[int, int, int]] = []
        for window in pending:
            if isinstance(window, list):  # pieces cut in characters
                bounds.extend(window)
                continue
            i, j, count = window
            start = next(starts)
            bounds.append(
                (0 if i == 0 else start, len(text) if j >= len(spans) else next(ends), count)
            )
        pending.clear()
        return bounds

    def _next_start(
        self, spans: TokenSpans, is_cut_ok: Callable[[int], bool], i: int, j: int
    ) -> int:
        """Where the window after ``[i, j)`` starts: ``chunk_overlap`` tokens back from ``j``.

        Aligned to words or sentences, it starts at the first such boundary inside the
        overlap (at ``j`` when there is none), as long as the window ended at one.
        """
        next_i = j - self.chunk_overlap
        while next_i > i and not spans.is_char_boundary(next_i):
            next_i -= 1
        if self.align != "token" and self.chunk_overlap and is_cut_ok(j):
            next_i = next((k for k in range(max(next_i, i + 1), j) if is_cut_ok(k)), j)
        return next_i if next_i > i else j

    @staticmethod
    def _position(text: str, spans: TokenSpans, k: int) -> int:
        """Where a window from or to token ``k`` starts or ends, in characters (the text's
        length at its end: ``spans.start`` of the token count)."""
        return 0 if k == 0 else spans.start(k)

    def _length(self, text: str, spans: TokenSpans, i: int, j: int) -> int:
        return self._position(text, spans, j) - self._position(text, spans, i)

    def _fits_chars(self, text: str, spans: TokenSpans, i: int, j: int) -> bool:
        """Whether the window from token ``i`` to token ``j`` has at most ``max_chars``
        characters; byte-level spans first try the byte length, an upper bound, for free."""
        if isinstance(spans, ByteTokenSpans):
            ends = spans.byte_ends
            end = int(ends[j - 1]) if j > 0 else 0
            if end - (int(ends[i - 1]) if i > 0 else 0) <= self.max_chars:
                return True
        return self._length(text, spans, i, j) <= self.max_chars

    def _char_bound(self, text: str, spans: TokenSpans, i: int, j: int) -> int:
        """The last token index in ``[i, j]`` whose start is at most ``max_chars`` characters
        past token ``i``'s (``i`` itself when token ``i`` alone is longer)."""
        if self._fits_chars(text, spans, i, j):
            return j
        low, high = i, j  # the window to low fits, the one to high does not
        while high - low > 1:
            middle = (low + high) // 2
            fits = self._length(text, spans, i, middle) <= self.max_chars
            low, high = (middle, high) if fits else (low, middle)
        return low

    def _cut_in_chars(
        self, text: str, spans: TokenSpans, i: int, j: int
    ) -> list[tuple[int, int, int]]:
        """Windows of ``max_chars`` over tokens ``[i, j)``, counted by re-encoding each."""
        start = 0 if i == 0 else spans.start(i)
        end = len(text) if j >= len(spans) else spans.start(j)
        pieces = split_by_counting(
            text[start:end], self.tokenizer.count, self.chunk_size, 0, self.max_chars, True
        )
        return [(start + a, start + b, count) for a, b, count in pieces]

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
