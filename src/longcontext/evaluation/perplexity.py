"""Perplexity against context length, one curve per RoPE method.

For each method and length the model is served as ``LongContextLLM`` serves it (a scaling of
factor length / window past the window, none within it; ``"none"`` runs unscaled past the
window, the baseline that shows the failure), the text is cut into windows
(``longcontext.evaluation.windows``) and every scored token's log-likelihood comes from
``LongContextLLM.score``, which never holds ``[length x vocab]`` logits at once.
perplexity = exp(mean negative log-likelihood over every scored token of every window), so plain
transformers reproduces the number: ``exp(mean(-log_softmax(logits)[target]))`` over the same
windows.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from longcontext.evaluation import common, models, plot, table
from longcontext.evaluation.errors import EvaluationError
from longcontext.evaluation.results import Row
from longcontext.evaluation.windows import MODES, Mode, Window, windows

TASK = "perplexity"
KEY = ("task", "model", "rope", "length", "mode", "max_windows", "stride", "context_length", "text")


def run_perplexity(
    model: str | os.PathLike[str],
    texts: str | Sequence[str],
    lengths: Sequence[int],
    ropes: Sequence[str] = ("none",),
    *,
    mode: Mode = "disjoint",
    windows_per_length: int = 4,
    stride: int | None = None,
    context_length: int | None = None,
    backend: str = "auto",
    output: str | os.PathLike[str] | None = None,
    progress: bool = True,
    **engine_kwargs: Any,
) -> list[Row]:
    """Measure perplexity for each RoPE method (``"none"`` or a ``RopeScaling`` method) and
    length; return one row per point (those already in ``output`` are read, not measured again).

    Args:
        model: a model directory or id, as ``LongContextLLM`` takes it.
        texts: the document, or several (a window never spans two).
        lengths: window lengths in tokens, the tokenizer's prefix (BOS) included.
        ropes: the methods to compare; ``"none"`` is the unscaled model.
        mode: ``"disjoint"``, ``"sliding"`` or ``"full"`` (see ``longcontext.evaluation.windows``).
        windows_per_length: the most windows scored at each length (fewer when the text is short).
        stride: the step of ``sliding`` windows (default: half the length).
        context_length: one window to scale to for every length instead of one per length.
        backend: ``"auto"``, ``"transformers"`` (CPU or GPU) or ``"vllm"`` (prompt
            log-probabilities; the unscaled baseline past the window needs transformers).
        output: a folder for ``perplexity.jsonl``, ``.md`` and ``.png`` (resumed when present).
        progress: a progress bar on a terminal, plain lines otherwise.
        **engine_kwargs: more ``LongContextLLM`` arguments (``dtype``, ``device``...).

    Raises:
        EvaluationError: bad input, before any weights load where it can be seen from the
            config: an empty list, a text shorter than one window, a length the setting cannot
            hold, a model that cannot be found.
    """
    documents = [texts] if isinstance(texts, str) else list(texts)
    lengths = common.check_lengths(lengths)
    ropes = common.check_ropes(ropes)
    if mode not in MODES:
        raise EvaluationError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    if windows_per_length < 1:
        raise EvaluationError(f"windows must be at least 1, got {windows_per_length}")
    if not documents or not any(doc.strip() for doc in documents):
        raise EvaluationError("the text is empty; pass a long document to score")
    window = models.model_window(model)
    if "none" in ropes and max(lengths) > window and context_length is None:
        _check_unscaled_past_window(backend, window)
    strides = {n: _stride(mode, stride, n) for n in lengths}
    settings = {
        (rope, n): models.plan(
            model, rope, n, window, context_length=context_length, past_window=True
        )
        for rope in ropes
        for n in lengths
    }
    text_id = common.digest(documents)
    points = [
        {
            "task": TASK,
            "model": os.fspath(model),
            "rope": rope,
            "length": n,
            "mode": mode,
            "max_windows": windows_per_length,
            "stride": strides[n],
            "context_length": context_length,
            "text": text_id,
        }
        for rope in ropes
        for n in lengths
    ]
    pool = models.Models(model, backend, **engine_kwargs)
    cuts: dict[int, list[Window]] = {}
    measured: dict[tuple[models.Setting, int], Row] = {}

    def measure(point: Mapping[str, Any]) -> Row:
        n, setting = point["length"], settings[point["rope"], point["length"]]
        if (setting, n) in measured:  # e.g. every method within the window: the same model
            return dict(measured[setting, n])
        if n not in cuts:  # before the weights load: a text too short fails fast
            cuts[n] = _windows(pool.tokenizer(), documents, n, mode, windows_per_length, strides[n])
        row = _score(pool.get(setting), cuts[n])
        row["factor"] = round(models.factor(setting, window), 6)
        row["window"] = window  # the model's own, for the plot's marker when rebuilt from rows
        measured[setting, n] = row
        return dict(row)

    return common.run_task(
        TASK,
        KEY,
        points,
        output,
        pool,
        measure,
        label=lambda p: f"rope={p['rope']} length={p['length']}",
        summary=lambda r: f"perplexity {r['perplexity']:.3f} over {r['tokens']} tokens",
        progress=progress,
        report=lambda rows, table, plot: write_report(
            rows, table, plot, model=os.fspath(model), mode=mode, window=window
        ),
    )


def _check_unscaled_past_window(backend: str, window: int) -> None:
    """vLLM refuses prompts longer than the window it serves, so the unscaled model cannot be
    run past its window there; transformers extrapolates as the model would."""
    from longcontext.llm.engine import choose_backend

    if backend == "vllm" or (backend == "auto" and choose_backend("auto") == "vllm"):
        raise EvaluationError(
            f"--rope none past the model's window of {window} tokens: vLLM refuses prompts "
            "longer than the window it serves; measure that baseline with --backend "
            "transformers, or drop 'none' from --rope"
        )


def _stride(mode: str, stride: int | None, length: int) -> int | None:
    if mode != "sliding":
        return None
    return stride if stride is not None else max(1, length // 2)


def _windows(
    tokenizer: Any,
    documents: Sequence[str],
    length: int,
    mode: Mode,
    limit: int,
    stride: int | None,
) -> list[Window]:
    prefix = text_prefix(tokenizer)
    ids = [
        list(tokenizer(doc, add_special_tokens=False, verbose=False)["input_ids"])
        for doc in documents
    ]
    try:
        found = windows(ids, prefix, length, mode, limit, stride)
    except ValueError as error:
        raise EvaluationError(str(error)) from None
    if not found:
        longest = max(len(doc) for doc in ids)
        raise EvaluationError(
            f"the text has {longest} tokens (with the model's tokenizer), shorter than one window "
            f"of {length} tokens ({len(prefix)} prefix + {length - len(prefix)} text); pass a "
            "longer text or smaller lengths"
        )
    return found


def text_prefix(tokenizer: Any) -> list[int]:
    """The special tokens the tokenizer writes before a text (``[BOS]``, or none)."""
    ids = list(tokenizer("", add_special_tokens=True)["input_ids"])
    eos = tokenizer.eos_token_id
    return ids[:-1] if ids and eos is not None and ids[-1] == eos else ids


def _score(llm: Any, cut: Sequence[Window]) -> Row:
    total, tokens = 0.0, 0
    for window in cut:
        scores = llm.score(window.ids, window.first)
        total -= math.fsum(scores)
        tokens += len(scores)
    nll = total / tokens
    return {
        "windows": len(cut),
        "tokens": tokens,
        "nll": nll,
        "perplexity": math.exp(nll) if nll < 700 else math.inf,
    }


def write_report(
    rows: Sequence[Mapping[str, Any]],
    table_path: str | os.PathLike[str],
    plot_path: str | os.PathLike[str],
    *,
    model: str,
    mode: str,
    window: int | None = None,
) -> None:
    """The Markdown table of ``rows`` (length x method, one table per model and mode) and the
    plot of the rows of ``model`` in ``mode``, the run that just ended."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["model"], row["mode"]), []).append(row)
    parts = ["# Perplexity against context length\n"]
    for (name, kind), group in groups.items():
        parts.append(f"\n## {_short(name)}, {kind} windows\n\n")
        parts.append(table.pivot(group, "length", "rope", "perplexity", fmt=lambda v: f"{v:.3f}"))
    with open(table_path, "w", encoding="utf-8") as out:
        out.write("".join(parts))
    series: dict[str, list[tuple[float, float]]] = {}
    for row in groups.get((model, mode), []):
        if math.isfinite(row["perplexity"]):
            series.setdefault(row["rope"], []).append((row["length"], row["perplexity"]))
    plot.line_plot(
        plot_path,
        series,
        title=f"Perplexity vs length: {_short(model)} ({mode} windows)",
        xlabel="context length (tokens)",
        ylabel="perplexity",
        log_y=True,
        vline=window,
        vline_label="model window",
    )


def _short(model: str) -> str:
    return os.path.basename(model.rstrip("/")) or model
