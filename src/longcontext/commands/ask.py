"""``longcontext ask PATH "question"``: retrieve, pack, reorder, generate, cite."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from longcontext.commands import STDIN, add_deprecated_alias, at_least, printable
from longcontext.context.reorder import STRATEGIES
from longcontext.rag.embeddings import BACKENDS
from longcontext.rag.pipeline import DEFAULT_MODEL, DEFAULT_ROPE, NO_MODEL
from longcontext.rope import RopeScaling

if TYPE_CHECKING:
    from longcontext.rag.pipeline import Model, PackedPrompt

HELP = "Answer a question from an index: retrieve, pack, reorder, generate, and cite sources."
ORDERS = STRATEGIES  # the layouts of longcontext.reorder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("index", metavar="PATH", help="index folder written by `longcontext index`")
    parser.add_argument("question", help=f"the question; {STDIN} reads it from standard input")
    parser.add_argument(
        "--model",
        default=None,
        metavar="M",
        help=f"local model folder or Hugging Face id, which must load; '{NO_MODEL}' only "
        f"retrieves and packs (default: {DEFAULT_MODEL}, skipping generation if it cannot load)",
    )
    parser.add_argument(
        "--context-length",
        type=at_least(1),
        default=None,
        metavar="N",
        help="window to serve; default: 4x the model's own with --rope, else its own",
    )
    parser.add_argument(
        "--rope",
        choices=(*RopeScaling.METHODS, "none"),
        default=DEFAULT_ROPE,
        metavar="METHOD",
        help=f"RoPE scaling: {', '.join(RopeScaling.METHODS)} or none",
    )
    parser.add_argument(
        "--top-k", type=at_least(1), default=8, metavar="K", help="chunks to retrieve"
    )
    parser.add_argument(
        "--budget-tokens",
        type=at_least(1),
        default=None,
        metavar="N",
        help="tokens for the sources; default: all the window leaves after answer and question",
    )
    parser.add_argument(
        "--order", choices=ORDERS, default="important_first_last", help="layout of the sources"
    )
    parser.add_argument(
        "--max-tokens", type=at_least(1), default=256, metavar="N", help="most answer tokens"
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--stream", action="store_true", help="print the answer as it is written")
    output.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument(
        "--embeddings",
        default=None,
        metavar="NAME",
        help="embeddings to query with; must be the index's own (default: all-MiniLM-L6-v2, "
        "the only ones loaded without being named here)",
    )
    parser.add_argument(
        "--embeddings-backend",
        choices=BACKENDS,
        default=None,
        help="what embeds the question: torch, onnx, onnx-int8 or openvino (default: the "
        "backend the index was built with; torch and onnx are interchangeable, the others only "
        "with themselves)",
    )
    add_deprecated_alias(parser, "--strategy", "--order", "order", choices=ORDERS)
    add_deprecated_alias(parser, "--budget", "--budget-tokens", "budget_tokens", type=at_least(1))


def run(args: argparse.Namespace) -> int:
    from longcontext.rag import pipeline

    question = sys.stdin.read().strip() if args.question == STDIN else args.question
    rope = None if args.rope == "none" else args.rope
    hits = pipeline.retrieve(
        args.index, question, args.top_k, args.embeddings, args.embeddings_backend
    )
    model = pipeline.load_model(
        args.model or DEFAULT_MODEL, args.context_length, rope, required=args.model is not None
    )
    if model.llm is None:
        prompt = pipeline.prompt_without_model(
            question, hits, args.max_tokens, args.context_length, args.budget_tokens, args.order
        )
    else:
        prompt = pipeline.prompt_for_model(
            question, hits, model.llm, args.max_tokens, args.budget_tokens, args.order
        )
    if args.json:
        answer = _answer(model, prompt, args.max_tokens)
        print(json.dumps(_as_json(prompt, model, answer), indent=2))
    else:
        _print(prompt, model, args.max_tokens, args.stream)
    return 0


def _print(prompt: PackedPrompt, model: Model, max_tokens: int, stream: bool) -> None:
    """For a reader: the answer (or the packed prompt), then the sources, control characters
    escaped (documents, file names and a model's output can all hold terminal sequences)."""
    from longcontext.rag import pipeline

    if model.llm is None:
        print("=== packed prompt ===")
        print(printable(prompt.render(), keep="\n\t"))
        print("=== end of packed prompt ===")
        print(printable(prompt.summary()))
        print(f"generation skipped: {printable(model.skipped or '')}")
    else:
        for note in model.notes:
            print(printable(note), file=sys.stderr)
        print(printable(prompt.summary()), file=sys.stderr)
        for delta in pipeline.generate(model.llm, prompt, max_tokens, stream=stream):
            print(printable(delta, keep="\n\t"), end="", flush=True)
        print()
    print("\nSources:")
    for citation in prompt.citations:
        print(f"  {printable(citation.describe())}")


def _answer(model: Model, prompt: PackedPrompt, max_tokens: int) -> str | None:
    from longcontext.rag import pipeline

    if model.llm is None:
        return None
    return "".join(pipeline.generate(model.llm, prompt, max_tokens))


def _as_json(prompt: PackedPrompt, model: Model, answer: str | None) -> dict[str, Any]:
    """What ``ask`` found, as data (json.dumps escapes every control character)."""
    return {
        "question": prompt.question,
        "answer": answer,
        "generation_skipped": model.skipped,
        "tokens": {
            "context": prompt.context_tokens,
            "budget": prompt.budget_tokens,
            "prompt": prompt.prompt_tokens,
            "tokenizer": prompt.tokenizer,
        },
        "retrieved": prompt.retrieved,
        "dropped": prompt.dropped,
        "truncated": prompt.truncated,
        "citations": [c.to_dict() for c in prompt.citations],
        "messages": prompt.messages,
    }
