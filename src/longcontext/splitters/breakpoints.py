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
# Same defaults as LangChain's SemanticChunker, so settings carry over.
DEFAULT_AMOUNTS: dict[str, float] = {
    "percentile": 95.0,
    "standard_deviation": 3.0,
    "interquartile": 1.5,
    "gradient": 95.0,
}


def window_distances(
    unit_vectors: npt.NDArray[np.float64], buffer_size: int
) -> npt.NDArray[np.float64]:
    """Cosine distance between the windows around sentence i and i+1.

    A window is the mean of the embeddings of its sentence and ``buffer_size`` neighbours on each
    side, so every sentence is embedded once and windows cost a running sum.
    """
    n = len(unit_vectors)
    if n < 2:
        return np.zeros(0)
    sums = np.vstack([np.zeros((1, unit_vectors.shape[1])), np.cumsum(unit_vectors, axis=0)])
    low = np.clip(np.arange(n) - buffer_size, 0, n)
    high = np.clip(np.arange(n) + buffer_size + 1, 0, n)
    windows = (sums[high] - sums[low]) / (high - low)[:, None]
    norms = np.linalg.norm(windows, axis=1)
    norms[norms == 0] = 1.0
    windows = windows / norms[:, None]
    similarity = np.einsum("ij,ij->i", windows[:-1], windows[1:])
    return np.asarray(1.0 - similarity, dtype=np.float64)


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
