"""Lost in the middle: the key-value prompts, what reorder does to them, and a sweep through the
CLI on a tiny Llama (random weights: rows and files are checked, not the accuracy)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from tiny_models import tiny_llama_dir  # noqa: F401 - pytest fixture

from longcontext.cli import main
from longcontext.evaluation import EvaluationError, run_position
from longcontext.evaluation.position import layouts, pairs, parse_uuid


@pytest.mark.parametrize("position", [0, 3, 6, 11])
def test_the_asked_pair_sits_at_the_position_and_reorder_lays_out_the_same_pairs(
    position: int,
) -> None:
    given, reordered = layouts(0, 12, position, 0, noise=0.5)
    drawn = pairs(0, 12, position, 0)
    asked_key, asked_value = drawn[0]
    for prompt in (given, reordered):
        data = json.loads(prompt.text.split("JSON data:\n", 1)[1].split("\n\nKey:", 1)[0])
        assert sorted(data.items()) == sorted(drawn)  # the same pairs, nothing lost
        assert list(data).index(asked_key) == prompt.position and prompt.value == asked_value
        assert prompt.text.endswith(f'Key: "{asked_key}"\nCorresponding value: "')
    assert given.position == position


def test_reorder_puts_the_best_scored_pair_first_and_noise_can_move_it() -> None:
    # Without noise the asked pair scores highest: reorder puts it first wherever it was.
    assert {layouts(1, 9, p, 0, noise=0.0)[1].position for p in range(9)} == {0}
    # With much noise it is often not ranked first: some prompts keep it elsewhere.
    noisy = [layouts(1, 9, p, t, noise=5.0)[1].position for p in range(9) for t in range(4)]
    assert any(p != 0 for p in noisy)


def test_parse_uuid_takes_the_first_one() -> None:
    value = "0f8fad5b-d9cb-469f-a165-70867728950e"
    assert parse_uuid(f'{value}", next 11111111-2222-4333-8444-555555555555') == value
    assert parse_uuid(value.upper()) == value
    assert parse_uuid("no uuid here") is None


def test_cli_sweep_rows_table_and_plot(tiny_llama_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    out = tmp_path / "out"
    argv = ["eval", "position", str(tiny_llama_dir), "--documents", "4", "--positions", "0,3"]
    assert main([*argv, "--backend", "transformers", "-o", str(out), "-q"]) == 0
    rows = [json.loads(line) for line in (out / "position.jsonl").read_text().splitlines()]
    assert [(r["position"], r["reordered"]) for r in rows] == [
        (0, False), (0, True), (3, False), (3, True),
    ]  # fmt: skip
    for row in rows:
        assert row["task"] == "position" and row["documents"] == 4
        assert row["correct"] == (row["got"] == row["expected"])
        assert re.fullmatch(r"[0-9a-f-]{36}", row["expected"])
        assert row["prompt_position"] == row["position"] or row["reordered"]
    table = (out / "position.md").read_text()
    assert "| position | none | none, reordered |" in table
    assert (out / "position.png").read_bytes()[:4] == b"\x89PNG"


def test_bad_positions_and_documents(tiny_llama_dir: Path) -> None:  # noqa: F811
    with pytest.raises(EvaluationError, match=r"positions must lie in \[0, 3\], got \[4\]"):
        run_position(tiny_llama_dir, 4, [0, 4])
    with pytest.raises(EvaluationError, match="documents must be at least 2"):
        run_position(tiny_llama_dir, 1)
