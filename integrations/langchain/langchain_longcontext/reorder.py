"""LostInTheMiddleReorder: a document transformer and LCEL step over longcontext's pack."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.documents import BaseDocumentTransformer, Document
from langchain_core.runnables import RunnableConfig, RunnableSerializable
from pydantic import ConfigDict, field_validator

from longcontext.context import Passage, pack, reorder

# The metadata key LangChain's rerankers (CohereRerank, CrossEncoderReranker) write scores to.
DEFAULT_SCORE_KEY = "relevance_score"

DocumentsIn = Sequence[Document | tuple[Document, float]]


class LostInTheMiddleReorder(
    BaseDocumentTransformer, RunnableSerializable[DocumentsIn, list[Document]]
):
    """Lay out retrieved documents so the most relevant sit first and last, never in the middle.

    Unlike ``langchain_community``'s ``LongContextReorder``, the most relevant document comes
    first for every number of documents. Use it as a document transformer
    (``transform_documents``) or as a step in a chain (``retriever | LostInTheMiddleReorder()``).

    It accepts Documents, whose score is ``metadata[score_key]`` (without scores the input order
    is the rank), or ``(Document, score)`` pairs as ``similarity_search_with_relevance_scores``
    returns them (the score is then copied into ``metadata[score_key]``).

    With ``budget_tokens``, it also packs (see :func:`longcontext.pack`): documents from one
    ``metadata["source"]`` whose ``start_index``/``end_index`` spans overlap are merged into
    one exact span, and only the most relevant that fit the budget are kept. A merged or cut
    document carries ``merged_from`` or ``truncated`` in its metadata.

    It is serializable the LangChain way (``langchain_core.load.dumps``, then
    ``loads(..., valid_namespaces=["langchain_longcontext"],
    allowed_objects=[LostInTheMiddleReorder])``) when its tokenizer is given by name.

    Attributes:
        strategy: ``"important_first_last"``, ``"reverse_rank"`` or ``"none"``.
        score_key: Metadata key holding a document's relevance score.
        budget_tokens: Optional token budget for the documents' text.
        tokenizer: What counts the budget's tokens (anything ``longcontext.get_tokenizer``
            accepts).
        separator: Counted once between documents, as the chain will join them.
        template: Optional per-document format string with ``{text}``, counted per document.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    strategy: str = "important_first_last"
    score_key: str = DEFAULT_SCORE_KEY
    budget_tokens: int | None = None
    tokenizer: Any = "cl100k_base"
    separator: str = "\n\n"
    template: str | None = None

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, strategy: str) -> str:
        reorder([], strategy=strategy)  # raises, naming the strategies, for an unknown one
        return strategy

    @classmethod
    def is_lc_serializable(cls) -> bool:
        return True

    @classmethod
    def get_lc_namespace(cls) -> list[str]:
        """``["langchain_longcontext"]``: ``loads`` imports the class from this package."""
        return ["langchain_longcontext"]

    def transform_documents(self, documents: DocumentsIn, **kwargs: Any) -> list[Document]:
        """Reorder (and with a budget, pack) the documents."""
        docs = [self._scored(item) for item in documents]
        if self.budget_tokens is None:
            return reorder(docs, [d.metadata.get(self.score_key) for d in docs], self.strategy)
        result = pack(
            docs,
            self.budget_tokens,
            tokenizer=self.tokenizer,
            strategy=self.strategy,
            separator=self.separator,
            template=self.template,
            score_key=self.score_key,
        )
        return [p if isinstance(p, Document) else self._document(p) for p in result.passages]

    def invoke(
        self, input: DocumentsIn, config: RunnableConfig | None = None, **kwargs: Any
    ) -> list[Document]:
        return self._call_with_config(self.transform_documents, input, config, **kwargs)

    def _scored(self, item: Document | tuple[Document, float]) -> Document:
        if isinstance(item, Document):
            return item
        doc, score = item
        return doc.model_copy(update={"metadata": {**doc.metadata, self.score_key: score}})

    def _document(self, passage: Passage) -> Document:
        """A Document for a merged or cut passage, with the best member's metadata."""
        metadata = {**passage.metadata, self.score_key: passage.score}
        if passage.start is not None:
            metadata.update(start_index=passage.start, end_index=passage.end)
        return Document(page_content=passage.text, metadata=metadata)
