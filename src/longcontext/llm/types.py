"""The records the LLM layer takes and gives: ``Sampling`` (how to sample) and ``Generation``."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict


@dataclass(frozen=True)
class Sampling:
    """How to sample a completion: one value for every method, backend and wrapper.

    Checked at construction, so a bad value fails before any prompt is encoded.

    Attributes:
        max_tokens: the most tokens to generate: the completion's length, never the prompt's.
        temperature: ``0`` decodes greedily; above 0 samples from the model's distribution.
        top_p: nucleus sampling: draw from the most likely tokens whose probabilities add up to
            ``top_p`` (``1.0`` keeps them all).
        seed: the same seed gives the same completion for the same prompt, whatever other
            threads or requests run at the time; ``None`` draws afresh.
        stop: stop sequences; the completion ends before the first one generated. A single
            string is one stop sequence.
    """

    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: Sequence[str] = ()

    def __post_init__(self) -> None:
        if isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int):
            raise TypeError(f"max_tokens={self.max_tokens!r} must be an int")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens={self.max_tokens} must be at least 1")
        if not self.temperature >= 0:
            raise ValueError(f"temperature={self.temperature} must be 0 (greedy) or more")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p={self.top_p} must be in (0, 1]")
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int)
        ):
            raise TypeError(f"seed={self.seed!r} must be an int or None")
        # Frozen: normalise through object.__setattr__, once, here.
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        if not all(isinstance(s, str) for s in stop):
            raise TypeError(f"stop={self.stop!r} must be a string or a list of strings")
        object.__setattr__(self, "stop", stop)

    def override(self, **changes: Any) -> Sampling:
        """A copy with ``changes`` applied (``None`` for ``stop`` means no stop sequences)."""
        unknown = sorted(set(changes) - _FIELDS)
        if unknown:
            raise TypeError(
                f"unknown sampling arguments {unknown}: use {', '.join(sorted(_FIELDS))}"
            )
        return dataclasses.replace(self, **changes) if changes else self

    @classmethod
    def resolve(cls, sampling: Sampling | None, overrides: Mapping[str, Any]) -> Sampling:
        """``sampling`` (or the defaults) with the call's keyword ``overrides`` applied."""
        if sampling is None:
            sampling = cls()
        elif not isinstance(sampling, Sampling):
            raise TypeError(
                f"sampling must be a longcontext.Sampling, got {type(sampling).__name__}; "
                "pass sampling values as keywords (max_tokens=..., temperature=...) instead"
            )
        return sampling.override(**overrides)


_FIELDS = frozenset(f.name for f in dataclasses.fields(Sampling))


class SamplingArgs(TypedDict, total=False):
    """The keyword form of ``Sampling`` that every generation method accepts."""

    max_tokens: int
    temperature: float
    top_p: float
    seed: int | None
    stop: Sequence[str] | None


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

    @property
    def total_tokens(self) -> int:
        """Prompt and completion tokens together."""
        return self.prompt_tokens + self.completion_tokens

    def usage(self) -> dict[str, int]:
        """The token counts under the names OpenAI-style usage records use."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }
