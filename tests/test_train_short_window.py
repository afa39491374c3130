"""scripts/train_short_window_llama.py runs end to end: a handful of steps on a small slice of the
shared corpora, then the saved folder loads as a normal model with its short window."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from script_module import load_script


def test_trains_and_saves_a_loadable_short_window_model(tmp_path: Path) -> None:
    script = load_script("train_short_window_llama")
    text = script.CORPORA / "romeo_and_juliet.txt"
    if not text.is_file():
        pytest.skip(f"the shared corpora are not at {script.CORPORA}")
    out = tmp_path / "model"
    args = ["--output", str(out), "--text", str(text), "--max-chars", "8000"]
    args += ["--steps", "3", "--batch", "4", "--window", "32", "--vocab", "300"]
    args += ["--hidden", "32", "--layers", "1", "--heads", "2", "--intermediate", "64"]
    assert script.main(args) == 0

    report = json.loads((out / "training.json").read_text(encoding="utf-8"))
    assert report["steps"] == 3 and report["tokens_seen"] == 3 * 4 * 32
    assert report["heldout_loss_at_window"] > 0
    assert (out / "heldout.txt").read_text(encoding="utf-8")  # never trained on

    from longcontext import LongContextLLM

    llm = LongContextLLM(out, backend="transformers")
    assert llm.context_window == 32  # the trained window, read from config.json
    ids = llm.encode("O Romeo")
    assert ids[0] == llm.tokenizer.bos_token_id  # every encoding starts with BOS, as in training
    assert llm.tokenizer.decode(ids, skip_special_tokens=True) == "O Romeo"
    [out_] = llm.generate("O Romeo", max_tokens=2, temperature=0.0)
    assert out_.completion_tokens <= 2


def test_bad_arguments_get_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    script = load_script("train_short_window_llama")
    with pytest.raises(SystemExit):
        script.parse_args(["--text", "/no/such/file.txt"])
    assert "--text /no/such/file.txt does not exist" in capsys.readouterr().err
