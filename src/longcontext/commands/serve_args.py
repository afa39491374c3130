"""``longcontext serve-args MODEL --context-length N --rope yarn``: the ``vllm serve`` command.

Most deployments run ``vllm serve`` on GPU machines and the RAG application elsewhere. This
prints the exact command line that serves ``MODEL`` at the scaled window: the RoPE scaling as
``--hf-overrides`` (from :meth:`longcontext.rope.RopeScaling.vllm_kwargs`, the same values
``LongContextLLM`` gives vLLM in process), ``--max-model-len`` and the parallel layout. Only the
model's ``config.json`` is read; nothing heavy is imported.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from typing import Any

from longcontext.commands import UsageError, at_least

HELP = "Print the `vllm serve` command that serves a model at a scaled context length."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from longcontext.llm.parallel import EXECUTOR_BACKENDS
    from longcontext.rope import RopeScaling

    parser.add_argument("model", metavar="MODEL", help="local model folder or Hugging Face id")
    parser.add_argument(
        "--context-length",
        type=at_least(1),
        default=None,
        metavar="N",
        help="window to serve, in tokens (default: the model's own)",
    )
    parser.add_argument(
        "--rope",
        choices=RopeScaling.METHODS,
        default=None,
        help="RoPE scaling method, needed when N is past the model's window (default: none)",
    )
    parallel = parser.add_argument_group("parallelism (see docs/scaling.md)")
    for name, short, what in (
        ("tensor", "-tp", "GPUs each layer is split across; must divide the attention heads"),
        ("pipeline", "-pp", "stages the layers are cut into (one per GPU or machine)"),
        ("data", "-dp", "replicas of the whole model"),
    ):
        parallel.add_argument(
            f"--{name}-parallel-size",
            short,
            type=at_least(1),
            default=1,
            metavar="K",
            help=what,
        )
    parallel.add_argument(
        "--distributed-executor-backend",
        choices=EXECUTOR_BACKENDS,
        default=None,
        help="how workers start: mp (one machine), ray (a Ray cluster, across machines)... "
        "(default: vLLM's choice)",
    )
    parser.add_argument(
        "--trust-remote-code", action="store_true", help="passed on to vllm serve as given"
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the engine arguments (EngineArgs / vllm.LLM keywords) and argv as JSON",
    )


def run(args: argparse.Namespace) -> int:
    engine_args, notes = serve_arguments(
        args.model,
        context_length=args.context_length,
        rope=args.rope,
        parallel={
            "tensor_parallel_size": args.tensor_parallel_size,
            "pipeline_parallel_size": args.pipeline_parallel_size,
            "data_parallel_size": args.data_parallel_size,
            "distributed_executor_backend": args.distributed_executor_backend,
        },
        trust_remote_code=args.trust_remote_code,
    )
    argv = serve_argv(engine_args)
    for note in notes:
        print(f"longcontext serve-args: {note}", file=sys.stderr)
    if args.json:
        print(json.dumps({"args": engine_args, "argv": argv}, indent=2))
    else:
        print(shlex.join(argv))
    return 0


def serve_arguments(
    model: str,
    *,
    context_length: int | None,
    rope: str | None,
    parallel: dict[str, Any],
    trust_remote_code: bool = False,
) -> tuple[dict[str, Any], list[str]]:
    """The ``EngineArgs`` keyword arguments that serve ``model`` (in vLLM's own order of
    precedence: the model, the window, the overrides, the layout) and notes for the user.

    Raises:
        UsageError: the model's config cannot be read, the window needs a ``--rope`` method, or
            the layout does not fit the model.
    """
    from longcontext.llm.parallel import Parallelism
    from longcontext.rope import RopeScaling, read_model_rope
    from longcontext.rope.model import _load_config_dict

    try:
        config = _load_config_dict(model)
        window = read_model_rope(config).window
        layout = Parallelism(**parallel)
        layout.check_model(config)
    except (OSError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    notes: list[str] = []
    kwargs: dict[str, Any] = {"model": model}
    if rope is not None and context_length is None:
        raise UsageError(f"--rope {rope} needs --context-length, the window to scale the model to")
    if context_length is None:
        kwargs["max_model_len"] = window
    elif context_length <= window:
        if rope is not None:
            notes.append(
                f"--context-length {context_length} is within the model's window of {window} "
                f"tokens: no RoPE scaling is needed, so none is applied (--rope {rope} ignored)"
            )
        kwargs["max_model_len"] = context_length
    elif rope is None:
        raise UsageError(
            f"--context-length {context_length} is past the model's window of {window} tokens: "
            "add --rope yarn (or linear, dynamic, longrope, llama3) to scale it"
        )
    else:
        try:
            kwargs.update(RopeScaling.for_target(config, context_length, rope).vllm_kwargs())
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    if trust_remote_code:
        kwargs["trust_remote_code"] = True
    kwargs.update(layout.vllm_kwargs())
    return kwargs, notes


def serve_argv(engine_args: dict[str, Any]) -> list[str]:
    """``["vllm", "serve", MODEL, "--flag", "value", ...]`` for ``EngineArgs`` keywords."""
    rest = {k: v for k, v in engine_args.items() if k != "model"}
    argv = ["vllm", "serve", str(engine_args["model"])]
    for name, value in rest.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif isinstance(value, dict):
            argv += [flag, json.dumps(value, separators=(",", ":"))]
        else:
            argv += [flag, str(value)]
    return argv
