"""Needle in a haystack: the prompt over real text (a real tokenizer), and a sweep through the
CLI on a tiny Llama (random weights: rows and files are checked, not the accuracy)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tiny_models import SHARED, tiny_llama_dir  # noqa: F401 - pytest fixture

from longcontext.cli import main
from longcontext.evaluation import EvaluationError
from longcontext.evaluation.needle import ANSWER_TOKENS, draw, needle_prompt
from longcontext.evaluation.passkey import token_counter

HAYSTACK = (SHARED / "data" / "corpora" / "room_with_a_view.txt").read_text(encoding="utf-8")[
    :40_000
]


@pytest.fixture(scope="module")
def count() -> Any:
    from transformers import PreTrainedTokenizerFast

    path = SHARED / "data" / "tokenizers" / "qwen2.5" / "tokenizer.json"
    return token_counter(PreTrainedTokenizerFast(tokenizer_file=str(path)))


@settings(max_examples=15, deadline=None)
@given(budget=st.integers(200, 3000), depth=st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.9, 1.0]))
def test_prompt_fits_within_a_few_tokens_with_the_needle_at_a_sentence_start_near_the_depth(
    count: Any, budget: int, depth: float
) -> None:
    word, number = draw(0, budget, depth, 0)
    prompt = needle_prompt(count, HAYSTACK, budget, depth, word, number)
    assert budget - 8 <= prompt.tokens <= budget and prompt.tokens == count(prompt.text)
    needle = f"One of the special magic numbers for {word} is: {number}."
    assert prompt.text.count(needle) == 1 and prompt.text.rstrip().endswith("provided text is")
    before = prompt.text.split(needle)[0]
    context_before = before.split("\n", 1)[1] if "\n" in before else ""
    assert HAYSTACK.startswith(context_before.rstrip())  # real text, cut, never rearranged
    if context_before.strip() and prompt.depth < 1.0:  # else at the end of the cut text
        assert context_before.rstrip()[-1] in ".!?\"')]"  # at a sentence boundary
    # The needle sits near the asked share of the haystack in the prompt (sentences are short).
    assert abs(prompt.depth - depth) < 0.1 + 400 / prompt.tokens


def test_a_haystack_too_short_says_its_size(count: Any) -> None:
    with pytest.raises(EvaluationError, match=r"the haystack has \d+ tokens, too short to fill"):
        needle_prompt(count, HAYSTACK[:2000], 4000, 0.5, "apple", 1234567)


def test_cli_sweep_writes_rows_table_and_heatmap(tiny_llama_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    haystack = tmp_path / "haystack.txt"
    haystack.write_text(HAYSTACK)
    argv = ["eval", "needle", str(tiny_llama_dir), "--haystack", str(haystack)]
    out = tmp_path / "out"
    options = ["--lengths", "300", "--depths", "0,1", "--rope", "none,yarn", "-o", str(out)]
    code = main([*argv, *options, "-q", "--backend", "transformers"])
    assert code == 0
    rows = [json.loads(line) for line in (out / "needle.jsonl").read_text().splitlines()]
    assert [(r["rope"], r["depth"]) for r in rows] == [
        ("none", 0.0), ("none", 1.0), ("yarn", 0.0), ("yarn", 1.0),
    ]  # fmt: skip
    for row in rows:
        assert row["expected"] == draw(0, 300, row["depth"], 0)[1]
        assert row["correct"] == (row["got"] == row["expected"])
        assert 300 - ANSWER_TOKENS - 8 <= row["prompt_tokens"] <= 300 - ANSWER_TOKENS
    assert rows[0]["needle_depth"] == 0.0 and rows[1]["needle_depth"] == 1.0
    assert "| length | 0.0 | 1.0 |" in (out / "needle.md").read_text()
    assert (out / "needle.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--depths", "0,1.5"], "depths must lie in [0, 1]"),
        (["--depths", ","], "--depths ',' is empty"),
        (["--depths", "a"], "--depths 'a': pass numbers"),
    ],
)
def test_cli_bad_depths_are_one_line(
    tiny_llama_dir: Path,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    haystack = tmp_path / "h.txt"
    haystack.write_text(HAYSTACK)
    argv = ["eval", "needle", str(tiny_llama_dir), "--haystack", str(haystack), "--lengths", "300"]
    assert main([*argv, *extra, "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
