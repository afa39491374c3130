"""A whole LongLoRA training step against sequence length: S2-Attn vs full attention.

Where ``s2attn_scaling.py`` times one attention call, this times what a user pays per step:
the model loaded by ``longcontext.finetune`` exactly as ``longcontext finetune`` loads it
(RoPE-scaled, LoRA rank 8 on q/k/v/o, embeddings and norms trainable), one sequence of each
length through forward, backward and an AdamW step, with S2-Attn at a fixed group size and with
full causal attention (sdpa). The model is a Llama with random weights built from ``--shape``
(the numbers are about cost, not quality). Each (method, length) runs in a fresh process, so the
peak memory is its own: CUDA's max allocated bytes on a GPU, the process's peak RSS growth on a
CPU. On a CPU the time is the process's CPU time on one thread (``torch.set_num_threads(1)``),
which other jobs on the machine do not inflate as they do wall-clock time.

    python benchmarks/longlora_step_scaling.py                        # CPU: a small Llama
    python benchmarks/longlora_step_scaling.py --shape llama-1b --lengths 8192,16384,32768,65536
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SHAPES: dict[str, dict[str, int]] = {
    # small enough for 2 CPU cores, with attention a real share of the cost at 4K-8K
    "small": {"vocab_size": 4096, "hidden_size": 256, "intermediate_size": 688,
              "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2},
    # Llama 3.2 1B's shape, for a GPU
    "llama-1b": {"vocab_size": 128256, "hidden_size": 2048, "intermediate_size": 8192,
                 "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8},
}  # fmt: skip
WINDOW = 1024  # the base's own window: every length measured is past it, RoPE-scaled (linear)


def build_model(folder: Path, shape: str) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(max_position_embeddings=WINDOW, **SHAPES[shape])
    LlamaForCausalLM(config).save_pretrained(folder)


def measure(
    model: str, method: str, length: int, group: int, repeats: int, checkpointing: bool
) -> dict[str, Any]:
    import torch

    from longcontext.finetune.config import FinetuneConfig, check_rope_model, rope_for
    from longcontext.finetune.model import load_for_training

    settings = FinetuneConfig(
        model,
        length,
        group_size=group,
        full_attention=method == "full",
        steps=1,
        gradient_checkpointing=checkpointing,
    )
    config = check_rope_model(model)
    peft_model = load_for_training(settings, config, rope_for(config, settings))
    if checkpointing:  # as the Trainer turns it on for `longcontext finetune`
        peft_model.gradient_checkpointing_enable(
            gradient_checkpointing_kwargs={"use_reentrant": False}
        )
        peft_model.enable_input_require_grads()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        torch.set_num_threads(1)
    peft_model.to(device).train()
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-5)
    vocab = peft_model.get_input_embeddings().num_embeddings
    ids = torch.randint(0, vocab, (1, length), generator=torch.Generator().manual_seed(0))
    ids = ids.to(device)

    def step() -> None:
        loss = peft_model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    # the CPU allocator keeps what the first step took, so its peak is measured from before it
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    step()  # warm-up: kernels chosen, optimizer state allocated
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    clock = time.perf_counter if device == "cuda" else time.process_time
    started = clock()
    for _ in range(repeats):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    return {"seconds": (clock() - started) / repeats, "peak_mib": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=SHAPES, default="small")
    parser.add_argument("--lengths", default="2048,4096,8192")
    parser.add_argument("--group", type=int, default=1024, help="S2-Attn group, fixed")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--gradient-checkpointing", action="store_true", help="as a long fine-tune on a GPU runs"
    )
    parser.add_argument(
        "--one", nargs=3, metavar=("MODEL", "METHOD", "LENGTH"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.one:
        model, method, length = args.one
        row = measure(
            model, method, int(length), args.group, args.repeats, args.gradient_checkpointing
        )
        print(json.dumps(row))
        return
    with tempfile.TemporaryDirectory(prefix="longlora-step-") as folder:
        build_model(Path(folder), args.shape)
        checkpointing = ", gradient checkpointing" if args.gradient_checkpointing else ""
        print(f"{args.shape} Llama, LoRA+ rank 8, S2-Attn group {args.group}{checkpointing}")
        print("| length | S2-Attn s/step | full s/step | full / S2-Attn ", end="")
        print("| S2-Attn peak MiB | full peak MiB |")
        print("| ---: | ---: | ---: | ---: | ---: | ---: |")
        for length in map(int, args.lengths.split(",")):
            row = {}
            for method in ("s2attn", "full"):
                command = [sys.executable, __file__, "--one", folder, method, str(length),
                           "--group", str(args.group), "--repeats", str(args.repeats)]  # fmt: skip
                if args.gradient_checkpointing:
                    command.append("--gradient-checkpointing")
                done = subprocess.run(command, capture_output=True, text=True)
                row[method] = json.loads(done.stdout.strip().splitlines()[-1]) if (
                    done.returncode == 0
                ) else {"failed": _last_error(done.stderr)}  # fmt: skip
            print(_table_row(length, row["s2attn"], row["full"]), flush=True)


def _last_error(stderr: str) -> str:
    """The exception line of a failed measurement (out of memory, usually)."""
    lines = [line for line in stderr.strip().splitlines() if "Error" in line]
    return (lines[-1] if lines else stderr.strip()[-200:])[:120]


def _table_row(length: int, s2: dict[str, Any], full: dict[str, Any]) -> str:
    def cell(result: dict[str, Any], key: str, form: str) -> str:
        return format(result[key], form) if key in result else "failed"

    ratio = (
        f"{full['seconds'] / s2['seconds']:.2f}x" if "seconds" in s2 and "seconds" in full else "-"
    )
    failures = [
        f"{name}: {r['failed']}" for name, r in (("S2", s2), ("full", full)) if "failed" in r
    ]
    note = f" <!-- {'; '.join(failures)} -->" if failures else ""
    return (
        f"| {length} | {cell(s2, 'seconds', '.2f')} | {cell(full, 'seconds', '.2f')} | {ratio} | "
        f"{cell(s2, 'peak_mib', '.0f')} | {cell(full, 'peak_mib', '.0f')} |{note}"
    )


if __name__ == "__main__":
    main()
