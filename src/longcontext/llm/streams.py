"""Streamed completions: text deltas to iterate, and the whole ``Generation`` once they end.

A backend's stream yields the text deltas and then one ``Generation`` with the token counts the
engine produced; these wrappers hand out the text and keep the ``Generation``, so a caller gets
real usage after a stream without counting the text again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

from longcontext.llm.types import Generation


class TextStream(Iterator[str]):
    """The text deltas of one completion.

    Attributes:
        generation: ``None`` until the stream has ended; then the whole completion with its
            token counts, as ``generate`` would report them (``text`` is the deltas joined).
    """

    def __init__(self, events: Iterator[str | Generation]) -> None:
        self._events = events
        self.generation: Generation | None = None

    def __iter__(self) -> TextStream:
        return self

    def __next__(self) -> str:
        while True:
            event = next(self._events)  # StopIteration ends this stream too
            if isinstance(event, Generation):
                self.generation = event
                continue
            return event

    def close(self) -> None:
        """Stop early: the backend cancels the generation and frees the engine."""
        close = getattr(self._events, "close", None)
        if close is not None:
            close()


class AsyncTextStream(AsyncIterator[str]):
    """Async form of ``TextStream``."""

    def __init__(self, events: AsyncIterator[str | Generation]) -> None:
        self._events = events
        self.generation: Generation | None = None

    def __aiter__(self) -> AsyncTextStream:
        return self

    async def __anext__(self) -> str:
        while True:
            event = await anext(self._events)  # StopAsyncIteration ends this stream too
            if isinstance(event, Generation):
                self.generation = event
                continue
            return event

    async def aclose(self) -> None:
        """Stop early: the backend cancels the generation and frees the engine."""
        aclose = getattr(self._events, "aclose", None)
        if aclose is not None:
            await aclose()
