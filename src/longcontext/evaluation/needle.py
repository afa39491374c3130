"""Needle in a haystack over real text, scored by exact match (no judge model).

RULER's single-needle task (Hsieh et al. 2024) over a real document: "One of the special magic
numbers for {word} is: {number}." is put at each asked depth of the haystack text (at the
sentence boundary nearest to it), the prompt is cut to fit ``length`` tokens with room for the
answer, and ends "... The special magic number for {word} mentioned in the provided text is".
The answer is correct when the first integer the model writes is the number. Word and number are
drawn from (seed, length, depth, trial): every RoPE method sees the same prompts.
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
from longcontext.evaluation.passkey import parse_answer, token_counter
from longcontext.evaluation.results import Row

TASK = "needle"
KEY = ("task", "model", "rope", "length", "depth", "trial", "seed", "context_length", "text")
INTRO = (
    "Some special magic numbers are hidden within the following text. Make sure to memorize "
    "it. I will quiz you about the numbers afterwards."
)
WORDS = ("apple", "harbor", "violet", "engine", "lantern", "meadow", "copper", "falcon", "quartz")
ANSWER_TOKENS = 12  # a seven-digit number, digit by digit, and a space
_SENTENCE_END = re.compile(r"[.!?][\"')\]]?\s+")


@dataclass(frozen=True)
class NeedlePrompt:
    """One prompt: its text, the number hidden in it, the needle's depth and the prompt size.

    Attributes:
        text: the prompt.
        number: the magic number.
        depth: the share of the haystack characters before the needle.
        tokens: the prompt's tokens as the model counts them.
    """

    text: str
    number: int
    depth: float
    tokens: int


def needle_prompt(
    count_tokens: Callable[[str], int], haystack: str, budget: int, depth: float, word: str,
    number: int,
) -> NeedlePrompt:  # fmt: skip
    """The largest prompt of at most ``budget`` tokens over a prefix of ``haystack``, with the
    needle at the sentence boundary nearest to ``depth`` of that prefix.

    Raises:
        EvaluationError: a haystack too short for the budget, or a budget too small for the
            prompt with no haystack at all.
    """
    if not 0.0 <= depth <= 1.0:
        raise ValueError(f"depth {depth} must lie in [0, 1]")
    needle = f"One of the special magic numbers for {word} is: {number}."
    question = (
        f"What is the special magic number for {word} mentioned in the provided text? "
        f"The special magic number for {word} mentioned in the provided text is"
    )

    def build(chars: int) -> tuple[str, float]:
        text = haystack[:chars]
        cut = _boundary(text, round(depth * len(text)))
        context = " ".join(part for part in (text[:cut].rstrip(), needle, text[cut:]) if part)
        return "\n".join([INTRO, context, question]), (cut / len(text) if text else depth)

    if count_tokens(build(0)[0]) > budget:
        raise EvaluationError(
            f"length {budget + ANSWER_TOKENS} is too small for a needle prompt with this tokenizer"
        )
    low, high = 0, len(haystack)  # the most haystack characters that fit: binary search
    if count_tokens(build(high)[0]) <= budget:
        raise EvaluationError(
            f"the haystack has {count_tokens(haystack)} tokens, too short to fill {budget} "
            "tokens; pass a longer --haystack or smaller lengths"
        )
    while low < high:
        middle = (low + high + 1) // 2
        if count_tokens(build(middle)[0]) <= budget:
            low = middle
        else:
            high = middle - 1
    text, actual = build(low)
    return NeedlePrompt(text, number, actual, count_tokens(text))


def _boundary(text: str, position: int) -> int:
    """The sentence start nearest to ``position`` (0 and the end count as boundaries)."""
    starts = [0, *(m.end() for m in _SENTENCE_END.finditer(text)), len(text)]
    return min(starts, key=lambda start: abs(start - position))


def draw(seed: int, length: int, depth: float, trial: int) -> tuple[str, int]:
    """The word and number of one prompt, the same for every method and run."""
    rng = random.Random(f"needle:{seed}:{length}:{depth}:{trial}")
    return rng.choice(WORDS), rng.randint(1_000_000, 9_999_999)


def run_needle(
    model: str | os.PathLike[str],
    haystack: str,
    lengths: Sequence[int],
    depths: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0),
    ropes: Sequence[str] = ("none",),
    *,
    trials: int = 1,
    seed: int = 0,
    context_length: int | None = None,
    backend: str = "auto",
    output: str | os.PathLike[str] | None = None,
    progress: bool = True,
    **engine_kwargs: Any,
) -> list[Row]:
    """The needle at each depth of ``haystack`` for each RoPE method and length; one row per
    prompt (rows already in ``output`` are read, not run again). Other arguments are those of
    ``run_passkey``.

    Raises:
        EvaluationError: an empty list, a depth outside [0, 1], a haystack too short, a length
            the model and RoPE setting cannot hold, a model that cannot be found.
    """
    lengths = common.check_lengths(lengths)
    ropes = common.check_ropes(ropes)
    if not depths:
        raise EvaluationError("no depths given; pass shares such as 0,0.25,0.5,0.75,1")
    bad = [d for d in depths if not 0.0 <= d <= 1.0]
    if bad:
        raise EvaluationError(f"depths must lie in [0, 1] (0 = start, 1 = end), got {bad}")
    if trials < 1:
        raise EvaluationError(f"trials must be at least 1, got {trials}")
    depths = list(dict.fromkeys(float(d) for d in depths))
    window = models.model_window(model)
    settings = {
        (rope, n): models.plan(model, rope, n, window, context_length=context_length)
        for rope in ropes
        for n in lengths
    }
    text_id = common.digest([haystack])
    points = [
        {
            "task": TASK,
            "model": os.fspath(model),
            "rope": rope,
            "length": n,
            "depth": depth,
            "trial": trial,
            "seed": seed,
            "context_length": context_length,
            "text": text_id,
        }
        for rope in ropes
        for n in lengths
        for depth in depths
        for trial in range(trials)
    ]
    pool = models.Models(model, backend, **engine_kwargs)
    prompts: dict[tuple[int, float, int], NeedlePrompt] = {}

    def measure(point: Mapping[str, Any]) -> Row:
        n, depth, trial = point["length"], point["depth"], point["trial"]
        setting = settings[point["rope"], n]
        if (n, depth, trial) not in prompts:
            word, number = draw(seed, n, depth, trial)
            count = token_counter(pool.tokenizer())
            prompts[n, depth, trial] = needle_prompt(
                count, haystack, n - ANSWER_TOKENS, depth, word, number
            )
        prompt = prompts[n, depth, trial]
        [generation] = pool.get(setting).generate(
            prompt.text, max_tokens=ANSWER_TOKENS, temperature=0.0
        )
        got = parse_answer(generation.text)
        return {
            "factor": round(models.factor(setting, window), 6),
            "needle_depth": round(prompt.depth, 4),
            "prompt_tokens": prompt.tokens,
            "expected": prompt.number,
            "got": got,
            "correct": got == prompt.number,
            "completion": generation.text,
        }

    return common.run_task(
        TASK,
        KEY,
        points,
        output,
        pool,
        measure,
        label=lambda p: f"rope={p['rope']} length={p['length']} depth={p['depth']}",
        summary=lambda r: f"expected {r['expected']}, got {r['got']}",
        progress=progress,
        report=lambda rows, table, plot: write_report(rows, table, plot, model=os.fspath(model)),
    )


def write_report(
    rows: Sequence[Mapping[str, Any]],
    table_path: str | os.PathLike[str],
    plot_path: str | os.PathLike[str],
    *,
    model: str,
) -> None:
    """Accuracy per length x depth: a Markdown table per (model, method) and, for ``model``, a
    heatmap per method."""
    cells: dict[tuple[str, str, int, float], list[bool]] = {}
    for row in rows:
        key = (row["model"], row["rope"], row["length"], row["depth"])
        cells.setdefault(key, []).append(row["correct"])
    accuracy = {key: sum(c) / len(c) for key, c in cells.items()}
    parts = ["# Needle in a haystack: accuracy by length and depth\n"]
    for name, rope in dict.fromkeys((m, r) for m, r, _, _ in accuracy):
        flat = [
            {"length": n, "depth": d, "accuracy": a}
            for (m, r, n, d), a in accuracy.items()
            if (m, r) == (name, rope)
        ]
        parts.append(f"\n## {os.path.basename(name.rstrip('/')) or name}, rope {rope}\n\n")
        parts.append(table.pivot(flat, "length", "depth", "accuracy", fmt=lambda v: f"{v:.2f}"))
    with open(table_path, "w", encoding="utf-8") as out:
        out.write("".join(parts))
    mine = {k: a for k, a in accuracy.items() if k[0] == model}
    lengths = sorted({n for _, _, n, _ in mine})
    depths = sorted({d for _, _, _, d in mine})
    panels = {
        rope: [[mine.get((model, rope, n, d), float("nan")) for d in depths] for n in lengths]
        for rope in dict.fromkeys(r for _, r, _, _ in mine)
    }
    plot.heatmaps(
        plot_path, panels, rows=lengths, columns=depths, xlabel="needle depth", ylabel="length"
    )
