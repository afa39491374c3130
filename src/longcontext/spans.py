"""Token spans: each token's character range, computed once per text for the splitters."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING, NamedTuple

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
    Characters that no token covers (a tokenizer's normalizer may drop them) lie between
    ``ends[k-1]`` and ``starts[k]``, or before ``starts[0]``.
    """

    def __init__(self, ids: Ids, starts: IntArray, ends: IntArray, length: int) -> None:
        self.ids = ids
        self._starts = starts
        self._ends = ends
        self.length = length  # of the text

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
        return int(self.starts[k]) if k < len(self.ids) else self.length

    def char_starts(self, tokens: Sequence[int]) -> list[int]:
        """:meth:`start` of several tokens (each below ``len(self)``) at once."""
        return [self.start(k) for k in tokens]

    def is_char_boundary(self, k: int) -> bool:
        """Whether cutting between token ``k-1`` and token ``k`` keeps every character whole."""
        if k <= 0 or k >= len(self.ids):
            return True
        return bool(self.ends[k - 1] <= self.starts[k])


class _Multibyte(NamedTuple):
    """Where each non-ASCII character of a text sits, and the extra bytes up to it."""

    byte: IntArray  # its first byte
    byte_end: IntArray  # the byte after it
    char: IntArray  # its character offset
    extra_through: IntArray  # extra bytes of all non-ASCII characters up to and including it


class ByteTokenSpans(TokenSpans):
    """Spans of a byte-level tokenizer, kept as byte offsets and turned into characters lazily.

    Characters and bytes differ only by the extra bytes of non-ASCII characters, so both
    directions are one binary search over where those characters start: no pass over every
    character, and none at all for ASCII text.
    """

    def __init__(self, text: str, ids: Ids, byte_ends: IntArray) -> None:
        self.ids = ids
        self.text = text
        self.length = len(text)
        self.byte_ends = byte_ends
        self.data = None if text.isascii() else text.encode("utf-8")
        self._multibyte: _Multibyte | None = None
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

    def _multibyte_chars(self) -> _Multibyte:
        if self._multibyte is None:
            assert self.data is not None
            data = np.frombuffer(self.data, dtype=np.uint8)
            lead = np.flatnonzero(data >= 0xC0).astype(np.int64)
            extra = 1 + (data[lead] >= 0xE0).astype(np.int64) + (data[lead] >= 0xF0)
            through = np.cumsum(extra)
            self._multibyte = _Multibyte(lead, lead + 1 + extra, lead - (through - extra), through)
        return self._multibyte

    def byte_offsets(self, chars: IntArray) -> IntArray:
        """UTF-8 byte offsets of character positions."""
        if self.data is None:
            return chars
        wide = self._multibyte_chars()
        before = np.searchsorted(wide.char, chars, side="left")  # wide characters before each
        extra: IntArray = np.where(before > 0, wide.extra_through[np.maximum(before - 1, 0)], 0)
        return chars + extra

    def char_offsets(self, positions: IntArray) -> IntArray:
        """Character offsets of byte positions; a byte inside a character gives its start."""
        if self.data is None:
            return positions
        wide = self._multibyte_chars()
        owner = np.searchsorted(wide.byte, positions, side="right") - 1  # last one at or before
        k = np.maximum(owner, 0)
        inside = (owner >= 0) & (positions < wide.byte_end[k])
        behind = positions - np.where(owner >= 0, wide.extra_through[k], 0)
        return np.where(inside, wide.char[k], behind)

    def char_starts(self, tokens: Sequence[int]) -> list[int]:
        k = np.asarray(tokens, dtype=np.int64)
        byte = np.where(k > 0, self.byte_ends[np.maximum(k - 1, 0)], 0)
        return self.char_offsets(byte).tolist()  # type: ignore[no-any-return]

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
        wide = self._multibyte_chars()  # char_offsets for one position, without array overhead
        owner = int(wide.byte.searchsorted(position, side="right")) - 1
        if owner < 0:
            return position
        if position < wide.byte_end[owner]:
            return int(wide.char[owner])
        return position - int(wide.extra_through[owner])

    def _arrays(self) -> tuple[IntArray, IntArray]:
        if self._full is None:
            starts = self.char_offsets(self.byte_starts())
            ends = self.char_offsets(self.byte_ends - 1) + 1 if len(self.ids) else self.byte_ends
            self._full = (starts, ends)
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
