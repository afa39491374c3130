#!/usr/bin/env python
"""GPU smoke test for long-context serving: a Llama 3 8B-shaped model, RoPE-scaled by YaRN.

Builds a random-weight model with the Llama 3 8B config (hidden 4096, 32 layers, 32 heads, 8 KV
heads, intermediate 14336, vocabulary 128256, rope_theta 500000, window 8192), saves it, serves it
through ``LongContextLLM`` with ``rope="yarn"`` on the transformers backend, and measures at each
prompt size: prefill throughput, decode throughput and peak GPU memory, for ``sdpa`` and ``eager``
attention (eager where it fits). It also checks that the rotary inverse frequencies on the GPU
equal the CPU ones, and, when vLLM is installed, runs the same prompts through the vLLM backend.
Prints a markdown table.

    python scripts/gpu_smoke.py                           # 8K, 32K, 64K, 32 layers
    python scripts/gpu_smoke.py --layers 4 --sizes 8192   # quicker
    python scripts/gpu_smoke.py --tiny --device cpu --sizes 256,512  # the pipeline on CPU

The weights are random: the numbers are about speed and memory, not text quality.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))  # run from a checkout without installing

LLAMA3_8B: dict[str, Any] = {
    "hidden_size": 4096,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "intermediate_size": 14336,
    "vocab_size": 128256,
    "max_position_embeddings": 8192,
    "rope_parameters": {"rope_type": "default", "rope_theta": 500000.0},
    "rms_norm_eps": 1e-5,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "pad_token_id": 0,
    "tie_word_embeddings": False,
}
TINY: dict[str, Any] = {
    **LLAMA3_8B,
    "hidden_size": 64,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "intermediate_size": 128,
    "vocab_size": 512,
    "max_position_embeddings": 128,
}
TEXT = (
    "Two households, both alike in dignity, in fair Verona, where we lay our scene, from ancient "
    "grudge break to new mutiny, where civil blood makes civil hands unclean. "
)


@dataclass
class Row:
    backend: str
    attention: str
    prompt_tokens: int
    prefill_tok_s: float | None
    decode_tok_s: float | None
    peak_gib: float | None
    note: str = ""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        default="8192,32768,65536",
        help="prompt sizes in tokens, comma-separated (default: 8K, 32K, 64K)",
    )
    parser.add_argument("--layers", type=int, default=None, help="hidden layers (default: 32)")
    parser.add_argument(
        "--factor",
        type=float,
        default=4.0,
        help="YaRN factor; raised to cover the largest size plus decode if needed (default 4)",
    )
    parser.add_argument("--decode-tokens", type=int, default=32, help="tokens to generate")
    parser.add_argument("--attention", default="sdpa,eager", help="implementations to compare")
    parser.add_argument("--dtype", default="bfloat16", help="model dtype (default bfloat16)")
    parser.add_argument("--device", default="cuda", help="torch device (default cuda)")
    parser.add_argument("--tiny", action="store_true", help="a tiny model of the same family")
    parser.add_argument("--skip-vllm", action="store_true", help="do not run the vLLM path")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    parser.add_argument("--workdir", type=Path, default=None, help="where to save the model")
    return parser.parse_args(argv)


def build_model_dir(path: Path, config_fields: dict[str, Any], dtype: str) -> Path:
    """Save a random-weight Llama of the given shape and a byte-level BPE tokenizer."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=min(400, config_fields["vocab_size"]),
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator([TEXT] * 20, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    tokenizer.save_pretrained(str(path))
    config = LlamaConfig(**config_fields)
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    model.generation_config.eos_token_id = None  # random weights: never stop early
    model.save_pretrained(str(path))
    del model
    return path


def prompt_of(tokenizer: Any, n_tokens: int) -> str:
    """A text of about ``n_tokens`` tokens (cut on the token grid, then decoded)."""
    ids: list[int] = tokenizer(TEXT, add_special_tokens=False)["input_ids"]
    repeated = (ids * (n_tokens // max(len(ids), 1) + 1))[: n_tokens - 1]
    return str(tokenizer.decode(repeated))


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _reset_peak(device: str) -> None:
    import torch

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_gib(device: str) -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None


def check_rotary(llm: Any, device: str) -> str:
    """The rotary inverse frequencies: model buffer on ``device`` == ours on CPU == ours there."""
    import torch

    head_dim = llm._backend.model.config.head_dim
    cpu, attention = llm.rope.inv_freq(head_dim)
    here, _ = llm.rope.inv_freq(head_dim, device=device)
    rotary = llm._backend.model.model.rotary_emb
    torch.testing.assert_close(here.cpu(), cpu, rtol=0, atol=0)
    torch.testing.assert_close(rotary.inv_freq.float().cpu(), cpu)
    positions = torch.arange(llm.context_window - 8, llm.context_window, device=device)
    angles_here = torch.outer(positions.double(), here.double()).cpu()
    angles_cpu = torch.outer(positions.cpu().double(), cpu.double())
    torch.testing.assert_close(angles_here, angles_cpu)
    return (
        f"rotary inv_freq on {device} == CPU ({cpu.numel()} frequencies, attention factor "
        f"{attention:.4f}, angles equal up to position {llm.context_window - 1})"
    )


def measure_transformers(
    model_dir: Path, args: argparse.Namespace, window: int, attention: str, sizes: list[int]
) -> tuple[list[Row], str]:
    import torch

    from longcontext import LongContextLLM

    llm = LongContextLLM(
        model_dir,
        context_length=window,
        rope="yarn",
        backend="transformers",
        dtype=args.dtype,
        device=args.device,
        attn_implementation=attention,
    )
    rotary_note = check_rotary(llm, args.device)
    model = llm._backend.model  # type: ignore[attr-defined]
    rows = []
    for size in sizes:
        prompt = prompt_of(llm.tokenizer, size)
        ids = torch.tensor([llm.encode(prompt)], device=args.device)
        try:
            _reset_peak(args.device)
            with torch.inference_mode():
                model(ids[:, :16], logits_to_keep=1)  # warm-up
                _sync(args.device)
                start = time.perf_counter()
                model(ids, logits_to_keep=1)
                _sync(args.device)
                prefill = time.perf_counter() - start
            start = time.perf_counter()
            (gen,) = llm.generate(prompt, max_tokens=args.decode_tokens)
            _sync(args.device)
            total = time.perf_counter() - start
            decode = max(total - prefill, 1e-9)
            rows.append(
                Row(
                    "transformers",
                    attention,
                    gen.prompt_tokens,
                    gen.prompt_tokens / prefill,
                    gen.completion_tokens / decode,
                    _peak_gib(args.device),
                )
            )
        except torch.OutOfMemoryError:
            rows.append(Row("transformers", attention, ids.shape[1], None, None, None, "OOM"))
        finally:
            gc.collect()
            if args.device.startswith("cuda"):
                torch.cuda.empty_cache()
    llm.close()
    del llm, model
    _reset_peak(args.device)
    return rows, rotary_note


def measure_vllm(
    model_dir: Path, args: argparse.Namespace, window: int, sizes: list[int]
) -> list[Row]:
    from longcontext import LongContextLLM

    llm = LongContextLLM(
        model_dir,
        context_length=window,
        rope="yarn",
        backend="vllm",
        dtype=args.dtype,
        gpu_memory_utilization=0.85,
        enable_prefix_caching=False,  # each timing must prefill the whole prompt
    )
    llm.generate(TEXT, max_tokens=4)  # warm-up: CUDA graphs, kernels
    rows = []
    for size in sizes:
        prompt = prompt_of(llm.tokenizer, size)
        start = time.perf_counter()
        (first,) = llm.generate(prompt, max_tokens=1)  # prefill and one token
        prefill = time.perf_counter() - start
        start = time.perf_counter()
        (gen,) = llm.generate(prompt, max_tokens=args.decode_tokens)
        total = time.perf_counter() - start
        rows.append(
            Row(
                "vllm",
                "vllm",
                gen.prompt_tokens,
                first.prompt_tokens / prefill,
                gen.completion_tokens / max(total - prefill, 1e-9),
                None,
                "prefix cache off; memory is vLLM's pool",
            )
        )
    llm.close()
    return rows


def table(rows: list[Row]) -> str:
    def num(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    lines = [
        "| backend | attention | prompt tokens | prefill tok/s | decode tok/s | peak GiB | note |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r.backend} | {r.attention} | {r.prompt_tokens} | {num(r.prefill_tok_s, ',.0f')} "
            f"| {num(r.decode_tok_s, '.1f')} | {num(r.peak_gib, '.1f')} | {r.note} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import importlib.util

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device: run on a machine with an NVIDIA GPU, or pass --device cpu --tiny")
        return 2
    sizes = [int(s) for s in args.sizes.split(",") if s]
    fields = dict(TINY if args.tiny else LLAMA3_8B)
    if args.layers is not None:
        fields["num_hidden_layers"] = args.layers
    original = fields["max_position_embeddings"]
    needed = max(sizes) + args.decode_tokens
    factor = max(args.factor, 2 ** math.ceil(math.log2(needed / original)))
    window = int(original * factor)
    print(
        f"model: Llama 3 8B shape{' (tiny)' if args.tiny else ''}, "
        f"{fields['num_hidden_layers']} layers, {args.dtype} on {args.device}; YaRN factor "
        f"{factor:g}: window {original} -> {window}"
    )
    if torch.cuda.is_available() and args.device.startswith("cuda"):
        print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        model_dir = build_model_dir(Path(tmp) / "llama3-8b-random", fields, args.dtype)
        for attention in [a for a in args.attention.split(",") if a]:
            measured, rotary_note = measure_transformers(model_dir, args, window, attention, sizes)
            rows += measured
            print(f"{attention}: {rotary_note}")
        if args.skip_vllm:
            print("vLLM: skipped (--skip-vllm)")
        elif importlib.util.find_spec("vllm") is None:
            print("vLLM: not installed here; the vLLM path was not run")
        elif not args.device.startswith("cuda"):
            print("vLLM: needs a CUDA device; not run")
        else:
            rows += measure_vllm(model_dir, args, window, sizes)
    print()
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
