"""The Passage record, and adapters that read one from the objects retrievers return.

A passage is text with an optional score, source id and character span in that source. The
adapters read plain dicts, strings, :class:`longcontext.Chunk`, LangChain ``Document`` (also
``(Document, score)`` pairs), and LlamaIndex ``NodeWithScore`` / ``TextNode``. They recognise the
framework objects by their attributes, so this module imports no framework.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any

from longcontext.chunk import Chunk

DEFAULT_SCORE_KEY = "relevance_score"
ACCEPTED = (
    "a str, a dict with 'text' (and optional 'score', 'source', 'start', 'end', 'metadata'), "
    "a longcontext Chunk or Passage, a LangChain Document, a LlamaIndex NodeWithScore or "
    "TextNode, or an (item, score) pair of one of these"
)


@dataclass(frozen=True, slots=True)
class Passage:
    """Text to put into a context, with what is known about where it came from.

    Attributes:
        text: The passage text.
        score: Relevance, higher is better; None when unknown.
        source: Id of the source document; passages merge only within one source.
        start: Character offset of ``text`` in the source, or None.
        end: ``start + len(text)``, or None.
        metadata: Metadata of the original object. ``pack`` adds ``merged_from`` (how many
            passages a merged span covers) and ``truncated`` (True when cut to fit).
        origin: The caller's objects this passage was read from, most relevant first (several
            after a merge; empty when the caller gave a Passage).
    """

    text: str
    score: float | None = None
    source: Hashable | None = None
    start: int | None = None
    end: int | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    origin: tuple[Any, ...] = ()

    @property
    def has_span(self) -> bool:
        """Whether the passage knows its source and character span, so it can be merged."""
        return self.source is not None and self.start is not None and self.end is not None


def _first(mapping: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        if mapping.get(key) is not None:
            return mapping[key]
    return None


def _span(text: str, start: Any, end: Any) -> tuple[int | None, int | None]:
    """Offsets as ints; a start without an end spans the text. A negative start means unknown
    (LangChain's splitters write -1 when they cannot find a chunk)."""
    if start is None or int(start) < 0:
        return None, None
    start = int(start)
    end = start + len(text) if end is None else int(end)
    if end - start != len(text):
        raise ValueError(
            f"passage offsets start={start}, end={end} span {end - start} characters but its text "
            f"has {len(text)}; give offsets of the exact text in its source, or none"
        )
    return start, end


def _from_mapping(item: Mapping[str, Any], score_key: str) -> Passage:
    text = _first(item, "text", "page_content", "content")
    if not isinstance(text, str):
        raise TypeError(f"dict passage needs a str 'text'; got keys {sorted(item)}")
    start, end = _span(text, _first(item, "start", "start_index"), _first(item, "end", "end_index"))
    return Passage(
        text=text,
        score=_first(item, "score", score_key),
        source=_first(item, "source", "source_id", "doc_id"),
        start=start,
        end=end,
        metadata=dict(item.get("metadata") or {}),
        origin=(item,),
    )


def _from_chunk(chunk: Chunk, score_key: str) -> Passage:
    meta = chunk.metadata
    return Passage(
        text=chunk.text,
        score=_first(meta, "score", score_key),
        source=_first(meta, "source", "source_id", "doc_id"),
        start=chunk.start,
        end=chunk.end,
        metadata=dict(meta),
        origin=(chunk,),
    )


def _from_document(doc: Any, score_key: str) -> Passage:
    """A LangChain Document: text in ``page_content``, offsets in ``start_index``/``end_index``."""
    meta: Mapping[str, Any] = doc.metadata or {}
    text = doc.page_content
    start, end = _span(text, meta.get("start_index"), meta.get("end_index"))
    return Passage(
        text=text,
        score=meta.get(score_key),
        source=_first(meta, "source", "source_id", "doc_id"),
        start=start,
        end=end,
        metadata=dict(meta),
        origin=(doc,),
    )


def _from_node(node: Any, score: Any, origin: Any) -> Passage:
    """A LlamaIndex TextNode: offsets ``start_char_idx``/``end_char_idx`` in ``ref_doc_id``."""
    text = node.text if isinstance(getattr(node, "text", None), str) else node.get_content()
    start, end = _span(text, node.start_char_idx, node.end_char_idx)
    return Passage(
        text=text,
        score=score,
        source=getattr(node, "ref_doc_id", None),
        start=start,
        end=end,
        metadata=dict(getattr(node, "metadata", None) or {}),
        origin=(origin,),
    )


def as_passage(item: Any, score_key: str = DEFAULT_SCORE_KEY) -> Passage:
    """Read a :class:`Passage` from anything a retriever or splitter returns.

    Args:
        item: See the module docs for the accepted types. An ``(item, score)`` pair takes its
            score from the pair.
        score_key: Metadata key holding the score of a LangChain Document (and a fallback key
            for dicts and Chunks).

    Raises:
        TypeError: for an object of no accepted type.
        ValueError: when the offsets do not match the text's length.
    """
    if isinstance(item, Passage):
        return item
    if isinstance(item, tuple) and len(item) == 2 and not isinstance(item[0], tuple):
        inner, score = item
        passage = as_passage(inner, score_key)
        return Passage(
            passage.text,
            score,
            passage.source,
            passage.start,
            passage.end,
            passage.metadata,
            (item,),
        )
    if isinstance(item, str):
        return Passage(text=item, origin=(item,))
    if isinstance(item, Mapping):
        return _from_mapping(item, score_key)
    if isinstance(item, Chunk):
        return _from_chunk(item, score_key)
    if hasattr(item, "page_content") and hasattr(item, "metadata"):
        return _from_document(item, score_key)
    if hasattr(item, "node") and hasattr(item, "score"):  # LlamaIndex NodeWithScore
        return _from_node(item.node, item.score, item)
    if hasattr(item, "start_char_idx") and hasattr(item, "get_content"):  # LlamaIndex TextNode
        return _from_node(item, None, item)
    raise TypeError(f"cannot read a passage from {type(item).__name__}; accepted: {ACCEPTED}")
