"""Lost in the middle (Liu et al. 2023): key-value retrieval with the asked key at each position,
as given and after ``longcontext.reorder``.

A prompt holds ``documents`` JSON key/value pairs of random UUIDs and asks for the value of one
key, ending ``Corresponding value: "`` so a base model copies it. The asked pair is put at each
of ``positions``. Then the same pairs are laid out by ``longcontext.reorder``, ranked by a
retrieval score that carries noise (the asked pair scores N(1, noise), the others N(0, noise):
it is usually, not always, ranked first), so the run shows how much of the middle dip reordering
recovers. Exact match: correct when the first UUID the model writes is the value. Pairs, keys
and scores are drawn from (seed, documents, position, trial): every method sees the same prompts.
"""

from __future__ import annotations

import json
import os
import random
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from longcontext.evaluation import common, models, plot, table
from longcontext.evaluation.errors import EvaluationError
from longcontext.evaluation.passkey import token_counter
from longcontext.evaluation.results import Row

TASK = "position"
KEY = ("task", "model", "rope", "documents", "position", "reordered", "trial", "seed", "noise")
INTRO = "Extract the value corresponding to the specified key in the JSON object below."
ANSWER_TOKENS = 48  # a UUID is 36 characters; tokenizers that split digits need ~30 tokens
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@dataclass(frozen=True)
class PositionPrompt:
    """One prompt: its text, the asked value, and where the asked pair sits.

    Attributes:
        text: the prompt.
        value: the value asked for.
        position: the index of the asked pair in the prompt (0 = first).
    """

    text: str
    value: str
    position: int


def pairs(seed: int, documents: int, position: int, trial: int) -> list[tuple[str, str]]:
    """``documents`` random UUID key/value pairs; the asked one is first."""
    rng = random.Random(f"position:{seed}:{documents}:{position}:{trial}")

    def draw() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    return [(draw(), draw()) for _ in range(documents)]


def kv_prompt(items: Sequence[tuple[str, str]], asked: tuple[str, str]) -> PositionPrompt:
    """The key-value retrieval prompt over ``items`` in this order, asking for ``asked``."""
    data = "{\n" + ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in items) + "\n}"
    text = f'{INTRO}\n\nJSON data:\n{data}\n\nKey: "{asked[0]}"\nCorresponding value: "'
    return PositionPrompt(text, asked[1], list(items).index(asked))


def layouts(
    seed: int, documents: int, position: int, trial: int, noise: float
) -> tuple[PositionPrompt, PositionPrompt]:
    """The prompt with the asked pair at ``position``, and the same pairs after ``reorder``."""
    from longcontext.context import reorder

    drawn = pairs(seed, documents, position, trial)
    asked, others = drawn[0], drawn[1:]
    given = [*others[:position], asked, *others[position:]]
    rng = random.Random(f"position-scores:{seed}:{documents}:{position}:{trial}")
    scores = [rng.gauss(1.0 if item == asked else 0.0, noise) for item in given]
    return kv_prompt(given, asked), kv_prompt(reorder(given, scores), asked)


def parse_uuid(text: str) -> str | None:
    """The first UUID in a completion, or ``None``."""
    found = _UUID.search(text.lower())
    return found.group() if found else None


def run_position(
    model: str | os.PathLike[str],
    documents: int,
    positions: Sequence[int] | None = None,
    ropes: Sequence[str] = ("none",),
    *,
    trials: int = 1,
    noise: float = 0.5,
    seed: int = 0,
    context_length: int | None = None,
    backend: str = "auto",
    output: str | os.PathLike[str] | None = None,
    progress: bool = True,
    **engine_kwargs: Any,
) -> list[Row]:
    """The lost-in-the-middle sweep: for each method and position, one row as given and one
    after reorder per trial. ``positions`` default to the first, a quarter, the middle, three
    quarters and the last. The prompt's length follows from ``documents``; a RoPE method
    scales the model to it when it is past the window.

    Raises:
        EvaluationError: fewer than 2 documents, a position outside them, a negative noise, a
            prompt the model and RoPE setting cannot hold, a model that cannot be found.
    """
    if documents < 2:
        raise EvaluationError(f"documents must be at least 2, got {documents}")
    if positions is None:
        positions = sorted({round(q * (documents - 1)) for q in (0, 0.25, 0.5, 0.75, 1)})
    if not positions:
        raise EvaluationError("no positions given; pass indexes such as 0,4,9")
    bad = [p for p in positions if not 0 <= p < documents]
    if bad:
        raise EvaluationError(f"positions must lie in [0, {documents - 1}], got {bad}")
    if noise < 0:
        raise EvaluationError(f"noise must be 0 or more, got {noise}")
    ropes = common.check_ropes(ropes)
    window = models.model_window(model)
    positions = list(dict.fromkeys(positions))
    prompts = {
        (p, t): layouts(seed, documents, p, t, noise) for p in positions for t in range(trials)
    }
    pool = models.Models(model, backend, **engine_kwargs)
    count = token_counter(pool.tokenizer())
    length = max(count(pair[0].text) for pair in prompts.values()) + ANSWER_TOKENS
    settings = {
        rope: models.plan(model, rope, length, window, context_length=context_length)
        for rope in ropes
    }
    points = [
        {
            "task": TASK,
            "model": os.fspath(model),
            "rope": rope,
            "documents": documents,
            "position": p,
            "reordered": reordered,
            "trial": t,
            "seed": seed,
            "noise": noise,
        }
        for rope in ropes
        for p in positions
        for t in range(trials)
        for reordered in (False, True)
    ]

    def measure(point: Mapping[str, Any]) -> Row:
        given, reordered = prompts[point["position"], point["trial"]]
        prompt = reordered if point["reordered"] else given
        setting = settings[point["rope"]]
        [generation] = pool.get(setting).generate(
            prompt.text, max_tokens=ANSWER_TOKENS, temperature=0.0
        )
        got = parse_uuid(generation.text)
        return {
            "factor": round(models.factor(setting, window), 6),
            "length": length,
            "prompt_position": prompt.position,
            "prompt_tokens": count(prompt.text),
            "expected": prompt.value,
            "got": got,
            "correct": got == prompt.value,
        }

    return common.run_task(
        TASK,
        KEY,
        points,
        output,
        pool,
        measure,
        label=lambda p: (
            f"rope={p['rope']} position={p['position']} "
            f"{'reordered' if p['reordered'] else 'as given'}"
        ),
        summary=lambda r: "correct" if r["correct"] else f"wrong ({r['got']})",
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
    """Accuracy per position, as given and reordered: a table per (model, documents) and the
    plot of ``model``."""
    cells: dict[tuple[str, int, str, int], list[bool]] = {}
    for row in rows:
        series = f"{row['rope']}{', reordered' if row['reordered'] else ''}"
        key = (row["model"], row["documents"], series, row["position"])
        cells.setdefault(key, []).append(row["correct"])
    accuracy: list[dict[str, Any]] = [
        {"model": m, "documents": k, "series": s, "position": p, "accuracy": sum(c) / len(c)}
        for (m, k, s, p), c in cells.items()
    ]
    parts = ["# Lost in the middle: accuracy by position of the asked pair\n"]
    for name, k in dict.fromkeys((a["model"], a["documents"]) for a in accuracy):
        mine = [a for a in accuracy if (a["model"], a["documents"]) == (name, k)]
        parts.append(f"\n## {os.path.basename(name.rstrip('/')) or name}, {k} pairs\n\n")
        parts.append(table.pivot(mine, "position", "series", "accuracy", fmt=lambda v: f"{v:.2f}"))
    with open(table_path, "w", encoding="utf-8") as out:
        out.write("".join(parts))
    lines: dict[str, list[tuple[float, float]]] = {}
    for a in accuracy:
        if a["model"] == model:
            lines.setdefault(f"{a['series']} ({a['documents']} pairs)", []).append(
                (a["position"], a["accuracy"])
            )
    plot.line_plot(
        plot_path,
        lines,
        title=f"Lost in the middle: {os.path.basename(model.rstrip('/')) or model}",
        xlabel="position of the asked pair (as given)",
        ylabel="accuracy",
        y_range=(-0.05, 1.05),
        log_x=False,
    )
