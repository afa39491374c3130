"""Exact token counts of slices of one text, from its single encoding.

Splitters try thousands of windows over one text; re-encoding each would cost a pass over the
text per window. :class:`SliceCounter` counts a slice from the whole text's tokens and
re-encodes only its edges.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from longcontext.spans import ByteTokenSpans, TokenSpans
from longcontext.tokenizers import HuggingFaceTokenizer, TiktokenTokenizer, Tokenizer

if TYPE_CHECKING:
    from longcontext.tokenizers import SpanPart

# How many tokens to look past an edge for a safe cut before re-encoding the whole slice.
_SCAN = 64
# How many such misses in one text before its pattern's cuts are found in one pass.
_MISSES_BEFORE_PATTERN = 8


def _line_starts_piece(tokenizer: TiktokenTokenizer) -> bool:
    pattern: str = getattr(tokenizer.encoding, "_pat_str", "")
    run, lookahead = pattern.find(r"\s*[\r\n]"), pattern.find(r"\s+(?!\S)")
    return 0 <= run < lookahead


class SliceCounter:
    """Exact token counts of slices of one text, re-encoding only their edges.

    With tiktoken, a slice's pieces between its first and last "safe" position (see
    ``_starts_piece``) are exactly the pieces the whole-text encoding had there, and BPE never
    merges across pieces, so those tokens are counted from the first encoding and only the two
    edges are re-encoded. A Hugging Face tokenizer with a cut rule (see
    :func:`longcontext.tokenizers.local_cut_rule`) is counted the same way, its safe positions
    being the token starts where the rule allows a cut. Other tokenizers, whose normalizers may
    not be local, re-encode the whole slice.
    """

    def __init__(self, tokenizer: Tokenizer, text: str, spans: TokenSpans) -> None:
        self.tokenizer = tokenizer
        self.text = text
        self.spans = spans
        self.local = isinstance(tokenizer, TiktokenTokenizer)
        self.lines = isinstance(tokenizer, TiktokenTokenizer) and _line_starts_piece(tokenizer)
        self.hf = tokenizer if isinstance(tokenizer, HuggingFaceTokenizer) else None
        if self.hf is not None and self.hf.cut_rule is None:
            self.hf = None
        if self.local:
            assert isinstance(spans, ByteTokenSpans)
            self._raw = spans.data or text.encode("ascii")
            self._byte_ends = spans.byte_ends
        self._pieces: npt.NDArray[np.intp] | None = None
        self._misses = 0

    def count_span(self, i: int, j: int) -> int:
        """Tokens in the slice from token ``i``'s start to token ``j``'s (both on characters).

        Splitters that cut between tokens call this for every window. It works on token
        indices and bytes alone: the common case, both edges at a safe cut, costs two byte
        lookups; otherwise only the few tokens outside the nearest safe cuts are re-encoded.
        """
        if self.hf is not None:
            self.spans.start(j)  # streamed spans read on to j: then j >= n at the text's end only
        n = len(self.spans)
        if not self.local and self.hf is None:
            # The first slice starts at the text's start, with whatever the tokenizer dropped.
            start = 0 if i == 0 else self.spans.start(i)
            end = len(self.text) if j >= n else self.spans.start(j)
            return self.tokenizer.count(self.text[start:end])
        first = i if i == 0 or self._starts_piece(i) else self._piece_start_after(i, j)
        last = j if j >= n or self._starts_piece(j) else self._piece_start_before(j, i)
        count = self.tokenizer.count
        if first is None or last is None or first > last:
            return count(self._text_between(i, j))
        head = count(self._text_between(i, first)) if first > i else 0
        tail = count(self._text_between(last, j)) if last < j else 0
        return head + (last - first) + tail

    def count_chars(self, start: int, end: int, i: int, j: int) -> int:
        """Tokens in ``text[start:end]`` when an edge falls inside a token; ``i`` and ``j`` are
        the first tokens starting at or after ``start`` and ``end``.

        Each such edge is re-encoded with the text up to the nearest safe cut inside the
        slice; what lies between is counted by :meth:`count_span`.
        """
        count, spans = self.tokenizer.count, self.spans
        if not self.local and self.hf is None:
            return count(self.text[start:end])
        start_on_token = self._token_starts_at(i, start)
        end_on_token = self._token_starts_at(j, end)
        first = i if start_on_token else self._piece_start_after(i - 1, j)
        last = j if end_on_token else self._piece_start_before(j, i)
        if first is None or last is None or first > last:
            return count(self.text[start:end])
        head = 0 if start_on_token else count(self.text[start : spans.start(first)])
        tail = 0 if end_on_token else count(self.text[spans.start(last) : end])
        return head + self.count_span(first, last) + tail

    def _token_starts_at(self, k: int, position: int) -> bool:
        if k >= len(self.spans):
            return position == len(self.text)
        return self.spans.is_char_boundary(k) and self.spans.start(k) == position

    def _text_between(self, i: int, j: int) -> str:
        """The text from token ``i``'s start to token ``j``'s, both on character boundaries."""
        if self.hf is not None:
            return self.text[0 if i == 0 else self.spans.start(i) : self.spans.start(j)]
        ends = self._byte_ends
        return self._raw[int(ends[i - 1]) if i else 0 : int(ends[j - 1]) if j else 0].decode()

    def _piece_start_after(self, i: int, j: int) -> int | None:
        for k in range(i + 1, min(j, i + self._scan())):
            if self._starts_piece(k):
                return k
        pieces = self._pattern_pieces()  # none nearby: text without spaces (CJK, code, data)
        if pieces is None:
            return None
        slot = int(np.searchsorted(pieces, i, side="right"))
        return int(pieces[slot]) if slot < len(pieces) and pieces[slot] < j else None

    def _piece_start_before(self, j: int, i: int) -> int | None:
        for k in range(j - 1, max(i, j - self._scan()), -1):
            if self._starts_piece(k):
                return k
        pieces = self._pattern_pieces()
        if pieces is None:
            return None
        slot = int(np.searchsorted(pieces, j, side="left")) - 1
        return int(pieces[slot]) if slot >= 0 and pieces[slot] > i else None

    def _scan(self) -> int:
        """Tokens to look through for a byte-level safe cut: fewer once the pattern's cuts,
        one binary search away, are known (text that needed them is short of spaces)."""
        return _SCAN if self._pieces is None else 4

    def _pattern_pieces(self) -> npt.NDArray[np.intp] | None:
        if self.hf is not None:
            return None  # only the cut rule's positions are known to be safe
        return self._tiktoken_pattern_pieces()

    def _tiktoken_pattern_pieces(self) -> npt.NDArray[np.intp] | None:
        """Tokens that start a piece of the encoding's own pre-tokenizer pattern, found in one
        pass over the text once the byte rules have found no cut nearby a few times (until
        then, and for a text with a rare such stretch, the slice is re-encoded whole: cheaper
        than a pass over all of it).

        Only pieces that start where a run of letters ends (at a digit or a symbol) count: the
        run ends there by its class alone, never by lookahead or by where its piece began, and
        no piece takes a letter as a prefix, so a slice cut there ends and starts exactly as
        the whole text's pieces do. Elsewhere it may not: "23" re-encodes apart from "4" but
        "234" is one piece; "&" is the prefix of "&quot" in a slice that starts with it; and
        o200k ends "bar't" after its contraction, but "'title" is one piece. An apostrophe
        does not count either: in a slice, a letter that closed a contraction ("X's|'t")
        can take the next one ("'s't").
        """
        if self._pieces is None:
            self._misses += 1
            if self._misses <= _MISSES_BEFORE_PATTERN:
                return None
            import regex  # tiktoken's own dependency, for its \p{L} patterns

            text = self.text
            pattern: str = getattr(self.tokenizer.encoding, "_pat_str", "")  # type: ignore[attr-defined]
            found = (m.start() for m in (regex.finditer(pattern, text) if pattern else ()))
            starts = [
                p
                for p in found
                if p
                and text[p - 1].isalpha()
                and not (text[p].isalpha() or text[p].isspace() or text[p] == "'")
            ]
            spans = self.spans
            assert isinstance(spans, ByteTokenSpans)
            at = spans.byte_offsets(np.asarray(starts, dtype=np.int64))
            token_starts = spans.byte_starts()
            k = np.searchsorted(token_starts, at)
            exact = (k < len(token_starts)) & (
                token_starts[np.minimum(k, len(token_starts) - 1)] == at
            )
            self._pieces = k[exact]
        return self._pieces

    def _starts_piece(self, k: int) -> bool:
        r"""Whether token ``k`` starts at a safe cut, judged on the bytes around it.

        A lone space between two non-spaces starts a pre-tokenizer piece in tiktoken's
        patterns (" word", " `", or a piece of its own before digits), and no piece spans it.
        Where a newline run is one piece that ends at the next non-space whatever follows
        (cl100k's and o200k's ``\s*[\r\n]``; GPT-2's patterns split such runs by lookahead),
        the character after a newline starts a piece too, unless it is "/", which o200k's
        punctuation pieces take after their newlines (":\n/").

        A Hugging Face tokenizer's token is safe where it starts at a cut its rule allows.
        """
        if self.hf is not None:  # the text first: one offset to read where it says no
            spans = self.spans
            return self.hf.is_cut(self.text, spans.start(k)) and spans.is_char_boundary(k)
        raw, b = self._raw, int(self._byte_ends[k - 1])
        if b + 1 >= len(raw):
            return False
        before, here = raw[b - 1], raw[b]
        if here == 0x20:  # a lone space between non-spaces
            return not (self._is_space(self._char_ending(b)) or self._is_space(b + 1))
        if self.lines and before in (0x0A, 0x0D):  # a non-space after a newline
            return here != 0x2F and not self._is_space(b)
        return False

    def _is_space(self, b: int) -> bool:
        """Whether the character starting at byte ``b`` is whitespace (ASCII: no decoding)."""
        lead = self._raw[b]
        if lead < 0x80:
            return lead <= 0x20 or lead == 0x7F or chr(lead).isspace()
        width = 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4
        return self._raw[b : b + width].decode("utf-8", "replace").isspace()

    def _char_ending(self, b: int) -> int:
        """The first byte of the character that ends at byte ``b``."""
        start = b - 1
        while start > 0 and self._raw[start] & 0xC0 == 0x80:
            start -= 1
        return start


class StreamedSpans(TokenSpans):
    """The spans of one text, read a segment at a time and kept only around where a splitter
    works.

    Token indices are the whole text's; :meth:`extend_to` reads segments up to an index and
    :meth:`release` forgets the segments before one. ``len()`` is the number of tokens read so
    far, the whole count once the last segment is in (:attr:`done`): a caller that needs tokens
    up to ``k`` extends to ``k`` first. Asking :meth:`start` or :meth:`is_char_boundary` past
    what was read reads on, so a scan never takes the end of what was read for the text's end.
    """

    def __init__(self, parts: Iterator[SpanPart], length: int) -> None:
        self.ids: list[int] = []  # not kept: len() is overridden
        self.length = length
        self._parts = parts
        self._bases: list[int] = []  # the whole-text index of each held segment's first token
        self._held: list[SpanPart] = []
        self._read = 0  # tokens read so far
        self.done = False

    def __len__(self) -> int:
        return self._read

    @property
    def base(self) -> int:
        """The first token still held."""
        return self._bases[0] if self._bases else self._read

    def extend_to(self, k: int) -> None:
        """Read segments until token ``k`` is in, or the text is."""
        while k >= self._read and not self.done:
            part = next(self._parts, None)
            if part is None:
                self.done = True
            elif part.count:
                self._bases.append(self._read)
                self._held.append(part)
                self._read += part.count

    def release(self, k: int) -> None:
        """Forget the segments that end before token ``k``."""
        while len(self._bases) > 1 and self._bases[1] <= k:
            del self._bases[0], self._held[0]

    def _offsets(self, k: int) -> tuple[int, int]:
        """Token ``k``'s character span, for ``k`` read and held."""
        bases = self._bases
        # Most lookups fall in the last segment read: no search then.
        at = len(bases) - 1 if bases and k >= bases[-1] else bisect_right(bases, k) - 1
        if at < 0:
            raise IndexError(f"token {k} was released (tokens from {self.base} are kept)")
        return self._held[at].offsets(k - bases[at])

    def start(self, k: int) -> int:
        if k >= self._read:
            self.extend_to(k)
        if k >= self._read:
            return self.length
        # The first token also spans what the normalizer dropped before it.
        return 0 if k == 0 else self._offsets(k)[0]

    def char_starts(self, tokens: Sequence[int]) -> list[int]:
        return [self.start(k) for k in tokens]

    def is_char_boundary(self, k: int) -> bool:
        if k >= self._read:
            self.extend_to(k)
        if k <= 0 or k >= self._read:
            return True
        return self._offsets(k - 1)[1] <= self._offsets(k)[0]
