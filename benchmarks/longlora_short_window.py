"""LongLoRA on the short-window Llama: perplexity at 4x its window, four ways.

The 128-token Llama of ``scripts/train_short_window_llama.py`` is extended 4x to 512 tokens with
linear RoPE scaling, then scored on its ``heldout.txt`` at 128, 256 and 512 tokens by
``longcontext eval perplexity`` after:

1. no fine-tuning (linear scaling alone);
2. LongLoRA: S2-Attn + LoRA + trainable embeddings and norms (``longcontext finetune``);
3. plain LoRA: the same with ``--no-trainable-embeddings``;
4. full attention: the same as 2 with ``--full-attention`` (no S2-Attn).

Every fine-tune runs through the ``longcontext`` CLI with the same steps, data, learning rate and
seed; its training text is the training part of the files listed in the model's
``training.json`` (each file cut where the training script cut it, so ``heldout.txt`` is never
trained on). The merged checkpoint of each run carries the linear scaling in its config and is
scored with ``--rope none`` (no further scaling). Writes ``longlora-short-window.json`` and
``.png`` to ``--out`` and prints the Markdown table.

    python benchmarks/longlora_short_window.py [--steps 150] [--batch-size 4] [--out docs/finetune]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
MODEL = REPO_ROOT / ".longcontext-cache" / "short-window-llama"
CLI = [sys.executable, "-c", "import sys; from longcontext.cli import main; sys.exit(main())"]
VARIANTS: dict[str, list[str]] = {
    "LongLoRA (S2-Attn + LoRA+)": [],
    "plain LoRA (S2-Attn)": ["--no-trainable-embeddings"],
    "full attention (LoRA+)": ["--full-attention"],
}
BASELINE = "no fine-tuning"


def split_training_text(model: Path, folder: Path) -> list[Path]:
    """The training part of each file the model was trained on, cut as the training script cut."""
    info = json.loads((model / "training.json").read_text(encoding="utf-8"))["arguments"]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in info["text"]:
        text = Path(name).read_text(encoding="utf-8")
        part = text[: int(len(text) * (1 - info["holdout"]))]
        if info.get("max_chars") is not None:
            part = part[: info["max_chars"]]
        path = folder / (Path(name).stem + ".txt")
        path.write_text(part, encoding="utf-8")
        paths.append(path)
    return paths


def perplexity(
    model: Path, lengths: str, rope: str, extra: list[str], windows: int, work: Path
) -> dict[int, float]:
    """Perplexity by length from ``longcontext eval perplexity`` (its JSONL results)."""
    out = work / f"eval-{time.monotonic_ns()}"
    command = [
        *CLI,
        "eval",
        "perplexity",
        str(model),
        "--lengths",
        lengths,
        "--rope",
        rope,
        *extra,
        "--backend",
        "transformers",
        "--device",
        "cpu",
        "--dtype",
        "float32",
        "--windows",
        str(windows),
        "--text",
        str(MODEL / "heldout.txt"),
        "--output",
        str(out),
        "--quiet",
    ]
    subprocess.run(command, check=True)
    rows = [json.loads(line) for line in (out / "perplexity.jsonl").read_text().splitlines()]
    return {row["length"]: row["perplexity"] for row in rows}


def finetune(
    args: argparse.Namespace, data: Path, flags: list[str], output: Path
) -> dict[str, Any]:
    """One ``longcontext finetune`` run: its merged folder, seconds and losses."""
    command = [
        *CLI,
        "finetune",
        str(MODEL),
        "--data",
        str(data),
        "--context-length",
        str(args.length),
        "--output",
        str(output),
        "--steps",
        str(args.steps),
        "--batch-size",
        str(args.batch_size),
        "--learning-rate",
        str(args.learning_rate),
        "--warmup-steps",
        str(args.warmup_steps),
        "--seed",
        str(args.seed),
        *flags,
    ]
    print("$", " ".join(["longcontext", *command[len(CLI) :]]), flush=True)
    started = time.perf_counter()
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    losses = [float(m) for m in re.findall(r"step \d+/\d+\s+loss ([0-9.]+)", done.stderr)]
    return {
        "merged": output / "merged",
        "seconds": seconds,
        "first_loss": losses[0] if losses else None,
        "last_losses_mean": sum(losses[-10:]) / len(losses[-10:]) if losses else None,
    }


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=100)
    for name, row in results["runs"].items():
        lengths = sorted(int(n) for n in row["perplexity"])
        values = [row["perplexity"][str(n)] for n in lengths]
        ax.plot(lengths, values, marker="o", label=name)
    # a point, not a line: each length scores different windows of the held-out text
    ax.plot(
        [128],
        [results["unscaled_at_window"]],
        marker="*",
        markersize=11,
        color="grey",
        linestyle="none",
        label="original model, unscaled",
    )
    ax.set_xscale("log", base=2)
    ax.set_xticks([128, 256, 512], ["128", "256", "512"])
    ax.set_xlabel("context length (tokens), linear RoPE scaling 4x")
    ax.set_ylabel("held-out perplexity")
    ax.set_title(f"Short-window Llama (128) extended to 512: {results['settings']['steps']} steps")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def table(results: dict[str, Any]) -> str:
    lengths = results["settings"]["lengths"].split(",")
    lines = [
        "| run | "
        + " | ".join(f"ppl @ {n}" for n in lengths)
        + " | train loss (last 10) | fine-tune s |",
        "| --- | " + " | ".join("---:" for _ in lengths) + " | ---: | ---: |",
    ]
    for name, row in results["runs"].items():
        cells = [f"{row['perplexity'][n]:.1f}" for n in lengths]
        loss = f"{row['last_losses_mean']:.3f}" if row.get("last_losses_mean") else "-"
        secs = f"{row['seconds']:.0f}" if row.get("seconds") else "-"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {loss} | {secs} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=512, help="target context length")
    parser.add_argument("--lengths", default="128,256,512", help="lengths to score")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--warmup-steps", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--windows", type=int, default=16, help="perplexity windows per length")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "finetune")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    if not (MODEL / "training.json").is_file():
        raise SystemExit(f"{MODEL} not found: train it with scripts/train_short_window_llama.py")

    work = Path(tempfile.mkdtemp(prefix="longlora-bench-"))
    try:
        data = work / "train"
        split_training_text(MODEL, data)
        scale = ["--context-length", str(args.length)]
        runs: dict[str, dict[str, Any]] = {}
        unscaled = perplexity(MODEL, "128", "none", [], args.windows, work)[128]
        base = perplexity(MODEL, args.lengths, "linear", scale, args.windows, work)
        runs[BASELINE] = {"perplexity": {str(n): p for n, p in base.items()}}
        print(BASELINE, base, flush=True)
        for name, flags in VARIANTS.items():
            run = finetune(args, data, flags, work / re.sub(r"\W+", "-", name))
            merged = run.pop("merged")
            # the merged config carries the linear scaling: score it as it is
            ppl = perplexity(merged, args.lengths, "none", [], args.windows, work)
            runs[name] = {"perplexity": {str(n): p for n, p in ppl.items()}, **run}
            print(name, runs[name], flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    settings = {k: v for k, v in vars(args).items() if k != "out"}
    results = {"settings": settings, "unscaled_at_window": unscaled, "runs": runs}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / "longlora-short-window"
    stem.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    plot(results, stem.with_suffix(".png"))
    print(table(results))


if __name__ == "__main__":
    main()
