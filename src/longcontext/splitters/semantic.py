"""SemanticSplitter: chunks that end at natural boundaries, or where the meaning shifts.

Structural mode splits at Markdown headers, paragraphs, lines, sentences and words, coarse
first, and packs the pieces up to ``chunk_size`` tokens. With ``embeddings`` it also breaks
where the distance between neighbouring sentence windows peaks. Either way no chunk ever
exceeds ``chunk_size`` tokens or ``max_chars`` characters: a sentence too long for them goes
through the token splitter.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from longcontext.chunk import Chunk
from longcontext.splitters import boundaries
from longcontext.splitters.base import (
    Splitter,
    check_budget,
    check_max_chars,
    check_text,
    make_chunks,
    resolve,
)
from longcontext.splitters.breakpoints import THRESHOLDS, Threshold, breakpoints, window_distances
from longcontext.splitters.embeddings import Matrix, as_embed_function, embed
from longcontext.splitters.measure import SpanMeasure
from longcontext.splitters.token import TokenSplitter
from longcontext.tokenizers import TokenizerLike

Span = tuple[int, int]
_SENTENCE_LEVELS = ("header", "paragraph", "line", "sentence")
_RANKS = {level: len(boundaries.LEVELS) - n for n, level in enumerate(boundaries.LEVELS)}
# A full chunk may end early, down to this share of what it holds, at a stronger break.
_MIN_FILL = 0.5
_DEFAULT_CHUNK_SIZE = 512
_RENAMED = "SemanticSplitter's max_tokens is now chunk_size; max_tokens will be removed"


class SemanticSplitter(Splitter):
    """Split at natural boundaries (and, with embeddings, at shifts in meaning) within a budget.

    Semantic chunks tile the text: they never overlap, so there is no ``chunk_overlap``.

    Args:
        tokenizer: anything :func:`longcontext.get_tokenizer` accepts.
        chunk_size: hard cap on every chunk's token count (``max_tokens``, its old name, still
            works with a DeprecationWarning).
        embeddings: optional callable ``list[str] -> array``, LangChain ``Embeddings`` or
            LlamaIndex ``BaseEmbedding``; turns on breaks at embedding-distance peaks.
        threshold: how a peak is found: ``percentile``, ``standard_deviation``,
            ``interquartile`` or ``gradient`` (as LangChain's SemanticChunker).
        threshold_amount: the threshold's parameter (defaults 99, 3, 1.5, 95).
        buffer_size: sentences on each side averaged into a sentence's window.
        min_tokens: chunks smaller than this merge into a neighbour when the result fits.
        batch_size: sentences per embedding call.
        max_chars: hard cap on every chunk's length in characters; by default
            ``chunk_size * 32`` (see :data:`CHARS_PER_TOKEN_BOUND`), so that a long run a
            tokenizer maps to one unknown token cannot make a chunk of a million characters.
        embed_in_threads: the embedding function is only ever called from the caller's thread
            (``split_many`` embeds the sentences of all texts there, in batches); set True if it
            is thread-safe and ``split_many`` may call it from its worker threads.
    """

    def __init__(
        self,
        tokenizer: TokenizerLike = "cl100k_base",
        chunk_size: int | None = None,
        embeddings: Any = None,
        threshold: Threshold = "percentile",
        threshold_amount: float | None = None,
        buffer_size: int = 1,
        min_tokens: int = 0,
        batch_size: int = 64,
        max_chars: int | None = None,
        embed_in_threads: bool = False,
        *,
        max_tokens: int | None = None,
    ) -> None:
        chunk_size = _renamed_budget(chunk_size, max_tokens)
        check_budget("chunk_size", chunk_size)
        check_budget("batch_size", batch_size)
        if not 0 <= min_tokens < chunk_size:
            raise ValueError(
                f"min_tokens={min_tokens} must be >= 0 and below chunk_size={chunk_size}"
            )
        if buffer_size < 0:
            raise ValueError(f"buffer_size must be >= 0, got buffer_size={buffer_size}")
        if threshold not in THRESHOLDS:
            raise ValueError(f"threshold={threshold!r} is not one of {THRESHOLDS}")
        self.tokenizer = resolve(tokenizer)
        self.chunk_size = chunk_size
        self.max_chars = check_max_chars(max_chars, chunk_size)
        self.embed = None if embeddings is None else as_embed_function(embeddings)
        self.threshold: Threshold = threshold
        self.threshold_amount = threshold_amount
        self.buffer_size = buffer_size
        self.min_tokens = min_tokens
        self.batch_size = batch_size
        self.embed_in_threads = bool(embed_in_threads)
        self._fallback = TokenSplitter(
            self.tokenizer, chunk_size, 0, align="word", max_chars=self.max_chars
        )

    @property
    def max_tokens(self) -> int:
        """Deprecated name of :attr:`chunk_size`."""
        warnings.warn(_RENAMED, DeprecationWarning, stacklevel=2)
        return self.chunk_size

    def __repr__(self) -> str:
        mode = "structural" if self.embed is None else f"embeddings, {self.threshold}"
        return (
            f"SemanticSplitter(tokenizer={self.tokenizer!r}, chunk_size={self.chunk_size}, "
            f"max_chars={self.max_chars}, {mode})"
        )

    def split(self, text: str) -> list[Chunk]:
        text = check_text(text)
        if not text.strip():
            return []
        plan = self._plan(text)
        return self._finish(plan, self._embed_atoms(plan.atoms, plan.measure.text))

    def split_many(self, texts: Iterable[str], num_threads: int | None = None) -> list[list[Chunk]]:
        """Split several texts; the embedding function is called from this thread only.

        Structure (tokenizing, boundaries) runs in worker threads; the sentences of all texts
        are then embedded here in batches of ``batch_size``, unless ``embed_in_threads``.
        """
        if self.embed is None or self.embed_in_threads:
            return super().split_many(texts, num_threads)
        items = [check_text(t) for t in texts]
        plans = self.map_threads(lambda t: self._plan(t) if t.strip() else None, items, num_threads)
        sentences = [p.measure.text[a:b] for p in plans if p is not None for a, b in p.atoms]
        vectors = embed(self.embed, sentences, self.batch_size) if sentences else None
        results: list[list[Chunk]] = []
        offset = 0
        for plan in plans:
            if plan is None:
                results.append([])
                continue
            rows = None
            if plan.atoms:
                assert vectors is not None
                rows = vectors[offset : offset + len(plan.atoms)]
                offset += len(plan.atoms)
            results.append(self._finish(plan, rows))
        return results

    def _plan(self, text: str) -> _Plan:
        """Everything before embedding: the encoding, and the units to pack or to embed."""
        measure = SpanMeasure(self.tokenizer, text)
        ranks: dict[int, int] = {}
        if self.embed is None:
            units = self._units(measure, 0, len(text), boundaries.LEVELS, False, ranks)
            return _Plan(measure, ranks, [], units)
        atoms = self._units(measure, 0, len(text), _SENTENCE_LEVELS, True, ranks)
        atoms = _absorb_blank(atoms, text)
        if len(atoms) < 3:
            return _Plan(measure, ranks, [], atoms)
        return _Plan(measure, ranks, atoms, None)

    def _embed_atoms(self, atoms: list[Span], text: str) -> Matrix | None:
        if not atoms or self.embed is None:
            return None
        return embed(self.embed, [text[a:b] for a, b in atoms], self.batch_size)

    def _finish(self, plan: _Plan, vectors: Matrix | None) -> list[Chunk]:
        measure, ranks = plan.measure, plan.ranks
        if plan.units is not None:
            units = plan.units
            ranges = self._pack(units, measure, [ranks.get(b, 0) for _, b in units])
        else:
            assert vectors is not None
            ranges = self._semantic_ranges(measure, plan.atoms, ranks, vectors)
        ranges = _merge_small(
            ranges, measure.estimate, self.min_tokens, self.chunk_size, self.max_chars
        )
        return make_chunks(measure.text, self._exact(measure, ranges))

    # -- structure ---------------------------------------------------------------------------
    def _fits(self, size: int, start: int, end: int) -> bool:
        return size <= self.chunk_size and end - start <= self.max_chars

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
        if not split_all and self._fits(measure.estimate(start, end), start, end):
            return [(start, end)]
        while levels and not (cuts := boundaries.cuts(measure.text, levels[0], start, end)):
            levels = levels[1:]  # no boundary of this kind here: try the next finer one
        if not levels:
            if self._fits(measure.estimate(start, end), start, end):
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
            if self._fits(size, a, b) and (not split_all or not deeper):
                pieces.append((a, b))  # fits: no need to look at finer levels
            else:
                pieces.extend(self._units(measure, a, b, deeper, split_all, ranks))
        return pieces

    def _token_windows(self, measure: SpanMeasure, start: int, end: int) -> list[Span]:
        return [
            (start + a, start + b) for a, b, _ in self._fallback.bounds(measure.text[start:end])
        ]

    def _semantic_ranges(
        self, measure: SpanMeasure, atoms: list[Span], ranks: dict[int, int], vectors: Matrix
    ) -> list[Span]:
        """Break at the peaks of embedding distance; inside, end full chunks at the biggest
        shift (structure first, meaning next) in their second half."""
        distances = window_distances(vectors, self.buffer_size).tolist()
        # Cosine distances lie in [0, 2] and ranks are whole numbers: structure decides first.
        scores = [ranks.get(atoms[k][1], 0) + d for k, d in enumerate(distances)]
        peaks = breakpoints(np.asarray(distances), self.threshold, self.threshold_amount)
        breaks = set(peaks.tolist())
        ranges: list[Span] = []
        first = 0  # the first atom since the last break
        for index, atom in enumerate(atoms):
            if index > first and ranks.get(atom[0]) == _RANKS["header"]:
                ranges += self._pack(atoms[first:index], measure, scores[first:])
                first = index
            if index in breaks:
                ranges += self._pack(atoms[first : index + 1], measure, scores[first:])
                first = index + 1
        ranges += self._pack(atoms[first:], measure, scores[first:])
        return ranges

    def _pack(
        self, units: list[Span], measure: SpanMeasure, cut_scores: Sequence[float]
    ) -> list[Span]:
        """Join consecutive units (which tile a stretch of text) into chunks within the budget.

        A chunk takes units while they fit (tokens and characters). When the next one does
        not, the chunk ends at the best cut among those that keep it at least half full
        (``cut_scores[k]`` scores the cut after unit ``k``; ties go to the later cut), so sizes
        follow the budget and cuts fall where the text breaks most: a new section rather than
        a new sentence.
        """
        if not units:
            return []
        edges = [units[0][0], *(end for _, end in units)]
        size = measure.sizer(edges)
        ranges: list[Span] = []
        first, k = 0, 1
        while k < len(units):
            if not self._fits(size(first, k + 1), edges[first], edges[k + 1]):
                # Unit k does not fit: the chunk ends at an edge <= k.
                floor = size(first, k) * _MIN_FILL
                fits = [e for e in range(first + 1, k + 1) if size(first, e) >= floor]
                end = max(fits, key=lambda e: (cut_scores[e - 1], e))
                ranges.append((edges[first], edges[end]))
                first, k = end, end
            k += 1
        ranges.append((edges[first], edges[-1]))
        return ranges

    # -- exact counts --------------------------------------------------------------------------
    def _exact(self, measure: SpanMeasure, ranges: list[Span]) -> list[tuple[int, int, int]]:
        """Count every chunk exactly; a chunk whose re-encoding runs over is cut by tokens."""
        bounds: list[tuple[int, int, int]] = []
        for (start, end), count in zip(ranges, measure.exact_many(ranges), strict=True):
            if self._fits(count, start, end):
                bounds.append((start, end, count))
                continue
            for a, b, tokens in self._fallback.bounds(measure.text[start:end]):
                bounds.append((start + a, start + b, tokens))
        return bounds


@dataclass(slots=True)
class _Plan:
    """One text's encoding and units, up to where the embedding vectors are needed."""

    measure: SpanMeasure
    ranks: dict[int, int]  # cut position -> strength of the boundary there
    atoms: list[Span]  # sentences to embed (empty when none are)
    units: list[Span] | None  # units to pack when no embedding is needed


def _renamed_budget(chunk_size: int | None, max_tokens: int | None) -> int:
    """``chunk_size``, also given by its old name ``max_tokens`` (with a DeprecationWarning)."""
    if max_tokens is None:
        return _DEFAULT_CHUNK_SIZE if chunk_size is None else chunk_size
    if chunk_size is not None:
        raise TypeError(
            f"SemanticSplitter got chunk_size={chunk_size} and max_tokens={max_tokens}; "
            "max_tokens is the old name of chunk_size: pass chunk_size only"
        )
    warnings.warn(_RENAMED, DeprecationWarning, stacklevel=3)
    return max_tokens


def _merge_small(
    ranges: list[Span],
    estimate: Callable[[int, int], int],
    min_tokens: int,
    budget: int,
    max_chars: int,
) -> list[Span]:
    """Join a chunk below ``min_tokens`` with its next (else previous) neighbour when it fits."""
    if min_tokens <= 0 or len(ranges) < 2:
        return ranges

    def fits(start: int, end: int) -> bool:
        return end - start <= max_chars and estimate(start, end) <= budget

    merged = list(ranges)
    index = 0
    while index < len(merged) and len(merged) > 1:
        start, end = merged[index]
        if estimate(start, end) >= min_tokens:
            index += 1
            continue
        if index + 1 < len(merged) and fits(start, merged[index + 1][1]):
            merged[index : index + 2] = [(start, merged[index + 1][1])]
        elif index > 0 and fits(merged[index - 1][0], end):
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
