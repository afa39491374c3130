"""Perplexity against length on a tiny random Llama: the mechanics, checked against plain
transformers (the numbers of a random model mean nothing, their equality does)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest
from tiny_models import SHARED, tiny_llama_dir  # noqa: F401 - pytest fixture

from longcontext.cli import main
from longcontext.evaluation import EvaluationError, run_perplexity
from longcontext.evaluation import models as eval_models

TEXT = (SHARED / "data" / "corpora" / "romeo_and_juliet.txt").read_text(encoding="utf-8")[:20_000]
WINDOW = 128  # the tiny model's own window here, so lengths past it are cheap


@pytest.fixture(scope="module")
def model_dir(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    """The tiny Llama with a 128-token window, its tokenizer writing a BOS before each text as
    Llama's and Gemma's do (so the windows' prefix is exercised)."""
    from tokenizers.processors import TemplateProcessing
    from transformers import AutoTokenizer

    path = tmp_path_factory.mktemp("eval-llama") / "model"
    shutil.copytree(tiny_llama_dir, path)
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "max_position_embeddings": WINDOW}))
    tokenizer = AutoTokenizer.from_pretrained(path)
    bos = tokenizer.bos_token
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single=f"{bos} $A", special_tokens=[(bos, tokenizer.bos_token_id)]
    )
    tokenizer.save_pretrained(path)
    return path


def reference_nll(model_dir: Path, windows: list[list[int]], firsts: list[int]) -> float:
    """Mean NLL with plain transformers: full logits, log_softmax, the next token's entry."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for ids, first in zip(windows, firsts, strict=True):
            logprobs = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), -1)
            for i in range(first, len(ids)):
                total -= logprobs[i - 1, ids[i]].item()
                count += 1
    return total / count


def text_ids(model_dir: Path) -> tuple[int, list[int]]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return tokenizer.bos_token_id, tokenizer(TEXT, add_special_tokens=False)["input_ids"]


def test_disjoint_and_sliding_perplexity_equal_plain_transformers(
    model_dir: Path, tmp_path: Path
) -> None:
    bos, ids = text_ids(model_dir)
    rows = run_perplexity(
        model_dir, TEXT, [64, 192], ["none"], windows_per_length=3, backend="transformers",
        output=tmp_path, progress=False,
    )  # fmt: skip
    for row in rows:
        n = row["length"]
        windows = [[bos, *ids[i * (n - 1) : (i + 1) * (n - 1)]] for i in range(3)]
        expected = reference_nll(model_dir, windows, [1, 1, 1])
        assert row["tokens"] == 3 * (n - 1) and row["windows"] == 3
        assert row["nll"] == pytest.approx(expected, rel=1e-5)
        assert row["perplexity"] == pytest.approx(math.exp(expected), rel=1e-5)
        assert row["factor"] == 1.0  # none: unscaled, also past the window (192 > 128)
    [row] = run_perplexity(
        model_dir, TEXT, [64], ["none"], mode="sliding", stride=16, windows_per_length=3,
        backend="transformers", progress=False,
    )  # fmt: skip
    windows = [[bos, *ids[k * 16 : k * 16 + 63]] for k in range(3)]
    assert row["tokens"] == 63 + 16 + 16
    assert row["nll"] == pytest.approx(reference_nll(model_dir, windows, [1, 48, 48]), rel=1e-5)


def test_scoring_in_slices_equals_scoring_whole(model_dir: Path) -> None:
    from longcontext import LongContextLLM

    llm = LongContextLLM(model_dir, backend="transformers")
    ids = text_ids(model_dir)[1][:100]
    whole = llm._backend.score(ids, 1, slice_tokens=10_000)
    for step in (1, 7, 99):
        sliced = llm._backend.score(ids, 1, slice_tokens=step)
        assert sliced == pytest.approx(whole, abs=1e-5)
    assert llm.score(ids, 90) == pytest.approx(whole[89:], abs=1e-5)
    assert reference_nll(model_dir, [ids], [1]) == pytest.approx(-sum(whole) / 99, rel=1e-5)


def test_methods_rows_table_plot_and_resume(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args: dict[str, Any] = {"windows_per_length": 1, "backend": "transformers", "progress": False}
    rows = run_perplexity(
        model_dir, TEXT, [64, 256], ["none", "yarn", "linear"], output=tmp_path, **args
    )
    by = {(r["rope"], r["length"]): r for r in rows}
    assert {r["factor"] for r in rows if r["length"] == 64} == {1.0}  # within the window
    assert by["yarn", 256]["factor"] == by["linear", 256]["factor"] == 2.0
    assert by["none", 64]["nll"] == by["yarn", 64]["nll"]  # the same unscaled model
    assert len({by[m, 256]["nll"] for m in ("none", "yarn", "linear")}) == 3
    for row in rows:
        assert {"task", "model", "rope", "factor", "length", "mode", "windows", "tokens"} <= set(
            row
        )
        assert row["task"] == "perplexity" and row["mode"] == "disjoint" and row["seconds"] >= 0
    lines = (tmp_path / "perplexity.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == rows
    table = (tmp_path / "perplexity.md").read_text()
    assert "| length | none | yarn | linear |" in table
    assert f"| 256 | {by['none', 256]['perplexity']:.3f} |" in table
    assert (tmp_path / "perplexity.png").read_bytes()[:4] == b"\x89PNG"

    # A rerun loads no model for the points already there and measures only the new one.
    loads: list[eval_models.Setting] = []
    real_get = eval_models.Models.get

    def counting_get(self: eval_models.Models, setting: eval_models.Setting) -> Any:
        loads.append(setting)
        return real_get(self, setting)

    monkeypatch.setattr(eval_models.Models, "get", counting_get)
    again = run_perplexity(model_dir, TEXT, [64, 256], ["none", "yarn"], output=tmp_path, **args)
    assert again == [by["none", 64], by["none", 256], by["yarn", 64], by["yarn", 256]]
    assert loads == []
    more = run_perplexity(model_dir, TEXT, [256], ["dynamic"], output=tmp_path, **args)
    assert loads == [eval_models.Setting("dynamic", 256)] and more[0]["factor"] == 2.0
    assert len((tmp_path / "perplexity.jsonl").read_text().splitlines()) == 7


def test_context_length_scales_once_for_every_length(model_dir: Path) -> None:
    rows = run_perplexity(
        model_dir, TEXT, [64, 256], ["yarn"], context_length=512, windows_per_length=1,
        backend="transformers", progress=False,
    )  # fmt: skip
    assert [r["factor"] for r in rows] == [4.0, 4.0]
    with pytest.raises(EvaluationError, match="length 1024 is above --context-length 512"):
        run_perplexity(model_dir, TEXT, [1024], ["yarn"], context_length=512, progress=False)
    with pytest.raises(EvaluationError, match="past the model's window of 128 tokens with"):
        run_perplexity(model_dir, TEXT, [64], ["none"], context_length=512, progress=False)


def cli(*argv: str) -> int:
    return main(["eval", "perplexity", *argv])


def test_cli_writes_the_three_files(model_dir: Path, tmp_path: Path) -> None:
    text = tmp_path / "book.txt"
    text.write_text(TEXT)
    out = tmp_path / "out"
    code = cli(
        str(model_dir), "--text", str(text), "--lengths", "64,1k", "--rope", "none,yarn",
        "--windows", "1", "--backend", "transformers", "-o", str(out), "-q",
    )  # fmt: skip
    assert code == 0
    rows = [json.loads(line) for line in (out / "perplexity.jsonl").read_text().splitlines()]
    assert [(r["rope"], r["length"]) for r in rows] == [
        ("none", 64), ("none", 1024), ("yarn", 64), ("yarn", 1024),
    ]  # fmt: skip
    assert (out / "perplexity.md").exists() and (out / "perplexity.png").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--lengths", "4096"], "the text has 8 tokens (with the model's tokenizer), shorter than "
         "one window of 4096 tokens"),
        (["--lengths", " , "], "--lengths ' , ' is empty"),
        (["--lengths", "64", "--rope", ""], "--rope '' is empty"),
        (["--lengths", "64", "--rope", "yarnn"], "unknown --rope 'yarnn'"),
        (["--lengths", "512", "--context-length", "256", "--rope", "yarn"],
         "length 512 is above --context-length 256"),
        (["--lengths", "64", "--mode", "sliding", "--stride", "64"],
         "stride 64 must be between 1 and 63"),
        (["--lengths", "512", "--backend", "vllm"], "measure that baseline with --backend "
         "transformers"),
    ],
)  # fmt: skip
def test_cli_bad_input_is_one_line(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
    message: str,
) -> None:  # fmt: skip
    text = tmp_path / "short.txt"
    text.write_text("a short text")
    assert cli(str(model_dir), "--text", str(text), "-o", str(tmp_path), *argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("longcontext eval: error: ") and err.count("\n") == 1
    assert message in err


def test_cli_missing_model_and_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = tmp_path / "t.txt"
    text.write_text(TEXT)
    assert cli(str(tmp_path / "nope"), "--text", str(text), "--lengths", "64") == 2
    assert "model '" in capsys.readouterr().err
    moved = tmp_path / "gone"
    shutil.rmtree(moved, ignore_errors=True)
    assert cli(str(tmp_path), "--text", str(moved), "--lengths", "64") == 2
    assert f"--text {moved}: no such file" in capsys.readouterr().err
