"""Retrieval over a folder of documents: read, chunk, embed, store in FAISS, retrieve, pack, ask.

The ``longcontext index`` and ``longcontext ask`` commands are thin wrappers over this package.
Heavy dependencies (faiss, sentence-transformers, torch) load only when a function needs them.
"""

from __future__ import annotations

from longcontext.rag.errors import (
    EmbeddingsMismatchError,
    EmptyIndexError,
    IndexLockedError,
    RagError,
)

__all__ = ["EmbeddingsMismatchError", "EmptyIndexError", "IndexLockedError", "RagError"]
