"""The Chunk record: a piece of a source text with its exact character span."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Chunk:
    """A chunk of a source string.

    ``source[start:end] == text`` always holds: chunks are slices, never rebuilt text.
    """

    text: str
    start: int
    end: int
    token_count: int
    index: int
    metadata: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.end - self.start

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the record."""
        return {
            "index": self.index,
            "start": self.start,
            "end": self.end,
            "token_count": self.token_count,
            "text": self.text,
            "metadata": dict(self.metadata),
        }
