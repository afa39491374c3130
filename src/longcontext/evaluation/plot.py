"""PNG figures with matplotlib's Agg canvas (no display, no global pyplot state), imported only
when a figure is drawn."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any


def _figure() -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:  # pragma: no cover - matplotlib is in the [eval] extra
        raise ImportError("plots need matplotlib: pip install 'longcontext[eval]'") from error
    figure = Figure(figsize=(6.4, 4.2), dpi=120, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def line_plot(
    path: str | os.PathLike[str],
    series: Mapping[str, Sequence[tuple[float, float]]],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    log_x: bool = True,
    log_y: bool = False,
    vline: float | None = None,
    vline_label: str = "",
    y_range: tuple[float, float] | None = None,
) -> None:
    """One line per series of ``(x, y)`` points (sorted by x) into a PNG at ``path``;
    ``vline`` marks an x such as the model's own window; ``y_range`` fixes the y axis (an
    accuracy is drawn on 0-1, so all-correct does not zoom into a flat line)."""
    figure = _figure()
    axes = figure.add_subplot()
    for name, points in series.items():
        xs, ys = zip(*sorted(points)) if points else ((), ())
        axes.plot(xs, ys, marker="o", label=name)
    if vline is not None:
        axes.axvline(vline, color="grey", linestyle="--", linewidth=1, label=vline_label or None)
    if log_x:
        axes.set_xscale("log", base=2)
    if log_y:
        axes.set_yscale("log")
    if y_range is not None:
        axes.set_ylim(*y_range)
    axes.set(title=title, xlabel=xlabel, ylabel=ylabel)
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.savefig(os.fspath(path))


def heatmaps(
    path: str | os.PathLike[str],
    panels: Mapping[str, Sequence[Sequence[float]]],
    *,
    rows: Sequence[Any],
    columns: Sequence[Any],
    xlabel: str,
    ylabel: str,
) -> None:
    """One heatmap per panel (e.g. per RoPE method) of ``values[row][column]`` in [0, 1]
    (accuracy), side by side, each cell labelled."""
    figure = _figure()
    figure.set_size_inches(max(6.4, 4.2 * len(panels)), 4.2)
    image = None
    for index, (name, values) in enumerate(panels.items(), 1):
        axes = figure.add_subplot(1, len(panels), index)
        image = axes.imshow(values, vmin=0.0, vmax=1.0, cmap="RdYlGn", aspect="auto")
        axes.set_xticks(range(len(columns)), [str(c) for c in columns])
        axes.set_yticks(range(len(rows)), [str(r) for r in rows])
        for i, line in enumerate(values):
            for j, value in enumerate(line):
                axes.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8)
        axes.set(title=name, xlabel=xlabel, ylabel=ylabel)
    if image is not None:
        figure.colorbar(image, ax=figure.axes)
    figure.savefig(os.fspath(path))
