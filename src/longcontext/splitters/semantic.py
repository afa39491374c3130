"""SemanticSplitter: chunks that end at natural boundaries, or where the meaning shifts.

Structural mode splits at Markdown headers, paragraphs, lines, sentences and words, coarse
first, and packs the pieces up to ``max_tokens``. With ``embeddings`` it also breaks where the
distance between neighbouring sentence windows peaks. Either way no chunk ever exceeds
``max_tokens``: a sentence too long for the budget goes through the token splitter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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
        measure = SpanMeasure(self.tokenizer, text)
        if self.embed is None:
            units = self._units(measure, 0, len(text), boundaries.LEVELS, split_all=False)
            ranges = _pack(units, measure, self.max_tokens)
        else:
            ranges = self._semantic_ranges(measure)
        ranges = _merge_small(ranges, measure.estimate, self.min_tokens, self.max_tokens)
        return make_chunks(text, self._exact(measure, ranges))

    # -- structure ---------------------------------------------------------------------------
    def _units(
        self, measure: SpanMeasure, start: int, end: int, levels: tuple[str, ...], split_all: bool
    ) -> list[Span]:
        """Pieces of [start, end) that each fit the budget, cut at the coarsest level that helps.

        With ``split_all`` every boundary of the first level is cut, fitting or not (sentences
        for embedding); otherwise a piece is cut only while it is too long.
        """
        if not split_all and measure.estimate(start, end) <= self.max_tokens:
            return [(start, end)]
        while levels and not (cuts := boundaries.cuts(measure.text, levels[0], start, end)):
            levels = levels[1:]  # no boundary of this kind here: try the next finer one
        if not levels:
            if measure.estimate(start, end) <= self.max_tokens:
                return [(start, end)]
            return self._token_windows(measure, start, end)
        edges = [start, *cuts, end]
        deeper = levels[1:]
        pieces: list[Span] = []
        for k, size in enumerate(measure.piece_sizes(edges)):
            a, b = edges[k], edges[k + 1]
            if size <= self.max_tokens and (not split_all or not deeper):
                pieces.append((a, b))  # fits: no need to look at finer levels
            else:
                pieces.extend(self._units(measure, a, b, deeper, split_all))
        return pieces

    def _token_windows(self, measure: SpanMeasure, start: int, end: int) -> list[Span]:
        return [
            (start + a, start + b) for a, b, _ in self._fallback.bounds(measure.text[start:end])
        ]

    def _semantic_ranges(self, measure: SpanMeasure) -> list[Span]:
        text = measure.text
        atoms = self._units(measure, 0, len(text), _SENTENCE_LEVELS, split_all=True)
        atoms = _absorb_blank(atoms, text)
        if len(atoms) < 3 or self.embed is None:
            return _pack(atoms, measure, self.max_tokens)
        vectors = embed(self.embed, [text[a:b] for a, b in atoms], self.batch_size)
        distances = window_distances(vectors, self.buffer_size)
        breaks = set(breakpoints(distances, self.threshold, self.threshold_amount).tolist())
        header_starts = set(boundaries.cuts(text, "header", 0, len(text)))
        ranges: list[Span] = []
        group: list[Span] = []
        for index, atom in enumerate(atoms):
            if group and atom[0] in header_starts:
                ranges.extend(_pack(group, measure, self.max_tokens))
                group = []
            group.append(atom)
            if index in breaks:
                ranges.extend(_pack(group, measure, self.max_tokens))
                group = []
        ranges.extend(_pack(group, measure, self.max_tokens))
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


def _pack(units: list[Span], measure: SpanMeasure, budget: int) -> list[Span]:
    """Greedily join consecutive units (which tile a stretch of text) while they fit the budget."""
    if not units:
        return []
    edges = [units[0][0], *(end for _, end in units)]
    size = measure.sizer(edges)
    ranges: list[Span] = []
    first = 0
    for k in range(1, len(units)):
        if size(first, k + 1) > budget:
            ranges.append((edges[first], edges[k]))
            first = k
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
