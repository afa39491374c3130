"""Expected failures of the retrieval pipeline, each with a message that says what to do."""

from __future__ import annotations


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (libraries raise pages of it), or its type's
    name when it has none: what a one-line error quotes."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class RagError(ValueError):
    """Bad input to indexing or asking: an empty folder, a missing index, a bad option."""


class EmbeddingsMismatchError(RagError):
    """The index was built with other embeddings than the ones asked for."""


class EmptyIndexError(RagError):
    """The index holds no chunks, so there is nothing to retrieve."""


class IndexLockedError(RagError):
    """Another ``longcontext index`` run is writing the same index folder."""
