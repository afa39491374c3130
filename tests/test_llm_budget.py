"""Token budget, truncation and bad input for LongContextLLM (issue 4, sections 2 and 6)."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tiny_models import make_tokenizer, tiny_llama_dir  # noqa: F401 - pytest fixture

from longcontext.llm import ContextWindowExceededError, Generation, LongContextLLM, Sampling
from longcontext.llm.budget import truncate_ids
from longcontext.llm.stops import StopScanner, cut_at_stop
from longcontext.rope import RopeScaling

LONG_TEXT = "Two households, both alike in dignity, in fair Verona, where we lay our scene. " * 20


class RecordingBackend:
    """A stand-in for the engine: records the token ids it is given and echoes them back, so the
    tests see exactly what the facade would send to vLLM or transformers."""

    name = "stand-in"

    def __init__(self) -> None:
        self.calls: list[list[list[int]]] = []

    def generate(self, prompts: Sequence[list[int]], sampling: Sampling) -> list[Generation]:
        self.calls.append(list(prompts))
        return [Generation("", len(p), 0, "stop") for p in prompts]

    def stream(self, prompt: list[int], sampling: Sampling) -> Iterator[str | Generation]:
        self.calls.append([prompt])
        yield ""
        yield Generation("", len(prompt), 0, "stop")


@pytest.fixture(scope="module")
def llm(tiny_llama_dir: Path) -> LongContextLLM:  # noqa: F811
    """The tiny model served with a 128-token window (within its 2048: no scaling)."""
    return LongContextLLM(tiny_llama_dir, context_length=128, backend="transformers")


@pytest.fixture
def recorded(llm: LongContextLLM, monkeypatch: pytest.MonkeyPatch) -> RecordingBackend:
    backend = RecordingBackend()
    monkeypatch.setattr(llm, "_backend", backend)
    return backend


def test_a_prompt_that_fits_is_sent_whole(llm: LongContextLLM, recorded: RecordingBackend) -> None:
    prompt = "Romeo, Romeo"
    llm.generate(prompt, max_tokens=16)
    assert recorded.calls == [[llm.encode(prompt)]]


def test_too_long_prompt_raises_before_the_engine_is_called(
    llm: LongContextLLM, recorded: RecordingBackend
) -> None:
    n = llm.count_tokens(LONG_TEXT)
    assert n > 128
    with pytest.raises(ContextWindowExceededError) as info:
        llm.generate(["short", LONG_TEXT], max_tokens=16)
    assert (info.value.prompt_tokens, info.value.limit) == (n, 128 - 16)
    assert "truncate='left'" in str(info.value) and "max_tokens" in str(info.value)
    assert isinstance(info.value, ValueError)
    with pytest.raises(ContextWindowExceededError):
        llm.stream(LONG_TEXT, max_tokens=16)
    with pytest.raises(ContextWindowExceededError):
        llm.chat([{"role": "user", "content": LONG_TEXT}], max_tokens=16)
    assert recorded.calls == []


def test_the_limit_counts_max_tokens(llm: LongContextLLM, recorded: RecordingBackend) -> None:
    prompt = LONG_TEXT[:200]
    n = llm.count_tokens(prompt)
    llm.generate(prompt, max_tokens=128 - n)  # exactly fills the window
    with pytest.raises(ContextWindowExceededError):
        llm.generate(prompt, max_tokens=128 - n + 1)
    with pytest.raises(ValueError, match="max_tokens=128 leaves no room"):
        llm.generate("hi", max_tokens=128)


@pytest.mark.parametrize("how", ["left", "middle"])
def test_truncation_keeps_the_window(
    llm: LongContextLLM, recorded: RecordingBackend, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    monkey_truncate = pytest.MonkeyPatch()
    monkey_truncate.setattr(llm, "truncate", how)
    try:
        with caplog.at_level(logging.WARNING):
            llm.generate(LONG_TEXT, max_tokens=28)
    finally:
        monkey_truncate.undo()
    (sent,) = recorded.calls[0]
    full = llm.encode(LONG_TEXT)
    assert 100 - 3 <= len(sent) <= 100
    assert f"truncated ({how})" in caplog.text  # never silent
    if how == "left":
        assert sent == full[len(full) - len(sent) :]
    else:
        head = next(i for i in range(len(sent)) if sent[i] != full[i])
        assert sent[:head] == full[:head] and sent[head:] == full[len(full) - len(sent) + head :]
        assert sent[0] == full[0]  # the head (BOS, instructions) survives


@settings(max_examples=80, deadline=None)
@given(
    text=st.text(
        alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=80
    ),
    limit=st.integers(min_value=4, max_value=60),
    how=st.sampled_from(["left", "middle"]),
)
def test_truncation_never_splits_a_character(
    byte_tokenizer: Any, text: str, limit: int, how: Any
) -> None:
    ids = byte_tokenizer(text, add_special_tokens=False)["input_ids"]
    kept = truncate_ids(ids, limit, how, byte_tokenizer)
    assert len(kept) <= min(limit, len(ids))
    assert len(kept) >= min(limit, len(ids)) - 6  # each cut moves by at most 3 tokens
    decoded = byte_tokenizer.decode(kept)
    if "\ufffd" not in text:
        assert "\ufffd" not in decoded
    if how == "left":
        assert text.endswith(decoded)
    else:  # a head of ids followed by a tail of ids, nothing else
        assert any(
            kept == ids[:h] + ids[len(ids) - (len(kept) - h) :] for h in range(len(kept) + 1)
        )
        if len(ids) > limit and limit >= 8:
            assert kept[0] == ids[0] or kept[-1] == ids[-1]


@pytest.fixture(scope="module")
def byte_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The tiny byte-level BPE tokenizer: CJK and emoji become several byte tokens."""
    return make_tokenizer(tmp_path_factory.mktemp("tok"))


def test_stop_scanner_holds_back_partial_stops() -> None:
    scanner = StopScanner(["</answer>"])
    out = [scanner.feed(d) for d in ["The answer", " is 4</an", "swer> and more"]]
    assert out == ["The answer", " is 4", ""]
    assert scanner.stopped and scanner.flush() == ""
    open_scanner = StopScanner(["###"])
    assert open_scanner.feed("a #") == "a "
    assert open_scanner.feed("#") == ""
    assert open_scanner.flush() == "##"  # the stream ended: held text was no stop after all
    assert cut_at_stop("abc STOP def END", ["END", "STOP"]) == ("abc ", True)


def test_count_tokens_uses_the_chat_template(llm: LongContextLLM) -> None:
    messages = [{"role": "user", "content": "hello"}]
    ids = llm.encode(messages)
    assert ids[0] == llm.tokenizer.bos_token_id
    assert ids.count(llm.tokenizer.bos_token_id) == 1  # the template's BOS, not doubled
    assert llm.count_tokens(messages) == len(ids) > llm.count_tokens("hello")


# -- bad input (issue 4, section 6) -----------------------------------------------------------


def test_context_length_within_the_window_is_not_scaled(
    tiny_llama_dir: Path,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        llm = LongContextLLM(tiny_llama_dir, context_length=1024, rope="yarn")
    assert llm.rope is None
    assert llm.context_window == 1024
    assert "no RoPE scaling is needed" in caplog.text
    config = llm._backend.model.config  # type: ignore[attr-defined]
    assert config.rope_parameters["rope_type"] == "default"


def test_unknown_rope_method(tiny_llama_dir: Path) -> None:  # noqa: F811
    with pytest.raises(ValueError, match=r"unknown rope method 'ntk-magic'.*yarn"):
        LongContextLLM(tiny_llama_dir, context_length=8192, rope="ntk-magic")


def test_factor_below_one(tiny_llama_dir: Path) -> None:  # noqa: F811
    with pytest.raises(ValueError, match="factor"):
        LongContextLLM(
            tiny_llama_dir,
            rope=RopeScaling(
                method="linear", factor=0.5, original_max_position_embeddings=2048, rope_theta=5e5
            ),
        )


def test_past_the_window_without_rope(tiny_llama_dir: Path) -> None:  # noqa: F811
    with pytest.raises(ValueError, match=r"context_length=4096 is past .* 2048.*rope='yarn'"):
        LongContextLLM(tiny_llama_dir, context_length=4096)


def test_rope_name_needs_context_length(tiny_llama_dir: Path) -> None:  # noqa: F811
    with pytest.raises(ValueError, match="rope='yarn' needs context_length"):
        LongContextLLM(tiny_llama_dir, rope="yarn")


def test_rope_object_and_context_length_must_agree(tiny_llama_dir: Path) -> None:  # noqa: F811
    rope = RopeScaling.for_target(str(tiny_llama_dir), 4096, "linear")
    with pytest.raises(ValueError, match="disagrees"):
        LongContextLLM(tiny_llama_dir, context_length=8192, rope=rope, backend="transformers")


@pytest.mark.parametrize("path", ["/no/such/model", "./missing-model", "a/b/c"])
def test_missing_model_path_is_named(path: str) -> None:
    with pytest.raises(FileNotFoundError, match=f"model path '{path}' does not exist"):
        LongContextLLM(path)


def test_bad_options(llm: LongContextLLM) -> None:
    with pytest.raises(ValueError, match="truncate='cut'"):
        LongContextLLM("/no/such/model", truncate="cut")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="backend='tgi'"):
        LongContextLLM("/no/such/model", backend="tgi")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="temperature=-1"):
        llm.generate("hi", temperature=-1)
    with pytest.raises(ValueError, match="top_p=0"):
        llm.generate("hi", top_p=0)
    with pytest.raises(TypeError, match="prompt must be a str"):
        llm.generate([b"bytes"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="'role' and 'content'"):
        llm.chat([{"text": "hi"}])


def test_trust_remote_code_is_off_unless_asked(tmp_path: Path, tiny_llama_dir: Path) -> None:  # noqa: F811
    """A model that ships its own code: refused by default, run only with trust_remote_code."""
    import json
    import shutil

    model = tmp_path / "custom"
    shutil.copytree(tiny_llama_dir, model)
    marker = tmp_path / "remote-code-ran"
    (model / "custom_llama.py").write_text(
        "from pathlib import Path\n"
        "from transformers import LlamaConfig, LlamaForCausalLM\n"
        f"Path({str(marker)!r}).touch()\n"
        "class CustomConfig(LlamaConfig):\n    model_type = 'custom_llama'\n"
        "class CustomForCausalLM(LlamaForCausalLM):\n    config_class = CustomConfig\n"
    )
    config = json.loads((model / "config.json").read_text())
    config.update(
        model_type="custom_llama",
        auto_map={
            "AutoConfig": "custom_llama.CustomConfig",
            "AutoModelForCausalLM": "custom_llama.CustomForCausalLM",
        },
    )
    (model / "config.json").write_text(json.dumps(config))
    with pytest.raises((OSError, ValueError), match="trust_remote_code"):
        LongContextLLM(model, backend="transformers")
    assert not marker.exists()
    llm = LongContextLLM(model, backend="transformers", trust_remote_code=True)
    assert marker.exists()
    assert type(llm._backend.model).__name__ == "CustomForCausalLM"  # type: ignore[attr-defined]
