"""Lost-in-the-middle reordering: put the most relevant passages where a model reads best.

Language models use what sits at the start and the end of a long context far better than what
sits in the middle (Liu et al., 2023, https://arxiv.org/abs/2307.03172). ``reorder`` ranks the
items and lays them out so that the least relevant end up in the middle.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Sequence
from typing import Any, TypeVar

T = TypeVar("T")

STRATEGIES = ("important_first_last", "reverse_rank", "none")
"""The layouts :func:`reorder` knows, by name."""


def check_strategy(strategy: str) -> str:
    """Return ``strategy`` if it is one of :data:`STRATEGIES`, else raise ValueError."""
    if strategy not in STRATEGIES:
        raise ValueError(
            f"unknown reorder strategy {strategy!r}; choose one of: {', '.join(STRATEGIES)}"
        )
    return strategy


def _is_missing(score: object) -> bool:
    return score is None or (isinstance(score, numbers.Real) and math.isnan(float(score)))


def rank(scores: Sequence[Any] | None, n: int) -> list[int]:
    """Indices ``0..n-1`` from most to least relevant.

    With scores, by score descending; ties keep input order (a stable sort). Without scores, or
    when every score is missing, input order is the rank. A None or NaN score among real ones
    ranks lowest, with one warning for the whole call.
    """
    if scores is None:
        return list(range(n))
    scores = list(scores)
    if len(scores) != n:
        raise ValueError(f"got {n} items but {len(scores)} scores; give one score per item")
    for i, score in enumerate(scores):
        if not _is_missing(score) and (
            not isinstance(score, numbers.Real) or isinstance(score, bool)
        ):
            raise TypeError(
                f"score {i} is {score!r} ({type(score).__name__}); scores must be numbers or None"
            )
    missing = [i for i, score in enumerate(scores) if _is_missing(score)]
    if len(missing) == n:
        return list(range(n))
    if missing:
        warnings.warn(
            f"{len(missing)} of {n} scores are None or NaN (positions {missing[:10]}"
            f"{'...' if len(missing) > 10 else ''}); those items rank lowest",
            RuntimeWarning,
            stacklevel=3,
        )
    # sorted() is stable, so equal scores keep their input order.
    return sorted(
        range(n),
        key=lambda i: (1, 0.0) if _is_missing(scores[i]) else (0, -float(scores[i])),
    )


def layout(n: int, strategy: str) -> list[int]:
    """Rank positions in reading order: ``layout(n, s)[p]`` is the rank of the item at position p.

    ``important_first_last`` puts rank 0 first, rank 1 last, rank 2 second, rank 3 second to
    last, and so on; ``reverse_rank`` puts rank 0 last; ``none`` keeps rank order.
    """
    check_strategy(strategy)
    ranks = list(range(n))
    if strategy == "important_first_last":
        return ranks[0::2] + ranks[1::2][::-1]
    if strategy == "reverse_rank":
        return ranks[::-1]
    return ranks


def reorder(
    items: Sequence[T],
    scores: Sequence[float | None] | None = None,
    strategy: str = "important_first_last",
) -> list[T]:
    """Return ``items`` (the objects themselves) laid out for a long context.

    Args:
        items: Passages of any type.
        scores: One relevance score per item, higher is more relevant. Without scores, the input
            order is the rank (first is most relevant). A None or NaN score ranks lowest, with one
            warning.
        strategy: ``"important_first_last"`` (most relevant first, second most relevant last,
            least relevant in the middle), ``"reverse_rank"`` (least relevant first, most
            relevant last) or ``"none"`` (keep the input order).

    Example:
        Ten passages scored 1.0, 0.9, ..., 0.1 come back as items 0, 2, 4, 6, 8, 9, 7, 5, 3, 1.

    Raises:
        ValueError: for an unknown strategy or a score count that differs from the item count.
        TypeError: for a score that is not a number or None.
    """
    check_strategy(strategy)
    items = list(items)
    order = rank(scores, len(items))
    if strategy == "none":
        return items
    return [items[order[r]] for r in layout(len(items), strategy)]
