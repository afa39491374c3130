"""One adapter over embedding models: callables, LangChain Embeddings, LlamaIndex BaseEmbedding."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

Matrix = npt.NDArray[np.float64]
EmbedFunction = Callable[[list[str]], Any]


def as_embed_function(embeddings: Any) -> EmbedFunction:
    """Return ``texts -> vectors`` for any supported embedding object (duck-typed, no imports)."""
    if hasattr(embeddings, "embed_documents"):  # LangChain Embeddings
        return embeddings.embed_documents  # type: ignore[no-any-return]
    if hasattr(embeddings, "get_text_embedding_batch"):  # LlamaIndex BaseEmbedding
        return embeddings.get_text_embedding_batch  # type: ignore[no-any-return]
    if hasattr(embeddings, "encode") and hasattr(embeddings, "similarity"):  # SentenceTransformer
        return embeddings.encode  # type: ignore[no-any-return]
    if callable(embeddings):
        return embeddings  # type: ignore[no-any-return]
    raise TypeError(
        f"cannot embed with {type(embeddings).__name__}: pass a callable list[str] -> array, "
        "a LangChain Embeddings or a LlamaIndex BaseEmbedding"
    )


def embed(function: EmbedFunction, texts: Sequence[str], batch_size: int) -> Matrix:
    """Embed each text once, in batches, as unit-length rows."""
    rows: list[Matrix] = []
    for offset in range(0, len(texts), batch_size):
        batch = list(texts[offset : offset + batch_size])
        vectors = np.asarray(function(batch), dtype=np.float64)
        if vectors.ndim != 2 or vectors.shape[0] != len(batch):
            raise ValueError(
                f"the embedding function returned shape {vectors.shape} for {len(batch)} texts; "
                "it must return one vector per text"
            )
        rows.append(vectors)
    matrix = np.vstack(rows)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    unit: Matrix = matrix / np.where(norms == 0, 1.0, norms)
    return unit
