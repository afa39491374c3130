"""One tokenizer adapter: token ids and character offsets for tiktoken, Hugging Face and callables.

Splitters never decode tokens back into text. They ask for each token's character span once and
slice the source string, so chunks are exact and a token that covers part of a multi-byte
character can never split it.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from functools import cache
from itertools import chain, pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import tiktoken

    from longcontext.spans import TokenSpans

    # One block of a streamed encoding: token ids (when asked for), start and end offsets.
    SpanBlock = tuple[npt.NDArray[np.uint32] | None, npt.NDArray[np.int64], npt.NDArray[np.int64]]


TIKTOKEN_NAMES = ("cl100k_base", "o200k_base", "p50k_base", "r50k_base", "gpt2")
# Cache file names (sha1 of tiktoken's download address) of the encodings that llama-index-core
# bundles and ../shared/data/tokenizers/tiktoken holds.
_TIKTOKEN_CACHE_FILES = {
    "cl100k_base": "9b5ad71b2ce5302211f9c61530b329a4922fc6a4",
    "o200k_base": "fb374d419588a4632f3f557e76b4b70aebbca790",
}
ACCEPTED = (
    "a tiktoken encoding name (" + ", ".join(TIKTOKEN_NAMES) + ") or tiktoken.Encoding; "
    "a Hugging Face tokenizers.Tokenizer, transformers tokenizer, tokenizer.json path, local "
    "model directory or model id; a callable str -> list[int]; or a longcontext Tokenizer"
)


class Tokenizer(ABC):
    """Counts tokens and, where the backend can, gives each token's character span."""

    name: str = "tokenizer"

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, without special tokens."""

    def count(self, text: str) -> int:
        return len(self.encode(text))

    def spans(self, text: str) -> TokenSpans | None:
        """Ids with character spans, or None when the backend cannot give offsets."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


# --------------------------------------------------------------------------------------- tiktoken
_env_lock = threading.Lock()


def _bundled_tiktoken_dirs() -> list[Path]:
    dirs: list[Path] = []
    for var in ("TIKTOKEN_CACHE_DIR", "DATA_GYM_CACHE_DIR"):
        if os.environ.get(var):
            dirs.append(Path(os.environ[var]))
    # Look on sys.path rather than importing llama_index just to find its data folder.
    for entry in sys.path:
        bundled = Path(entry or ".") / "llama_index" / "core" / "_static" / "tiktoken_cache"
        if bundled.is_dir():
            dirs.append(bundled)
    import tempfile

    dirs.append(Path(tempfile.gettempdir()) / "data-gym-cache")
    return dirs


@cache
def load_tiktoken(name: str) -> tiktoken.Encoding:
    """``tiktoken.get_encoding`` that works offline.

    Looks for the encoding's file in ``TIKTOKEN_CACHE_DIR``, in llama-index-core's bundled cache
    and in tiktoken's default cache before letting tiktoken download it.
    """
    import tiktoken

    key = _TIKTOKEN_CACHE_FILES.get(name)
    if key is not None:
        for directory in _bundled_tiktoken_dirs():
            if (directory / key).is_file():
                with _env_lock:
                    saved = os.environ.get("TIKTOKEN_CACHE_DIR")
                    os.environ["TIKTOKEN_CACHE_DIR"] = str(directory)
                    try:
                        return tiktoken.get_encoding(name)
                    finally:
                        if saved is None:
                            del os.environ["TIKTOKEN_CACHE_DIR"]
                        else:
                            os.environ["TIKTOKEN_CACHE_DIR"] = saved
    try:
        return tiktoken.get_encoding(name)
    except Exception as exc:  # network errors come in many types
        hint = f"a file named {key}" if key else f"the {name} BPE file"
        raise RuntimeError(
            f"tiktoken encoding {name!r} is not cached and could not be downloaded ({exc}). "
            f"Put {hint} in a folder and set TIKTOKEN_CACHE_DIR to it, or install "
            "llama-index-core, which bundles cl100k_base and o200k_base."
        ) from exc


class TiktokenTokenizer(Tokenizer):
    """A tiktoken encoding. Offsets come from the tokens' byte lengths."""

    def __init__(self, encoding: str | tiktoken.Encoding) -> None:
        self.encoding = load_tiktoken(encoding) if isinstance(encoding, str) else encoding
        self.name = self.encoding.name

    def encode(self, text: str) -> list[int]:
        return self.encoding.encode_ordinary(text)

    def spans(self, text: str) -> TokenSpans:
        from longcontext.spans import spans_from_byte_lengths, token_byte_lengths

        # Straight to numpy: no list of Python ints. With nothing disallowed, special-token
        # text is encoded as ordinary text, exactly as encode_ordinary does.
        ids = self.encoding.encode_to_numpy(text, disallowed_special=())
        return spans_from_byte_lengths(text, ids, token_byte_lengths(self.encoding))


# ---------------------------------------------------------------------------------- Hugging Face
# Whitespace every Hugging Face whitespace rule agrees on (BERT's clean_text maps these to a
# space, and both Rust's and Python's notions of whitespace include them).
_ASCII_SPACES = " \t\n\r"
# Pre-tokenizer splits of byte-level BPE tokenizers whose pieces never hold a non-space followed
# by a space, so a lone space between two non-spaces always starts a piece (Qwen2 and Llama 3).
_SPLIT_PATTERNS = {
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+",
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+",
}
# Normalizers that act on each character alone (NFD/NFC reorder or compose combining marks, and
# never across a space), so a cut next to an ASCII space normalizes as the whole text does.
_WORD_NORMALIZERS = {"BertNormalizer", "Lowercase", "NFD", "NFC", "NFKD", "NFKC", "StripAccents"}
# NFKC/NFKD may turn a non-space into something that starts with a space ("¨" -> " \u0308"),
# which would join a lone space before it into a run: not allowed next to a byte-level cut.
_SPACE_NORMALIZERS = {"Lowercase", "NFD", "NFC"}
_WORD_SPLITTERS = {"BertPreTokenizer", "Whitespace", "WhitespaceSplit"}
_LOCAL_SPLITTERS = _WORD_SPLITTERS | {"Punctuation", "Digits"}
# Characters per segment, and segments per encode_batch call (which runs them on Rust threads).
SEGMENT_CHARS = 32_768
SEGMENTS_PER_BATCH = 8
CutRule = str  # "word" or "space"


def _components(config: dict[str, Any] | None, key: str) -> list[dict[str, Any]]:
    """A normalizer or pre-tokenizer config as the flat list of its parts."""
    if config is None:
        return []
    if config.get("type") == "Sequence":
        return [part for child in config[key] for part in _components(child, key)]
    return [config]


def local_cut_rule(config: dict[str, Any]) -> CutRule | None:
    """Where a Hugging Face tokenizer (its tokenizer.json, parsed) provably encodes a text's two
    sides of a cut independently, or None when that is not known for its components.

    ``"word"``: right after ASCII whitespace, for tokenizers whose pre-tokenizer drops
    whitespace (BERT's WordPiece, Whitespace, WhitespaceSplit). ``"space"``: at a lone space
    between two non-spaces, for byte-level BPE whose pieces start at such a space (GPT-2's
    ByteLevel regex, Qwen2's and Llama 3's Split patterns). In both cases the pre-tokenizer
    always splits there, the normalizer is per character, and every model encodes each
    pre-tokenizer piece on its own, so the tokens of ``text[:p]`` and ``text[p:]`` are those of
    ``text`` on either side of ``p``. Added tokens are matched before all that, so none may
    contain whitespace.
    """
    for added in config.get("added_tokens", []):
        # Matched first, an added token may eat the spaces next to it (lstrip/rstrip): "<mask>
        # bar" then encodes "bar" where a segment from the space would encode " bar".
        content = added.get("content", "")
        if added.get("lstrip") or added.get("rstrip") or any(c.isspace() for c in content):
            return None
    model = config.get("model") or {}
    if model.get("dropout"):  # BPE dropout: not even two encodings of one text agree
        return None
    normalizers = {
        part.get("type") for part in _components(config.get("normalizer"), "normalizers")
    }
    splitters = _components(config.get("pre_tokenizer"), "pretokenizers")
    kinds = [part.get("type") for part in splitters]
    if (
        kinds
        and set(kinds) <= _LOCAL_SPLITTERS
        and set(kinds) & _WORD_SPLITTERS
        and normalizers <= _WORD_NORMALIZERS
    ):
        return "word"
    if not normalizers <= _SPACE_NORMALIZERS:
        return None
    if kinds == ["ByteLevel"] and not splitters[0].get("add_prefix_space"):
        return "space" if splitters[0].get("use_regex", True) else None
    if kinds == ["Split", "ByteLevel"]:
        split, byte_level = splitters
        pattern = (split.get("pattern") or {}).get("Regex")
        if (
            pattern in _SPLIT_PATTERNS
            and split.get("behavior") == "Isolated"
            and not split.get("invert")
            and not byte_level.get("add_prefix_space")
            and not byte_level.get("use_regex", True)
        ):
            return "space"
    return None


def _cut_pattern(rule: CutRule) -> re.Pattern[str]:
    # Python's \S is narrower than Rust's \S (it calls U+001C..U+001F spaces), so a Python
    # non-space is a non-space to the tokenizer too.
    if rule == "word":
        return re.compile(r"(?<=[ \t\n\r])[^ \t\n\r]")
    return re.compile(r"(?<=\S) (?=\S)")


def segment_cuts(text: str, rule: CutRule, size: int) -> list[int]:
    """Positions about ``size`` characters apart (0 and ``len(text)`` included) where ``rule``
    lets the text be encoded in pieces; a text with no such position stays whole."""
    pattern = _cut_pattern(rule)
    cuts = [0]
    while len(text) - cuts[-1] > size:
        previous, target = cuts[-1], cuts[-1] + size
        found, reach = -1, 256
        while found < 0:  # the last cut up to the target, looking back further each time
            low = max(previous + 1, target - reach)
            # One character past the target, so that a lookahead sees what follows a cut there.
            for match in pattern.finditer(text, low, target + 1):
                if match.start() <= target:
                    found = match.start()
            if low == previous + 1:
                break
            reach *= 8
        if found < 0:  # none since the last cut: the first one after the target
            after = pattern.search(text, target)
            if after is None:
                break
            found = after.start()
        cuts.append(found)
    cuts.append(len(text))
    return cuts


# Characters from U+0300 on: all combining marks, and all characters that decompose into one.
_BEYOND_LATIN = re.compile("[\u0300-\U0010ffff]")


@cache
def _reorderable(char: str) -> bool:
    """Whether a character's (compatibility) decomposition starts with a combining mark: the
    only characters a normalizer may move before the one in front of them."""
    import unicodedata

    return bool(
        unicodedata.combining(char) or unicodedata.combining(unicodedata.normalize("NFKD", char)[0])
    )


class EncodedSegment:
    """One segment's encoding, whose offsets are read one token at a time when asked for."""

    __slots__ = ("count", "encoding", "offset")

    def __init__(self, offset: int, encoding: Any) -> None:
        self.offset = offset
        self.encoding = encoding
        self.count: int = len(encoding)

    def offsets(self, k: int) -> tuple[int, int]:
        start, end = self.encoding.token_to_chars(k)
        return start + self.offset, end + self.offset


class ArraySegment:
    """One segment's offsets, read into arrays (kept monotone)."""

    __slots__ = ("count", "ends", "starts")

    def __init__(self, starts: Any, ends: Any) -> None:
        self.starts = starts
        self.ends = ends
        self.count: int = len(starts)

    def offsets(self, k: int) -> tuple[int, int]:
        return int(self.starts[k]), int(self.ends[k])


SpanPart = EncodedSegment | ArraySegment


class HuggingFaceTokenizer(Tokenizer):
    """A Hugging Face fast tokenizer (``tokenizers.Tokenizer`` or a transformers fast tokenizer).

    Where its components allow it (see :func:`local_cut_rule`), a long text is encoded in
    segments of about ``SEGMENT_CHARS`` characters cut where the tokens on either side are
    those of the whole text, a batch at a time on the tokenizer's Rust threads: the spans are the
    whole-text encoding's, but no encoding of the whole text is ever held (a single encode of
    50 MB takes gigabytes and slows down with the text's length).
    """

    def __init__(self, tokenizer: Any, name: str | None = None) -> None:
        from tokenizers import Tokenizer as RustTokenizer

        backend = tokenizer if isinstance(tokenizer, RustTokenizer) else tokenizer.backend_tokenizer
        # A copy, so that turning truncation and padding off never changes the caller's object.
        config = backend.to_str()
        self.backend = RustTokenizer.from_str(config)
        self.backend.no_truncation()
        self.backend.no_padding()
        self.name = str(name or getattr(tokenizer, "name_or_path", None) or "huggingface")
        self.cut_rule: CutRule | None = local_cut_rule(json.loads(config))

    def encode(self, text: str) -> list[int]:
        ids: list[int] = self.backend.encode(text, add_special_tokens=False).ids
        return ids

    def is_cut(self, text: str, position: int) -> bool:
        """Whether ``text`` may be cut at ``position`` (inside it) under :attr:`cut_rule`:
        the tokens of both sides are then the whole text's."""
        if not 0 < position < len(text) or self.cut_rule is None:
            return False
        if self.cut_rule == "word":
            return text[position - 1] in _ASCII_SPACES and text[position] not in _ASCII_SPACES
        return (
            text[position] == " "
            and position + 1 < len(text)
            and not text[position - 1].isspace()
            and not text[position + 1].isspace()
        )

    def _batches(self, text: str) -> Iterator[tuple[list[int], list[str], list[Any]]]:
        """(cuts, segments, encodings) of :data:`SEGMENTS_PER_BATCH` segments at a time."""
        cuts = segment_cuts(text, self.cut_rule, SEGMENT_CHARS) if self.cut_rule else [0, len(text)]
        for b in range(0, len(cuts) - 1, SEGMENTS_PER_BATCH):
            edges = cuts[b : b + SEGMENTS_PER_BATCH + 1]
            pieces = [text[x:y] for x, y in pairwise(edges)]
            encodings = (
                self.backend.encode_batch(pieces, add_special_tokens=False)
                if len(pieces) > 1
                else [self.backend.encode(pieces[0], add_special_tokens=False)]
            )
            yield edges, pieces, encodings

    def span_parts(self, text: str) -> Iterator[SpanPart]:
        """The spans of :meth:`spans`, one segment at a time, for a reader that looks up a few
        tokens of each: a segment whose offsets cannot step back keeps its encoding and is asked
        token by token (no Python object per token); any other is read into arrays."""
        import numpy as np

        plain = self._plain_segment
        high_start = high_end = 0  # running maxima, as in span_blocks
        for edges, pieces, encodings in self._batches(text):
            for offset, piece, encoding in zip(edges, pieces, encodings, strict=False):
                if not len(encoding):
                    continue
                if plain(piece):
                    yield EncodedSegment(offset, encoding)
                    continue
                flat = np.fromiter(
                    chain.from_iterable(encoding.offsets), dtype=np.int64, count=2 * len(encoding)
                ).reshape(-1, 2)
                flat += offset
                starts = np.maximum(np.maximum.accumulate(flat[:, 0]), high_start)
                ends = np.maximum(np.maximum.accumulate(flat[:, 1]), high_end)
                high_start, high_end = int(starts[-1]), int(ends[-1])
                yield ArraySegment(starts, ends)

    def _plain_segment(self, piece: str) -> bool:
        """Whether a segment's offsets are known to be monotone as the tokenizer gives them.

        Offsets step back only where a normalizer reorders characters (combining marks of
        different classes) or a byte-level token ends inside a character: neither happens in
        ASCII, and under a "word" rule (no byte-level tokens) only next to a character whose
        decomposition starts with a combining mark.
        """
        if self.cut_rule is None:  # components this reasoning does not know
            return False
        if piece.isascii():
            return True
        if self.cut_rule != "word":
            return False
        return not any(_reorderable(m.group()) for m in _BEYOND_LATIN.finditer(piece))

    def span_blocks(self, text: str, with_ids: bool = False) -> Iterator[SpanBlock]:
        """The spans of :meth:`spans`, a block of segments at a time: (ids or None, starts,
        ends), whose concatenations are the whole text's."""
        import numpy as np

        high_start = high_end = 0  # running maxima: offsets stay monotone across blocks
        first = True
        for edges, _, encodings in self._batches(text):
            sizes = [len(e) for e in encodings]
            total = sum(sizes)
            flat = np.fromiter(
                chain.from_iterable(o for e in encodings for o in e.offsets),
                dtype=np.int64,
                count=2 * total,
            ).reshape(-1, 2)
            flat += np.repeat(np.asarray(edges[:-1], dtype=np.int64), sizes)[:, None]
            ids = None
            if with_ids:
                ids = np.fromiter(
                    chain.from_iterable(e.ids for e in encodings), dtype=np.uint32, count=total
                )
            del encodings
            if not total:
                continue
            # Offsets of byte-level tokens may step back inside one character; keep them
            # monotone.
            starts = np.maximum.accumulate(flat[:, 0])
            ends = np.maximum.accumulate(flat[:, 1])
            np.maximum(starts, high_start, out=starts)
            np.maximum(ends, high_end, out=ends)
            high_start, high_end = int(starts[-1]), int(ends[-1])
            if first:
                # The first token also spans what the normalizer dropped before it (a byte-order
                # mark, control characters, combining marks), so slices from it cover the text.
                starts[0] = 0
                first = False
            yield ids, starts, ends

    def spans(self, text: str) -> TokenSpans:
        import numpy as np

        from longcontext.spans import TokenSpans

        blocks = list(self.span_blocks(text, with_ids=True))
        if not blocks:
            empty = np.zeros(0, dtype=np.int64)
            return TokenSpans(np.zeros(0, dtype=np.uint32), empty, empty, len(text))
        ids, starts, ends = (np.concatenate(parts) for parts in zip(*blocks))
        return TokenSpans(ids, starts, ends, len(text))


# ------------------------------------------------------------------------------------- callables
class CallableTokenizer(Tokenizer):
    """Any ``str -> list[int]`` function. It gives no offsets, so splitters search by counting."""

    def __init__(self, function: Callable[[str], Sequence[int]], name: str | None = None) -> None:
        self.function = function
        self.name = str(name or getattr(function, "__name__", "callable"))

    def encode(self, text: str) -> list[int]:
        return list(self.function(text))


class _SlowTransformersTokenizer(CallableTokenizer):
    """A transformers tokenizer without a Rust backend: counted, no offsets."""

    def __init__(self, tokenizer: Any) -> None:
        def encode(text: str) -> list[int]:
            ids: list[int] = tokenizer.encode(text, add_special_tokens=False)
            return ids

        super().__init__(encode, getattr(tokenizer, "name_or_path", "transformers"))


# ----------------------------------------------------------------------------------------- entry
TokenizerLike = Tokenizer | str | Path | Callable[[str], Sequence[int]] | Any


def _from_path_or_id(spec: str) -> Tokenizer:
    path = Path(spec)
    if path.is_file() and path.suffix == ".json":
        from tokenizers import Tokenizer as RustTokenizer

        return HuggingFaceTokenizer(RustTokenizer.from_file(str(path)), name=str(path))
    looks_like_hub_id = spec.count("/") == 1 and not spec.startswith((".", "/"))
    if path.is_dir() or looks_like_hub_id:
        try:
            from transformers import AutoTokenizer
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ValueError(
                f"tokenizer {spec!r} needs transformers: pip install 'longcontext[hf]'"
            ) from exc
        try:
            loaded = AutoTokenizer.from_pretrained(spec)
        except (OSError, ValueError) as exc:
            raise ValueError(
                f"could not load a Hugging Face tokenizer from {spec!r}: {exc}. "
                f"Accepted: {ACCEPTED}."
            ) from exc
        return get_tokenizer(loaded)
    raise ValueError(f"unknown tokenizer {spec!r}. Accepted: {ACCEPTED}.")


def get_tokenizer(spec: TokenizerLike) -> Tokenizer:
    """Turn anything the library accepts as a tokenizer into a :class:`Tokenizer`."""
    if isinstance(spec, Tokenizer):
        return spec
    if isinstance(spec, Path):
        spec = str(spec)
    if isinstance(spec, str):
        if spec in TIKTOKEN_NAMES:
            return _cached_tiktoken(spec)
        return _from_path_or_id(spec)
    module = type(spec).__module__.split(".")[0]
    if module == "tiktoken":
        return TiktokenTokenizer(cast("tiktoken.Encoding", spec))
    if module == "tokenizers":
        return HuggingFaceTokenizer(spec)
    if module == "transformers":
        if getattr(spec, "backend_tokenizer", None) is not None:
            return HuggingFaceTokenizer(spec)
        return _SlowTransformersTokenizer(spec)
    if callable(spec):
        return CallableTokenizer(spec)
    raise TypeError(f"cannot use {type(spec).__name__} as a tokenizer. Accepted: {ACCEPTED}.")


@cache
def _cached_tiktoken(name: str) -> TiktokenTokenizer:
    return TiktokenTokenizer(name)
