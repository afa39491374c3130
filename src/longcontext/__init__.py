"""longcontext: long documents in retrieval-augmented generation.

Importing this package is cheap: heavy dependencies (torch, transformers, vllm, the frameworks)
load only when the names that need them are first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from longcontext.chunk import Chunk
from longcontext.tokenizers import Tokenizer, get_tokenizer

if TYPE_CHECKING:
    from longcontext.context import PackResult, pack, reorder
    from longcontext.llm import ContextWindowExceededError, Generation, LongContextLLM, Sampling
    from longcontext.rope import RopeScaling
    from longcontext.splitters import SemanticSplitter, TokenSplitter

__version__ = "0.1.0"

_LAZY = {
    "TokenSplitter": "longcontext.splitters",
    "SemanticSplitter": "longcontext.splitters",
    "reorder": "longcontext.context",
    "pack": "longcontext.context",
    "PackResult": "longcontext.context",
    "RopeScaling": "longcontext.rope",
    "LongContextLLM": "longcontext.llm",
    "Generation": "longcontext.llm",
    "Sampling": "longcontext.llm",
    "ContextWindowExceededError": "longcontext.llm",
}

__all__ = [
    "Chunk",
    "ContextWindowExceededError",
    "Generation",
    "LongContextLLM",
    "PackResult",
    "RopeScaling",
    "Sampling",
    "SemanticSplitter",
    "TokenSplitter",
    "Tokenizer",
    "__version__",
    "get_tokenizer",
    "pack",
    "reorder",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'longcontext' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
