"""vLLM's whole engine configuration, built on this CPU-only machine, in a child process.

``EngineArgs.create_engine_config()`` and vLLM's CLI parser need a device platform. vLLM picks
its CPU platform when ``VLLM_TARGET_DEVICE=cpu`` is set before it first looks, which cannot be
undone inside a test session (the platform is resolved once per process), so each batch of cases
runs in one child process. Nothing is stubbed: the child runs vLLM's own ``make_arg_parser``
(what ``vllm serve`` parses), ``validate_parsed_serve_args``, ``AsyncEngineArgs.from_cli_args``
and ``create_engine_config`` (``ModelConfig``, ``ParallelConfig``, and the checks ``VllmConfig``
runs on them, such as attention heads divisible by the tensor-parallel size). What stays out of
reach without GPUs: that the GPUs exist and the workers start.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

_CHILD = r"""
import json, sys
from vllm.engine.arg_utils import AsyncEngineArgs, EngineArgs
from vllm.entrypoints.common.cli_args import make_arg_parser, validate_parsed_serve_args
from vllm.utils.argparse_utils import FlexibleArgumentParser

parser = make_arg_parser(FlexibleArgumentParser())
results = []
for case in json.load(sys.stdin):
    try:
        if "argv" in case:  # the words after `vllm serve`
            ns = parser.parse_args(case["argv"])
            if ns.model_tag is not None:  # as `vllm serve` does
                ns.model = ns.model_tag
            validate_parsed_serve_args(ns)
            args = AsyncEngineArgs.from_cli_args(ns)
        else:
            args = EngineArgs(**case["kwargs"])
        config = args.create_engine_config()
        par = config.parallel_config
        results.append({
            "max_model_len": config.model_config.max_model_len,
            "rope_parameters": config.model_config.hf_config.rope_parameters,
            "max_position_embeddings": config.model_config.hf_config.max_position_embeddings,
            "tensor_parallel_size": par.tensor_parallel_size,
            "pipeline_parallel_size": par.pipeline_parallel_size,
            "data_parallel_size": par.data_parallel_size,
            "distributed_executor_backend": par.distributed_executor_backend,
            "world_size": par.world_size,
        })
    except Exception as exc:  # reported per case; the test decides
        results.append({"error": f"{type(exc).__name__}: {exc}"})
print("RESULTS=" + json.dumps(results))
"""


def engine_configs(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Build vLLM's engine config for each case: ``{"argv": [...]}`` (``vllm serve`` words) or
    ``{"kwargs": {...}}`` (``EngineArgs`` keyword arguments). Each result holds the config's
    facts, or ``{"error": "..."}`` with vLLM's own message."""
    env = {**os.environ, "VLLM_TARGET_DEVICE": "cpu", "VLLM_LOGGING_LEVEL": "ERROR"}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULTS=")]
    if done.returncode or not lines:
        raise RuntimeError(f"the vLLM child failed ({done.returncode}):\n{done.stderr[-3000:]}")
    results: list[dict[str, Any]] = json.loads(lines[-1].removeprefix("RESULTS="))
    return results
