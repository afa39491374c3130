"""LangChain components for longcontext."""

from langchain_longcontext.chat_models import ChatLongContext
from langchain_longcontext.llms import LongContextLLM
from langchain_longcontext.reorder import LostInTheMiddleReorder
from langchain_longcontext.splitters import SemanticSplitter, TokenSplitter

__all__ = [
    "ChatLongContext",
    "LongContextLLM",
    "LostInTheMiddleReorder",
    "SemanticSplitter",
    "TokenSplitter",
]
