"""What the LangChain and LlamaIndex wrappers share: their loading settings and how an engine
is loaded from them, or checked when one is passed in already loaded."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from longcontext.llm.engine import LongContextLLM, resolve_model

__all__ = ["LOADING", "check_model_or_engine", "load_engine"]


def _loading_defaults() -> dict[str, Any]:
    """Every loading setting of ``LongContextLLM`` with its default, read from its signature so
    the defaults are written once, there; ``engine_kwargs`` gathers its ``**engine_kwargs``."""
    parameters = inspect.signature(LongContextLLM.__init__).parameters
    defaults = {
        name: parameter.default
        for name, parameter in parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }
    return {**defaults, "engine_kwargs": {}}


# How an engine is loaded. A shared engine was loaded with its own settings, so a wrapper given
# one must leave these at their defaults.
LOADING: dict[str, Any] = _loading_defaults()


def check_model_or_engine(
    model: str | None, engine: LongContextLLM | None, loading: Mapping[str, Any]
) -> str | None:
    """The model a wrapper serves: the one it loads, or the shared engine's.

    Refuses no model at all, loading settings next to a shared engine, and a model other
    than the shared engine's.
    """
    if engine is None:
        if model is None:
            raise ValueError(
                "no model given: pass model='path/or/hf-id' or "
                "engine=longcontext.LongContextLLM(...)"
            )
        return model
    clashing = [name for name, default in LOADING.items() if loading.get(name, default) != default]
    if clashing:
        raise ValueError(
            f"{', '.join(clashing)} given together with engine=: a shared engine keeps the "
            "settings it was loaded with; pass them to longcontext.LongContextLLM(...) instead"
        )
    if model is None:
        return engine.model
    if resolve_model(model) != engine.model:
        raise ValueError(
            f"model={model!r} but the engine serves {engine.model!r}; pass only engine="
        )
    return model


def load_engine(model: str, loading: Mapping[str, Any]) -> LongContextLLM:
    """Load the engine a wrapper describes with its loading settings."""
    settings = {name: loading.get(name, default) for name, default in LOADING.items()}
    extra = settings.pop("engine_kwargs") or {}
    return LongContextLLM(model, **settings, **extra)
