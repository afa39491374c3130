"""RoPE scaling for a model with rope_parameters per layer type: Gemma 3.

Gemma 3 interleaves five local sliding-window layers (rope_theta 10000) with one global layer
(rope_theta 1000000) and keeps one rope_parameters dict per layer type. Google extends it by
scaling the global layers only; the local ones never attend further than their window. These
tests hold transformers' real Gemma 3 rotary embedding and vLLM 0.33's real ModelConfig and
get_rope (on CPU) to that: scaled frequencies on the full-attention layers, the unscaled ones on
the sliding layers, rope_theta kept per type, and the served window.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from tiny_models import make_tokenizer

from longcontext.rope import RopeScaling, read_model_rope
from longcontext.rope.freqs import default_inv_freq

HEAD_DIM = 32
WINDOW = 512
TARGET = 4 * WINDOW
GLOBAL_THETA, LOCAL_THETA = 1_000_000.0, 10_000.0
METHODS = ("linear", "dynamic", "yarn")


def gemma3_config(**overrides: Any) -> Any:
    """A tiny Gemma 3 text config: six layers (five sliding, one full), both thetas as shipped."""
    from transformers import Gemma3TextConfig

    return Gemma3TextConfig(
        **{
            "vocab_size": 512,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 6,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": HEAD_DIM,
            "max_position_embeddings": WINDOW,
            "sliding_window": 64,
            **overrides,
        }
    )


@pytest.fixture(scope="module")
def gemma_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Gemma3ForCausalLM with a real BPE tokenizer, saved as a model folder."""
    from transformers import Gemma3ForCausalLM

    path = tmp_path_factory.mktemp("tiny-gemma3")
    tokenizer = make_tokenizer(path)
    config = gemma3_config(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    Gemma3ForCausalLM(config).save_pretrained(path)
    return path


def _close(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    torch.testing.assert_close(ours, theirs.to(torch.float32), rtol=1e-6, atol=0.0)


def test_reads_the_global_layers_and_keeps_the_local_ones(gemma_dir: Path) -> None:
    info = read_model_rope(gemma_dir)
    assert (info.model_type, info.layer_type) == ("gemma3_text", "full_attention")
    assert (info.rope_theta, info.window, info.head_dim) == (GLOBAL_THETA, WINDOW, HEAD_DIM)
    assert info.other_layer_types == {
        "sliding_attention": {"rope_type": "default", "rope_theta": LOCAL_THETA}
    }
    # The same from the transformers config object as from the folder.
    assert read_model_rope(gemma3_config()) == read_model_rope(gemma3_config().to_dict())


@pytest.mark.parametrize("method", METHODS)
def test_transformers_scales_global_layers_only(gemma_dir: Path, method: str) -> None:
    from transformers import AutoConfig, AutoModelForCausalLM

    rs = RopeScaling.for_target(gemma_dir, TARGET, method)
    config = rs.apply_to_hf_config(AutoConfig.from_pretrained(gemma_dir))
    params = config.rope_parameters
    assert params["full_attention"]["rope_type"] == method
    assert params["full_attention"]["rope_theta"] == GLOBAL_THETA
    assert params["sliding_attention"] == {"rope_type": "default", "rope_theta": LOCAL_THETA}

    model = AutoModelForCausalLM.from_pretrained(gemma_dir, config=config)
    rotary = model.model.rotary_emb
    local = default_inv_freq(HEAD_DIM, LOCAL_THETA).float()
    ours, scale = rs.inv_freq(HEAD_DIM, seq_len=WINDOW)  # before any long input
    _close(ours, rotary.full_attention_inv_freq)
    _close(local, rotary.sliding_attention_inv_freq)
    assert rotary.full_attention_attention_scaling == pytest.approx(scale)
    assert rotary.sliding_attention_attention_scaling == 1.0
    if method == "linear":  # the global frequencies really changed, the local ones did not
        _close(default_inv_freq(HEAD_DIM, GLOBAL_THETA).float() / 4, rotary.full_attention_inv_freq)

    # One token at the last target position: the model runs there; dynamic NTK switches the
    # global layers to the frequencies for the target length, and the local layers stay put.
    with torch.no_grad():
        last = torch.tensor([[TARGET - 1]])
        out = model(input_ids=torch.tensor([[5]]), position_ids=last, use_cache=False)
    assert bool(torch.isfinite(out.logits).all())
    _close(rs.inv_freq(HEAD_DIM, seq_len=TARGET)[0], rotary.full_attention_inv_freq)
    _close(local, rotary.sliding_attention_inv_freq)


def test_longcontextllm_serves_gemma_past_its_window(gemma_dir: Path) -> None:
    from longcontext import LongContextLLM

    llm = LongContextLLM(gemma_dir, context_length=TARGET, rope="yarn", backend="transformers")
    assert llm.context_window == TARGET
    assert llm.rope is not None and llm.rope.layer_type == "full_attention"
    prompt = "Romeo, Romeo, wherefore art thou Romeo? " * 120  # past the 512-token window
    assert WINDOW < llm.count_tokens(prompt) < TARGET - 4
    [out] = llm.generate(prompt, max_tokens=3, temperature=0.0)
    assert out.prompt_tokens > WINDOW and out.completion_tokens == 3


# ----------------------------------------------------------------------------- vLLM 0.33


def vllm_model_config(model_dir: Path, **kwargs: Any) -> Any:
    pytest.importorskip("vllm", reason="vLLM is an optional extra ([vllm])")
    from vllm.engine.arg_utils import EngineArgs

    args = EngineArgs(model=str(model_dir), skip_tokenizer_init=True, **kwargs)
    return args.create_model_config()


def vllm_rope(config: Any, layer_type: str) -> Any:
    """The rotary embedding vLLM's Gemma 3 attention builds for a layer of this type."""
    from vllm.config import DeviceConfig, VllmConfig, set_current_vllm_config
    from vllm.model_executor.layers.rotary_embedding import get_rope

    hf = config.hf_config
    vllm_config = VllmConfig(model_config=config, device_config=DeviceConfig("cpu"))
    with set_current_vllm_config(vllm_config):
        return get_rope(
            HEAD_DIM,
            max_position=hf.max_position_embeddings,  # as vllm/model_executor/models/gemma3.py
            rope_parameters=hf.rope_parameters[layer_type],
            is_neox_style=True,
            dtype=torch.float32,
        )


def _angles(rope: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Row 1 of vLLM's cos|sin table: the angle and magnitude of each frequency at position 1."""
    table = rope.cos_sin_cache
    half = table.shape[1] // 2
    cos, sin = table[1, :half].double(), table[1, half:].double()
    return torch.atan2(sin, cos).float(), torch.hypot(sin, cos)


@pytest.mark.parametrize("method", METHODS)
def test_vllm_serves_target_with_theta_kept_per_type(gemma_dir: Path, method: str) -> None:
    rs = RopeScaling.for_target(gemma_dir, TARGET, method)
    config = vllm_model_config(gemma_dir, **rs.vllm_kwargs())

    assert config.max_model_len == TARGET
    params = config.hf_config.rope_parameters
    assert params["full_attention"]["rope_type"] == method
    assert params["full_attention"]["rope_theta"] == GLOBAL_THETA
    assert params["full_attention"]["factor"] == rs.factor
    assert params["sliding_attention"] == {"rope_type": "default", "rope_theta": LOCAL_THETA}

    full = vllm_rope(config, "full_attention")
    assert full.cos_sin_cache.shape[0] >= TARGET  # every position up to the target has a row
    angles, magnitude = _angles(full)
    ours, scale = rs.inv_freq(HEAD_DIM, seq_len=TARGET)
    torch.testing.assert_close(angles, ours, rtol=1e-5, atol=0.0)
    torch.testing.assert_close(magnitude, torch.full_like(magnitude, scale), rtol=1e-5, atol=0.0)
    local_angles, local_magnitude = _angles(vllm_rope(config, "sliding_attention"))
    torch.testing.assert_close(local_angles, default_inv_freq(HEAD_DIM, LOCAL_THETA).float())
    torch.testing.assert_close(local_magnitude, torch.ones_like(local_magnitude))


def test_vllm_unscaled_gemma_keeps_its_window(gemma_dir: Path) -> None:
    assert vllm_model_config(gemma_dir).max_model_len == WINDOW


def test_vllm_trap_gemma3_window_is_not_multiplied_by_factor(gemma_dir: Path) -> None:
    # vLLM multiplies max_position_embeddings by a linear factor for Llama but not for Gemma 3,
    # so the per-type parameters alone leave the window at 512 and the target is refused.
    rs = RopeScaling.for_target(gemma_dir, TARGET, "linear")
    only_params = {"rope_parameters": rs.vllm_kwargs()["hf_overrides"]["rope_parameters"]}
    with pytest.raises(ValueError, match="max_model_len"):
        vllm_model_config(gemma_dir, hf_overrides=only_params, max_model_len=TARGET)


# ------------------------------------------------------------------------------ refusals


def test_gemma_methods_and_mismatches_are_refused(gemma_dir: Path) -> None:
    from transformers import LlamaConfig

    with pytest.raises(ValueError, match=r"'llama3' is not supported for model_type 'gemma3_text'"):
        RopeScaling.for_target(gemma_dir, TARGET, "llama3")
    rs = RopeScaling.for_target(gemma_dir, TARGET, "linear")
    llama = LlamaConfig(
        head_dim=HEAD_DIM, rope_parameters={"rope_type": "default", "rope_theta": GLOBAL_THETA}
    )
    with pytest.raises(ValueError, match="layer type 'full_attention'"):
        rs.apply_to_hf_config(llama)
    nested = gemma3_config().to_dict()
    nested["rope_parameters"] = {"sliding_attention": {"rope_type": "default", "rope_theta": 1e4}}
    with pytest.raises(ValueError, match="none for 'full_attention'"):
        RopeScaling.for_target(nested, TARGET, "linear")
    with pytest.raises(ValueError, match="other_layer_types needs layer_type"):
        RopeScaling("linear", 4.0, WINDOW, GLOBAL_THETA, other_layer_types={"x": {}})


def test_already_scaled_gemma_is_extended_not_scaled_twice() -> None:
    # Gemma 3 4B ships linear factor 8 on the global layers with max_position_embeddings 131072:
    # the window already (vLLM does not multiply it for Gemma 3), pre-trained at 16384.
    shipped = gemma3_config(
        max_position_embeddings=131072,
        rope_parameters={
            "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": GLOBAL_THETA},
            "sliding_attention": {"rope_type": "default", "rope_theta": LOCAL_THETA},
        },
    )
    info = read_model_rope(shipped)
    assert (info.window, info.original_window, info.factor) == (131072, 16384, 8.0)
    rs = RopeScaling.for_target(shipped, 262144, "linear")
    assert (rs.factor, rs.original_max_position_embeddings) == (16.0, 16384)
    assert rs.vllm_kwargs()["hf_overrides"]["max_position_embeddings"] == 262144
