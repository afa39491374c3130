"""Cut tokenized documents into the windows a perplexity run scores.

Every window starts with the tokens the tokenizer puts before any text (``prefix``: BOS for
Llama and Gemma, nothing for Qwen), so each one reads like a fresh document, then text tokens up
to ``length``. A window never spans two documents.

- ``disjoint``: consecutive non-overlapping windows; every token after the first is scored.
- ``sliding``: windows that advance by ``stride`` text tokens; the first is scored whole, each
  later one only on its newest ``stride`` tokens, so every text token is scored once, with up to
  ``length - stride`` tokens of context before it (Press et al. 2022; the YaRN paper).
- ``full``: the first window of each document, one per document.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

Mode = Literal["disjoint", "sliding", "full"]
MODES: tuple[Mode, ...] = ("disjoint", "sliding", "full")


@dataclass(frozen=True)
class Window:
    """Token ids to run, and the first index whose token is scored (every later one is too)."""

    ids: list[int]
    first: int

    @property
    def scored(self) -> int:
        """How many tokens this window scores."""
        return len(self.ids) - self.first


def windows(
    documents: Sequence[Sequence[int]],
    prefix: Sequence[int],
    length: int,
    mode: Mode,
    limit: int,
    stride: int | None = None,
) -> list[Window]:
    """Up to ``limit`` windows of exactly ``length`` tokens from ``documents`` (text token ids,
    no special tokens), document after document.

    Raises:
        ValueError: a length with no room for text after the prefix, or a stride that is not
            in [1, length - len(prefix)] for ``sliding``.
    """
    width = length - len(prefix)  # text tokens per window
    if width < 1 or length < 2:
        raise ValueError(f"length {length} leaves no text token to score after the prefix")
    most = min(width, length - 1)  # every scored token needs one before it in its window
    if mode == "sliding" and (stride is None or not 1 <= stride <= most):
        raise ValueError(
            f"stride {stride} must be between 1 and {most} for a {length}-token window"
        )
    found: list[Window] = []
    for doc in documents:
        for window in _cut(doc, list(prefix), width, mode, stride or width):
            if len(found) == limit:
                return found
            found.append(window)
    return found


def _cut(
    doc: Sequence[int], prefix: list[int], width: int, mode: Mode, stride: int
) -> Iterator[Window]:
    first_whole = 1  # the first token has nothing before it; with a BOS it is scored
    if mode == "full":
        if len(doc) >= width:
            yield Window(prefix + list(doc[:width]), first_whole)
        return
    step = stride if mode == "sliding" else width
    start = 0
    while start + width <= len(doc):
        first = first_whole if start == 0 or mode == "disjoint" else len(prefix) + width - stride
        yield Window(prefix + list(doc[start : start + width]), first)
        start += step
