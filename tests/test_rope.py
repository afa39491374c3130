"""RopeScaling: the math against transformers' own ROPE_INIT_FUNCTIONS, loading a scaled model
with transformers, reading model configs, and every refusal. vLLM contracts: test_rope_vllm.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from rope_fixtures import (
    HEAD_DIM,
    THETA,
    WINDOW,
    llama31_config,
    llama_config,
    qwen2_config,
    save_config,
    save_random_model,
)
from transformers import AutoConfig, AutoModelForCausalLM
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding

from longcontext.rope import RopeScaling, read_model_rope
from longcontext.rope.freqs import default_inv_freq

METHODS = RopeScaling.METHODS
TARGET = 4 * WINDOW


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_config(llama_config(), tmp_path_factory.mktemp("llama"))


@pytest.fixture(scope="module")
def llama31_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_config(llama31_config(), tmp_path_factory.mktemp("llama31"))


@pytest.fixture(scope="module")
def random_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_random_model(llama_config(), tmp_path_factory.mktemp("llama_weights"))


def _close(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    # float32 on both sides; ours is computed in float64 first, so allow float32 rounding only.
    torch.testing.assert_close(ours, theirs.to(torch.float32), rtol=1e-6, atol=0.0)


# --------------------------------------------------------------------- math vs transformers


def test_default_inv_freq_equals_transformers() -> None:
    theirs, _ = LlamaRotaryEmbedding.compute_default_rope_parameters(llama_config())
    _close(default_inv_freq(HEAD_DIM, THETA).float(), theirs)


# llama3 is Llama's own recipe: Qwen2 refuses it (test_unsupported_architecture_and_method).
CASES = [(llama_config, m) for m in METHODS] + [(qwen2_config, m) for m in METHODS if m != "llama3"]


@pytest.mark.parametrize(("make_config", "method"), CASES)
@pytest.mark.parametrize("target", [WINDOW + 1000, TARGET, 32 * WINDOW])
def test_inv_freq_equals_transformers(make_config: Any, method: str, target: int) -> None:
    config = make_config()
    rs = RopeScaling.for_target(config, target, method)
    scaled = rs.apply_to_hf_config(config)
    # dynamic and longrope depend on the sequence length: check inside and past the window.
    for seq_len in (WINDOW // 2, target):
        ours, our_scale = rs.inv_freq(HEAD_DIM, seq_len=seq_len)
        theirs, their_scale = ROPE_INIT_FUNCTIONS[method](scaled, None, seq_len=seq_len)
        _close(ours, theirs)
        assert our_scale == pytest.approx(their_scale, rel=1e-12)
        assert scaled.rope_parameters["rope_theta"] == THETA


@pytest.mark.parametrize("method", ["yarn", "longrope"])
def test_inv_freq_with_explicit_fields_equals_transformers(method: str) -> None:
    config = llama_config()
    half = HEAD_DIM // 2
    fields: dict[str, Any] = (
        {"beta_fast": 16.0, "beta_slow": 2.0, "attention_factor": 1.25}
        if method == "yarn"
        else {
            "short_factor": [1.0 + i / 100 for i in range(half)],
            "long_factor": [1.0 + i / 3 for i in range(half)],
            "attention_factor": 1.1,
        }
    )
    rs = RopeScaling.for_target(config, TARGET, method, **fields)
    scaled = rs.apply_to_hf_config(config)
    for seq_len in (WINDOW, TARGET):
        ours, our_scale = rs.inv_freq(HEAD_DIM, seq_len=seq_len)
        theirs, their_scale = ROPE_INIT_FUNCTIONS[method](scaled, None, seq_len=seq_len)
        _close(ours, theirs)
        assert our_scale == pytest.approx(their_scale)


@settings(max_examples=60, deadline=None)
@given(
    method=st.sampled_from(METHODS),
    target=st.integers(min_value=WINDOW + 1, max_value=64 * WINDOW),
)
def test_factor_window_and_frequency_invariants(method: str, target: int) -> None:
    rs = RopeScaling.for_target(llama_config(), target, method)
    assert rs.target_context == target
    assert rs.factor == pytest.approx(target / WINDOW, rel=1e-12)
    assert rs.original_max_position_embeddings == WINDOW
    assert rs.rope_theta == THETA
    # vLLM compares max_model_len with original * factor as floats: it must never fall short.
    assert rs.original_max_position_embeddings * rs.factor >= target
    assert rs.vllm_kwargs()["max_model_len"] == target

    inv, scale = rs.inv_freq(HEAD_DIM)
    base = default_inv_freq(HEAD_DIM, THETA).float()
    assert inv.shape == (HEAD_DIM // 2,)
    assert bool(torch.all(inv[1:] <= inv[:-1]))  # slower and slower frequencies
    assert bool(torch.all(inv <= base * (1 + 1e-6)))  # scaling never speeds a frequency up
    assert scale >= 1.0


# ------------------------------------------------------------------- transformers loading


@pytest.mark.parametrize("method", METHODS)
def test_transformers_loads_scaled_model(random_llama_dir: Path, method: str) -> None:
    rs = RopeScaling.for_target(random_llama_dir, TARGET, method)
    config = rs.apply_to_hf_config(AutoConfig.from_pretrained(random_llama_dir))
    model = AutoModelForCausalLM.from_pretrained(random_llama_dir, config=config)

    assert model.config.rope_parameters["rope_theta"] == THETA
    assert model.config.rope_parameters["rope_type"] == method
    assert model.config.rope_parameters["factor"] == rs.factor
    rotary = model.model.rotary_emb
    ours, scale = rs.inv_freq(HEAD_DIM, seq_len=WINDOW)  # before any long input
    _close(ours, rotary.inv_freq)
    assert rotary.attention_scaling == pytest.approx(scale)

    # One token at the last target position: the model runs there, and the length-dependent
    # methods switch to the frequencies we compute for the target length.
    with torch.no_grad():
        last = torch.tensor([[TARGET - 1]])
        out = model(input_ids=torch.tensor([[5]]), position_ids=last, use_cache=False)
    assert bool(torch.isfinite(out.logits).all())
    _close(rs.inv_freq(HEAD_DIM, seq_len=TARGET)[0], rotary.inv_freq)


def test_transformers_kwargs_route(random_llama_dir: Path) -> None:
    rs = RopeScaling.for_target(random_llama_dir, TARGET, "yarn")
    model = AutoModelForCausalLM.from_pretrained(random_llama_dir, **rs.hf_config_overrides())
    assert model.config.max_position_embeddings == TARGET
    assert model.config.rope_parameters == rs.hf_rope_parameters(model.config)
    _close(rs.inv_freq(HEAD_DIM)[0], model.model.rotary_emb.inv_freq)


def test_hf_overrides_keep_dynamic_window_at_original() -> None:
    # transformers' dynamic NTK reads max_position_embeddings as the *original* window.
    dynamic = RopeScaling.for_target(llama_config(), TARGET, "dynamic").hf_config_overrides()
    linear = RopeScaling.for_target(llama_config(), TARGET, "linear").hf_config_overrides()
    assert dynamic["max_position_embeddings"] == WINDOW
    assert linear["max_position_embeddings"] == TARGET


# ---------------------------------------------------------------- reading and extending models


def test_reads_local_dir_without_transformers(llama_dir: Path) -> None:
    code = (
        "import sys; from longcontext.rope import RopeScaling;"
        f"rs = RopeScaling.for_target({str(llama_dir)!r}, {TARGET}, 'yarn'); rs.vllm_kwargs();"
        "rs.hf_rope_parameters();"
        "print([m for m in ('torch', 'transformers', 'vllm') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_already_scaled_model_is_extended_not_scaled_twice(llama31_dir: Path) -> None:
    info = read_model_rope(llama31_dir)
    assert (info.method, info.window, info.original_window, info.factor) == (
        "llama3",
        32768,
        2048,
        8.0,
    )
    rs = RopeScaling.for_target(llama31_dir, 65536, "llama3")
    # The pre-training length stays 2048 and the factor doubles with the window (8 -> 16);
    # scaling twice would have taken 32768 as the original length.
    assert rs.original_max_position_embeddings == 2048
    assert rs.factor == 16.0
    assert (rs.low_freq_factor, rs.high_freq_factor) == (1.0, 4.0)
    assert rs.rope_theta == THETA
    assert rs.vllm_kwargs()["hf_overrides"]["max_position_embeddings"] == 65536


def test_yarn_scaled_model_extends_from_original() -> None:
    config = qwen2_config(
        rope_parameters={
            "rope_type": "yarn",
            "rope_theta": THETA,
            "factor": 2.0,
            "original_max_position_embeddings": WINDOW,
            "beta_fast": 16.0,
        },
        max_position_embeddings=2 * WINDOW,
    )
    rs = RopeScaling.for_target(config, 8 * WINDOW, "yarn")
    assert rs.factor == 8.0
    assert rs.original_max_position_embeddings == WINDOW
    assert rs.beta_fast == 16.0  # the model's own fields are kept


def test_legacy_rope_scaling_alias_and_top_level_theta() -> None:
    legacy = {
        "model_type": "llama",
        "hidden_size": 128,
        "num_attention_heads": 4,
        "max_position_embeddings": WINDOW,
        "rope_theta": 10000.0,
        "rope_scaling": {"type": "linear", "factor": 2.0},
    }
    info = read_model_rope(legacy)
    assert (info.method, info.window, info.head_dim, info.rope_theta) == (
        "linear",
        2 * WINDOW,
        32,
        10000.0,
    )
    rs = RopeScaling.for_target(legacy, 4 * WINDOW, "linear")
    assert rs.factor == 4.0 and rs.original_max_position_embeddings == WINDOW


def test_phi3_top_level_original_length_wins() -> None:
    half = HEAD_DIM // 2
    phi3 = {
        "model_type": "phi3",
        "hidden_size": 128,
        "num_attention_heads": 4,
        "max_position_embeddings": 8 * WINDOW,
        "original_max_position_embeddings": WINDOW,
        "rope_theta": THETA,
        "rope_scaling": {"type": "su", "short_factor": [1.0] * half, "long_factor": [2.0] * half},
    }
    info = read_model_rope(phi3)
    assert (info.method, info.original_window, info.window) == ("longrope", WINDOW, 8 * WINDOW)
    rs = RopeScaling.for_target(phi3, 16 * WINDOW, "longrope", long_factor=[4.0] * half)
    assert rs.short_factor == (1.0,) * half  # kept from the model
    assert rs.factor == 16.0


def test_needs_scaling(llama_dir: Path, llama31_dir: Path) -> None:
    assert not RopeScaling.needs_scaling(llama_dir, WINDOW)
    assert RopeScaling.needs_scaling(llama_dir, WINDOW + 1)
    assert not RopeScaling.needs_scaling(llama31_dir, 32768)


def test_direct_construction_defaults() -> None:
    rs = RopeScaling("yarn", 4, 4096, 500000)
    assert (rs.target_context, rs.factor, rs.beta_fast, rs.beta_slow) == (16384, 4.0, 32.0, 1.0)
    payload = rs.vllm_kwargs()
    json.dumps(payload)  # plain data: serialisable for a CLI or a config file
    assert payload["hf_overrides"]["rope_parameters"]["rope_theta"] == 500000.0


# ------------------------------------------------------------------------------ bad input


def test_unknown_method_lists_methods(llama_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown RoPE scaling method 'ntk-by-parts'.*'yarn'"):
        RopeScaling.for_target(llama_dir, TARGET, "ntk-by-parts")
    with pytest.raises(ValueError, match="unknown RoPE scaling method 'rope'"):
        RopeScaling("rope", 2.0, 4096, 10000.0)


@pytest.mark.parametrize("factor", [0.5, 0.0, -2.0, float("nan"), float("inf")])
def test_factor_below_one_is_refused(factor: float) -> None:
    with pytest.raises(ValueError, match=f"factor must be a finite number >= 1, got {factor}"):
        RopeScaling("linear", factor, 4096, 10000.0)


def test_target_within_window_says_no_scaling_needed(llama_dir: Path, llama31_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"no RoPE scaling is needed.*4096 tokens.*=2048"):
        RopeScaling.for_target(llama_dir, 2048, "yarn")
    with pytest.raises(ValueError, match=r"no RoPE scaling is needed.*32768"):
        RopeScaling.for_target(llama31_dir, 32768, "llama3")


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        RopeScaling.for_target(tmp_path / "nowhere" / "model", TARGET, "yarn")
    with pytest.raises(FileNotFoundError, match=r"has no config\.json"):
        RopeScaling.for_target(tmp_path, TARGET, "yarn")


def test_model_id_offline_error_is_clear(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match=r"'no-such-org/no-such-model'.*HF_HUB_OFFLINE"):
        RopeScaling.for_target("no-such-org/no-such-model", TARGET, "yarn")


def test_unsupported_architecture_and_method() -> None:
    gpt2 = {"model_type": "gpt2", "max_position_embeddings": 1024, "n_embd": 64, "head_dim": 32}
    gpt2["rope_theta"] = 10000.0
    with pytest.raises(ValueError, match=r"not supported for model_type 'gpt2'.*'llama'"):
        RopeScaling.for_target(gpt2, 4096, "yarn")
    with pytest.raises(ValueError, match=r"'llama3' is not supported for model_type 'qwen2'"):
        RopeScaling.for_target(qwen2_config(), TARGET, "llama3")


def test_switching_method_on_scaled_model_is_refused(llama31_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"already RoPE-scaled with 'llama3'.*method='llama3'"):
        RopeScaling.for_target(llama31_dir, 65536, "yarn")


def test_missing_and_misplaced_fields() -> None:
    with pytest.raises(ValueError, match="'longrope' needs short_factor and long_factor"):
        RopeScaling("longrope", 4.0, 4096, THETA)
    with pytest.raises(ValueError, match="'llama3' needs low_freq_factor and high_freq_factor"):
        RopeScaling("llama3", 4.0, 4096, THETA)
    with pytest.raises(ValueError, match=r"\['beta_fast'\] do not apply to method 'linear'"):
        RopeScaling("linear", 4.0, 4096, THETA, beta_fast=32.0)
    with pytest.raises(ValueError, match=r"overrides \['low_freq_factor'\] do not apply"):
        RopeScaling.for_target(llama_config(), TARGET, "yarn", low_freq_factor=1.0)
    with pytest.raises(ValueError, match="beta_fast > beta_slow"):
        RopeScaling("yarn", 4.0, 4096, THETA, beta_fast=1.0, beta_slow=2.0)
    with pytest.raises(ValueError, match="no positive integer max_position_embeddings"):
        read_model_rope({"model_type": "llama", "rope_theta": THETA, "head_dim": 32})


def test_factor_must_cover_target_for_linear_and_yarn() -> None:
    with pytest.raises(ValueError, match=r"covers 8192 positions.*use factor >= 4.0"):
        RopeScaling("linear", 2.0, 4096, THETA, target_context=16384)
    # llama3's factor shapes frequencies only; its window is max_position_embeddings.
    rs = RopeScaling("llama3", 2.0, 4096, THETA, 16384, low_freq_factor=1.0, high_freq_factor=4.0)
    assert rs.target_context == 16384


def test_longrope_factor_lists_must_fit_the_model(llama_dir: Path) -> None:
    with pytest.raises(ValueError, match="long_factor needs 16 values"):
        RopeScaling.for_target(llama_dir, TARGET, "longrope", long_factor=[1.0] * 8)
    phi3_like = llama_config(
        max_position_embeddings=TARGET,
        rope_parameters={
            "rope_type": "longrope",
            "rope_theta": THETA,
            "short_factor": [1.0] * 16,
            "long_factor": [2.0] * 16,
            "original_max_position_embeddings": WINDOW,
        },
    )
    with pytest.raises(ValueError, match=r"pass long_factor=\[\.\.\.\] \(16 values\)"):
        RopeScaling.for_target(phi3_like, 2 * TARGET, "longrope")


def test_scaling_for_another_model_is_refused() -> None:
    rs = RopeScaling.for_target(llama_config(), TARGET, "yarn")
    other = llama_config(rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    wrong = "made for rope_theta=500000 but the config has rope_theta=10000"
    with pytest.raises(ValueError, match=wrong):
        rs.apply_to_hf_config(other)
