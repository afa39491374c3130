#!/usr/bin/env python
"""The evaluation suite on one GPU through vLLM, in about ten minutes: the real curves.

Runs ``longcontext eval`` four times on a real model (default: Llama 3 8B base, an 8K window,
so its stretch is visible) with vLLM, each task under its own time limit, and writes every
task's JSONL, Markdown table and plot under ``--output`` (a rerun skips the points already
measured, so a run cut short by its limit resumes):

1. ``perplexity``: sliding-window perplexity (stride 256, as in the YaRN paper) at 4K-32K, one
   curve per method, each method scaled once to the longest length (``--context-length``); the
   unscaled baseline past the window runs on transformers, since vLLM refuses prompts longer
   than the window it serves;
2. ``passkey`` at 4K-32K with YaRN;
3. ``needle`` at 8K-32K over five depths with YaRN;
4. ``position``: 30 key-value pairs, with and without ``longcontext.reorder``.

    python scripts/gpu_eval.py --model /models/Meta-Llama-3-8B --output gpu-eval/
    python scripts/gpu_eval.py --dry-run          # print the commands, run nothing

The text scored and searched is the shared corpora (``../shared/data/corpora``), about 200K
Llama 3 tokens; pass ``--text`` for another (PG19 or Proof-pile books, as the papers use).
"""

from __future__ import annotations

import argparse
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPORA = ROOT.parent / "shared" / "data" / "corpora"
DEFAULT_MODEL = "meta-llama/Meta-Llama-3-8B"
LONGEST = 32768


def commands(
    model: str,
    text: list[str],
    output: str,
    longest: int,
    backend: str = "vllm",
    trials: int = 5,
) -> list[tuple[str, list[str]]]:
    """Each step's name and ``longcontext`` arguments: lengths double from 4096 to ``longest``."""
    lengths = ",".join(str(4096 << i) for i in range(16) if 4096 << i <= longest)
    scaled = ["--rope", "yarn", "--context-length", str(longest)]
    sliding = ["--mode", "sliding", "--stride", "256", "--windows", "2"]
    common = ["--dtype", "bfloat16", "--output", output]
    engine = ["--backend", backend, *common]
    if backend == "transformers":
        engine += ["--device", "cuda"]
    score = ["eval", "perplexity", model, "--text", *text, *sliding, "--lengths", lengths]
    methods = ["--rope", "linear,dynamic,yarn", "--context-length", str(longest)]
    return [
        (f"perplexity, scaled ({backend})", [*score, *methods, *engine]),
        (
            # vLLM refuses prompts past the window it serves: the baseline runs on transformers
            "perplexity, unscaled baseline (transformers on the GPU)",
            [*score, "--rope", "none", "--backend", "transformers", "--device", "cuda", *common],
        ),
        (
            "passkey",
            ["eval", "passkey", model, "--lengths", lengths, *scaled,
             "--trials", str(trials), *engine],
        ),
        (
            "needle",
            ["eval", "needle", model, "--haystack", text[0], "--lengths", lengths,
             "--depths", "0,0.25,0.5,0.75,1", *scaled, *engine],
        ),
        ("position", ["eval", "position", model, "--documents", "30", "--trials", "3", *engine]),
        # a step stopped at its limit keeps its rows but not its table and plot: write them
        ("tables and plots", ["eval", "report", output]),
    ]  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model folder or hub id")
    parser.add_argument(
        "--text",
        nargs="+",
        default=[str(CORPORA / "room_with_a_view.txt"), str(CORPORA / "romeo_and_juliet.txt")],
        metavar="FILE",
        help="documents to score; the first is also the needle's haystack",
    )
    parser.add_argument("--output", default="gpu-eval", help="folder for the results")
    parser.add_argument(
        "--backend",
        choices=("vllm", "transformers"),
        default="vllm",
        help="engine for every step (transformers: where vLLM is not installed)",
    )
    parser.add_argument("--trials", type=int, default=5, help="passkey prompts per length")
    parser.add_argument("--longest", type=int, default=LONGEST, help="longest length, tokens")
    parser.add_argument(
        "--limit", type=int, default=150, help="seconds per step before it is stopped"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = parser.parse_args()
    longcontext = [sys.executable, "-m", "longcontext.cli"]
    failed = 0
    steps = commands(args.model, args.text, args.output, args.longest, args.backend, args.trials)
    for name, argv in steps:
        print(f"## {name}\n$ longcontext {shlex.join(argv)}", flush=True)
        if args.dry_run:
            continue
        began = time.perf_counter()
        step = subprocess.Popen([*longcontext, *argv])
        try:
            code = step.wait(timeout=args.limit)
            status = f"exit {code}"
            failed += code != 0
        except subprocess.TimeoutExpired:
            step.send_signal(signal.SIGINT)  # as Ctrl-C: the task writes its table, then exits
            try:
                step.wait(timeout=60)
            except subprocess.TimeoutExpired:
                step.kill()
                step.wait()
            status = f"stopped at the {args.limit} s limit (rerun to resume)"
        print(f"-> {status} after {time.perf_counter() - began:.0f} s\n", flush=True)
    if not args.dry_run:
        print(f"results: {args.output}/*.md and *.png")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
