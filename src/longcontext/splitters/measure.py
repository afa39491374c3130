"""Token sizes of many spans of one text, from a single encoding, and exact counts of chunks.

Splitters ask for the size of thousands of candidate pieces. Each size comes from two binary
searches over the token offsets of one whole-text encoding, done for all edges of a level at
once; only the final chunks are counted exactly (see :class:`SliceCounter`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from longcontext.spans import ByteTokenSpans
from longcontext.splitters.slices import SliceCounter
from longcontext.tokenizers import Tokenizer

IntArray = npt.NDArray[np.int64]


class SpanMeasure:
    """Token sizes of spans of one text: estimates from one encoding, and exact counts.

    A span's estimate is the number of tokens of the whole-text encoding that overlap it, so
    a token cut by the span's edge counts once. Tokenizers without offsets are counted
    exactly (and memoised) instead.
    """

    def __init__(self, tokenizer: Tokenizer, text: str) -> None:
        self.text = text
        self.tokenizer = tokenizer
        self._memo: dict[tuple[int, int], int] = {}
        spans = tokenizer.spans(text)
        self.spans = spans
        if spans is None:
            return
        self.counter = SliceCounter(tokenizer, text, spans)
        self._to_offsets: Callable[[IntArray], IntArray]
        if isinstance(spans, ByteTokenSpans):
            self._token_starts, self._token_ends = spans.byte_starts(), spans.byte_ends
            self._to_offsets = spans.byte_offsets
        else:
            self._token_starts, self._token_ends = spans.starts, spans.ends
            self._to_offsets = _identity

    def token_bounds(self, edges: Sequence[int]) -> tuple[list[int], list[int]]:
        """For each edge: the first token starting at or after it, and the first ending after.

        Tokens overlapping ``[edges[u], edges[v])`` are ``first[v] - after[u]`` of them.
        """
        offsets = self._to_offsets(np.asarray(edges, dtype=np.int64))
        first = np.searchsorted(self._token_starts, offsets, side="left")
        after = np.searchsorted(self._token_ends, offsets, side="right")
        return first.tolist(), after.tolist()

    def sizer(self, edges: Sequence[int]) -> Callable[[int, int], int]:
        """``size(u, v)``: the estimated tokens of ``text[edges[u]:edges[v]]``."""
        if self.spans is None:
            return lambda u, v: self.exact(edges[u], edges[v])
        first, after = self.token_bounds(edges)
        return lambda u, v: first[v] - after[u]

    def piece_sizes(self, edges: Sequence[int]) -> list[int]:
        """Estimated tokens of each piece between consecutive edges."""
        size = self.sizer(edges)
        return [size(k, k + 1) for k in range(len(edges) - 1)]

    def estimate(self, start: int, end: int) -> int:
        return self.sizer((start, end))(0, 1)

    def exact(self, start: int, end: int) -> int:
        """Tokens of ``text[start:end]`` re-encoded on its own."""
        if self.spans is None:
            key = (start, end)
            if key not in self._memo:
                self._memo[key] = self.tokenizer.count(self.text[start:end])
            return self._memo[key]
        return self.exact_many([(start, end)])[0]

    def exact_many(self, ranges: Sequence[tuple[int, int]]) -> list[int]:
        if self.spans is None:
            return [self.exact(a, b) for a, b in ranges]
        edges = np.asarray([p for span in ranges for p in span], dtype=np.int64)
        offsets = self._to_offsets(edges)
        first = np.searchsorted(self._token_starts, offsets, side="left")
        # An edge is on a token start, or at the text's end: then the counter's exact path.
        starts = np.append(self._token_starts, self._to_offsets(np.array([len(self.text)])))
        on_token = (starts[first] == offsets).tolist()
        tokens = first.tolist()
        counts = []
        for k, (a, b) in enumerate(ranges):
            if on_token[2 * k] and on_token[2 * k + 1]:
                counts.append(self.counter.count_span(tokens[2 * k], tokens[2 * k + 1]))
            else:  # a natural boundary inside a token (rare)
                counts.append(self.counter.count_chars(a, b, tokens[2 * k], tokens[2 * k + 1]))
        return counts


def _identity(positions: IntArray) -> IntArray:
    return positions
