"""How vLLM spreads one model over GPUs and machines, checked before anything loads.

Three sizes multiply: ``tensor_parallel_size`` splits every layer across GPUs (fast links, one
machine), ``pipeline_parallel_size`` gives each GPU or machine a run of layers, and
``data_parallel_size`` runs that many replicas side by side. ``distributed_executor_backend``
says how the workers start: ``"mp"`` (processes on one machine), ``"ray"`` (a Ray cluster,
needed across machines unless each node is launched by hand), ``"uni"`` (one process) or
``"external_launcher"`` (one process per rank started by ``torchrun``).

:class:`Parallelism` holds the four values and refuses, with the fix in the message, what vLLM
would refuse later (after minutes of loading, or in a worker process).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

# vLLM 0.33's ``vllm.config.parallel.DistributedExecutorBackend`` (tested against it).
EXECUTOR_BACKENDS = ("ray", "mp", "uni", "external_launcher")
_SIZES = ("tensor_parallel_size", "pipeline_parallel_size", "data_parallel_size")


@dataclass(frozen=True, slots=True)
class Parallelism:
    """The parallel layout of a vLLM deployment.

    Attributes:
        tensor_parallel_size: GPUs each layer is split across; must divide the model's number
            of attention heads.
        pipeline_parallel_size: stages the layers are cut into; at most the number of layers.
        data_parallel_size: replicas of the whole (tensor x pipeline) group. In one Python
            process vLLM runs one replica, so above 1 it needs ``vllm serve`` (see
            ``longcontext serve-args``) or ``distributed_executor_backend="external_launcher"``.
        distributed_executor_backend: ``"mp"``, ``"ray"``, ``"uni"``, ``"external_launcher"`` or
            None (vLLM picks: ``"mp"`` when the workers fit on this machine).

    Raises:
        ValueError: a size below 1 or not a whole number, an unknown backend, ``"ray"`` without
            Ray installed, or data parallelism in one process.
    """

    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    data_parallel_size: int = 1
    distributed_executor_backend: str | None = None

    def __post_init__(self) -> None:
        for name in _SIZES:
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"{name}={value!r} must be a whole number of at least 1")
        backend = self.distributed_executor_backend
        if backend is not None and backend not in EXECUTOR_BACKENDS:
            raise ValueError(
                f"distributed_executor_backend={backend!r} is not one of {EXECUTOR_BACKENDS} "
                "(or None to let vLLM choose)"
            )
        if backend == "ray" and importlib.util.find_spec("ray") is None:
            raise ValueError(
                "distributed_executor_backend='ray' needs Ray on this machine and every worker: "
                "pip install 'ray[default]', or use 'mp' when all GPUs are on one machine"
            )

    @property
    def world_size(self) -> int:
        """GPUs one replica uses: tensor x pipeline."""
        return self.tensor_parallel_size * self.pipeline_parallel_size

    @property
    def gpus(self) -> int:
        """GPUs the whole deployment uses: tensor x pipeline x data."""
        return self.world_size * self.data_parallel_size

    @property
    def is_default(self) -> bool:
        """One GPU, one replica, vLLM's own choice of executor."""
        return self.gpus == 1 and self.distributed_executor_backend is None

    def check_in_process(self) -> None:
        """Refuse what ``vllm.LLM`` cannot run inside one Python process.

        Raises:
            ValueError: ``data_parallel_size`` above 1 without ``external_launcher``.
        """
        if self.data_parallel_size > 1 and self.distributed_executor_backend != (
            "external_launcher"
        ):
            raise ValueError(
                f"data_parallel_size={self.data_parallel_size} runs {self.data_parallel_size} "
                "engine replicas, which vllm.LLM cannot do in one process: serve the model with "
                f"`vllm serve ... --data-parallel-size {self.data_parallel_size}` (`longcontext "
                "serve-args` prints the command), or start one process per rank with torchrun "
                "and distributed_executor_backend='external_launcher'"
            )

    def check_engine(self, backend: str) -> None:
        """Refuse a split model on an engine other than vLLM.

        Raises:
            ValueError: more than one GPU (or an executor backend) asked of ``"transformers"``.
        """
        if backend != "vllm" and not self.is_default:
            asked = ", ".join(f"{k}={v!r}" for k, v in self.vllm_kwargs().items())
            raise ValueError(
                f"{asked} needs the vLLM backend, but backend {backend!r} runs the model: pass "
                "backend='vllm' on a machine with vLLM and CUDA GPUs"
            )

    def check_model(self, config: Any) -> None:
        """Refuse a split the model's shape does not allow (what vLLM checks at load time).

        Args:
            config: the model's transformers config, or its ``config.json`` as a dict.

        Raises:
            ValueError: ``tensor_parallel_size`` does not divide the attention heads, or
                ``pipeline_parallel_size`` exceeds the number of layers.
        """
        if isinstance(config, Mapping):  # multimodal configs nest the language model's
            text: Any = SimpleNamespace(**config.get("text_config", config))
        else:
            text = config.get_text_config() if hasattr(config, "get_text_config") else config
        heads = getattr(text, "num_attention_heads", None)
        if isinstance(heads, int) and heads % self.tensor_parallel_size:
            fitting = [n for n in range(1, heads + 1) if heads % n == 0]
            raise ValueError(
                f"tensor_parallel_size={self.tensor_parallel_size} does not divide the model's "
                f"{heads} attention heads: use one of {fitting}, and pipeline_parallel_size "
                "for more GPUs"
            )
        layers = getattr(text, "num_hidden_layers", None)
        if isinstance(layers, int) and self.pipeline_parallel_size > layers:
            raise ValueError(
                f"pipeline_parallel_size={self.pipeline_parallel_size} is more than the model's "
                f"{layers} layers: each stage needs at least one layer"
            )

    def vllm_kwargs(self) -> dict[str, Any]:
        """``EngineArgs`` / ``vllm.LLM`` keyword arguments; vLLM's defaults are left out."""
        kwargs: dict[str, Any] = {
            name: getattr(self, name) for name in _SIZES if getattr(self, name) != 1
        }
        if self.distributed_executor_backend is not None:
            kwargs["distributed_executor_backend"] = self.distributed_executor_backend
        return kwargs

    def serve_flags(self) -> list[str]:
        """The same settings as ``vllm serve`` flags (``--tensor-parallel-size 2`` ...)."""
        flags: list[str] = []
        for name, value in self.vllm_kwargs().items():
            flags += [f"--{name.replace('_', '-')}", str(value)]
        return flags
