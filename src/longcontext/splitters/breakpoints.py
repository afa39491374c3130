"""Where the meaning shifts: distances between neighbouring sentence windows and their peaks."""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

Threshold = Literal["percentile", "standard_deviation", "interquartile", "gradient"]
THRESHOLDS: tuple[Threshold, ...] = (
    "percentile",
    "standard_deviation",
    "interquartile",
    "gradient",
)
# LangChain's SemanticChunker defaults, so settings carry over, but for the percentile: 99,
# not 95. Full chunks already end at the biggest shift in their second half, so only the
# strongest need a forced break; 95 made chunks far smaller than the budget, and worse at
# the same mean size (docs/concepts/chunking.md).
DEFAULT_AMOUNTS: dict[str, float] = {
    "percentile": 99.0,
    "standard_deviation": 3.0,
    "interquartile": 1.5,
    "gradient": 95.0,
}


def window_distances(
    unit_vectors: npt.NDArray[np.float64], buffer_size: int
) -> npt.NDArray[np.float64]:
    """Cosine distance across each gap: between sentence i and the ``buffer_size`` before it,
    and sentence i+1 and the ``buffer_size`` after it.

    Each side is the mean of its sentences' embeddings, so every sentence is embedded once and
    windows cost a running sum. The windows meet at the gap and share no sentence, so a change
    of topic peaks at the gap where it happens rather than being spread over its neighbours.
    """
    n = len(unit_vectors)
    if n < 2:
        return np.zeros(0)
    sums = np.vstack([np.zeros((1, unit_vectors.shape[1])), np.cumsum(unit_vectors, axis=0)])
    gap = np.arange(n - 1)
    left_low, left_high = np.maximum(gap - buffer_size, 0), gap + 1
    right_low, right_high = gap + 1, np.minimum(gap + 2 + buffer_size, n)
    left = (sums[left_high] - sums[left_low]) / (left_high - left_low)[:, None]
    right = (sums[right_high] - sums[right_low]) / (right_high - right_low)[:, None]
    similarity = np.einsum("ij,ij->i", _unit(left), _unit(right))
    return np.asarray(1.0 - similarity, dtype=np.float64)


def _unit(vectors: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    norms = np.linalg.norm(vectors, axis=1)
    norms[norms == 0] = 1.0
    unit: npt.NDArray[np.float64] = vectors / norms[:, None]
    return unit


def breakpoints(
    distances: npt.NDArray[np.float64], threshold: Threshold, amount: float | None
) -> npt.NDArray[np.int64]:
    """Indices i where the text should break between sentence i and i+1."""
    if threshold not in THRESHOLDS:
        raise ValueError(f"threshold={threshold!r} is not one of {THRESHOLDS}")
    if len(distances) == 0:
        return np.zeros(0, dtype=np.int64)
    value = DEFAULT_AMOUNTS[threshold] if amount is None else amount
    scores = distances
    if threshold == "percentile":
        cut = np.percentile(distances, value)
    elif threshold == "standard_deviation":
        cut = distances.mean() + value * distances.std()
    elif threshold == "interquartile":
        q1, q3 = np.percentile(distances, [25, 75])
        cut = distances.mean() + value * (q3 - q1)
    else:
        scores = np.gradient(distances) if len(distances) > 1 else distances
        cut = np.percentile(scores, value)
    return np.flatnonzero(scores > cut).astype(np.int64)
