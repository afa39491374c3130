"""``longcontext serve-args``: the printed ``vllm serve`` command, read back by vLLM itself.

The printed line is split as a shell would (``shlex``) and the words after ``vllm serve`` go
through vLLM 0.33's own serve parser (``make_arg_parser``), ``validate_parsed_serve_args``,
``AsyncEngineArgs.from_cli_args`` and ``create_engine_config``, in a child process on vLLM's CPU
platform (``tests/vllm_cpu.py``: no stand-in, only the GPUs are missing). The ``--json`` form
goes through ``EngineArgs(**args)`` here. Both must give the intended window, the RoPE
parameters with the model's ``rope_theta`` kept, and the parallel layout.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

import pytest
from tiny_models import MAX_POSITIONS, ROPE_THETA, tiny_llama_dir  # noqa: F401 - fixture
from vllm_cpu import engine_configs

from longcontext.cli import main

pytest.importorskip("vllm", reason="the printed flags are checked with vLLM's own parser")

TARGET = 4 * MAX_POSITIONS
# (method, extra serve-args words): linear and dynamic are the methods whose window vLLM
# multiplies by the factor itself, yarn the one it does not; one case carries a layout.
CASES: list[tuple[str, list[str]]] = [
    ("linear", []),
    ("dynamic", []),
    ("yarn", []),
    ("yarn", ["-tp", "2", "--pipeline-parallel-size", "2", "-dp", "2"]),
]


def serve_args(capsys: pytest.CaptureFixture[str], *words: str) -> tuple[int, str, str]:
    code = main(["serve-args", *words])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def printed(tiny_llama_dir: Path) -> list[dict[str, Any]]:  # noqa: F811
    """For each case: the printed command, its --json twin, and vLLM's config of the command."""
    records = []
    for method, extra in CASES:
        words = [str(tiny_llama_dir), "--context-length", str(TARGET), "--rope", method, *extra]
        line = _run(words)
        records.append(
            {"method": method, "argv": shlex.split(line), "json": _run([*words, "--json"])}
        )
    configs = engine_configs([{"argv": r["argv"][2:]} for r in records])
    for record, config in zip(records, configs):
        record["config"] = config
    return records


def _run(words: list[str]) -> str:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["serve-args", *words]) == 0
    return out.getvalue()


@pytest.mark.parametrize("case", range(len(CASES)))
def test_vllm_reads_the_printed_command(printed: list[dict[str, Any]], case: int) -> None:
    record = printed[case]
    argv, config = record["argv"], record["config"]
    assert argv[:2] == ["vllm", "serve"]
    assert "error" not in config, config["error"]
    assert config["max_model_len"] == TARGET
    params = config["rope_parameters"]
    assert params["rope_type"] == record["method"]
    assert params["rope_theta"] == ROPE_THETA  # the override replaced the dict whole
    assert params["factor"] == TARGET / MAX_POSITIONS
    # vLLM multiplies the window by the factor for linear only here: the printed override
    # keeps the trained window for it and gives the target for the others.
    expected = MAX_POSITIONS if record["method"] == "linear" else TARGET
    assert config["max_position_embeddings"] == expected
    layout = {"-tp": 1, "--pipeline-parallel-size": 1, "-dp": 1}
    words = CASES[case][1]
    layout.update({w: int(v) for w, v in zip(words[::2], words[1::2])})
    got = [config[f"{k}_parallel_size"] for k in ("tensor", "pipeline", "data")]
    assert got == list(layout.values())


@pytest.mark.parametrize("case", range(len(CASES)))
def test_json_is_the_same_command(printed: list[dict[str, Any]], case: int) -> None:
    from vllm.engine.arg_utils import EngineArgs

    record = printed[case]
    data = json.loads(record["json"])
    assert data["argv"] == record["argv"]
    model_config = EngineArgs(**data["args"]).create_model_config()
    assert model_config.max_model_len == TARGET
    assert model_config.hf_config.rope_parameters == record["config"]["rope_parameters"]


def test_within_the_window_no_scaling(
    tiny_llama_dir: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = serve_args(capsys, str(tiny_llama_dir), "--context-length", "1024")
    assert code == 0 and err == ""
    assert shlex.split(out) == ["vllm", "serve", str(tiny_llama_dir), "--max-model-len", "1024"]
    code, out, err = serve_args(
        capsys, str(tiny_llama_dir), "--context-length", "1024", "--rope", "yarn"
    )
    assert "--hf-overrides" not in out and "--rope yarn ignored" in err
    code, out, _ = serve_args(capsys, str(tiny_llama_dir))
    assert shlex.split(out)[-2:] == ["--max-model-len", str(MAX_POSITIONS)]


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["--context-length", str(TARGET)], "past the model's window of 2048 tokens: add --rope"),
        (["--rope", "yarn"], "--rope yarn needs --context-length"),
        (["-tp", "4"], "tensor_parallel_size=4 does not divide the model's 2 attention heads"),
        (["--pipeline-parallel-size", "3"], "more than the model's 2 layers"),
    ],
)
def test_errors_are_one_line_with_the_fix(
    tiny_llama_dir: Path,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    words: list[str],
    message: str,
) -> None:
    code, out, err = serve_args(capsys, str(tiny_llama_dir), *words)
    assert code == 2 and out == ""
    assert err.startswith("longcontext serve-args: error: ") and message in err
    assert err.count("\n") == 1


def test_missing_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = serve_args(capsys, str(tmp_path / "nothing"), "--context-length", "9000")
    assert code == 2 and "does not exist" in err
