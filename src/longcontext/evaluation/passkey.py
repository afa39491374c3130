"""Passkey retrieval (Mohtashami and Jaggi 2023, landmark attention): can the model fetch a
number hidden at any depth of a long, dull prompt?

The prompt is the landmark-attention one: a task line, the filler sentences "The grass is green.
The sky is blue. ..." repeated, "The pass key is N. Remember it. N is the pass key." between two
filler sentences at a random depth, then "What is the pass key? The pass key is". It is built to
the largest size that leaves room for the answer in ``length`` tokens (within one filler
sentence, a few tokens, of it), with the model's own tokenizer. The model completes it greedily;
the answer is the first integer it writes. Key and depth are drawn from (seed, length, trial),
so every RoPE method sees the same prompts.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from longcontext.evaluation import common, models, plot, table
from longcontext.evaluation.errors import EvaluationError
from longcontext.evaluation.results import Row

TASK = "passkey"
KEY = ("task", "model", "rope", "length", "trial", "seed", "context_length")
INTRO = (
    "There is an important info hidden inside a lot of irrelevant text. Find it and memorize "
    "them. I will quiz you about the important information there."
)
FILLER = (
    "The grass is green.",
    "The sky is blue.",
    "The sun is yellow.",
    "Here we go.",
    "There and back again.",
)
QUESTION = "What is the pass key? The pass key is"
ANSWER_TOKENS = 10  # room for a five-digit key, digit by digit, and a space
KEYS = (1, 50_000)  # as in the landmark-attention repository


@dataclass(frozen=True)
class PasskeyPrompt:
    """One prompt: its text, the key hidden in it, where, and its size in tokens.

    Attributes:
        text: the prompt.
        key: the pass key.
        depth: the share of the filler sentences before the key line (0 = at the start).
        tokens: the prompt's tokens as the model counts them (special tokens included).
    """

    text: str
    key: int
    depth: float
    tokens: int


def key_line(key: int) -> str:
    """The sentence that hides the key."""
    return f"The pass key is {key}. Remember it. {key} is the pass key."


def passkey_prompt(
    count_tokens: Callable[[str], int], budget: int, depth: float, key: int
) -> PasskeyPrompt:
    """The largest passkey prompt of at most ``budget`` tokens, with the key line after the
    share ``depth`` of the filler sentences.

    Raises:
        EvaluationError: a budget too small for the prompt without any filler.
    """
    if not 0.0 <= depth <= 1.0:
        raise ValueError(f"depth {depth} must lie in [0, 1]")

    def build(sentences: int) -> tuple[str, float]:
        before = round(depth * sentences)
        filler = [FILLER[i % len(FILLER)] for i in range(sentences)]
        lines = [INTRO, " ".join(filler[:before]), key_line(key), " ".join(filler[before:])]
        text = "\n".join([line for line in lines if line] + [QUESTION])
        return text, (before / sentences if sentences else depth)

    bare = count_tokens(build(0)[0])
    if bare > budget:
        raise EvaluationError(
            f"a passkey prompt needs at least {bare + ANSWER_TOKENS} tokens with this tokenizer; "
            f"length {budget + ANSWER_TOKENS} is too small"
        )
    probe = 64
    per_sentence = max(1.0, (count_tokens(build(probe)[0]) - bare) / probe)
    sentences = max(0, int((budget - bare) / per_sentence))
    # Token counts are not additive across joins: settle on the exact largest fit.
    while sentences > 0 and count_tokens(build(sentences)[0]) > budget:
        sentences -= 1
    while count_tokens(build(sentences + 1)[0]) <= budget:
        sentences += 1
    text, actual = build(sentences)
    return PasskeyPrompt(text, key, actual, count_tokens(text))


def token_counter(tokenizer: Any) -> Callable[[str], int]:
    """Tokens of a prompt as ``LongContextLLM.count_tokens`` counts them (special tokens in)."""
    return lambda text: len(tokenizer(text, verbose=False)["input_ids"])


def draw(seed: int, length: int, trial: int) -> tuple[int, float]:
    """The key and depth of one trial: the same for every method and run."""
    rng = random.Random(f"passkey:{seed}:{length}:{trial}")
    return rng.randint(*KEYS), rng.random()


def parse_answer(text: str) -> int | None:
    """The first integer in a completion, or ``None`` when it writes none."""
    found = re.search(r"\d+", text)
    return int(found.group()) if found else None


def run_passkey(
    model: str | os.PathLike[str],
    lengths: Sequence[int],
    ropes: Sequence[str] = ("none",),
    *,
    trials: int = 5,
    seed: int = 0,
    context_length: int | None = None,
    backend: str = "auto",
    output: str | os.PathLike[str] | None = None,
    progress: bool = True,
    **engine_kwargs: Any,
) -> list[Row]:
    """Passkey retrieval for each RoPE method and length, ``trials`` prompts each; one row per
    prompt (rows already in ``output`` are read, not run again).

    Arguments are those of ``run_perplexity``; a length is the whole window: prompt plus
    ``ANSWER_TOKENS`` for the answer.

    Raises:
        EvaluationError: an empty list, a length the model and RoPE setting cannot hold (the
            unscaled model past its window too: generation needs the prompt in the window), a
            model that cannot be found.
    """
    lengths = common.check_lengths(lengths)
    ropes = common.check_ropes(ropes)
    if trials < 1:
        raise EvaluationError(f"trials must be at least 1, got {trials}")
    window = models.model_window(model)
    settings = {
        (rope, n): models.plan(model, rope, n, window, context_length=context_length)
        for rope in ropes
        for n in lengths
    }
    points = [
        {
            "task": TASK,
            "model": os.fspath(model),
            "rope": rope,
            "length": n,
            "trial": trial,
            "seed": seed,
            "context_length": context_length,
        }
        for rope in ropes
        for n in lengths
        for trial in range(trials)
    ]
    pool = models.Models(model, backend, **engine_kwargs)
    prompts: dict[tuple[int, int], PasskeyPrompt] = {}

    def measure(point: Mapping[str, Any]) -> Row:
        n, trial = point["length"], point["trial"]
        setting = settings[point["rope"], n]
        if (n, trial) not in prompts:
            key, depth = draw(seed, n, trial)
            count = token_counter(pool.tokenizer())
            prompts[n, trial] = passkey_prompt(count, n - ANSWER_TOKENS, depth, key)
        prompt = prompts[n, trial]
        [generation] = pool.get(setting).generate(
            prompt.text, max_tokens=ANSWER_TOKENS, temperature=0.0
        )
        got = parse_answer(generation.text)
        return {
            "factor": round(models.factor(setting, window), 6),
            "depth": round(prompt.depth, 4),
            "prompt_tokens": prompt.tokens,
            "expected": prompt.key,
            "got": got,
            "correct": got == prompt.key,
            "completion": generation.text,
        }

    return common.run_task(
        TASK,
        KEY,
        points,
        output,
        pool,
        measure,
        label=lambda p: f"rope={p['rope']} length={p['length']} trial={p['trial']}",
        summary=lambda r: f"expected {r['expected']}, got {r['got']}",
        progress=progress,
        report=lambda rows, table, plot: write_report(rows, table, plot, model=os.fspath(model)),
    )


def accuracy(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Accuracy per (model, rope, length): ``{"model", "rope", "length", "trials", "accuracy"}``."""
    groups: dict[tuple[str, str, int], list[bool]] = {}
    for row in rows:
        groups.setdefault((row["model"], row["rope"], row["length"]), []).append(row["correct"])
    return [
        {"model": m, "rope": r, "length": n, "trials": len(c), "accuracy": sum(c) / len(c)}
        for (m, r, n), c in groups.items()
    ]


def write_report(
    rows: Sequence[Mapping[str, Any]],
    table_path: str | os.PathLike[str],
    plot_path: str | os.PathLike[str],
    *,
    model: str,
) -> None:
    """Accuracy per length and method: a Markdown table per model, and the plot of ``model``."""
    summary = accuracy(rows)
    parts = ["# Passkey retrieval accuracy\n"]
    for name in dict.fromkeys(s["model"] for s in summary):
        mine = [s for s in summary if s["model"] == name]
        parts.append(f"\n## {os.path.basename(name.rstrip('/')) or name}\n\n")
        parts.append(table.pivot(mine, "length", "rope", "accuracy", fmt=lambda v: f"{v:.2f}"))
    with open(table_path, "w", encoding="utf-8") as out:
        out.write("".join(parts))
    series: dict[str, list[tuple[float, float]]] = {}
    for s in summary:
        if s["model"] == model:
            series.setdefault(s["rope"], []).append((s["length"], s["accuracy"]))
    plot.line_plot(
        plot_path,
        series,
        title=f"Passkey retrieval: {os.path.basename(model.rstrip('/')) or model}",
        xlabel="context length (tokens)",
        ylabel="accuracy",
        y_range=(-0.05, 1.05),
    )
