"""What every backend gives the engine: generation and streaming from token ids, sync and async."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Protocol

from longcontext.llm.types import Generation, Sampling


class Backend(Protocol):
    """An inference engine behind ``LongContextLLM``.

    Prompts arrive as token ids already counted and fitted to the window by the engine, so that
    what is counted is exactly what the model sees (no second tokenization, no doubled BOS).
    Streams yield text deltas and, when the completion ends, one ``Generation`` with its token
    counts (the engine turns that into ``TextStream.generation``).
    """

    name: str

    def generate(self, prompts: Sequence[list[int]], sampling: Sampling) -> list[Generation]:
        """Complete each prompt; one ``Generation`` per prompt, in order."""
        ...

    def stream(self, prompt: list[int], sampling: Sampling) -> Iterator[str | Generation]:
        """Yield the completion of one prompt as text deltas, then its ``Generation``."""
        ...

    async def agenerate(self, prompts: Sequence[list[int]], sampling: Sampling) -> list[Generation]:
        """Async form of ``generate``."""
        ...

    def astream(self, prompt: list[int], sampling: Sampling) -> AsyncIterator[str | Generation]:
        """Async form of ``stream``."""
        ...

    def close(self) -> None:
        """Free the engine's memory."""
        ...
