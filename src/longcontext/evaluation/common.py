"""What every task shares: reading the model's tokens, running points with resume and progress."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from longcontext.evaluation.errors import EvaluationError
from longcontext.evaluation.progress import Progress
from longcontext.evaluation.results import ResultsFile, Row


def check_lengths(lengths: Sequence[int]) -> list[int]:
    """The lengths, checked: at least one, each a positive whole number of tokens."""
    if not lengths:
        raise EvaluationError("no lengths given; pass token counts such as 1024,2048,4096")
    bad = [n for n in lengths if not isinstance(n, int) or isinstance(n, bool) or n < 2]
    if bad:
        raise EvaluationError(f"lengths must be whole token counts of at least 2, got {bad}")
    return list(dict.fromkeys(lengths))


def check_ropes(ropes: Sequence[str]) -> list[str]:
    """The RoPE methods, checked: at least one, each ``"none"`` or a ``RopeScaling`` method."""
    from longcontext.rope import RopeScaling

    if not ropes:
        raise EvaluationError("no RoPE methods given; pass none, linear, dynamic, yarn...")
    known = ("none", *RopeScaling.METHODS)
    for rope in ropes:
        if rope not in known:
            raise EvaluationError(f"unknown --rope {rope!r}; choose from {', '.join(known)}")
    return list(dict.fromkeys(ropes))


def digest(texts: Iterable[str]) -> str:
    """A short SHA-256 of the texts, so a rerun over other text does not count as done."""
    hasher = hashlib.sha256()
    for text in texts:
        hasher.update(hashlib.sha256(text.encode("utf-8")).digest())
    return hasher.hexdigest()[:16]


def output_files(
    output: str | os.PathLike[str] | None, task: str
) -> tuple[Path, Path, Path] | None:
    """``<task>.jsonl``, ``<task>.md`` and ``<task>.png`` in the output folder."""
    if output is None:
        return None
    folder = Path(output)
    return folder / f"{task}.jsonl", folder / f"{task}.md", folder / f"{task}.png"


Report = Callable[[Sequence[Row], Path, Path], None]


def run_task(
    task: str,
    key: Sequence[str],
    points: Sequence[Mapping[str, Any]],
    output: str | os.PathLike[str] | None,
    pool: Any,
    measure: Callable[[Mapping[str, Any]], Row],
    *,
    label: Callable[[Mapping[str, Any]], str],
    summary: Callable[[Row], str],
    progress: bool,
    report: Report,
) -> list[Row]:
    """What every task does once its points are planned: measure them with ``pool`` open
    (resuming from ``output``), then write the table and plot of every row in ``output``."""
    files = output_files(output, task)
    results = ResultsFile(files[0], key) if files else None
    with pool:
        rows = sweep(points, results, measure, label, summary, desc=task, progress=progress)
    if files and results is not None:
        report(results.rows, files[1], files[2])
    return rows


def sweep(
    points: Sequence[Mapping[str, Any]],
    results: ResultsFile | None,
    measure: Callable[[Mapping[str, Any]], Row],
    label: Callable[[Mapping[str, Any]], str],
    summary: Callable[[Row], str],
    *,
    desc: str,
    progress: bool,
) -> list[Row]:
    """Measure each point not already in ``results``, writing each row as soon as it is done.

    Returns the rows of these points (read back for those done before), in point order.
    """
    bar = Progress(len(points), desc, enabled=progress)
    rows: list[Row] = []
    try:
        for point in points:
            if results is not None and results.done(point):
                key = results.key(point)
                rows.append(next(r for r in results.rows if results.key(r) == key))
                bar.update(label(point), skipped=True)
                continue
            started = time.perf_counter()
            row = {**point, **measure(point)}
            row["seconds"] = round(time.perf_counter() - started, 3)
            if results is not None:
                results.append(row)
            rows.append(row)
            bar.update(label(point), summary(row))
    finally:
        bar.close()
    return rows
