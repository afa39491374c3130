"""Real generation and streaming on CPU through the transformers backend, with tiny models."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from tiny_models import tiny_llama_dir, tiny_qwen2_dir  # noqa: F401 - pytest fixtures

from longcontext.llm import Generation, LongContextLLM, Sampling
from longcontext.llm.backends.transformers import attention_candidates

PROMPTS = ["Romeo, Romeo, wherefore art thou", "But soft, what light"]
MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Who is Juliet?"},
]


@pytest.fixture(scope="module")
def llm(tiny_llama_dir: Path) -> LongContextLLM:  # noqa: F811
    return LongContextLLM(tiny_llama_dir, backend="transformers")


def test_backend_and_window(llm: LongContextLLM) -> None:
    assert llm.backend_name == "transformers"
    assert llm.context_window == 2048  # the tiny model's max_position_embeddings
    assert llm.rope is None
    assert llm._backend.attn_implementation == "sdpa"  # type: ignore[attr-defined]


def test_greedy_generation_is_deterministic_and_counts_tokens(llm: LongContextLLM) -> None:
    first = llm.generate(PROMPTS[0], max_tokens=6)
    again = llm.generate(PROMPTS[0], max_tokens=6)
    assert first == again
    (gen,) = first
    assert isinstance(gen, Generation)
    assert gen.prompt_tokens == llm.count_tokens(PROMPTS[0])
    assert gen.completion_tokens == 6
    assert gen.finish_reason == "length"
    assert gen.text


def test_left_padded_batch_matches_single_prompts(llm: LongContextLLM) -> None:
    batch = llm.generate(PROMPTS, max_tokens=6)
    singles = [llm.generate(p, max_tokens=6)[0] for p in PROMPTS]
    assert llm.count_tokens(PROMPTS[0]) != llm.count_tokens(PROMPTS[1])  # padding is exercised
    assert batch == singles


def test_stream_yields_the_same_text_as_generate(llm: LongContextLLM) -> None:
    deltas = list(llm.stream(PROMPTS[1], max_tokens=8))
    assert len(deltas) > 1
    assert "".join(deltas) == llm.generate(PROMPTS[1], max_tokens=8)[0].text


def test_chat_goes_through_the_chat_template(llm: LongContextLLM) -> None:
    rendered = llm.apply_chat_template(MESSAGES)
    assert rendered.startswith("<|begin|><|system|>\nYou are terse.<|end|>")
    assert rendered.endswith("<|assistant|>\n")
    answer = llm.chat(MESSAGES, max_tokens=5)
    assert answer.prompt_tokens == llm.count_tokens(MESSAGES)
    assert llm.count_tokens(MESSAGES) > llm.count_tokens("You are terse.Who is Juliet?")
    assert "".join(llm.stream_chat(MESSAGES, max_tokens=5)) == answer.text


def _stop_inside(text: str) -> str:
    """A piece of ``text`` that starts after its first character, to use as a stop sequence."""
    for size in (3, 2):
        for start in range(1, len(text) - size + 1):
            piece = text[start : start + size]
            if piece.strip() and text.find(piece) == start and "\ufffd" not in piece:
                return piece
    pytest.fail(f"no usable stop sequence inside {text!r}")


def test_stop_sequences_cut_the_output(llm: LongContextLLM) -> None:
    free = llm.generate(PROMPTS[0], max_tokens=16)[0].text
    stop = _stop_inside(free)
    expected = free[: free.index(stop)]
    (stopped,) = llm.generate(PROMPTS[0], max_tokens=16, stop=[stop])
    assert stopped.text == expected
    assert stopped.finish_reason == "stop"
    assert stopped.completion_tokens < 16
    assert "".join(llm.stream(PROMPTS[0], max_tokens=16, stop=[stop])) == expected


def test_seeded_sampling_repeats(llm: LongContextLLM) -> None:
    kwargs: dict[str, Any] = {"max_tokens": 8, "temperature": 1.0, "top_p": 0.9}
    a = llm.generate(PROMPTS[0], seed=7, **kwargs)
    b = llm.generate(PROMPTS[0], seed=7, **kwargs)
    assert a == b
    others = {llm.generate(PROMPTS[0], seed=s, **kwargs)[0].text for s in range(8, 12)}
    assert len(others | {a[0].text}) > 1  # sampling does sample


SAMPLED = Sampling(max_tokens=8, temperature=1.0, top_p=0.9)


def test_seeded_sampling_is_reproducible_across_threads(llm: LongContextLLM) -> None:
    """Two threads sampling at once with different seeds each get the text they get alone (torch's
    global generator, shared by threads, used to mix their draws)."""
    from concurrent.futures import ThreadPoolExecutor

    seeds = (21, 22)
    alone = {seed: llm.generate(PROMPTS[0], SAMPLED, seed=seed)[0].text for seed in seeds}
    assert alone[21] != alone[22]  # else the test could not see the seeds mixed
    alone_stream = "".join(llm.stream(PROMPTS[1], SAMPLED, seed=23))
    with ThreadPoolExecutor(3) as pool:
        for _ in range(4):
            futures = {s: pool.submit(llm.generate, PROMPTS[0], SAMPLED, seed=s) for s in seeds}
            streamed = pool.submit(lambda: "".join(llm.stream(PROMPTS[1], SAMPLED, seed=23)))
            assert {seed: f.result()[0].text for seed, f in futures.items()} == alone
            assert streamed.result() == alone_stream


def test_seeded_sampling_is_the_same_in_a_batch_stream_or_alone(llm: LongContextLLM) -> None:
    """A seed gives a prompt the same sample whether it is generated alone, in a batch (each row
    draws from its own generator, as vLLM seeds each request) or streamed."""
    seeded = SAMPLED.override(seed=5)
    batch = llm.generate(PROMPTS, seeded)
    assert batch == [llm.generate(p, seeded)[0] for p in PROMPTS]
    stream = llm.stream(PROMPTS[0], seeded)
    assert "".join(stream) == batch[0].text
    assert stream.generation == batch[0]
    unseeded = {llm.generate(PROMPTS[0], SAMPLED)[0].text for _ in range(4)}
    assert len(unseeded) > 1  # without a seed each call draws afresh


def test_stream_ends_with_the_generation_counts(llm: LongContextLLM) -> None:
    (expected,) = llm.generate(PROMPTS[1], max_tokens=8)
    stream = llm.stream(PROMPTS[1], max_tokens=8)
    assert stream.generation is None  # not before it has ended
    assert "".join(stream) == expected.text
    assert stream.generation == expected
    chat_stream = llm.stream_chat(MESSAGES, max_tokens=5)
    assert "".join(chat_stream) == llm.chat(MESSAGES, max_tokens=5).text
    assert chat_stream.generation == llm.chat(MESSAGES, max_tokens=5)


def test_a_sampling_object_and_keywords_are_one_path(llm: LongContextLLM) -> None:
    sampling = Sampling(max_tokens=6, temperature=0.8, seed=3)
    by_object = llm.generate(PROMPTS[0], sampling)
    assert by_object == llm.generate(PROMPTS[0], max_tokens=6, temperature=0.8, seed=3)
    assert llm.generate(PROMPTS[0], sampling, max_tokens=2)[0].completion_tokens == 2
    assert llm.chat(MESSAGES, sampling) == llm.chat(MESSAGES, **vars(sampling))
    with pytest.raises(TypeError, match=r"unknown sampling arguments \['top_k'\]"):
        llm.generate(PROMPTS[0], top_k=5)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"sampling must be a longcontext\.Sampling"):
        llm.generate(PROMPTS[0], {"max_tokens": 5})  # type: ignore[arg-type]


async def test_async_forms_match_sync(llm: LongContextLLM) -> None:
    assert await llm.agenerate(PROMPTS, max_tokens=5) == llm.generate(PROMPTS, max_tokens=5)
    assert await llm.achat(MESSAGES, max_tokens=5) == llm.chat(MESSAGES, max_tokens=5)
    stream = llm.astream(PROMPTS[0], max_tokens=6)
    deltas = [d async for d in stream]
    assert "".join(deltas) == llm.generate(PROMPTS[0], max_tokens=6)[0].text
    assert stream.generation == llm.generate(PROMPTS[0], max_tokens=6)[0]
    chat_deltas = [d async for d in llm.astream_chat(MESSAGES, max_tokens=6)]
    assert "".join(chat_deltas) == llm.chat(MESSAGES, max_tokens=6).text


def test_abandoned_stream_stops_the_generating_thread(llm: LongContextLLM) -> None:
    import threading

    stream = llm.stream(PROMPTS[0], max_tokens=2000)
    next(stream)
    stream.close()  # runs the generator's cleanup: cancel and join the thread
    assert not [t for t in threading.enumerate() if t.name == "longcontext-generate"]


def test_yarn_scaled_qwen2_generates(tiny_qwen2_dir: Path) -> None:  # noqa: F811
    llm = LongContextLLM(tiny_qwen2_dir, context_length=8192, rope="yarn", backend="transformers")
    assert llm.context_window == 8192
    assert llm.rope is not None and llm.rope.factor == 4.0
    config = llm._backend.model.config  # type: ignore[attr-defined]
    assert config.rope_parameters["rope_type"] == "yarn"
    assert config.rope_parameters["rope_theta"] == 500_000.0  # theta kept
    assert config.rope_parameters["factor"] == 4.0
    import torch

    rotary = llm._backend.model.model.rotary_emb  # type: ignore[attr-defined]
    expected, attention = llm.rope.inv_freq(head_dim=32)
    torch.testing.assert_close(rotary.inv_freq, expected)  # the model runs the scaled rotary
    assert rotary.attention_scaling == pytest.approx(attention)
    assert attention > 1.0  # YaRN's magnitude correction is on
    assert llm.generate(PROMPTS[0], max_tokens=6)[0].completion_tokens == 6


def test_attention_falls_back_when_flash_attention_cannot_load(
    tiny_llama_dir: Path,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    import torch

    assert attention_candidates("cpu", torch.float32) == ["sdpa", "eager"]
    with caplog.at_level(logging.WARNING):
        llm = LongContextLLM(
            tiny_llama_dir,
            backend="transformers",
            attn_implementation=["flash_attention_2", "eager"],
        )
    assert llm._backend.attn_implementation == "eager"  # type: ignore[attr-defined]
    assert "flash_attention_2" in caplog.text
    assert llm.generate(PROMPTS[0], max_tokens=4)[0].completion_tokens == 4


def test_auto_picks_transformers_without_cuda_and_says_why(
    tiny_llama_dir: Path,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device, so auto would pick vLLM")
    with caplog.at_level(logging.INFO, logger="longcontext"):
        llm = LongContextLLM(tiny_llama_dir)
    assert llm.backend_name == "transformers"
    assert "no CUDA device" in caplog.text or "not installed" in caplog.text


def test_light_import() -> None:
    import subprocess
    import sys

    code = (
        "import sys, longcontext\n"
        "from longcontext.llm import LongContextLLM\n"
        "print(sorted(m for m in ('torch', 'transformers', 'vllm') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_gpu_smoke_script_parses_and_runs_its_pipeline_on_cpu(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """scripts/gpu_smoke.py is meant for a GPU; --tiny --device cpu runs the same code path."""
    import importlib.util
    import subprocess
    import sys

    script = Path(__file__).resolve().parent.parent / "scripts" / "gpu_smoke.py"
    helped = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, check=True
    )
    assert "--sizes" in helped.stdout and "--layers" in helped.stdout
    spec = importlib.util.spec_from_file_location("gpu_smoke", script)
    assert spec is not None and spec.loader is not None
    gpu_smoke = importlib.util.module_from_spec(spec)
    sys.modules["gpu_smoke"] = gpu_smoke  # dataclasses look their module up there
    spec.loader.exec_module(gpu_smoke)
    argv = ["--tiny", "--device", "cpu", "--dtype", "float32", "--layers", "2"]
    argv += ["--sizes", "150,300", "--decode-tokens", "4", "--attention", "sdpa", "--skip-vllm"]
    assert gpu_smoke.main(argv) == 0
    out = capsys.readouterr().out
    assert "YaRN factor 4: window 128 -> 512" in out
    assert "rotary inv_freq on cpu == CPU" in out
    rows = [line for line in out.splitlines() if line.startswith("| transformers | sdpa |")]
    assert [row.split("|")[3].strip() for row in rows] == ["149", "299"]
