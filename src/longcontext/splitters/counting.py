"""Splitting with a token counter alone, for tokenizers that give no character offsets.

Windows are found by searching over character positions with the counter, so every chunk's
count is measured, never estimated. Slower than the offset path; used for plain callables.
"""

from __future__ import annotations

from collections.abc import Callable

Counter = Callable[[str], int]


def split_by_counting(
    text: str,
    count: Counter,
    chunk_size: int,
    chunk_overlap: int,
    max_chars: int,
    longest_first: bool = False,
) -> list[tuple[int, int, int]]:
    """(start, end, token_count) windows of at most ``chunk_size`` tokens and ``max_chars``
    characters covering ``text``.

    The overlap is at most ``chunk_overlap`` tokens and, in proportion, at most that share of
    ``max_chars`` characters, so that a run counted as one token still moves forward. With
    ``longest_first`` each window first tries its full ``max_chars``: inside one long token
    (WordPiece's ``[UNK]``) a long slice can have fewer tokens than a short one.
    """
    bounds: list[tuple[int, int, int]] = []
    overlap_chars = max_chars * chunk_overlap // chunk_size
    start = 0
    while True:
        end, tokens = -1, 0
        if longest_first:
            end = min(start + max_chars, len(text))
            tokens = count(text[start:end])
        if tokens > chunk_size or end < 0:
            end, tokens = _longest_fit(text, count, start, chunk_size, start + max_chars)
        if end == start:
            raise ValueError(
                f"the character {text[start]!r} at offset {start} alone takes more than "
                f"chunk_size={chunk_size} tokens and cannot be cut; raise chunk_size"
            )
        end, tokens = _prefer_word_end(text, count, start, end, tokens)
        bounds.append((start, end, tokens))
        if end == len(text):
            return bounds
        start = _overlap_start(text, count, max(start, end - overlap_chars), end, chunk_overlap)


def _longest_fit(
    text: str, count: Counter, start: int, limit: int, last_end: int
) -> tuple[int, int]:
    """The largest end up to ``last_end`` such that ``text[start:end]`` has at most ``limit``
    tokens."""
    good, good_tokens = start, 0
    step = max(16, limit * 4)
    stop = min(len(text), last_end)
    bad = stop + 1
    # Gallop forward until the window overflows, then bisect between the last fit and overflow.
    while good < stop:
        probe = min(good + step, stop)
        tokens = count(text[start:probe])
        if tokens > limit:
            bad = probe
            break
        good, good_tokens = probe, tokens
        step *= 2
    while bad - good > 1:
        middle = (good + bad) // 2
        tokens = count(text[start:middle])
        if tokens <= limit:
            good, good_tokens = middle, tokens
        else:
            bad = middle
    return good, good_tokens


def _prefer_word_end(
    text: str, count: Counter, start: int, end: int, tokens: int
) -> tuple[int, int]:
    if end == len(text) or text[end].isspace() or text[end - 1].isspace():
        return end, tokens
    floor = end - (end - start) // 4
    for position in range(end - 1, max(floor, start), -1):
        if text[position].isspace():
            return position, count(text[start:position])
    return end, tokens


def _overlap_start(text: str, count: Counter, start: int, end: int, overlap: int) -> int:
    """The earliest start after ``start`` whose slice up to ``end`` has at most ``overlap``
    tokens."""
    if overlap == 0:
        return end
    low, high = start + 1, end  # count(text[end:end]) == 0 always fits
    while low < high:
        middle = (low + high) // 2
        if count(text[middle:end]) <= overlap:
            high = middle
        else:
            low = middle + 1
    return high
