"""Cutting a prompt's token ids down to a budget without splitting a character."""

from __future__ import annotations

from typing import Any, Literal

REPLACEMENT = "\ufffd"
# A UTF-8 character is at most 4 bytes, so a cut can leave at most 3 orphaned bytes on either side.
_MAX_SHIFT = 3


def truncate_ids(
    ids: list[int], limit: int, how: Literal["left", "middle"], tokenizer: Any
) -> list[int]:
    """Keep at most ``limit`` ids: the last ones (``"left"``) or the first and last halves
    (``"middle"``). Cut points move by up to 3 tokens so that no byte-level token holding part of
    a multi-byte character is kept without the rest of it: the kept ids decode cleanly.
    """
    if limit < 1:
        raise ValueError(f"cannot truncate a prompt to {limit} tokens")
    if len(ids) <= limit:
        return ids
    if how == "left":
        return ids[_clean_start(ids, len(ids) - limit, tokenizer) :]
    if how == "middle":
        head_end = _clean_end(ids, (limit + 1) // 2, tokenizer)
        tail_start = _clean_start(ids, len(ids) - limit // 2, tokenizer)
        return ids[:head_end] + ids[tail_start:]
    raise ValueError(f"truncate={how!r} is not 'left' or 'middle'")


def _clean_start(ids: list[int], start: int, tokenizer: Any) -> int:
    """Move ``start`` right past tokens that are the tail of a character cut in two."""
    for _ in range(_MAX_SHIFT):
        if start >= len(ids) or not _broken(tokenizer.decode(ids[start : start + 4]), first=True):
            break
        start += 1
    return start


def _clean_end(ids: list[int], end: int, tokenizer: Any) -> int:
    """Move ``end`` left before tokens that are the head of a character cut in two."""
    for _ in range(_MAX_SHIFT):
        if end <= 0 or not _broken(tokenizer.decode(ids[max(0, end - 4) : end]), first=False):
            break
        end -= 1
    return end


def _broken(text: str, *, first: bool) -> bool:
    return text.startswith(REPLACEMENT) if first else text.endswith(REPLACEMENT)
