"""RopeScaling.vllm_kwargs against real vLLM 0.33 on CPU.

vLLM cannot generate without a GPU, so this tests the contract a GPU run depends on, with vLLM's
own code: ``EngineArgs(...).create_model_config()`` (the config vLLM would serve) and the rotary
table ``get_rope`` builds from it, exactly as vLLM's Llama and Qwen2 layers call it. Nothing is
stubbed; only generation itself is out of reach here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from rope_fixtures import (
    HEAD_DIM,
    THETA,
    WINDOW,
    llama31_config,
    llama_config,
    qwen2_config,
    save_config,
)

from longcontext.rope import RopeScaling

pytest.importorskip("vllm", reason="vLLM is an optional extra ([vllm]); contract tests need it")

TARGET = 4 * WINDOW


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("vllm_models")
    return {
        "llama": save_config(llama_config(), root / "llama"),
        "qwen2": save_config(qwen2_config(), root / "qwen2"),
        "llama31": save_config(llama31_config(), root / "llama31"),
    }


def model_config(model_dir: Path, **kwargs: Any) -> Any:
    from vllm.engine.arg_utils import EngineArgs

    # The tiny dirs hold a config only; vLLM needs no tokenizer to build its ModelConfig.
    args = EngineArgs(model=str(model_dir), skip_tokenizer_init=True, **kwargs)
    return args.create_model_config()


def build_rope(config: Any) -> Any:
    """The rotary embedding vLLM's Llama/Qwen2 attention builds for this ModelConfig."""
    from vllm.config import DeviceConfig, VllmConfig, set_current_vllm_config
    from vllm.model_executor.layers.rotary_embedding import get_rope

    hf = config.hf_config
    # LongRoPE reads max_model_len from the current vLLM config to pick its long factors.
    vllm_config = VllmConfig(model_config=config, device_config=DeviceConfig("cpu"))
    with set_current_vllm_config(vllm_config):
        return get_rope(
            head_size=HEAD_DIM,
            max_position=hf.max_position_embeddings,
            is_neox_style=True,
            rope_parameters=hf.rope_parameters,
            dtype=torch.float32,
        )


def table_and_start(rope: Any, original: int) -> tuple[torch.Tensor, int]:
    """vLLM's cos|sin table and the row where position 0 of the scaled window starts."""
    if hasattr(rope, "long_short_cos_sin_cache"):  # LongRoPE: short table, then the long one
        return rope.long_short_cos_sin_cache, original
    return rope.cos_sin_cache, 0


CASES = [("llama", m) for m in RopeScaling.METHODS] + [
    ("qwen2", m) for m in RopeScaling.METHODS if m != "llama3"
]


@pytest.mark.parametrize(("arch", "method"), CASES)
def test_vllm_serves_the_target_window(model_dirs: dict[str, Path], arch: str, method: str) -> None:
    rs = RopeScaling.for_target(model_dirs[arch], TARGET, method)
    config = model_config(model_dirs[arch], **rs.vllm_kwargs())

    assert config.max_model_len == TARGET
    params = config.hf_config.rope_parameters
    assert params["rope_theta"] == THETA  # the dict override replaced rope_parameters whole
    assert params["rope_type"] == method
    assert params["factor"] == rs.factor

    rope = build_rope(config)
    table, start = table_and_start(rope, WINDOW)
    assert table.shape[0] - start >= TARGET  # every position up to the target has a row

    # Row 1 holds (m cos w, m sin w) for each frequency w: vLLM's frequencies and magnitude
    # equal ours (dynamic: the frequencies for the target length, as vLLM's NTK is static).
    half = table.shape[1] // 2
    cos, sin = table[start + 1, :half].double(), table[start + 1, half:].double()
    ours, scale = rs.inv_freq(HEAD_DIM, seq_len=TARGET)
    torch.testing.assert_close(torch.atan2(sin, cos).float(), ours, rtol=1e-5, atol=0.0)
    magnitude = torch.full_like(cos, scale)
    torch.testing.assert_close(torch.hypot(sin, cos), magnitude, rtol=1e-5, atol=0.0)
    end = table[start + TARGET - 1].double()  # the last position is rotated at the same scale
    torch.testing.assert_close(torch.hypot(end[half:], end[:half]), magnitude, rtol=1e-5, atol=0.0)


def test_vllm_extends_llama31_without_scaling_twice(model_dirs: dict[str, Path]) -> None:
    rs = RopeScaling.for_target(model_dirs["llama31"], 65536, "llama3")
    config = model_config(model_dirs["llama31"], **rs.vllm_kwargs())
    params = config.hf_config.rope_parameters
    assert config.max_model_len == 65536
    assert (params["factor"], params["original_max_position_embeddings"]) == (16.0, 2048)
    assert params["rope_theta"] == THETA
    assert build_rope(config).cos_sin_cache.shape[0] >= 65536


def test_unscaled_model_keeps_its_window(model_dirs: dict[str, Path]) -> None:
    # The baseline the scaled configs are compared with: vLLM serves the trained window.
    assert model_config(model_dirs["llama"]).max_model_len == WINDOW
    assert not RopeScaling.needs_scaling(model_dirs["llama"], WINDOW)


# The traps vllm_kwargs exists for. These pin vLLM 0.33's behaviour: if a vLLM upgrade changes
# it, they fail and tell us the emitter may need to change too.


def test_trap_rope_override_without_theta_loses_theta(model_dirs: dict[str, Path]) -> None:
    naive = {"rope_parameters": {"rope_type": "linear", "factor": 4.0}}
    config = model_config(model_dirs["llama"], hf_overrides=naive, max_model_len=TARGET)
    assert "rope_theta" not in config.hf_config.rope_parameters  # get_rope would use 10000


def test_trap_yarn_without_scaled_max_position_is_refused(model_dirs: dict[str, Path]) -> None:
    rs = RopeScaling.for_target(model_dirs["llama"], TARGET, "yarn")
    only_params = {"rope_parameters": rs.vllm_kwargs()["hf_overrides"]["rope_parameters"]}
    with pytest.raises(ValueError, match="max_model_len"):
        model_config(model_dirs["llama"], hf_overrides=only_params, max_model_len=TARGET)


def test_trap_dynamic_table_follows_max_position(model_dirs: dict[str, Path]) -> None:
    # Without our max_position_embeddings = target, vLLM accepts the window (4096 x factor)
    # but builds a dynamic-NTK table of only 4096 rows: positions past it have no rotation.
    naive = {"rope_parameters": {"rope_type": "dynamic", "rope_theta": THETA, "factor": 4.0}}
    config = model_config(model_dirs["llama"], hf_overrides=naive, max_model_len=TARGET)
    assert config.max_model_len == TARGET
    assert build_rope(config).cos_sin_cache.shape[0] == WINDOW
