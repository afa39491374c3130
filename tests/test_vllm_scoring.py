"""Perplexity on the vLLM backend: prompt log-probabilities, checked without a GPU.

vLLM cannot run a model on this CPU-only machine. What is real here: vLLM's ``SamplingParams``
(validated by vLLM), its ``RequestOutput`` and ``Logprob`` classes, and the engine arguments
(checked by vLLM's ``EngineArgs(...).create_model_config()``). The STAND-IN is
``ScoringStandIn``, which plays ``vllm.LLM.generate``: it answers ``prompt_logprobs=0`` requests
with the log-softmax of the same tiny model run in transformers, laid out as vLLM lays them out
(position 0 has none; position i holds the prompt token's own log-probability given the tokens
before it). So the tests check our reading of vLLM's layout and the evaluation wiring, not
vLLM's numerics.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from tiny_models import tiny_llama_dir  # noqa: F401 - pytest fixture

pytest.importorskip("vllm", reason="the vLLM backend is tested where vllm is installed")

from vllm.engine.arg_utils import EngineArgs
from vllm.logprobs import Logprob
from vllm.outputs import CompletionOutput, RequestOutput

from longcontext.evaluation import EvaluationError, run_perplexity
from longcontext.llm import LongContextLLM
from longcontext.llm.backends.vllm import prompt_loglikelihoods, score_params

TEXT = " ".join(f"word{n % 37} and then some more text number {n}." for n in range(120))


class ScoringStandIn:
    """Stand-in for ``vllm.LLM``: real config validation, transformers log-probabilities."""

    model: Any = None

    def __init__(self, **kwargs: Any) -> None:
        self.model_config = EngineArgs(**kwargs).create_model_config()  # real vLLM validation
        self.max_model_len = self.model_config.max_model_len

    def generate(self, prompts: list[Any], sampling_params: Any, **_: Any) -> list[Any]:
        import torch

        assert sampling_params.prompt_logprobs == 0 and sampling_params.max_tokens == 1
        outputs = []
        for n, prompt in enumerate(prompts):
            ids = prompt["prompt_token_ids"]
            if len(ids) > self.max_model_len:  # what vLLM does with a prompt past the window
                raise ValueError(f"prompt of {len(ids)} tokens > max_model_len")
            with torch.no_grad():
                logits = self.model(torch.tensor([ids])).logits[0].double()
            logprobs = torch.log_softmax(logits, -1)
            rows: list[dict[int, Logprob] | None] = [None]
            for i in range(1, len(ids)):
                rows.append({ids[i]: Logprob(logprobs[i - 1, ids[i]].item(), rank=None)})
            completion = CompletionOutput(
                index=0, text="", token_ids=[0], cumulative_logprob=None, logprobs=None
            )
            outputs.append(
                RequestOutput(
                    request_id=str(n),
                    prompt=None,
                    prompt_token_ids=ids,
                    prompt_logprobs=rows,
                    outputs=[completion],
                    finished=True,
                )
            )
        return outputs


@pytest.fixture
def stand_in(tiny_llama_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    import torch
    import vllm
    from transformers import AutoModelForCausalLM

    ScoringStandIn.model = AutoModelForCausalLM.from_pretrained(
        tiny_llama_dir, dtype=torch.float32
    ).eval()
    monkeypatch.setattr(vllm, "LLM", ScoringStandIn)


def test_score_params_are_valid_vllm_params() -> None:
    params = score_params()
    assert params.prompt_logprobs == 0 and params.max_tokens == 1 and params.temperature == 0.0


def test_vllm_scores_equal_transformers_scores(
    stand_in: None,
    tiny_llama_dir: Path,  # noqa: F811
) -> None:
    on_vllm = LongContextLLM(tiny_llama_dir, backend="vllm")
    on_hf = LongContextLLM(tiny_llama_dir, backend="transformers")
    ids = on_hf.tokenizer(TEXT, add_special_tokens=False)["input_ids"][:200]
    for first in (1, 50):
        got, want = on_vllm.score(ids, first), on_hf.score(ids, first)
        assert len(got) == len(want) == len(ids) - first
        assert got == pytest.approx(want, abs=1e-4)
    with pytest.raises(ValueError, match="first=0"):
        on_vllm.score(ids, 0)


def test_reading_a_layout_that_does_not_match_fails_loudly() -> None:
    ids = [5, 6, 7]
    rows: list[dict[int, Logprob] | None] = [None, {6: Logprob(-1.0)}]
    output = RequestOutput(
        request_id="0", prompt=None, prompt_token_ids=ids, prompt_logprobs=rows,
        outputs=[], finished=True,
    )  # fmt: skip
    with pytest.raises(RuntimeError, match="2 prompt log-probabilities for 3 tokens"):
        prompt_loglikelihoods(output, ids, 1)
    output.prompt_logprobs = [None, {6: Logprob(-1.0)}, {8: Logprob(-2.0)}]
    with pytest.raises(RuntimeError, match="prompt token 2"):
        prompt_loglikelihoods(output, ids, 1)
    output.prompt_logprobs = [None, {6: Logprob(-1.0)}, {7: Logprob(-2.0)}]
    assert prompt_loglikelihoods(output, ids, 1) == [-1.0, -2.0]
    assert prompt_loglikelihoods(output, ids, 2) == [-2.0]


def test_eval_perplexity_on_vllm_equals_transformers(
    stand_in: None,
    tiny_llama_dir: Path,  # noqa: F811
) -> None:
    args: dict[str, Any] = {"windows_per_length": 2, "progress": False}
    vllm_rows = run_perplexity(tiny_llama_dir, TEXT, [64, 128], backend="vllm", **args)
    hf_rows = run_perplexity(tiny_llama_dir, TEXT, [64, 128], backend="transformers", **args)
    for ours, theirs in zip(vllm_rows, hf_rows, strict=True):
        assert ours["tokens"] == theirs["tokens"] > 0
        assert math.isclose(ours["perplexity"], theirs["perplexity"], rel_tol=1e-5)


def test_unscaled_baseline_past_the_window_is_refused_on_vllm(
    tiny_llama_dir: Path,  # noqa: F811
) -> None:
    from longcontext.evaluation.models import model_window

    past = 2 * model_window(tiny_llama_dir)
    with pytest.raises(EvaluationError, match="measure that baseline with --backend transformers"):
        run_perplexity(tiny_llama_dir, TEXT, [past], ["none"], backend="vllm", progress=False)
