"""LoRA and LongLoRA adapters: real peft adapters on the tiny Llama, merged and served."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tiny_models import make_tiny_llama, tiny_llama_dir  # noqa: F401 - pytest fixture

from longcontext.llm import LongContextLLM
from longcontext.llm.lora import (
    check_adapter_fits,
    inspect_adapter,
    merge_key,
    merged_checkpoint,
)

PROMPT = "Romeo, Romeo, wherefore art thou"


def _peft_model(base: Path, **lora: Any) -> Any:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(base)
    # init_lora_weights=False: random A and B, so the update is not zero and merging shows.
    config = LoraConfig(r=4, lora_alpha=8, init_lora_weights=False, **lora)
    return get_peft_model(model, config)


@pytest.fixture(scope="module")
def plain_adapter(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    path = tmp_path_factory.mktemp("plain-lora")
    _peft_model(tiny_llama_dir, target_modules=["q_proj", "v_proj"]).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def modules_to_save_adapter(
    tiny_llama_dir: Path,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    import torch

    path = tmp_path_factory.mktemp("mts-lora")
    peft_model = _peft_model(tiny_llama_dir, target_modules=["q_proj"], modules_to_save=["norm"])
    with torch.no_grad():
        peft_model.base_model.model.model.norm.modules_to_save["default"].weight.fill_(0.5)
    peft_model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def longlora_adapter(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    """LongLoRA's released format: a peft adapter plus ``trainable_params.bin`` holding the
    embeddings and norms trained in full (keys as saved from the peft-wrapped model)."""
    import torch

    path = tmp_path_factory.mktemp("longlora")
    peft_model = _peft_model(
        tiny_llama_dir, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]
    )
    peft_model.save_pretrained(path)
    base = peft_model.base_model.model
    torch.manual_seed(2)
    trainable = {
        "base_model.model.model.embed_tokens.weight": base.model.embed_tokens.weight
        + 0.01 * torch.randn_like(base.model.embed_tokens.weight),
        "base_model.model.model.norm.weight": torch.full_like(base.model.norm.weight, 2.0),
        "base_model.model.model.layers.0.input_layernorm.weight": torch.full_like(
            base.model.layers[0].input_layernorm.weight, 0.25
        ),
    }
    torch.save({k: v.detach().clone() for k, v in trainable.items()}, path / "trainable_params.bin")
    return path


def _state(model_dir: Path | str) -> dict[str, Any]:
    from safetensors.torch import load_file

    (file,) = Path(model_dir).glob("*.safetensors")
    return dict(load_file(str(file)))


def test_adapter_kinds(
    plain_adapter: Path, modules_to_save_adapter: Path, longlora_adapter: Path
) -> None:
    assert inspect_adapter(plain_adapter).is_plain_lora
    assert not inspect_adapter(modules_to_save_adapter).is_plain_lora
    longlora = inspect_adapter(longlora_adapter)
    assert not longlora.is_plain_lora and longlora.trainable_params is not None
    assert longlora.rank == 4


def test_merged_checkpoint_as_lora_is_refused(tiny_llama_dir: Path) -> None:  # noqa: F811
    with pytest.raises(ValueError, match="merged checkpoint; pass it as model="):
        inspect_adapter(tiny_llama_dir)


def test_longlora_merge_applies_low_rank_updates_and_trainable_params(
    tiny_llama_dir: Path,  # noqa: F811
    longlora_adapter: Path,
    tmp_path: Path,
) -> None:
    import torch

    adapter = inspect_adapter(longlora_adapter)
    merged_dir = merged_checkpoint(str(tiny_llama_dir), adapter, cache_dir=tmp_path)
    base, merged = _state(tiny_llama_dir), _state(merged_dir)
    lora = _state(longlora_adapter)
    name = "model.layers.1.self_attn.q_proj.weight"
    a = lora[f"base_model.model.{name[:-7]}.lora_A.weight"]
    b = lora[f"base_model.model.{name[:-7]}.lora_B.weight"]
    torch.testing.assert_close(merged[name], base[name] + (8 / 4) * b @ a)  # W + alpha/r * BA
    trainable = torch.load(longlora_adapter / "trainable_params.bin", weights_only=True)
    for key, value in trainable.items():
        torch.testing.assert_close(merged[key.removeprefix("base_model.model.")], value)
    untouched = "model.layers.0.mlp.up_proj.weight"
    torch.testing.assert_close(merged[untouched], base[untouched])
    assert (merged_dir / "tokenizer.json").is_file()


def test_modules_to_save_are_merged(
    tiny_llama_dir: Path,  # noqa: F811
    modules_to_save_adapter: Path,
    tmp_path: Path,
) -> None:
    import torch

    merged_dir = merged_checkpoint(
        str(tiny_llama_dir), inspect_adapter(modules_to_save_adapter), cache_dir=tmp_path
    )
    norm = _state(merged_dir)["model.norm.weight"]
    torch.testing.assert_close(norm, torch.full_like(norm, 0.5))


def test_merge_is_cached_by_base_and_adapter_hash(
    tiny_llama_dir: Path,  # noqa: F811
    longlora_adapter: Path,
    plain_adapter: Path,
    tmp_path: Path,
) -> None:
    adapter = inspect_adapter(longlora_adapter)
    first = merged_checkpoint(str(tiny_llama_dir), adapter, cache_dir=tmp_path)
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    again = merged_checkpoint(str(tiny_llama_dir), adapter, cache_dir=tmp_path)
    assert again == first and (again / "model.safetensors").stat().st_mtime_ns == stamp
    assert merge_key(str(tiny_llama_dir), inspect_adapter(plain_adapter)) != first.name
    # No leftover work directories; beside the checkpoint only the file digests.
    assert sorted(p.name for p in tmp_path.iterdir()) == [".digests.json", first.name]


def _fake_base(path: Path, weights: bytes) -> Path:
    path.mkdir()
    (path / "config.json").write_text('{"model_type": "llama"}')
    (path / "model.safetensors").write_bytes(weights)
    return path


def test_merge_key_sees_every_byte_of_the_base(plain_adapter: Path, tmp_path: Path) -> None:
    """Two bases whose multi-MB weights differ only in the middle byte get two merged
    checkpoints (the key used to hash only 1 MiB from each end of a file)."""
    weights = bytes(range(256)) * (3 * (1 << 20) // 256)  # 3 MiB
    middle = len(weights) // 2
    changed = weights[:middle] + bytes([weights[middle] ^ 1]) + weights[middle + 1 :]
    a = _fake_base(tmp_path / "a", weights)
    b = _fake_base(tmp_path / "b", changed)
    adapter = inspect_adapter(plain_adapter)
    assert merge_key(str(a), adapter) != merge_key(str(b), adapter)
    assert merge_key(str(a), adapter) == merge_key(str(tmp_path / "a"), adapter)


def test_merge_key_digests_are_kept_by_size_and_mtime(plain_adapter: Path, tmp_path: Path) -> None:
    """A base's files are hashed once: their digests are kept in the cache directory and reused
    while a file's size and modification time are unchanged."""
    import os

    base = _fake_base(tmp_path / "base", b"\0" * 4096)
    cache = tmp_path / "cache"
    adapter = inspect_adapter(plain_adapter)
    first = merge_key(str(base), adapter, cache_dir=cache)
    assert (cache / ".digests.json").is_file()
    weights = base / "model.safetensors"
    stat = weights.stat()
    weights.write_bytes(b"\1" * 4096)  # same size ...
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # ... and same mtime: not re-read
    assert merge_key(str(base), adapter, cache_dir=cache) == first
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))  # touched: hashed again
    assert merge_key(str(base), adapter, cache_dir=cache) != first
    assert merge_key(str(base), adapter) != first  # without a cache everything is read


def test_merge_key_of_a_hub_base_follows_its_cached_commit(
    plain_adapter: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hub id names no content: the key includes the commit the local cache holds, so a new
    revision of the same model is merged again (no network: a cache laid out as the hub's)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    repo = tmp_path / "models--owner--model"
    adapter = inspect_adapter(plain_adapter)
    missing = merge_key("owner/model", adapter)
    keys = []
    for commit in ("a" * 40, "b" * 40):
        (repo / "snapshots" / commit).mkdir(parents=True)
        (repo / "snapshots" / commit / "config.json").write_text("{}")
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / "main").write_text(commit)
        keys.append(merge_key("owner/model", adapter))
    assert len({missing, *keys}) == 3


def test_engine_serves_the_merged_model(
    tiny_llama_dir: Path,  # noqa: F811
    longlora_adapter: Path,
    tmp_path: Path,
) -> None:
    base = LongContextLLM(tiny_llama_dir, backend="transformers")
    tuned = LongContextLLM(
        tiny_llama_dir, backend="transformers", lora=longlora_adapter, merge_cache_dir=tmp_path
    )
    (merged_dir,) = tmp_path.glob("[!.]*")
    merged = LongContextLLM(merged_dir, backend="transformers")
    tuned_text = tuned.generate(PROMPT, max_tokens=8)[0].text
    assert tuned_text != base.generate(PROMPT, max_tokens=8)[0].text
    assert tuned_text == merged.generate(PROMPT, max_tokens=8)[0].text


def test_lora_for_another_base_names_both(
    plain_adapter: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    wide = make_tiny_llama(tmp_path_factory.mktemp("wide-llama"), hidden_size=128, head_dim=32)
    adapter = inspect_adapter(plain_adapter)
    with pytest.raises(ValueError) as info:
        check_adapter_fits(str(wide), adapter)
    message = str(info.value)
    assert str(plain_adapter) in message and str(wide) in message
    assert str(adapter.base_model) in message  # the base it was trained on
    assert "q_proj.weight is [64, 128]" in message and "needs [64, 64]" in message
    with pytest.raises(ValueError, match="does not fit base model"):
        LongContextLLM(wide, backend="transformers", lora=plain_adapter)


def test_vllm_gets_plain_lora_as_request_and_longlora_merged(
    tiny_llama_dir: Path,  # noqa: F811
    plain_adapter: Path,
    longlora_adapter: Path,
    tmp_path: Path,
) -> None:
    """Constructing the vLLM backend builds no engine (engines start on first use), so what it
    would hand to vLLM can be checked here without a GPU, and against vLLM's real EngineArgs."""
    pytest.importorskip("vllm", reason="the vLLM backend is tested where vllm is installed")
    from vllm.engine.arg_utils import EngineArgs
    from vllm.lora.request import LoRARequest

    plain = LongContextLLM(tiny_llama_dir, backend="vllm", lora=plain_adapter)
    backend: Any = plain._backend
    assert isinstance(backend.lora_request, LoRARequest)
    assert backend.lora_request.lora_path == str(plain_adapter)
    assert backend.kwargs["model"] == str(tiny_llama_dir)
    assert backend.kwargs["enable_lora"] is True and backend.kwargs["max_lora_rank"] == 8
    EngineArgs(**backend.kwargs).create_model_config()

    merged = LongContextLLM(
        tiny_llama_dir, backend="vllm", lora=longlora_adapter, merge_cache_dir=tmp_path
    )
    backend = merged._backend
    assert backend.lora_request is None and "enable_lora" not in backend.kwargs
    assert Path(backend.kwargs["model"]).parent == tmp_path
    assert (Path(backend.kwargs["model"]) / "config.json").is_file()
