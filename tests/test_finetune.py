"""LongLoRA fine-tuning: LoRA with trainable embeddings and norms, data packing, a short run on a
tiny model saved as a LongLoRA adapter and a merged checkpoint that load to the same logits."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from tiny_models import SHARED, make_tiny_llama

from longcontext.finetune.config import FinetuneConfig, check_rope_model, rope_for
from longcontext.finetune.data import (
    IGNORE,
    Collator,
    DataError,
    packed_sequences,
    supervised_sequences,
)

WINDOW = 128  # the tiny base's trained window; runs extend it 4x
TARGET = 512
PLAY = SHARED / "data" / "corpora" / "romeo_and_juliet.txt"


@pytest.fixture(scope="module")
def short_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_llama(tmp_path_factory.mktemp("short-llama"), max_position_embeddings=WINDOW)


@pytest.fixture(scope="module")
def tied_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tied-llama")
    return make_tiny_llama(path, max_position_embeddings=WINDOW, tie_word_embeddings=True)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    text = PLAY.read_text(encoding="utf-8")
    (folder / "play.txt").write_text(text[:20_000], encoding="utf-8")
    lines = [json.dumps({"text": text[i : i + 2000]}) for i in range(20_000, 30_000, 2000)]
    (folder / "more.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def _settings(model: Path, **kw: Any) -> FinetuneConfig:
    return FinetuneConfig(str(model), TARGET, **{"group_size": 128, **kw})


def _load(settings: FinetuneConfig) -> Any:
    from longcontext.finetune.model import load_for_training

    config = check_rope_model(settings.model)
    return load_for_training(settings, config, rope_for(config, settings))


def _step(model: Any) -> None:
    """One forward/backward on random ids at the target length, in training mode."""
    model.train()
    ids = torch.randint(10, 400, (1, TARGET), generator=torch.Generator().manual_seed(0))
    model(input_ids=ids, labels=ids).loss.backward()


# -- LoRA with trainable embeddings and norms -----------------------------------------------


def test_gradients_reach_lora_embeddings_and_norms(short_llama: Path):
    model = _load(_settings(short_llama))
    assert model.config.rope_parameters["rope_type"] == "linear"
    assert model.config.rope_parameters["factor"] == TARGET / WINDOW
    assert model.config._attn_implementation == "s2attn"
    _step(model)
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    lora_b = [n for n in grads if "lora_B" in n]
    assert len(lora_b) == 2 * 4  # q, k, v, o in both layers
    assert all(grads[n] is not None and grads[n].abs().sum() > 0 for n in lora_b)
    assert all(grads[n] is not None for n in grads if "lora_A" in n)  # B starts at 0
    embed = "base_model.model.model.embed_tokens.weight"
    norms = [n for n in grads if "norm" in n]
    assert embed in grads and grads[embed].abs().sum() > 0
    assert len(norms) == 2 * 2 + 1 and all(grads[n].abs().sum() > 0 for n in norms)
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert any("mlp" in n for n in frozen) and any("lm_head" in n for n in frozen)


def test_plain_lora_freezes_embeddings_and_norms(short_llama: Path):
    model = _load(_settings(short_llama, trainable_embeddings=False, full_attention=True))
    assert model.config._attn_implementation == "sdpa"
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


def test_tied_embeddings_stay_tied(tied_llama: Path):
    model = _load(_settings(tied_llama))
    inner = model.base_model.model
    assert inner.lm_head.weight is inner.model.embed_tokens.weight
    _step(model)
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0).step()
    assert inner.lm_head.weight is inner.model.embed_tokens.weight


# -- data -----------------------------------------------------------------------------------


def test_documents_pack_into_full_sequences(short_llama: Path, corpus: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(short_llama)
    rows = packed_sequences(tokenizer, corpus, 256)
    assert len(rows) > 3 and all(len(r.input_ids) == 256 for r in rows)
    assert all(r.labels == r.input_ids for r in rows)
    stream = [i for r in rows for i in r.input_ids]
    assert stream.count(tokenizer.eos_token_id) >= 5  # one after each document that fitted
    with pytest.raises(DataError, match=r"holds \d+ tokens, fewer than one sequence of 100000"):
        packed_sequences(tokenizer, corpus, 100_000)


def test_supervised_rows_take_loss_on_the_response_only(short_llama: Path, tmp_path: Path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(short_llama)
    data = tmp_path / "sft.jsonl"
    records = [
        {"prompt": "Who loves Juliet?", "response": " Romeo."},
        {"prompt": "Where? " * 300, "response": " Verona."},  # too long: skipped
    ]
    data.write_text("\n".join(json.dumps(r) for r in records), encoding="utf-8")
    (row,) = supervised_sequences(tokenizer, data, 64)
    prompt = tokenizer("Who loves Juliet?")["input_ids"]
    assert row.input_ids[: len(prompt)] == prompt
    assert row.labels[: len(prompt)] == [IGNORE] * len(prompt)
    assert row.labels[len(prompt) :] == row.input_ids[len(prompt) :]
    assert row.input_ids[-1] == tokenizer.eos_token_id
    batch = Collator(tokenizer.pad_token_id)([row, type(row)(row.input_ids[:3], [IGNORE] * 3)])
    assert batch["attention_mask"][1].tolist() == [1] * 3 + [0] * (len(row.input_ids) - 3)
    assert (batch["labels"][1] == IGNORE).all()
    with pytest.raises(DataError, match="pass --supervised"):
        packed_sequences(tokenizer, data, 64)


# -- a short run, saved, loaded two ways ----------------------------------------------------


@pytest.fixture(scope="module")
def run(short_llama: Path, corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from longcontext.finetune.train import finetune

    settings = _settings(short_llama, steps=3, learning_rate=1e-2, warmup_steps=0)
    out = tmp_path_factory.mktemp("run")
    seen: list[tuple[int, int, float]] = []
    result = finetune(settings, corpus, out, progress=lambda *a: seen.append(a))
    assert [s[:2] for s in seen] == [(1, 3), (2, 3), (3, 3)]
    return result


def test_the_adapter_is_longloras_format(run: Any, short_llama: Path):
    from longcontext.llm.lora import inspect_adapter

    adapter = inspect_adapter(run.adapter)
    assert adapter.trainable_params is not None and not adapter.is_plain_lora
    assert adapter.base_model == str(short_llama)
    assert sorted(adapter.config["target_modules"]) == ["k_proj", "o_proj", "q_proj", "v_proj"]
    trained = torch.load(adapter.trainable_params, weights_only=True)
    assert "base_model.model.model.embed_tokens.weight" in trained
    assert "base_model.model.model.norm.weight" in trained
    record = json.loads((run.adapter / "longcontext_finetune.json").read_text())
    assert record["rope"]["rope_type"] == "linear" and record["group_size"] == 128
    assert len(run.losses) == 3 and all(loss > 0 for loss in run.losses)


def test_merged_config_carries_the_rope_parameters(run: Any):
    from longcontext.rope import read_model_rope

    config = json.loads((run.merged / "config.json").read_text())
    assert config["rope_parameters"]["rope_type"] == "linear"
    assert config["rope_parameters"]["factor"] == TARGET / WINDOW
    assert config["max_position_embeddings"] == WINDOW  # vLLM: window = original x factor
    assert read_model_rope(run.merged).window == TARGET
    assert "s2attn_group_size" not in config


def test_adapter_and_merged_folder_give_the_same_logits(
    run: Any, short_llama: Path, tmp_path: Path
):
    from longcontext.llm import LongContextLLM

    through_lora = LongContextLLM(
        str(short_llama),
        context_length=TARGET,
        rope="linear",
        lora=run.adapter,
        backend="transformers",
        device="cpu",
        merge_cache_dir=tmp_path,
    )
    merged = LongContextLLM(str(run.merged), backend="transformers", device="cpu")
    base = LongContextLLM(
        str(short_llama), context_length=TARGET, rope="linear", backend="transformers", device="cpu"
    )
    assert merged.context_window == through_lora.context_window == TARGET
    ids = torch.randint(10, 400, (1, TARGET), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a = through_lora._backend.model(ids).logits
        b = merged._backend.model(ids).logits
        c = base._backend.model(ids).logits
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(a, c, atol=1e-3)  # the run changed the model


def test_a_finetune_adapter_brings_its_window(run: Any, short_llama: Path, tmp_path: Path):
    from longcontext.llm import LongContextLLM
    from longcontext.llm.lora import RUN_FILE

    llm = LongContextLLM(
        str(short_llama),
        lora=run.adapter,
        backend="transformers",
        device="cpu",
        merge_cache_dir=tmp_path,
    )
    assert llm.context_window == TARGET
    assert llm.rope is not None and llm.rope.method == "linear"
    # Asked for explicitly, the caller's setting wins.
    shorter = LongContextLLM(
        str(short_llama),
        lora=run.adapter,
        context_length=WINDOW,
        backend="transformers",
        device="cpu",
        merge_cache_dir=tmp_path,
    )
    assert shorter.context_window == WINDOW
    damaged = tmp_path / "damaged"
    shutil.copytree(run.adapter, damaged)
    (damaged / RUN_FILE).write_text("{", encoding="utf-8")
    with pytest.raises(ValueError, match="is damaged"):
        LongContextLLM(str(short_llama), lora=damaged, backend="transformers", device="cpu")


# -- the command line -----------------------------------------------------------------------


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    from longcontext.cli import main

    code = main(["finetune", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_trains_plain_lora_with_full_attention(
    short_llama: Path, corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    from longcontext.llm.lora import inspect_adapter

    code, out, err = _cli(
        capsys, str(short_llama), "--data", str(corpus), "--context-length", "256",
        "--output", str(tmp_path), "--steps", "2", "--full-attention",
        "--no-trainable-embeddings", "--no-merge", "--lora-rank", "4",
    )  # fmt: skip
    assert code == 0, err
    assert out.splitlines() == [f"adapter: {tmp_path / 'adapter'}"]
    assert "rope linear x2, full attention" in err and "step 2/2  loss" in err
    adapter = inspect_adapter(tmp_path / "adapter")
    assert adapter.is_plain_lora and adapter.rank == 4
    assert (
        json.loads((tmp_path / "adapter" / "longcontext_finetune.json").read_text())["attention"]
        == "full"
    )
    assert not (tmp_path / "merged").exists()


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A GPT-2 (learned absolute positions, no RoPE) with the tiny tokenizer."""
    from tiny_models import make_tokenizer
    from transformers import GPT2Config, GPT2LMHeadModel

    path = tmp_path_factory.mktemp("tiny-gpt2")
    tokenizer = make_tokenizer(path)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=128, n_embd=32, n_layer=1, n_head=2)
    GPT2LMHeadModel(config).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def other_adapter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LoRA adapter made for another base (hidden size 128, not 64)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    other = make_tiny_llama(tmp_path_factory.mktemp("wide-llama"), hidden_size=128)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(other), LoraConfig(r=4, target_modules=["q_proj"])
    )
    path = tmp_path_factory.mktemp("other-adapter")
    model.save_pretrained(path)
    return path


def test_cli_bad_input_is_one_line(
    short_llama: Path,
    tiny_gpt2: Path,
    other_adapter: Path,
    corpus: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
):
    short = tmp_path / "short.txt"
    short.write_text("Two households, both alike in dignity.", encoding="utf-8")
    common = ["--output", str(tmp_path / "out"), "--steps", "1"]
    cases = [
        (
            [str(tiny_gpt2), "--data", str(corpus), "--context-length", "512"],
            "(gpt2) has no rotary position embedding (RoPE)",
        ),
        (
            [str(short_llama), "--data", str(corpus), "--context-length", "500",
             "--group-size", "128"],
            "--context-length 500 is not a multiple of the --group-size 128; use 384 or 512",
        ),
        (
            [str(short_llama), "--data", str(short), "--context-length", "512"],
            "tokens, fewer than one sequence of 512; add text or lower the --context-length",
        ),
        (
            [str(short_llama), "--data", str(corpus), "--context-length", "512",
             "--resume", str(other_adapter)],
            "does not fit base model",
        ),
        (
            [str(short_llama), "--data", str(tmp_path / "missing"), "--context-length", "512"],
            "does not exist",
        ),
    ]  # fmt: skip
    for argv, expected in cases:
        code, out, err = _cli(capsys, *argv, *common)
        assert code == 2, err
        assert out == "" and len(err.strip().splitlines()) == 1, err
        assert err.startswith("longcontext finetune: error: ") and expected in err, err
    assert not (tmp_path / "out").exists()  # nothing written, no weights loaded


def test_resume_starts_from_the_saved_adapter(run: Any, short_llama: Path):
    from safetensors.torch import load_file

    model = _load(_settings(short_llama, resume=str(run.adapter)))
    own = dict(model.named_parameters())
    saved = load_file(run.adapter / "adapter_model.safetensors")
    for key, tensor in saved.items():  # peft saves without the adapter name
        name = key.replace(".weight", ".default.weight")
        torch.testing.assert_close(own[name].detach(), tensor)
        assert own[name].requires_grad
    trained = torch.load(run.adapter / "trainable_params.bin", weights_only=True)
    for key, tensor in trained.items():
        torch.testing.assert_close(own[key].detach(), tensor)
        assert own[key].requires_grad


@pytest.mark.parametrize("method", ["linear", "yarn"])
def test_merged_rope_config_serves_the_target(short_llama: Path, method: str):
    from longcontext.finetune.config import merged_rope_config
    from longcontext.rope import read_model_rope

    settings = _settings(short_llama, rope=method)
    rope = rope_for(check_rope_model(settings.model), settings)
    assert rope is not None and rope.method == method
    config = json.loads((short_llama / "config.json").read_text())
    merged = {**config, **merged_rope_config(rope)}
    assert read_model_rope(merged).window == TARGET
    assert merged["rope_parameters"]["rope_theta"] == config["rope_parameters"]["rope_theta"]


def test_settings_are_checked_before_anything_loads():
    with pytest.raises(ValueError, match="dynamic NTK depends on the length"):
        FinetuneConfig("m", 512, rope="dynamic")
    with pytest.raises(ValueError, match="group size 600 must be an int between 2 and"):
        FinetuneConfig("m", 512, group_size=600)
    assert FinetuneConfig("m", 8192).group == 2048  # LongLoRA: a quarter of the length
    assert FinetuneConfig("m", 8192, lora_rank=16).alpha == 32


def test_supervised_run_with_padding_trains_through_s2attn(
    short_llama: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Rows of different lengths in one batch: the padding mask reaches S2-Attn in training."""
    from longcontext.finetune import FinetuneConfig, finetune, s2attn

    masks: list[Any] = []
    real = s2attn.s2_attention

    def spy(*args: Any, **kw: Any) -> Any:
        masks.append(kw.get("attention_mask"))
        return real(*args, **kw)

    monkeypatch.setattr(s2attn, "s2_attention", spy)

    text = PLAY.read_text(encoding="utf-8")
    records = [
        {"prompt": text[i : i + 400 + 37 * n], "response": text[i + 500 : i + 600]}
        for n, i in enumerate(range(0, 8000, 1000))
    ]
    data = tmp_path / "sft.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in records), encoding="utf-8")
    settings = FinetuneConfig(
        str(short_llama), TARGET, group_size=64, supervised=True, steps=2, batch_size=4,
        learning_rate=1e-3, warmup_steps=0,
    )  # fmt: skip
    result = finetune(settings, data, tmp_path / "out", merge=False)
    assert result.sequences == len(records) and len(result.losses) == 2
    assert all(loss == loss and loss > 0 for loss in result.losses)  # finite, not NaN
    assert (result.adapter / "trainable_params.bin").is_file() and result.merged is None
    assert masks and all(m is not None and m.dtype == torch.bool for m in masks)


def test_gradient_checkpointing_recomputes_the_same_s2attn(short_llama: Path):
    """Checkpointed layers are recomputed in the backward pass: with the group on the config
    they compute the same S2-Attn, so the gradients equal those without checkpointing."""
    model = _load(_settings(short_llama, lora_dropout=0.0))
    _step(model)
    plain = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    _step(model)
    again = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert plain.keys() == again.keys() and len(plain) > 10
    for name, grad in plain.items():
        torch.testing.assert_close(again[name], grad, atol=1e-5, rtol=1e-4, msg=name)
