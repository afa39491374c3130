"""``eval report``: the tables and plots of a run stopped before it wrote them, rebuilt from its
rows alone, equal what the finished run wrote."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from tiny_models import SHARED, tiny_llama_dir  # noqa: F401 - pytest fixture

from longcontext.cli import main
from longcontext.evaluation import run_passkey, run_perplexity
from longcontext.evaluation.report import rebuild


def test_rebuilt_tables_equal_what_the_runs_wrote(
    tiny_llama_dir: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    args: dict[str, Any] = {"backend": "transformers", "progress": False, "output": tmp_path}
    text = (SHARED / "data" / "corpora" / "romeo_and_juliet.txt").read_text(encoding="utf-8")
    run_perplexity(tiny_llama_dir, text, [128, 256], ["none", "yarn"], windows_per_length=1, **args)
    run_passkey(tiny_llama_dir, [256], ["none"], trials=2, **args)
    written = {name: (tmp_path / name).read_text() for name in ("perplexity.md", "passkey.md")}
    for name in ("perplexity.md", "perplexity.png", "passkey.md", "passkey.png"):
        (tmp_path / name).unlink()
    assert sorted(p.name for p in rebuild(tmp_path)) == [
        "passkey.md", "passkey.png", "perplexity.md", "perplexity.png"
    ]  # fmt: skip
    for name, text in written.items():
        assert (tmp_path / name).read_text() == text
    assert (tmp_path / "passkey.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_report_and_its_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "report", str(tmp_path / "missing")]) == 2
    assert "no such results folder" in capsys.readouterr().err
    assert main(["eval", "report", str(tmp_path)]) == 2
    assert "no results in" in capsys.readouterr().err
    rows = [
        {"task": "passkey", "model": "m", "rope": "yarn", "length": 4096, "trial": trial,
         "correct": correct}
        for trial, correct in enumerate([True, False])
    ]  # fmt: skip
    (tmp_path / "passkey.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert main(["eval", "report", str(tmp_path)]) == 0
    assert "| 4096 | 0.50 |" in (tmp_path / "passkey.md").read_text()
    assert str(tmp_path / "passkey.png") in capsys.readouterr().out


def test_ctrl_c_writes_the_table_of_the_rows_so_far(
    tiny_llama_dir: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A real CLI run stopped by SIGINT (Ctrl-C, or gpu_eval's time limit) after its first
    rows: exit 130, the rows kept, and their table and plot written."""
    command = [sys.executable, "-m", "longcontext.cli", "eval", "passkey", str(tiny_llama_dir),
               "--lengths", "512", "--trials", "400", "--backend", "transformers",
               "--device", "cpu", "--quiet", "--output", str(tmp_path)]  # fmt: skip
    run = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    rows = tmp_path / "passkey.jsonl"
    deadline = time.monotonic() + 240
    while not (rows.exists() and rows.read_text().count("\n") >= 2):
        assert run.poll() is None, run.communicate()[1]
        assert time.monotonic() < deadline, "no row measured within 240 s"
        time.sleep(0.2)
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 130, err
    measured = rows.read_text().count("\n")
    assert 2 <= measured < 400
    assert "interrupted; tables and plots" in err
    table = (tmp_path / "passkey.md").read_text()
    assert "| 512 |" in table
    assert (tmp_path / "passkey.png").read_bytes()[:4] == b"\x89PNG"
