"""A LlamaIndex LLM for long-context models: ``LongContextLLM`` (RoPE scaling, LongLoRA, vLLM)."""

from llama_index.llms.longcontext.base import LongContextLLM

__all__ = ["LongContextLLM"]
