"""Long-context LLMs: one facade, ``LongContextLLM``, over vLLM and transformers.

Importing this package loads neither torch, transformers nor vLLM; the backends import them when
a model is loaded.
"""

from __future__ import annotations

from longcontext.llm.engine import LongContextLLM
from longcontext.llm.errors import ContextWindowExceededError
from longcontext.llm.streams import AsyncTextStream, TextStream
from longcontext.llm.types import Generation, Sampling

__all__ = [
    "AsyncTextStream",
    "ContextWindowExceededError",
    "Generation",
    "LongContextLLM",
    "Sampling",
    "TextStream",
]
