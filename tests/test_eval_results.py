"""longcontext.evaluation's plumbing, without a model: resumable rows, tables, plots, progress
lines and the windows a perplexity run scores."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from longcontext.evaluation.plot import line_plot
from longcontext.evaluation.progress import Progress
from longcontext.evaluation.results import ResultsFile
from longcontext.evaluation.table import pivot
from longcontext.evaluation.windows import windows

KEY = ("task", "rope", "length")


def test_rows_are_written_as_done_and_a_reopened_file_knows_them(tmp_path: Path) -> None:
    path = tmp_path / "out" / "perplexity.jsonl"
    results = ResultsFile(path, KEY)
    results.append({"task": "perplexity", "rope": "yarn", "length": 256, "perplexity": 3.5})
    # On disk at once, one JSON object per line.
    assert [json.loads(line) for line in path.read_text().splitlines()] == results.rows
    again = ResultsFile(path, KEY)
    assert again.done({"task": "perplexity", "rope": "yarn", "length": 256, "other": 1})
    assert not again.done({"task": "perplexity", "rope": "yarn", "length": 512})
    assert not again.done({"task": "perplexity", "rope": "none", "length": 256})


def test_a_line_cut_by_a_crash_is_dropped_and_writing_resumes_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"task": "t", "rope": "none", "length": 1}\n{"task": "t", "ro')
    results = ResultsFile(path, KEY)
    assert len(results.rows) == 1
    results.append({"task": "t", "rope": "none", "length": 2})
    lines = path.read_text().splitlines()
    assert [json.loads(line)["length"] for line in lines] == [1, 2]


def test_a_line_that_is_not_json_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text('{"task": "t"}\nnot json\n')
    with pytest.raises(ValueError, match=r"rows.jsonl:2 is not a JSON row"):
        ResultsFile(path, KEY)


def test_pivot_table_has_a_row_per_length_and_a_column_per_method() -> None:
    rows = [
        {"length": 512, "rope": "none", "ppl": 9.0},
        {"length": 256, "rope": "none", "ppl": 8.0},
        {"length": 512, "rope": "yarn", "ppl": 7.25},
    ]
    text = pivot(rows, "length", "rope", "ppl", fmt=lambda v: f"{v:.2f}")
    assert text.splitlines() == [
        "| length | none | yarn |",
        "| ---: | ---: | ---: |",
        "| 256 | 8.00 |  |",
        "| 512 | 9.00 | 7.25 |",
    ]


def test_line_plot_writes_a_png(tmp_path: Path) -> None:
    path = tmp_path / "plot.png"
    line_plot(
        path,
        {"none": [(256, 9.0), (128, 8.0)], "yarn": [(256, 7.0)]},
        title="t",
        xlabel="x",
        ylabel="y",
        log_y=True,
        vline=128,
        vline_label="window",
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_progress_off_a_terminal_prints_one_plain_line_per_point() -> None:
    stream = io.StringIO()
    bar = Progress(2, "perplexity", stream=stream)
    bar.update("rope=none length=256", "perplexity 9.000")
    bar.update("rope=none length=512", skipped=True)
    bar.close()
    assert stream.getvalue().splitlines() == [
        "perplexity [1/2] rope=none length=256: perplexity 9.000",
        "perplexity [2/2] rope=none length=512: done before, skipped",
    ]
    quiet = io.StringIO()
    Progress(1, "x", enabled=False, stream=quiet).update("a", "b")
    assert quiet.getvalue() == ""


documents = st.lists(st.integers(0, 300), min_size=1, max_size=4).map(
    lambda sizes: [list(range(1000 * i, 1000 * i + n)) for i, n in enumerate(sizes)]
)


@settings(max_examples=60, deadline=None)
@given(docs=documents, length=st.integers(2, 64), bos=st.booleans(), data=st.data())
def test_windows_are_exact_and_sliding_scores_each_text_token_once(
    docs: list[list[int]], length: int, bos: bool, data: st.DataObject
) -> None:
    prefix = [-1] if bos else []
    width = length - len(prefix)
    if width < 1:
        return
    for mode in ("disjoint", "full"):
        for window in windows(docs, prefix, length, mode, limit=100):
            assert len(window.ids) == length and window.ids[: len(prefix)] == prefix
            assert window.first == 1  # every token with one before it is scored
    disjoint = windows(docs, prefix, length, "disjoint", limit=1000)
    assert len(disjoint) == sum(len(d) // width for d in docs)
    assert len(windows(docs, prefix, length, "full", limit=1000)) == sum(
        len(d) >= width for d in docs
    )
    stride = data.draw(st.integers(1, min(width, length - 1)))
    scored: list[int] = []
    for window in windows(docs, prefix, length, "sliding", limit=10_000, stride=stride):
        assert len(window.ids) == length and window.first >= 1
        scored += window.ids[window.first :]
    # Every text token of each document's covered span is scored exactly once, in order.
    assert len(scored) == len(set(scored))
    assert scored == sorted(scored) and -1 not in scored
    for doc in docs:
        if len(doc) >= width:
            covered = width + (len(doc) - width) // stride * stride
            expected = doc[(0 if bos else 1) : covered]
            assert [t for t in scored if t in set(doc)] == expected


def test_windows_stop_at_the_limit_and_reject_a_bad_stride() -> None:
    docs = [list(range(100))]
    assert len(windows(docs, [], 10, "disjoint", limit=3)) == 3
    with pytest.raises(ValueError, match="stride 10 must be between 1 and 9"):
        windows(docs, [], 10, "sliding", limit=3, stride=10)
