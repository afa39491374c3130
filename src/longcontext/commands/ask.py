"""``longcontext ask PATH "question"``: retrieve, pack, reorder, generate, cite."""

from __future__ import annotations

import argparse
import sys

from longcontext.commands import UsageError
from longcontext.context.reorder import STRATEGIES
from longcontext.rag.pipeline import DEFAULT_MODEL, DEFAULT_ROPE, NO_MODEL
from longcontext.rope import RopeScaling

HELP = "Answer a question from an index: retrieve, pack, reorder, generate, and cite sources."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("index", metavar="PATH", help="index folder written by `longcontext index`")
    parser.add_argument("question", help="the question")
    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        metavar="M",
        help=f"local model folder or Hugging Face id (default: {DEFAULT_MODEL}); "
        f"'{NO_MODEL}' only retrieves and packs",
    )
    parser.add_argument(
        "--context-length",
        type=int,
        default=None,
        metavar="N",
        help="window to serve; default: 4x the model's own with --rope, else its own",
    )
    parser.add_argument(
        "--rope",
        choices=(*RopeScaling.METHODS, "none"),
        default=DEFAULT_ROPE,
        metavar="METHOD",
        help=f"RoPE scaling: {', '.join(RopeScaling.METHODS)} or none (default: {DEFAULT_ROPE})",
    )
    parser.add_argument(
        "--top-k", type=int, default=8, metavar="K", help="chunks to retrieve (default: 8)"
    )
    parser.add_argument(
        "--budget",
        type=int,
        default=None,
        metavar="TOKENS",
        help="tokens for the sources; default: all the window leaves after answer and question",
    )
    parser.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default="important_first_last",
        metavar="S",
        help=f"source order: {', '.join(STRATEGIES)} (default: important_first_last)",
    )
    parser.add_argument(
        "--max-tokens", type=int, default=256, metavar="N", help="most answer tokens (default: 256)"
    )
    parser.add_argument("--stream", action="store_true", help="print the answer as it is written")
    parser.add_argument(
        "--embeddings",
        default=None,
        metavar="NAME",
        help="refuse the index unless it was built with these embeddings",
    )


def run(args: argparse.Namespace) -> int:
    from longcontext.rag import RagError, pipeline

    if args.budget is not None and args.budget < 1:
        raise UsageError(f"--budget must be at least 1 token, got {args.budget}")
    if args.max_tokens < 1:
        raise UsageError(f"--max-tokens must be at least 1, got {args.max_tokens}")
    rope = None if args.rope == "none" else args.rope
    try:
        hits = pipeline.retrieve(args.index, args.question, args.top_k, args.embeddings)
        model = pipeline.load_model(args.model, args.context_length, rope)
        if model.llm is None:
            prompt = pipeline.prompt_without_model(
                args.question,
                hits,
                args.max_tokens,
                args.context_length,
                args.budget,
                args.strategy,
            )
        else:
            prompt = pipeline.prompt_for_model(
                args.question, hits, model.llm, args.max_tokens, args.budget, args.strategy
            )
    except RagError as exc:
        raise UsageError(str(exc)) from exc

    if model.llm is None:
        print("=== packed prompt ===")
        print(prompt.render())
        print("=== end of packed prompt ===")
        print(prompt.summary())
        print(f"generation skipped: {model.skipped}")
    else:
        for note in model.notes:
            print(note, file=sys.stderr)
        print(prompt.summary(), file=sys.stderr)
        for delta in pipeline.generate(model.llm, prompt, args.max_tokens, stream=args.stream):
            print(delta, end="", flush=True)
        print()
    print("\nSources:")
    for citation in prompt.citations:
        print(f"  {citation.describe()}")
    return 0
