"""LangChain text splitters over longcontext's core splitters, with exact offsets in metadata.

Every Document these splitters create carries ``start_index`` and ``end_index`` (so that
``text[start_index:end_index] == page_content``, overlapping chunks included), ``token_count``
and ``chunk_index``. The splitting itself is :mod:`longcontext.splitters`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_text_splitters import TextSplitter

from longcontext import Chunk
from longcontext.splitters import SemanticSplitter as CoreSemanticSplitter
from longcontext.splitters import TokenSplitter as CoreTokenSplitter
from longcontext.splitters.base import Splitter
from longcontext.splitters.breakpoints import Threshold
from longcontext.splitters.token import Align
from longcontext.tokenizers import TokenizerLike


class _CoreBacked(TextSplitter):
    """Implements LangChain's hooks by delegating to a core splitter."""

    core: Splitter

    def split_text(self, text: str) -> list[str]:
        return [chunk.text for chunk in self.core.split(text)]

    def create_documents(
        self, texts: list[str], metadatas: list[dict[Any, Any]] | None = None
    ) -> list[Document]:
        """One Document per chunk; each copies its text's metadata and adds the chunk's offsets."""
        metadatas = metadatas or [{}] * len(texts)
        if len(metadatas) != len(texts):
            raise ValueError(f"got {len(texts)} texts but {len(metadatas)} metadatas")
        return [
            Document(page_content=chunk.text, metadata=_metadata(chunk, metadata))
            for chunks, metadata in zip(self.core.split_many(texts), metadatas, strict=True)
            for chunk in chunks
        ]

    def split_documents(self, documents: Iterable[Document]) -> list[Document]:
        documents = list(documents)
        return self.create_documents(
            [d.page_content for d in documents], [d.metadata for d in documents]
        )


def _metadata(chunk: Chunk, metadata: dict[Any, Any]) -> dict[Any, Any]:
    return {
        **copy.deepcopy(metadata),
        "start_index": chunk.start,
        "end_index": chunk.end,
        "token_count": chunk.token_count,
        "chunk_index": chunk.index,
    }


class TokenSplitter(_CoreBacked):
    """Windows of at most ``chunk_size`` tokens that overlap by ``chunk_overlap`` tokens.

    A drop-in for LangChain's ``TokenTextSplitter``: chunks are exact slices of the text (never
    decoded tokens), and ``start_index`` is exact also with overlap.

    Args:
        tokenizer: Anything :func:`longcontext.get_tokenizer` accepts ("cl100k_base", a Hugging
            Face tokenizer, a tokenizer.json path, a callable ``str -> list[int]``).
        chunk_size: Most tokens per chunk.
        chunk_overlap: Tokens shared by neighbouring chunks.
        add_start_index: Kept for LangChain's signature. Offsets are always added, because
            here they are exact.
        align: ``"token"``, ``"word"`` or ``"sentence"``: where a chunk may end.
    """

    def __init__(
        self,
        tokenizer: TokenizerLike = "cl100k_base",
        chunk_size: int = 512,
        chunk_overlap: int = 64,
        add_start_index: bool = False,
        align: Align = "token",
        **kwargs: Any,
    ) -> None:
        self.core = CoreTokenSplitter(tokenizer, chunk_size, chunk_overlap, align=align)
        super().__init__(
            chunk_size=chunk_size,
            chunk_overlap=chunk_overlap,
            length_function=self.core.tokenizer.count,
            add_start_index=add_start_index,
            strip_whitespace=False,
            **kwargs,
        )


class SemanticSplitter(_CoreBacked):
    """Chunks of at most ``max_tokens`` that end at natural boundaries or shifts in meaning.

    Args:
        tokenizer: Anything :func:`longcontext.get_tokenizer` accepts.
        max_tokens: Hard cap on every chunk's tokens.
        embeddings: Any LangChain ``Embeddings``; with it, chunks also break where the meaning
            of neighbouring sentences shifts. Without it, only structure (headers, paragraphs,
            sentences) decides.
        threshold: ``"percentile"``, ``"standard_deviation"``, ``"interquartile"`` or
            ``"gradient"``, as in LangChain's ``SemanticChunker``.
        threshold_amount: The threshold's parameter.
        buffer_size: Sentences on each side that form a sentence's window.
        min_tokens: Smaller chunks merge into a neighbour when the result fits.
        add_start_index: Kept for LangChain's signature; offsets are always added.
    """

    def __init__(
        self,
        tokenizer: TokenizerLike = "cl100k_base",
        max_tokens: int = 512,
        embeddings: Embeddings | None = None,
        threshold: Threshold = "percentile",
        threshold_amount: float | None = None,
        buffer_size: int = 1,
        min_tokens: int = 0,
        add_start_index: bool = False,
        **kwargs: Any,
    ) -> None:
        self.core = CoreSemanticSplitter(
            tokenizer,
            max_tokens,
            embeddings=embeddings,
            threshold=threshold,
            threshold_amount=threshold_amount,
            buffer_size=buffer_size,
            min_tokens=min_tokens,
        )
        super().__init__(
            chunk_size=max_tokens,
            chunk_overlap=0,
            length_function=self.core.tokenizer.count,
            add_start_index=add_start_index,
            strip_whitespace=False,
            **kwargs,
        )
