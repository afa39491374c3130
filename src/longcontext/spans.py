"""Token spans: each token's character range, computed once per text for the splitters."""

from __future__ import annotations

import bisect
import contextlib
from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import tiktoken

IntArray = npt.NDArray[np.int64]
# Token ids: a list from most tokenizers, a numpy array straight from tiktoken.
Ids = Sequence[int] | npt.NDArray[np.uint32]


class TokenSpans:
    """Token ids of a text and the character span ``[starts[k], ends[k])`` of each token.

    A token that covers only part of a character spans the whole character, so the boundary
    before token ``k`` falls on a character boundary exactly when ``ends[k-1] <= starts[k]``.
    """

    def __init__(self, ids: Ids, starts: IntArray, ends: IntArray) -> None:
        self.ids = ids
        self._starts = starts
        self._ends = ends

    @property
    def starts(self) -> IntArray:
        return self._starts

    @property
    def ends(self) -> IntArray:
        return self._ends

    def __len__(self) -> int:
        return len(self.ids)

    def start(self, k: int) -> int:
        """Character offset where token ``k`` starts (the text's length for ``k == len``)."""
        return int(self.starts[k])

    def is_char_boundary(self, k: int) -> bool:
        """Whether cutting between token ``k-1`` and token ``k`` keeps every character whole."""
        if k <= 0 or k >= len(self.ids):
            return True
        return bool(self.ends[k - 1] <= self.starts[k])

    def index_of(self, position: int, low: int = 0, high: int | None = None) -> int:
        """The first token in [low, high] that starts at or after character ``position``."""
        high = len(self.ids) if high is None else high
        while low < high:
            middle = (low + high) // 2
            if self.start(middle) < position:
                low = middle + 1
            else:
                high = middle
        return low


class ByteTokenSpans(TokenSpans):
    """Spans of a byte-level tokenizer, kept as byte offsets and turned into characters lazily.

    Splitters ask for a few offsets per chunk, so mapping every token to its character (a pass
    over all bytes) is done only when the full arrays are asked for.
    """

    def __init__(self, text: str, ids: Ids, byte_ends: IntArray) -> None:
        self.ids = ids
        self.text = text
        self.byte_ends = byte_ends
        self.data = None if text.isascii() else text.encode("utf-8")
        self._anchors_bytes: list[int] = [0]
        self._anchors_chars: list[int] = [0]
        self._full: tuple[IntArray, IntArray] | None = None

    def byte_starts(self) -> IntArray:
        """The byte offset where each token starts."""
        starts = np.empty_like(self.byte_ends)
        if len(starts):
            starts[0] = 0
            starts[1:] = self.byte_ends[:-1]
        return starts

    def _byte_start(self, k: int) -> int:
        return int(self.byte_ends[k - 1]) if k > 0 else 0

    def is_char_boundary(self, k: int) -> bool:
        if self.data is None or k <= 0 or k >= len(self.ids):
            return True
        return (self.data[self._byte_start(k)] & 0xC0) != 0x80

    def start(self, k: int) -> int:
        if k >= len(self.ids):
            return len(self.text)
        position = self._byte_start(k)
        if self.data is None:
            return position
        while position > 0 and (self.data[position] & 0xC0) == 0x80:
            position -= 1  # the start of the character this byte belongs to
        slot = bisect.bisect_right(self._anchors_bytes, position) - 1
        base_byte, base_char = self._anchors_bytes[slot], self._anchors_chars[slot]
        char = base_char + len(self.data[base_byte:position].decode("utf-8"))
        self._anchors_bytes.insert(slot + 1, position)
        self._anchors_chars.insert(slot + 1, char)
        return char

    def index_of(self, position: int, low: int = 0, high: int | None = None) -> int:
        byte = position if self.data is None else self._byte_of_char(position)
        found = int(np.searchsorted(self.byte_ends, byte, side="left")) + 1 if byte > 0 else 0
        return min(max(found, low), len(self.ids) if high is None else high)

    def _byte_of_char(self, char: int) -> int:
        slot = bisect.bisect_right(self._anchors_chars, char) - 1
        base_byte, base_char = self._anchors_bytes[slot], self._anchors_chars[slot]
        byte = base_byte + len(self.text[base_char:char].encode("utf-8"))
        self._anchors_bytes.insert(slot + 1, byte)
        self._anchors_chars.insert(slot + 1, char)
        return byte

    def _arrays(self) -> tuple[IntArray, IntArray]:
        if self._full is None:
            byte_starts = self.byte_starts()
            if self.data is None or len(self.ids) == 0:
                self._full = (byte_starts, self.byte_ends)
            else:
                data = np.frombuffer(self.data, dtype=np.uint8)
                char_of_byte = np.cumsum((data & 0xC0) != 0x80) - 1
                self._full = (char_of_byte[byte_starts], char_of_byte[self.byte_ends - 1] + 1)
        return self._full

    @property
    def starts(self) -> IntArray:
        return self._arrays()[0]

    @property
    def ends(self) -> IntArray:
        return self._arrays()[1]


@cache
def token_byte_lengths(encoding: tiktoken.Encoding) -> IntArray:
    """Byte length of every token id, so offsets come from one table lookup per token."""
    lengths = np.zeros(encoding.n_vocab, dtype=np.int64)
    ranks: dict[bytes, int] | None = getattr(encoding, "_mergeable_ranks", None)
    if ranks is not None:
        for token_bytes, rank in ranks.items():
            lengths[rank] = len(token_bytes)
    else:
        for rank in range(encoding.n_vocab):
            with contextlib.suppress(KeyError):
                lengths[rank] = len(encoding.decode_single_token_bytes(rank))
    return lengths


def spans_from_byte_lengths(text: str, ids: Ids, lengths: IntArray) -> ByteTokenSpans:
    if isinstance(ids, list):
        ids = np.fromiter(ids, dtype=np.uint32, count=len(ids))
    return ByteTokenSpans(text, ids, np.cumsum(lengths[ids]))
