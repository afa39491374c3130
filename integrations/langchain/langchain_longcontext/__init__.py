"""LangChain components for longcontext."""

from langchain_longcontext.reorder import LostInTheMiddleReorder
from langchain_longcontext.splitters import SemanticSplitter, TokenSplitter

__all__ = [
    "LostInTheMiddleReorder",
    "SemanticSplitter",
    "TokenSplitter",
]
