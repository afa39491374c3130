"""Tensor, pipeline and data parallelism through ``LongContextLLM`` into vLLM, on CPU.

What is real here: vLLM 0.33's ``EngineArgs`` (built from the keyword arguments our vLLM backend
would pass to ``vllm.LLM``), its ``ModelConfig`` of a real tiny Llama checkpoint, its
``ParallelConfig`` and ``ModelConfig.verify_with_parallel_config`` (vLLM's own check that the
heads split over the tensor-parallel GPUs and that the architecture supports pipeline stages).

What is a STAND-IN: in this process ``EngineArgs.create_engine_config()`` has no device
platform (it stops with "Device string must not be empty"), so most tests build the
``ParallelConfig`` from the same ``EngineArgs`` fields themselves, as ``create_engine_config``
does, and call the check ``VllmConfig`` runs on it. One test runs the real
``create_engine_config`` in a child process on vLLM's CPU platform (``tests/vllm_cpu.py``). That
GPUs exist for the world size, and that workers start, is only checkable on GPU machines.
"""

from __future__ import annotations

import importlib.util
import typing
from pathlib import Path
from typing import Any

import pytest
from tiny_models import HEADS, LAYERS, tiny_llama_dir  # noqa: F401 - pytest fixture
from vllm_cpu import engine_configs

pytest.importorskip("vllm", reason="vLLM parallelism is tested where vllm is installed")

from vllm.config import ParallelConfig
from vllm.config.parallel import DistributedExecutorBackend
from vllm.engine.arg_utils import EngineArgs

from longcontext.llm import LongContextLLM
from longcontext.llm.parallel import EXECUTOR_BACKENDS, Parallelism


def vllm_configs(llm: LongContextLLM) -> tuple[Any, Any]:
    """vLLM's ModelConfig and ParallelConfig for the kwargs the backend hands to vllm.LLM."""
    args = EngineArgs(**llm._backend.kwargs)  # type: ignore[attr-defined]
    model_config = args.create_model_config()
    parallel = ParallelConfig(  # stand-in for create_engine_config's own construction
        tensor_parallel_size=args.tensor_parallel_size,
        pipeline_parallel_size=args.pipeline_parallel_size,
        data_parallel_size=args.data_parallel_size,
        distributed_executor_backend=args.distributed_executor_backend,
    )
    return model_config, parallel


def test_backend_names_are_vllms() -> None:
    assert set(EXECUTOR_BACKENDS) == set(typing.get_args(DistributedExecutorBackend))


def test_tensor_and_pipeline_parallel_reach_vllm(tiny_llama_dir: Path) -> None:  # noqa: F811
    llm = LongContextLLM(
        tiny_llama_dir,
        context_length=8192,
        rope="yarn",
        backend="vllm",
        tensor_parallel_size=2,
        pipeline_parallel_size=2,
        distributed_executor_backend="mp",
    )
    model_config, parallel = vllm_configs(llm)
    model_config.verify_with_parallel_config(parallel)  # vLLM's own check passes
    assert (parallel.tensor_parallel_size, parallel.pipeline_parallel_size) == (2, 2)
    assert parallel.world_size == 4 and parallel.distributed_executor_backend == "mp"
    assert model_config.max_model_len == 8192  # the RoPE window is unaffected by the split


def test_defaults_add_nothing(tiny_llama_dir: Path) -> None:  # noqa: F811
    llm = LongContextLLM(tiny_llama_dir, backend="vllm")
    kwargs = llm._backend.kwargs  # type: ignore[attr-defined]
    assert not {"tensor_parallel_size", "pipeline_parallel_size"} & set(kwargs)
    _, parallel = vllm_configs(llm)
    assert parallel.world_size == 1


@pytest.mark.parametrize("size", [1, 2, 3, 4])
def test_tensor_parallel_refused_exactly_when_vllm_refuses(
    tiny_llama_dir: Path,  # noqa: F811
    size: int,
) -> None:
    model_config = EngineArgs(model=str(tiny_llama_dir)).create_model_config()
    try:
        model_config.verify_with_parallel_config(ParallelConfig(tensor_parallel_size=size))
        vllm_error = None
    except ValueError as exc:
        vllm_error = exc
    assert (vllm_error is None) == (HEADS % size == 0)
    if vllm_error is None:
        LongContextLLM(tiny_llama_dir, backend="vllm", tensor_parallel_size=size)
    else:
        with pytest.raises(ValueError, match=rf"tensor_parallel_size={size} does not divide"):
            LongContextLLM(tiny_llama_dir, backend="vllm", tensor_parallel_size=size)


def test_more_stages_than_layers(tiny_llama_dir: Path) -> None:  # noqa: F811
    with pytest.raises(ValueError, match=rf"more than the model's {LAYERS} layers"):
        LongContextLLM(tiny_llama_dir, backend="vllm", pipeline_parallel_size=LAYERS + 1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tensor_parallel_size": 0}, "tensor_parallel_size=0 must be a whole number"),
        ({"pipeline_parallel_size": 1.5}, "pipeline_parallel_size=1.5 must be a whole number"),
        ({"data_parallel_size": True}, "data_parallel_size=True must be a whole number"),
        ({"distributed_executor_backend": "mpi"}, "'mpi' is not one of"),
    ],
)
def test_bad_values_are_refused_before_the_model_is_read(
    kwargs: dict[str, Any], message: str
) -> None:
    # The model path does not exist: the parallel settings are checked first.
    with pytest.raises(ValueError, match=message):
        LongContextLLM("/nonexistent/model", backend="vllm", **kwargs)


def test_transformers_cannot_split_the_model(tiny_llama_dir: Path) -> None:  # noqa: F811
    with pytest.raises(ValueError, match="tensor_parallel_size=2 needs the vLLM backend"):
        LongContextLLM(tiny_llama_dir, backend="transformers", tensor_parallel_size=2)
    # The default layout is fine on any engine.
    LongContextLLM(tiny_llama_dir, backend="transformers", tensor_parallel_size=1)


def test_data_parallel_needs_a_server_or_a_launcher(
    tiny_llama_dir: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ValueError, match=r"vllm serve .*--data-parallel-size 2"):
        LongContextLLM(tiny_llama_dir, backend="vllm", data_parallel_size=2)
    llm = LongContextLLM(
        tiny_llama_dir,
        backend="vllm",
        data_parallel_size=2,
        tensor_parallel_size=2,
        distributed_executor_backend="external_launcher",
    )
    # What torchrun gives each rank; vLLM's external launcher reads it (and turns off its own
    # multiprocessing in the environment, restored after the test).
    for name, value in {
        "RANK": "0",
        "VLLM_ENABLE_V1_MULTIPROCESSING": "1",
    }.items():
        monkeypatch.setenv(name, value)
    model_config, parallel = vllm_configs(llm)
    model_config.verify_with_parallel_config(parallel)
    assert (parallel.tensor_parallel_size, parallel.data_parallel_size) == (2, 2)
    assert parallel.distributed_executor_backend == "external_launcher"


def test_ray_backend_needs_ray(tiny_llama_dir: Path) -> None:  # noqa: F811
    if importlib.util.find_spec("ray") is None:
        with pytest.raises(ValueError, match="needs Ray"):
            LongContextLLM(tiny_llama_dir, backend="vllm", distributed_executor_backend="ray")
    else:
        llm = LongContextLLM(tiny_llama_dir, backend="vllm", distributed_executor_backend="ray")
        assert vllm_configs(llm)[1].distributed_executor_backend == "ray"


def test_whole_engine_config_on_vllms_cpu_platform(tiny_llama_dir: Path) -> None:  # noqa: F811
    """create_engine_config itself (in a child process on vLLM's CPU platform): from our
    keyword arguments and from our `vllm serve` flags parsed by vLLM's own CLI parser."""
    good = LongContextLLM(
        tiny_llama_dir, backend="vllm", tensor_parallel_size=2, pipeline_parallel_size=2
    )
    layout = Parallelism(2, 2, 3, "mp")
    kwargs = good._backend.kwargs  # type: ignore[attr-defined]
    too_wide = {**kwargs, "tensor_parallel_size": 4}  # what our check refuses: does vLLM?
    argv = [str(tiny_llama_dir), *layout.serve_flags()]
    by_kwargs, refused, by_flags = engine_configs(
        [{"kwargs": kwargs}, {"kwargs": too_wide}, {"argv": argv}]
    )
    assert "error" not in by_kwargs, by_kwargs
    assert (by_kwargs["world_size"], by_kwargs["distributed_executor_backend"]) == (4, "mp")
    assert "must be divisible by tensor parallel size (4)" in refused["error"]
    assert "error" not in by_flags, by_flags
    assert [by_flags[f"{k}_parallel_size"] for k in ("tensor", "pipeline", "data")] == [2, 2, 3]
    assert by_flags["distributed_executor_backend"] == "mp"
