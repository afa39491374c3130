"""Passkey retrieval: the prompt (real tokenizers), answer parsing, and a sweep on a tiny Llama
(random weights: the rows and files are checked, not the accuracy)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tiny_models import SHARED, tiny_llama_dir  # noqa: F401 - pytest fixture

from longcontext.cli import main
from longcontext.evaluation import EvaluationError, run_passkey
from longcontext.evaluation.passkey import (
    ANSWER_TOKENS,
    FILLER,
    QUESTION,
    draw,
    key_line,
    parse_answer,
    passkey_prompt,
    token_counter,
)


@pytest.fixture(scope="module")
def qwen() -> Any:
    """Qwen2.5's real tokenizer (151K vocabulary), from the shared data."""
    from transformers import PreTrainedTokenizerFast

    path = SHARED / "data" / "tokenizers" / "qwen2.5" / "tokenizer.json"
    return PreTrainedTokenizerFast(tokenizer_file=str(path))


def sentence_tokens(count: Any) -> int:
    return max(count(" " + sentence) for sentence in FILLER)


@settings(max_examples=25, deadline=None)
@given(budget=st.integers(80, 3000), depth=st.floats(0.0, 1.0), key=st.integers(1, 50_000))
def test_prompt_fits_the_budget_within_a_sentence_and_hides_the_key_at_the_depth(
    qwen: Any, budget: int, depth: float, key: int
) -> None:
    count = token_counter(qwen)
    prompt = passkey_prompt(count, budget, depth, key)
    assert prompt.tokens == count(prompt.text)
    assert budget - sentence_tokens(count) - 2 <= prompt.tokens <= budget
    assert prompt.text.endswith("\n" + QUESTION) and prompt.text.count(key_line(key)) == 1
    # The key line sits after that share of the filler sentences, counted in the text itself.
    before, after = prompt.text.split(key_line(key))
    n_before = sum(before.count(s) for s in FILLER)
    n_total = n_before + sum(after.count(s) for s in FILLER)
    assert n_total > 0 and n_before / n_total == pytest.approx(prompt.depth)
    assert abs(prompt.depth - depth) <= 0.5 / n_total + 1e-9
    # ... and so at that depth of the prompt's tokens, up to the fixed intro and question.
    share = count(before) / prompt.tokens
    assert abs(share - depth) <= 60 / prompt.tokens + 1 / n_total


def test_a_length_too_small_for_the_bare_prompt_says_how_many_tokens_it_needs(qwen: Any) -> None:
    with pytest.raises(EvaluationError, match=r"needs at least \d+ tokens with this tokenizer"):
        passkey_prompt(token_counter(qwen), 20, 0.5, 123)


def test_parse_answer_takes_the_first_integer() -> None:
    assert parse_answer(" 31415. Remember it.") == 31415
    assert parse_answer("is 7 and then 8") == 7
    assert parse_answer(" the key") is None
    assert parse_answer("") is None


def test_draws_depend_on_seed_length_and_trial_only() -> None:
    assert draw(0, 1024, 3) == draw(0, 1024, 3)
    assert len({draw(0, 1024, t) for t in range(20)}) == 20
    assert draw(1, 1024, 0) != draw(0, 1024, 0)
    for trial in range(50):
        key, depth = draw(7, 512, trial)
        assert 1 <= key <= 50_000 and 0 <= depth < 1


def test_sweep_rows_files_and_resume(tiny_llama_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    args: dict[str, Any] = {"trials": 2, "backend": "transformers", "progress": False}
    rows = run_passkey(tiny_llama_dir, [256, 4096], ["yarn"], output=tmp_path, **args)
    assert [(r["length"], r["trial"]) for r in rows] == [(256, 0), (256, 1), (4096, 0), (4096, 1)]
    for row in rows:
        expected, depth = draw(0, row["length"], row["trial"])
        assert row["task"] == "passkey" and row["rope"] == "yarn" and row["expected"] == expected
        assert row["correct"] == (row["got"] == expected)
        assert abs(row["depth"] - depth) < 0.05
        assert row["length"] - ANSWER_TOKENS - 15 <= row["prompt_tokens"]
        assert row["prompt_tokens"] <= row["length"] - ANSWER_TOKENS
    assert [r["factor"] for r in rows] == [1.0, 1.0, 2.0, 2.0]  # the tiny window is 2048
    saved = [json.loads(x) for x in (tmp_path / "passkey.jsonl").read_text().splitlines()]
    assert saved == rows
    assert "| length | yarn |" in (tmp_path / "passkey.md").read_text()
    assert (tmp_path / "passkey.png").read_bytes()[:4] == b"\x89PNG"
    assert run_passkey(tiny_llama_dir, [256], ["yarn"], output=tmp_path, **args) == rows[:2]
    assert len((tmp_path / "passkey.jsonl").read_text().splitlines()) == 4


def test_cli_refuses_the_unscaled_model_past_its_window(
    tiny_llama_dir: Path,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["eval", "passkey", str(tiny_llama_dir), "--lengths", "4k", "-o", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "length 4096 is past the model's window of 2048" in err
    assert main([*argv[:4], "", "-o", str(tmp_path)]) == 2
    assert "--lengths '' is empty" in capsys.readouterr().err
