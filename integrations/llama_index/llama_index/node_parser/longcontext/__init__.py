"""longcontext's exact-offset node parsers for LlamaIndex."""

from llama_index.node_parser.longcontext.base import SemanticSplitter, TokenSplitter

__all__ = ["SemanticSplitter", "TokenSplitter"]
