"""What every backend gives the engine: generation and streaming from token ids, sync and async."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Generation:
    """One completion.

    Attributes:
        text: the generated text, stop sequences cut off.
        prompt_tokens: tokens in the prompt the model saw (after any truncation).
        completion_tokens: tokens the model generated.
        finish_reason: ``"stop"`` (end of sequence or a stop sequence), ``"length"`` (``max_tokens``
            reached) or ``None`` when the backend did not say.
    """

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None


@dataclass(frozen=True)
class SamplingOptions:
    """How to sample; the same for every backend. ``temperature == 0`` means greedy."""

    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: Sequence[str] = field(default_factory=tuple)


class Backend(Protocol):
    """An inference engine behind ``LongContextLLM``.

    Prompts arrive as token ids already counted and fitted to the window by the engine, so that
    what is counted is exactly what the model sees (no second tokenization, no doubled BOS).
    """

    name: str

    def generate(self, prompts: Sequence[list[int]], options: SamplingOptions) -> list[Generation]:
        """Complete each prompt; one ``Generation`` per prompt, in order."""
        ...

    def stream(self, prompt: list[int], options: SamplingOptions) -> Iterator[str]:
        """Yield the completion of one prompt as text deltas."""
        ...

    async def agenerate(
        self, prompts: Sequence[list[int]], options: SamplingOptions
    ) -> list[Generation]:
        """Async form of ``generate``."""
        ...

    def astream(self, prompt: list[int], options: SamplingOptions) -> AsyncIterator[str]:
        """Async form of ``stream``."""
        ...

    def close(self) -> None:
        """Free the engine's memory."""
        ...
