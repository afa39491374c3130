"""longcontext's lost-in-the-middle reorderer for LlamaIndex."""

from llama_index.postprocessor.longcontext.base import LostInTheMiddleReorder

__all__ = ["LostInTheMiddleReorder"]
