"""Natural boundaries of a text, coarse to fine, as sorted character positions.

A boundary position is where a new unit starts: a cut there keeps both sides whole. Positions
come from regular expressions over the whole text, so finding them costs one scan per level.
"""

from __future__ import annotations

import re

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


def _ends(pattern: re.Pattern[str], text: str) -> Positions:
    return np.fromiter((m.end() for m in pattern.finditer(text)), dtype=np.int64)


def _starts(pattern: re.Pattern[str], text: str) -> Positions:
    return np.fromiter((m.start() for m in pattern.finditer(text)), dtype=np.int64)


def sentence_ends(text: str) -> Positions:
    """Positions right after each sentence's closing punctuation."""
    return _ends(_SENTENCE, text)


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
    return [p for p in found if start < p < end]


def level_positions(text: str, level: str) -> Positions:
    """Cut positions of one level, strictly inside the text, sorted and unique."""
    if level == "header":
        found = _starts(_HEADER, text)
    elif level == "paragraph":
        found = _ends(_PARAGRAPH, text)
    elif level == "line":
        found = _ends(_LINE, text)
    elif level == "sentence":
        found = sentence_ends(text)
    elif level == "word":
        found = _starts(_WORD, text)
    else:
        raise ValueError(f"unknown boundary level {level!r}; expected one of {LEVELS}")
    inside = found[(found > 0) & (found < len(text))]
    return np.unique(inside)
