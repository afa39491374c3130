"""Long-context LLMs: one facade, ``LongContextLLM``, over vLLM and transformers.

Importing this package loads neither torch, transformers nor vLLM; the backends import them when
a model is loaded.
"""

from __future__ import annotations

from longcontext.llm.backends.base import Generation, SamplingOptions
from longcontext.llm.engine import LongContextLLM
from longcontext.llm.errors import ContextWindowExceededError

__all__ = ["ContextWindowExceededError", "Generation", "LongContextLLM", "SamplingOptions"]
