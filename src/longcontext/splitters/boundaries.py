"""Natural boundaries of a text, coarse to fine, as sorted character positions.

A boundary position is where a new unit starts: a cut there keeps both sides whole. Positions
come from regular expressions over the whole text, so finding them costs one scan per level.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from functools import lru_cache

import numpy as np
import numpy.typing as npt

Positions = npt.NDArray[np.int64]

# Each level names where its units begin. Cuts sit right after line breaks and after sentence
# punctuation, so a chunk ends with its own newline or full stop.
_HEADER = re.compile(r"(?m)^(?=#{1,6}[ \t])")
_PARAGRAPH = re.compile(r"\n[ \t]*\n\s*")
# A "\n" escape (text dumped as JSON or a Python repr) ends a line as much as a newline does.
_LINE = re.compile(r"\n|(?<!\\)\\n")
# Western sentence ends need following whitespace; CJK full-width ends do not. Starting with
# one character class lets the engine skip ahead fast.
_SENTENCE = re.compile(r"[.!?…。！？](?:(?<=[.!?…])[\"'”’)\]]*(?=\s)|(?<=[。！？])[」』”’）]*)")
_WORD = re.compile(r"\s+")

LEVELS = ("header", "paragraph", "line", "sentence", "word")


def sentence_ends(text: str) -> Positions:
    """Positions right after each sentence's closing punctuation."""
    return np.fromiter((m.end() for m in _SENTENCE.finditer(text)), dtype=np.int64)


# A fence line of CommonMark: up to three spaces, then three or more backticks or tildes.
_FENCE = re.compile(r"(?m)^ {0,3}(`{3,}|~{3,})(.*)$")


@lru_cache(maxsize=8)
def fenced_blocks(text: str) -> tuple[tuple[int, int], ...]:
    """``(start, end)`` of each fenced code block (``` or ~~~), fences included.

    As in CommonMark, a block closes at a fence of the same character at least as long with
    nothing but spaces after it, and an unclosed block runs to the end of the text. Cached per
    text: the splitters ask for header cuts of many stretches of one text.
    """
    if "```" not in text and "~~~" not in text:
        return ()
    blocks: list[tuple[int, int]] = []
    opened: re.Match[str] | None = None
    for match in _FENCE.finditer(text):
        fence, rest = match.group(1), match.group(2)
        if opened is None:
            if fence[0] == "`" and "`" in rest:
                continue  # an inline code span, not a fence
            opened = match
        elif (
            fence[0] == opened.group(1)[0]
            and len(fence) >= len(opened.group(1))
            and (not rest.strip())
        ):
            blocks.append((opened.start(), match.end()))
            opened = None
    if opened is not None:
        blocks.append((opened.start(), len(text)))
    return tuple(blocks)


def _outside_code(text: str, positions: list[int]) -> list[int]:
    """Positions that are not inside a fenced code block ("# comment" in code is no header)."""
    blocks = fenced_blocks(text)
    if not blocks:
        return positions
    block_starts = [a for a, _ in blocks]
    kept = []
    for p in positions:
        k = bisect_right(block_starts, p) - 1
        if k < 0 or p >= blocks[k][1]:
            kept.append(p)
    return kept


# Where a level's cut sits in each match: its end (after a break), or its start (before one).
_LEVELS: dict[str, tuple[re.Pattern[str], bool]] = {
    "header": (_HEADER, False),
    "paragraph": (_PARAGRAPH, True),
    "line": (_LINE, True),
    "sentence": (_SENTENCE, True),
    "word": (_WORD, False),
}


def cuts(text: str, level: str, start: int, end: int) -> list[int]:
    """Cut positions of one level strictly inside ``text[start:end]``, in order.

    Only that stretch is scanned, so finer levels cost nothing where coarse pieces fit.
    """
    try:
        pattern, at_end = _LEVELS[level]
    except KeyError:
        raise ValueError(f"unknown boundary level {level!r}; expected one of {LEVELS}") from None
    found = [m.end() if at_end else m.start() for m in pattern.finditer(text, start, end)]
    inside = [p for p in found if start < p < end]
    return _outside_code(text, inside) if level == "header" and inside else inside
