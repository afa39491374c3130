"""``longcontext finetune``: LongLoRA fine-tuning of a RoPE model to a longer context."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from longcontext.commands import UsageError, at_least

if TYPE_CHECKING:
    from longcontext.finetune.config import FinetuneConfig

HELP = "Fine-tune a model to a longer context with LongLoRA (S2-Attn, LoRA+, RoPE scaling)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from longcontext.finetune.config import DEFAULT_TARGETS, ROPE_METHODS

    parser.add_argument("model", metavar="MODEL", help="base model: local directory or hub id")
    parser.add_argument(
        "--data",
        required=True,
        metavar="PATH",
        help="text files or JSONL ({'text': ...} a line; --supervised: prompt and response), "
        "a file or a folder",
    )
    parser.add_argument(
        "--context-length",
        type=at_least(2),
        required=True,
        metavar="N",
        help="tokens per training sequence: the window the fine-tuned model serves",
    )
    parser.add_argument("--output", "-o", required=True, metavar="DIR", help="output folder")
    parser.add_argument(
        "--rope", choices=ROPE_METHODS, default="linear", help="RoPE scaling to the new length"
    )
    parser.add_argument("--steps", type=at_least(1), default=1000, help="optimizer steps")
    parser.add_argument(
        "--group-size",
        type=at_least(2),
        default=None,
        metavar="N",
        help="S2-Attn group in tokens; must divide --context-length (default: a quarter of it)",
    )
    parser.add_argument("--lora-rank", type=at_least(1), default=8, metavar="R")
    parser.add_argument(
        "--lora-alpha", type=at_least(1), default=None, metavar="A", help="default: 2 x rank"
    )
    parser.add_argument(
        "--target-modules",
        default=",".join(DEFAULT_TARGETS),
        metavar="NAMES",
        help="comma-separated modules that get LoRA",
    )
    parser.add_argument(
        "--full-attention",
        action="store_true",
        help="train with full attention instead of S2-Attn (for comparison)",
    )
    parser.add_argument(
        "--no-trainable-embeddings",
        action="store_true",
        help="plain LoRA: keep the embeddings and norms frozen",
    )
    parser.add_argument("--learning-rate", type=float, default=2e-5, metavar="LR")
    parser.add_argument("--batch-size", type=at_least(1), default=1, metavar="N")
    parser.add_argument("--gradient-accumulation", type=at_least(1), default=1, metavar="N")
    parser.add_argument("--warmup-steps", type=at_least(0), default=20, metavar="N")
    parser.add_argument(
        "--gradient-checkpointing", action="store_true", help="recompute activations: less memory"
    )
    parser.add_argument(
        "--supervised", action="store_true", help="prompt/response JSONL, loss on the response"
    )
    parser.add_argument(
        "--resume",
        metavar="ADAPTER",
        help="continue training an adapter of this base (default: start a new one)",
    )
    parser.add_argument("--no-merge", action="store_true", help="write the adapter only")
    parser.add_argument(
        "--dtype", default="auto", help="auto: bfloat16 on CUDA, float32 on CPU; or a dtype name"
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--trust-remote-code", action="store_true")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress lines")


def _settings(args: argparse.Namespace) -> FinetuneConfig:
    from longcontext.finetune.config import FinetuneConfig

    targets = tuple(t.strip() for t in args.target_modules.split(",") if t.strip())
    if not targets:
        raise UsageError("--target-modules names no module")
    try:
        return FinetuneConfig(
            model=args.model,
            context_length=args.context_length,
            rope=args.rope,
            group_size=args.group_size,
            full_attention=args.full_attention,
            lora_rank=args.lora_rank,
            lora_alpha=args.lora_alpha,
            target_modules=targets,
            trainable_embeddings=not args.no_trainable_embeddings,
            steps=args.steps,
            learning_rate=args.learning_rate,
            batch_size=args.batch_size,
            gradient_accumulation=args.gradient_accumulation,
            warmup_steps=args.warmup_steps,
            seed=args.seed,
            gradient_checkpointing=args.gradient_checkpointing,
            supervised=args.supervised,
            resume=args.resume,
            dtype=args.dtype,
            trust_remote_code=args.trust_remote_code,
        )
    except ValueError as error:
        raise UsageError(_flags(str(error))) from None


def _flags(message: str) -> str:
    """Library wording, with the CLI's flag names."""
    for words, flag in (("context length", "--context-length"), ("group size", "--group-size")):
        message = message.replace(words, flag)
    return message


def run(args: argparse.Namespace) -> int:
    from longcontext.finetune.train import finetune, plan

    settings = _settings(args)
    try:
        checked = plan(settings, args.data)  # every check before any weights load
    except ValueError as error:
        raise UsageError(_flags(str(error))) from None

    def say(text: str) -> None:  # progress and hints on stderr; the paths alone on stdout
        if not args.quiet:
            print(text, file=sys.stderr)

    scaling = (
        f"rope {settings.rope} x{checked.rope.factor:g}"
        if checked.rope is not None
        else "no RoPE scaling (within the model's window)"
    )
    attention = (
        "full attention" if settings.full_attention else f"S2-Attn, groups of {settings.group}"
    )
    say(
        f"finetune {settings.model}: {len(checked.rows)} sequences of up to "
        f"{settings.context_length} tokens, {scaling}, {attention}"
    )
    result = finetune(
        checked,
        None,
        args.output,
        merge=not args.no_merge,
        progress=lambda step, steps, loss: say(f"step {step}/{steps}  loss {loss:.4f}"),
        logging_steps=max(1, min(10, settings.steps // 20)),
    )
    rope_args = f", rope={settings.rope!r}" if checked.rope is not None else ""
    print(f"adapter: {result.adapter}")
    say(
        f"  LongContextLLM({settings.model!r}, context_length={settings.context_length}"
        f"{rope_args}, lora={str(result.adapter)!r})"
    )
    if result.merged is not None:
        print(f"merged: {result.merged}")
        say(f"  vllm serve {result.merged} --max-model-len {settings.context_length}")
    return 0
