"""``Sampling``, the one sampling object, and the loading defaults written once (no model)."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import longcontext
from longcontext.llm import LongContextLLM, Sampling, adapters

VALID = st.fixed_dictionaries(
    {},
    optional={
        "max_tokens": st.integers(1, 100_000),
        "temperature": st.floats(0, 5, allow_nan=False),
        "top_p": st.floats(0, 1, exclude_min=True),
        "seed": st.none() | st.integers(0, 2**63 - 1),
        "stop": st.lists(st.text(min_size=1), max_size=3),
    },
)


@given(VALID, VALID)
def test_overrides_are_applied_on_top_of_the_sampling(
    base: dict[str, Any], changes: dict[str, Any]
) -> None:
    combined = Sampling(**base).override(**changes)
    assert combined == Sampling(**{**base, **changes})
    assert Sampling.resolve(Sampling(**base), changes) == combined
    assert Sampling.resolve(None, changes) == Sampling(**changes)
    assert isinstance(combined.stop, tuple)


def test_stop_is_normalised() -> None:
    assert Sampling(stop="###").stop == ("###",)
    assert Sampling(stop=["a", "b"]).stop == ("a", "b")
    assert Sampling().override(stop=None).stop == ()
    assert hash(Sampling(stop=["a"])) == hash(Sampling(stop=("a",)))  # frozen and hashable


@pytest.mark.parametrize(
    ("fields", "error", "message"),
    [
        ({"max_tokens": 0}, ValueError, "max_tokens=0 must be at least 1"),
        ({"max_tokens": 2.5}, TypeError, "max_tokens=2.5 must be an int"),
        ({"temperature": -1}, ValueError, r"temperature=-1 must be 0 \(greedy\) or more"),
        ({"temperature": float("nan")}, ValueError, "temperature=nan"),
        ({"top_p": 0}, ValueError, r"top_p=0 must be in \(0, 1\]"),
        ({"top_p": 1.5}, ValueError, "top_p=1.5"),
        ({"seed": "7"}, TypeError, "seed='7' must be an int or None"),
        ({"stop": [1]}, TypeError, "must be a string or a list of strings"),
    ],
)
def test_bad_values_are_named(fields: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        Sampling(**fields)


def test_unknown_names_are_refused() -> None:
    with pytest.raises(TypeError, match=r"unknown sampling arguments \['top_k'\]: use max_tokens"):
        Sampling().override(top_k=40)


def test_sampling_is_a_public_name() -> None:
    assert longcontext.Sampling is Sampling
    assert "Sampling" in longcontext.__all__


def test_loading_defaults_are_the_engine_signature() -> None:
    """The wrappers' loading defaults are read from LongContextLLM's signature, not copied."""
    parameters = inspect.signature(LongContextLLM.__init__).parameters
    for name, default in adapters.LOADING.items():
        if name != "engine_kwargs":
            assert parameters[name].default == default, name
    assert adapters.LOADING["engine_kwargs"] == {}


def test_wrapper_defaults_are_the_engine_defaults() -> None:
    from langchain_longcontext import ChatLongContext
    from llama_index.llms.longcontext import LongContextLLM as LlamaIndexLLM

    sampling = Sampling()
    for wrapper in (ChatLongContext, LlamaIndexLLM):
        fields = wrapper.model_fields
        for name, default in adapters.LOADING.items():
            assert fields[name].get_default(call_default_factory=True) == default, name
        for name in ("max_tokens", "temperature", "top_p", "seed"):
            assert fields[name].default == getattr(sampling, name), name
