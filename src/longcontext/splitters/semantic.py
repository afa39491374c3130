"""SemanticSplitter: chunks that end at natural boundaries, or where the meaning shifts.

Structural mode splits at Markdown headers, paragraphs, lines, sentences and words, coarse
first, and packs the pieces up to ``max_tokens``. With ``embeddings`` it also breaks where the
distance between neighbouring sentence windows peaks. Either way no chunk ever exceeds
``max_tokens``: a sentence too long for the budget goes through the token splitter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from longcontext.chunk import Chunk
from longcontext.splitters import boundaries
from longcontext.splitters.base import Splitter, check_budget, check_text, make_chunks, resolve
from longcontext.splitters.breakpoints import THRESHOLDS, Threshold, breakpoints, window_distances
from longcontext.splitters.embeddings import as_embed_function, embed
from longcontext.splitters.measure import SpanMeasure
from longcontext.splitters.token import TokenSplitter
from longcontext.tokenizers import TokenizerLike

Span = tuple[int, int]
_SENTENCE_LEVELS = ("header", "paragraph", "line", "sentence")
_RANKS = {level: len(boundaries.LEVELS) - n for n, level in enumerate(boundaries.LEVELS)}
# A full chunk may end early, down to this share of what it holds, at a stronger break.
_MIN_FILL = 0.5


class SemanticSplitter(Splitter):
    """Split at natural boundaries (and, with embeddings, at shifts in meaning) within a budget.

    Args:
        tokenizer: anything :func:`longcontext.get_tokenizer` accepts.
        max_tokens: hard cap on every chunk's token count.
        embeddings: optional callable ``list[str] -> array``, LangChain ``Embeddings`` or
            LlamaIndex ``BaseEmbedding``; turns on breaks at embedding-distance peaks.
        threshold: how a peak is found: ``percentile``, ``standard_deviation``,
            ``interquartile`` or ``gradient`` (as LangChain's SemanticChunker).
        threshold_amount: the threshold's parameter (defaults 99, 3, 1.5, 95).
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
        measure = SpanMeasure(self.tokenizer, text)
        if self.embed is None:
            ranks: dict[int, int] = {}
            units = self._units(measure, 0, len(text), boundaries.LEVELS, False, ranks)
            ranges = _pack(units, measure, self.max_tokens, [ranks.get(b, 0) for _, b in units])
        else:
            ranges = self._semantic_ranges(measure)
        ranges = _merge_small(ranges, measure.estimate, self.min_tokens, self.max_tokens)
        return make_chunks(text, self._exact(measure, ranges))

    # -- structure ---------------------------------------------------------------------------
    def _units(
        self,
        measure: SpanMeasure,
        start: int,
        end: int,
        levels: tuple[str, ...],
        split_all: bool,
        ranks: dict[int, int],
    ) -> list[Span]:
        """Pieces of [start, end) that each fit the budget, cut at the coarsest level that helps.

        With ``split_all`` every boundary of the first level is cut, fitting or not (sentences
        for embedding); otherwise a piece is cut only while it is too long. ``ranks`` gets the
        strength of every cut made: 5 for a header down to 1 for a word.
        """
        if not split_all and measure.estimate(start, end) <= self.max_tokens:
            return [(start, end)]
        while levels and not (cuts := boundaries.cuts(measure.text, levels[0], start, end)):
            levels = levels[1:]  # no boundary of this kind here: try the next finer one
        if not levels:
            if measure.estimate(start, end) <= self.max_tokens:
                return [(start, end)]
            return self._token_windows(measure, start, end)
        rank = _RANKS[levels[0]]
        for cut in cuts:
            ranks[cut] = rank
        edges = [start, *cuts, end]
        deeper = levels[1:]
        pieces: list[Span] = []
        for k, size in enumerate(measure.piece_sizes(edges)):
            a, b = edges[k], edges[k + 1]
            if size <= self.max_tokens and (not split_all or not deeper):
                pieces.append((a, b))  # fits: no need to look at finer levels
            else:
                pieces.extend(self._units(measure, a, b, deeper, split_all, ranks))
        return pieces

    def _token_windows(self, measure: SpanMeasure, start: int, end: int) -> list[Span]:
        return [
            (start + a, start + b) for a, b, _ in self._fallback.bounds(measure.text[start:end])
        ]

    def _semantic_ranges(self, measure: SpanMeasure) -> list[Span]:
        """Break at the peaks of embedding distance; inside, end full chunks at the biggest
        shift (structure first, meaning next) in their second half."""
        text = measure.text
        ranks: dict[int, int] = {}
        atoms = self._units(measure, 0, len(text), _SENTENCE_LEVELS, True, ranks)
        atoms = _absorb_blank(atoms, text)
        if len(atoms) < 3 or self.embed is None:
            return _pack(atoms, measure, self.max_tokens, [ranks.get(b, 0) for _, b in atoms])
        vectors = embed(self.embed, [text[a:b] for a, b in atoms], self.batch_size)
        distances = window_distances(vectors, self.buffer_size).tolist()
        # Cosine distances lie in [0, 2] and ranks are whole numbers: structure decides first.
        scores = [ranks.get(atoms[k][1], 0) + d for k, d in enumerate(distances)]
        peaks = breakpoints(np.asarray(distances), self.threshold, self.threshold_amount)
        breaks = set(peaks.tolist())
        ranges: list[Span] = []
        first = 0  # the first atom since the last break
        for index, atom in enumerate(atoms):
            if index > first and ranks.get(atom[0]) == _RANKS["header"]:
                ranges += _pack(atoms[first:index], measure, self.max_tokens, scores[first:])
                first = index
            if index in breaks:
                ranges += _pack(atoms[first : index + 1], measure, self.max_tokens, scores[first:])
                first = index + 1
        ranges += _pack(atoms[first:], measure, self.max_tokens, scores[first:])
        return ranges

    # -- exact counts --------------------------------------------------------------------------
    def _exact(self, measure: SpanMeasure, ranges: list[Span]) -> list[tuple[int, int, int]]:
        """Count every chunk exactly; a chunk whose re-encoding runs over is cut by tokens."""
        bounds: list[tuple[int, int, int]] = []
        for (start, end), count in zip(ranges, measure.exact_many(ranges), strict=True):
            if count <= self.max_tokens:
                bounds.append((start, end, count))
                continue
            for a, b, tokens in self._fallback.bounds(measure.text[start:end]):
                bounds.append((start + a, start + b, tokens))
        return bounds


def _pack(
    units: list[Span], measure: SpanMeasure, budget: int, cut_scores: Sequence[float]
) -> list[Span]:
    """Join consecutive units (which tile a stretch of text) into chunks within the budget.

    A chunk takes units while they fit. When the next one does not, the chunk ends at the
    best cut among those that keep it at least half full (``cut_scores[k]`` scores the cut
    after unit ``k``; ties go to the later cut), so sizes follow the budget and cuts fall
    where the text breaks most: a new section rather than a new sentence.
    """
    if not units:
        return []
    edges = [units[0][0], *(end for _, end in units)]
    size = measure.sizer(edges)
    ranges: list[Span] = []
    first, k = 0, 1
    while k < len(units):
        if size(first, k + 1) > budget:  # unit k does not fit: the chunk ends at an edge <= k
            floor = size(first, k) * _MIN_FILL
            fits = [e for e in range(first + 1, k + 1) if size(first, e) >= floor]
            end = max(fits, key=lambda e: (cut_scores[e - 1], e))
            ranges.append((edges[first], edges[end]))
            first, k = end, end
        k += 1
    ranges.append((edges[first], edges[-1]))
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
