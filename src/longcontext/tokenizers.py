"""One tokenizer adapter: token ids and character offsets for tiktoken, Hugging Face and callables.

Splitters never decode tokens back into text. They ask for each token's character span once and
slice the source string, so chunks are exact and a token that covers part of a multi-byte
character can never split it.
"""

from __future__ import annotations

import os
import sys
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import tiktoken

    from longcontext.spans import TokenSpans


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
class HuggingFaceTokenizer(Tokenizer):
    """A Hugging Face fast tokenizer (``tokenizers.Tokenizer`` or a transformers fast tokenizer)."""

    def __init__(self, tokenizer: Any, name: str | None = None) -> None:
        from tokenizers import Tokenizer as RustTokenizer

        backend = tokenizer if isinstance(tokenizer, RustTokenizer) else tokenizer.backend_tokenizer
        # A copy, so that turning truncation and padding off never changes the caller's object.
        self.backend = RustTokenizer.from_str(backend.to_str())
        self.backend.no_truncation()
        self.backend.no_padding()
        self.name = str(name or getattr(tokenizer, "name_or_path", None) or "huggingface")

    def encode(self, text: str) -> list[int]:
        ids: list[int] = self.backend.encode(text, add_special_tokens=False).ids
        return ids

    def spans(self, text: str) -> TokenSpans:
        import numpy as np

        from longcontext.spans import TokenSpans

        encoding = self.backend.encode(text, add_special_tokens=False)
        offsets = np.asarray(encoding.offsets, dtype=np.int64).reshape(-1, 2)
        # Offsets of byte-level tokens may step back inside one character; keep them monotone.
        starts = np.maximum.accumulate(offsets[:, 0]) if len(offsets) else offsets[:, 0]
        ends = np.maximum.accumulate(offsets[:, 1]) if len(offsets) else offsets[:, 1]
        if len(starts):
            # The first token also spans what the normalizer dropped before it (a byte-order
            # mark, control characters, combining marks), so slices from it cover the text.
            starts[0] = 0
        return TokenSpans(encoding.ids, starts, ends, len(text))


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
