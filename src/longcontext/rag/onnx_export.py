"""Export a sentence-transformers model to ONNX once, and quantize it to int8, in a cache folder.

sentence-transformers has ONNX and OpenVINO backends of its own, but they need optimum-onnx or
optimum-intel, which pin transformers below the version vLLM needs here; so the transformer is
exported with ``torch.onnx.export`` (the TorchScript exporter: no onnxscript needed) and run with
ONNX Runtime (:mod:`longcontext.rag.onnx_embeddings`). Pooling and normalisation stay in numpy.

Files are cached by the model's digest (:func:`longcontext.rag.embeddings.model_digest`) and
backend, so new weights under one name export anew. Each is written to a temporary file in the
same folder and renamed into place: a concurrent run finds the whole file or none, and two
runs exporting at once both write complete files (the last rename wins).
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from longcontext.rag.errors import RagError, first_line

# Part of every cached file's name: raise it when the export changes, so old files are not used.
EXPORT_VERSION = 1
OPSET = 17
FILES = {"onnx": "model-fp32.onnx", "onnx-int8": "model-int8.onnx"}


def cache_dir() -> Path:
    """Where longcontext caches derived files: ``$LONGCONTEXT_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/longcontext``, else ``~/.cache/longcontext``."""
    if os.environ.get("LONGCONTEXT_CACHE_DIR"):
        return Path(os.environ["LONGCONTEXT_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "longcontext"


def exported_path(weights: str, backend: str) -> Path:
    """Where the ONNX file of the model with digest ``weights`` for ``backend`` is cached."""
    return cache_dir() / "onnx" / f"{weights}-v{EXPORT_VERSION}" / FILES[backend]


def exported_model(folder: Path, weights: str, backend: str) -> Path:
    """The ONNX file for ``backend`` (``onnx`` or ``onnx-int8``) of the model in ``folder``,
    exported (and quantized) on first use.

    Args:
        folder: The sentence-transformers folder.
        weights: Its :func:`~longcontext.rag.embeddings.model_digest`.
        backend: ``onnx`` (float32) or ``onnx-int8`` (made from the float32 file).

    Raises:
        RagError: The export or quantization failed, or the cache folder is not writable.
    """
    path = exported_path(weights, backend)
    if path.is_file():
        return path
    if backend == "onnx-int8":
        source = exported_model(folder, weights, "onnx")
        _publish(path, lambda draft: _quantize(source, draft), "quantize", folder)
    else:
        _publish(path, lambda draft: _export(folder, draft), "export", folder)
    return path


def _publish(path: Path, make: Callable[[Path], None], verb: str, folder: Path) -> None:
    """Run ``make`` into a temporary file next to ``path``, sync it, and rename it into place."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise RagError(
            f"cannot write the ONNX cache at {path.parent}: {exc.strerror or exc}; set "
            "LONGCONTEXT_CACHE_DIR to a writable folder"
        ) from exc
    draft = Path(name)
    if sys.stderr.isatty():  # 20-40 s the first time, silent otherwise: say why it waits
        message = f"one-time ONNX {verb} of the embeddings model (cached in {path.parent})"
        print(f"longcontext: {message}", file=sys.stderr, flush=True)
    try:
        make(draft)
        with draft.open("rb") as file:
            os.fsync(file.fileno())
        draft.chmod(0o644)  # mkstemp makes it private; the cache is readable like any other
        os.replace(draft, path)
    except RagError:
        raise
    except Exception as exc:  # torch, ONNX and OS errors come in many types
        raise RagError(
            f"could not {verb} the embeddings at {folder} to ONNX: {first_line(exc)}; use "
            "--embeddings-backend torch"
        ) from exc
    finally:
        draft.unlink(missing_ok=True)


def _export(folder: Path, target: Path) -> None:
    """Export the transformer of the sentence-transformers model in ``folder`` to ``target``:
    token ids in, last hidden state out, batch and sequence lengths left free."""
    try:
        import torch
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise RagError(
            "exporting embeddings to ONNX needs torch and sentence-transformers once: pip "
            "install 'longcontext[hf]', or copy an exported file into the cache"
        ) from exc

    model = SentenceTransformer(str(folder), device="cpu")
    transformer: Any = model[0].auto_model
    transformer.eval()
    names = [
        n
        for n in ("input_ids", "attention_mask", "token_type_ids")
        if n in model.tokenizer.model_input_names
    ]

    class LastHiddenState(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer  # a submodule: its weights export as parameters

        def forward(self, *inputs: Any) -> Any:
            # Keywords, not positions: transformers 5 models take use_cache etc. after the inputs.
            return self.transformer(**dict(zip(names, inputs))).last_hidden_state

    sample = model.tokenizer(
        ["an example", "a longer example text"], padding=True, return_tensors="pt"
    )
    axes = {name: {0: "batch", 1: "sequence"} for name in [*names, "last_hidden_state"]}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer notes on constants that do not vary here
        torch.onnx.export(
            LastHiddenState(),
            tuple(sample[n] for n in names),
            str(target),
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )


def _quantize(source: Path, target: Path) -> None:
    """Dynamic int8 quantization of ``source``: weights per output channel (per-tensor scales
    lost too much: cosine 0.93 to float32 against 0.99), activations quantized at run time."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.disable(logging.WARNING)  # its advice to pre-process applies to static quantization
    try:
        quantize_dynamic(source, target, weight_type=QuantType.QInt8, per_channel=True)
    finally:
        logging.disable(logging.NOTSET)
