"""What both splitters share: argument checks, batching, and exact token counts of slices."""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import numpy.typing as npt

from longcontext.chunk import Chunk
from longcontext.spans import ByteTokenSpans, TokenSpans
from longcontext.tokenizers import TiktokenTokenizer, Tokenizer, TokenizerLike


def check_text(text: Any) -> str:
    if not isinstance(text, str):
        raise TypeError(f"text must be str, got {type(text).__name__}; decode bytes first")
    return text


def check_budget(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be a positive number of tokens, got {name}={value}")
    return value


class Splitter(ABC):
    """A splitter turns a string into exact, in-order, covering chunks."""

    tokenizer: Tokenizer

    @abstractmethod
    def split(self, text: str) -> list[Chunk]:
        """Split ``text`` into chunks; ``text[c.start:c.end] == c.text`` for every chunk."""

    def split_many(self, texts: Iterable[str], num_threads: int | None = None) -> list[list[Chunk]]:
        """Split several texts. tiktoken and Hugging Face release the GIL, so threads use cores."""
        items = [check_text(t) for t in texts]
        workers = min(num_threads or os.cpu_count() or 1, len(items))
        if workers <= 1:
            return [self.split(t) for t in items]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(self.split, items))

    def __call__(self, text: str) -> list[Chunk]:
        return self.split(text)


# A space between a non-space and a letter starts a new pre-tokenizer piece in tiktoken's
# cl100k/o200k patterns (" word"), whatever precedes it, and no piece spans it.
_SAFE_CUT = re.compile(r"(?<=\S) (?=[^\W\d_])")


class SliceCounter:
    """Exact token counts of slices of one text, re-encoding only their edges.

    With tiktoken, a slice's pieces between its first and last "safe" position (a space that
    starts a word) are exactly the pieces the whole-text encoding had there, and BPE never
    merges across pieces, so those tokens are counted from the first encoding and only the two
    edges are re-encoded. Other tokenizers, whose normalizers may not be local, re-encode the
    whole slice.
    """

    def __init__(self, tokenizer: Tokenizer, text: str, spans: TokenSpans) -> None:
        self.tokenizer = tokenizer
        self.text = text
        self.spans = spans
        self.local = isinstance(tokenizer, TiktokenTokenizer)
        self._pieces: npt.NDArray[np.intp] | None = None

    def count_tokens(self, i: int, j: int, start: int, end: int) -> int:
        """Tokens in ``text[start:end]``, the slice from token ``i``'s start to token ``j``'s.

        Most windows begin and end on piece edges and re-encode to exactly tokens ``i`` to
        ``j``. Otherwise the nearest piece edges inside are looked up and only the bits
        outside them are re-encoded.
        """
        if not self.local:
            return self.tokenizer.count(self.text[start:end])
        n = len(self.spans)
        first: int | None = i
        last: int | None = j
        if not (i == 0 or _SAFE_CUT.match(self.text, start)):
            first = self._piece_start_after(i, j)
        if not (j >= n or _SAFE_CUT.match(self.text, end)):
            last = self._piece_start_before(j, i)
        if first is None or last is None or first > last:
            return self.tokenizer.count(self.text[start:end])
        encode, text, spans = self.tokenizer.count, self.text, self.spans
        head = encode(text[start : spans.start(first)]) if first > i else 0
        tail = encode(text[spans.start(last) : end]) if last < j else 0
        return head + (last - first) + tail

    def _piece_start_after(self, i: int, j: int) -> int | None:
        starts = self._piece_starts()
        slot = int(np.searchsorted(starts, i, side="right"))
        return int(starts[slot]) if slot < len(starts) and starts[slot] < j else None

    def _piece_start_before(self, j: int, i: int) -> int | None:
        starts = self._piece_starts()
        slot = int(np.searchsorted(starts, j, side="left")) - 1
        return int(starts[slot]) if slot >= 0 and starts[slot] > i else None

    def _piece_starts(self) -> npt.NDArray[np.intp]:
        """Indices of the tokens that start with a safe cut, found in one pass over the bytes.

        Only ASCII neighbours are recognised (a space after a printable character, before a
        letter): a subset of ``_SAFE_CUT``, which is all that exactness needs.
        """
        if self._pieces is None:
            spans = self.spans
            assert isinstance(spans, ByteTokenSpans)
            data = np.frombuffer(spans.data or spans.text.encode("ascii"), dtype=np.uint8)
            starts = spans.byte_starts()
            inside = (starts > 0) & (starts + 1 < len(data))
            at = np.where(inside, starts, 1)
            before, here, after = data[at - 1], data[at], data[np.minimum(at + 1, len(data) - 1)]
            letter = ((after | 0x20) >= ord("a")) & ((after | 0x20) <= ord("z"))
            safe = inside & (here == 0x20) & (before > 0x20) & (before < 0x7F) & letter
            self._pieces = np.flatnonzero(safe)
        return self._pieces

    def _is_piece_edge(self, position: int) -> bool:
        """Whether every encoding has a piece starting at ``position`` (text ends included)."""
        text = self.text
        return position in (0, len(text)) or _SAFE_CUT.match(text, position) is not None

    def count(self, start: int, end: int, low: int = 0, high: int | None = None) -> int:
        """Tokens in ``text[start:end]`` re-encoded on its own.

        ``low`` and ``high`` bound the indices of the first encoding's tokens inside the slice.
        """
        text = self.text
        if self.local:
            if self._is_piece_edge(start) and self._is_piece_edge(end):
                spans = self.spans
                return spans.index_of(end, low, high) - spans.index_of(start, low, high)
            first = _SAFE_CUT.search(text, start + 1, end)
            last = _last_safe_cut(text, start + 1, end)
            if first is not None and last is not None and first.start() <= last:
                spans = self.spans
                inner = spans.index_of(last, low, high) - spans.index_of(first.start(), low, high)
                encode = self.tokenizer.count
                return encode(text[start : first.start()]) + inner + encode(text[last:end])
        return self.tokenizer.count(text[start:end])


def _last_safe_cut(text: str, low: int, end: int) -> int | None:
    """The last safe cut in [low, end), scanning back a little before a regex search."""
    for position in range(end - 1, max(low, end - 64) - 1, -1):
        if (
            text[position] == " "
            and position + 1 < end
            and position > 0
            and not text[position - 1].isspace()
            and _SAFE_CUT.match(text, position, position + 2) is not None
        ):
            return position
    if end - 64 <= low:
        return None
    found = None
    for match in _SAFE_CUT.finditer(text, low, end - 1):
        found = match.start()
    return found


def resolve(tokenizer: TokenizerLike) -> Tokenizer:
    from longcontext.tokenizers import get_tokenizer

    return get_tokenizer(tokenizer)


def make_chunks(text: str, bounds: Sequence[tuple[int, int, int]]) -> list[Chunk]:
    """Chunks from (start, end, token_count) triples: the text is always a slice of the source."""
    return [
        Chunk(text=text[start:end], start=start, end=end, token_count=count, index=index)
        for index, (start, end, count) in enumerate(bounds)
    ]
