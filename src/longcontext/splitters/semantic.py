"""SemanticSplitter: chunks that end at natural boundaries, or where the meaning shifts.

Structural mode splits at Markdown headers, paragraphs, lines, sentences and words, coarse
first, and packs the pieces up to ``max_tokens``. With ``embeddings`` it also breaks where the
distance between neighbouring sentence windows peaks. Either way no chunk ever exceeds
``max_tokens``: a sentence too long for the budget goes through the token splitter.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable
from typing import Any

import numpy as np

from longcontext.chunk import Chunk
from longcontext.splitters import boundaries
from longcontext.splitters.base import (
    SliceCounter,
    Splitter,
    check_budget,
    check_text,
    make_chunks,
    resolve,
)
from longcontext.splitters.breakpoints import THRESHOLDS, Threshold, breakpoints, window_distances
from longcontext.splitters.embeddings import as_embed_function, embed
from longcontext.splitters.token import TokenSplitter
from longcontext.tokenizers import Tokenizer, TokenizerLike

Span = tuple[int, int]
_SENTENCE_LEVELS = ("header", "paragraph", "line", "sentence")


class SemanticSplitter(Splitter):
    """Split at natural boundaries (and, with embeddings, at shifts in meaning) within a budget.

    Args:
        tokenizer: anything :func:`longcontext.get_tokenizer` accepts.
        max_tokens: hard cap on every chunk's token count.
        embeddings: optional callable ``list[str] -> array``, LangChain ``Embeddings`` or
            LlamaIndex ``BaseEmbedding``; turns on breaks at embedding-distance peaks.
        threshold: how a peak is found: ``percentile``, ``standard_deviation``,
            ``interquartile`` or ``gradient`` (as LangChain's SemanticChunker).
        threshold_amount: the threshold's parameter (defaults 95, 3, 1.5, 95).
        buffer_size: sentences on each side averaged into a sentence's window.
        min_tokens: chunks smaller than this merge into a neighbour when the result fits.
        batch_size: sentences per embedding call.
    """

    def __init__(
        self,
        tokenizer: TokenizerLike = "cl100k_base",
        max_tokens: int = 512,
        embeddings: Any = None,
        threshold: Threshold = "percentile",
        threshold_amount: float | None = None,
        buffer_size: int = 1,
        min_tokens: int = 0,
        batch_size: int = 64,
    ) -> None:
        check_budget("max_tokens", max_tokens)
        check_budget("batch_size", batch_size)
        if not 0 <= min_tokens < max_tokens:
            raise ValueError(
                f"min_tokens={min_tokens} must be >= 0 and below max_tokens={max_tokens}"
            )
        if buffer_size < 0:
            raise ValueError(f"buffer_size must be >= 0, got buffer_size={buffer_size}")
        if threshold not in THRESHOLDS:
            raise ValueError(f"threshold={threshold!r} is not one of {THRESHOLDS}")
        self.tokenizer = resolve(tokenizer)
        self.max_tokens = max_tokens
        self.embed = None if embeddings is None else as_embed_function(embeddings)
        self.threshold: Threshold = threshold
        self.threshold_amount = threshold_amount
        self.buffer_size = buffer_size
        self.min_tokens = min_tokens
        self.batch_size = batch_size
        self._fallback = TokenSplitter(self.tokenizer, max_tokens, 0, align="word")

    def __repr__(self) -> str:
        mode = "structural" if self.embed is None else f"embeddings, {self.threshold}"
        return (
            f"SemanticSplitter(tokenizer={self.tokenizer!r}, max_tokens={self.max_tokens}, {mode})"
        )

    def split(self, text: str) -> list[Chunk]:
        text = check_text(text)
        if not text.strip():
            return []
        measure = _Measure(self.tokenizer, text)
        if self.embed is None:
            units = self._units(measure, 0, len(text), boundaries.LEVELS, split_all=False)
            ranges = _pack(units, measure.estimate, self.max_tokens)
        else:
            ranges = self._semantic_ranges(measure)
        ranges = _merge_small(ranges, measure.estimate, self.min_tokens, self.max_tokens)
        return make_chunks(text, self._exact(measure, ranges))

    # -- structure ---------------------------------------------------------------------------
    def _units(
        self, measure: _Measure, start: int, end: int, levels: tuple[str, ...], split_all: bool
    ) -> list[Span]:
        """Pieces of [start, end) that each fit the budget, cut at the coarsest level that helps.

        With ``split_all`` every boundary of the first level is cut, fitting or not (sentences
        for embedding); otherwise a piece is cut only while it is too long.
        """
        fits = measure.estimate(start, end) <= self.max_tokens
        if fits and not split_all:
            return [(start, end)]
        if not levels:
            return [(start, end)] if fits else self._token_windows(measure, start, end)
        cuts = measure.cuts(levels[0], start, end)
        if not cuts:
            return self._units(measure, start, end, levels[1:], split_all)
        edges = [start, *cuts, end]
        pieces: list[Span] = []
        deeper = levels[1:]
        for a, b in itertools.pairwise(edges):
            if (not split_all or not deeper) and measure.estimate(a, b) <= self.max_tokens:
                pieces.append((a, b))  # fits: no need to look at finer levels
            else:
                pieces.extend(self._units(measure, a, b, deeper, split_all))
        return pieces

    def _token_windows(self, measure: _Measure, start: int, end: int) -> list[Span]:
        return [
            (start + a, start + b) for a, b, _ in self._fallback.bounds(measure.text[start:end])
        ]

    def _semantic_ranges(self, measure: _Measure) -> list[Span]:
        text = measure.text
        atoms = self._units(measure, 0, len(text), _SENTENCE_LEVELS, split_all=True)
        atoms = _absorb_blank(atoms, text)
        if len(atoms) < 3 or self.embed is None:
            return _pack(atoms, measure.estimate, self.max_tokens)
        vectors = embed(self.embed, [text[a:b] for a, b in atoms], self.batch_size)
        distances = window_distances(vectors, self.buffer_size)
        breaks = set(breakpoints(distances, self.threshold, self.threshold_amount).tolist())
        header_starts = set(measure.cuts("header", 0, len(text)))
        ranges: list[Span] = []
        group: list[Span] = []
        for index, atom in enumerate(atoms):
            if group and atom[0] in header_starts:
                ranges.extend(_pack(group, measure.estimate, self.max_tokens))
                group = []
            group.append(atom)
            if index in breaks:
                ranges.extend(_pack(group, measure.estimate, self.max_tokens))
                group = []
        ranges.extend(_pack(group, measure.estimate, self.max_tokens))
        return ranges

    # -- exact counts --------------------------------------------------------------------------
    def _exact(self, measure: _Measure, ranges: list[Span]) -> list[tuple[int, int, int]]:
        """Count every chunk exactly; a chunk whose re-encoding runs over is cut by tokens."""
        bounds: list[tuple[int, int, int]] = []
        for start, end in ranges:
            count = measure.exact(start, end)
            if count <= self.max_tokens:
                bounds.append((start, end, count))
                continue
            for a, b, tokens in self._fallback.bounds(measure.text[start:end]):
                bounds.append((start + a, start + b, tokens))
        return bounds


class _Measure:
    """Token estimates for spans of one text from a single encoding, and exact counts."""

    def __init__(self, tokenizer: Tokenizer, text: str) -> None:
        self.text = text
        self.tokenizer = tokenizer
        self.spans = tokenizer.spans(text)
        self._levels: dict[str, np.ndarray[Any, np.dtype[np.int64]]] = {}
        self._memo: dict[Span, int] = {}
        if self.spans is not None:
            self.counter = SliceCounter(tokenizer, text, self.spans)
            # Plain lists: bisect on them beats a numpy call per lookup by far.
            self._starts: list[int] = self.spans.starts.tolist()
            self._ends: list[int] = self.spans.ends.tolist()

    def cuts(self, level: str, start: int, end: int) -> list[int]:
        positions = self._levels.get(level)
        if positions is None:
            positions = self._levels[level] = boundaries.level_positions(self.text, level)
        low, high = np.searchsorted(positions, [start, end], side="right")
        inside = positions[low:high]
        return [int(p) for p in inside if p < end]

    def token_index(self, position: int) -> int:
        """Index of the first token starting at or after ``position``."""
        return bisect.bisect_left(self._starts, position)

    def estimate(self, start: int, end: int) -> int:
        """Tokens of text[start:end] as the whole-text encoding sees them (+1 for a cut token)."""
        if self.spans is None:
            return self.exact(start, end)
        first, last = self.token_index(start), self.token_index(end)
        partial = int(first > 0 and self._ends[first - 1] > start)
        return last - first + partial

    def exact(self, start: int, end: int) -> int:
        if self.spans is None:
            key = (start, end)
            if key not in self._memo:
                self._memo[key] = self.tokenizer.count(self.text[start:end])
            return self._memo[key]
        return self.counter.count(start, end, self.token_index(start), self.token_index(end))


def _pack(units: list[Span], estimate: Callable[[int, int], int], budget: int) -> list[Span]:
    """Greedily join consecutive units while the joined span fits the budget."""
    ranges: list[Span] = []
    current: Span | None = None
    for unit in units:
        if current is not None and estimate(current[0], unit[1]) <= budget:
            current = (current[0], unit[1])
            continue
        if current is not None:
            ranges.append(current)
        current = unit
    if current is not None:
        ranges.append(current)
    return ranges


def _merge_small(
    ranges: list[Span], estimate: Callable[[int, int], int], min_tokens: int, budget: int
) -> list[Span]:
    """Join a chunk below ``min_tokens`` with its next (else previous) neighbour when it fits."""
    if min_tokens <= 0 or len(ranges) < 2:
        return ranges
    merged = list(ranges)
    index = 0
    while index < len(merged) and len(merged) > 1:
        start, end = merged[index]
        if estimate(start, end) >= min_tokens:
            index += 1
            continue
        if index + 1 < len(merged) and estimate(start, merged[index + 1][1]) <= budget:
            merged[index : index + 2] = [(start, merged[index + 1][1])]
        elif index > 0 and estimate(merged[index - 1][0], end) <= budget:
            merged[index - 1 : index + 1] = [(merged[index - 1][0], end)]
            index -= 1
        else:
            index += 1
    return merged


def _absorb_blank(atoms: list[Span], text: str) -> list[Span]:
    """Attach whitespace-only atoms to the atom before them (or after, at the start)."""
    kept: list[Span] = []
    pending_start: int | None = None
    for start, end in atoms:
        if not text[start:end].strip():
            if kept:
                kept[-1] = (kept[-1][0], end)
            elif pending_start is None:
                pending_start = start
            continue
        if pending_start is not None:
            start, pending_start = pending_start, None
        kept.append((start, end))
    if pending_start is not None:
        kept.append((pending_start, len(text)))
    return kept
