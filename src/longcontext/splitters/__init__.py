"""Token-aware and semantic splitters with exact character offsets."""

from longcontext.splitters.semantic import SemanticSplitter
from longcontext.splitters.token import ALIGNS, TokenSplitter

__all__ = ["ALIGNS", "SemanticSplitter", "TokenSplitter"]
