"""scripts/gpu_eval.py needs a GPU to run; here its commands are checked against the CLI's own
parser, so the first GPU machine does not meet a typo."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from script_module import SCRIPTS, load_script

from longcontext.cli import build_parser

SCRIPT = SCRIPTS / "gpu_eval.py"


def test_every_command_parses_with_the_cli_parser(tmp_path: Path) -> None:
    script = load_script("gpu_eval")
    steps = script.commands("some/model", [str(tmp_path / "a.txt")], str(tmp_path), 32768)
    assert [argv[1] for _, argv in steps] == [
        "perplexity", "perplexity", "passkey", "needle", "position", "report"
    ]  # fmt: skip
    parser = build_parser()
    *tasks, (_, report) = steps
    assert parser.parse_args(report).folder == str(tmp_path)
    for _, argv in tasks:
        args = parser.parse_args(argv)
        assert args.model == "some/model" and args.output == str(tmp_path)
        if args.backend == "vllm" and args.task != "position":
            # vLLM refuses prompts past the window it serves: every vLLM step scales once
            assert args.context_length == 32768 and "none" not in args.rope


def test_the_transformers_backend_runs_every_step_on_the_gpu(tmp_path: Path) -> None:
    """Where vLLM is not installed (the lent machine of the first GPU run had none)."""
    script = load_script("gpu_eval")
    steps = script.commands("m", ["a.txt"], str(tmp_path), 65536, "transformers", trials=3)
    parser = build_parser()
    for _, argv in steps[:-1]:
        args = parser.parse_args(argv)
        assert args.backend == "transformers" and args.device == "cuda"
        if args.task != "position":
            assert args.lengths == "4096,8192,16384,32768,65536"
        if args.task == "passkey":
            assert args.trials == 3


def test_dry_run_prints_the_commands_and_runs_nothing(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--dry-run", "--output", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.count("$ longcontext eval ") == 6
    assert not (tmp_path / "out").exists()
