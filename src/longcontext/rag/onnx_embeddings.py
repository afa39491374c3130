"""Run an exported sentence-transformers model with ONNX Runtime or OpenVINO, without torch.

What the ``torch`` backend does through sentence-transformers is done here with the model
folder's own files: the ``tokenizers`` library reads ``tokenizer.json`` (truncated at the
folder's ``max_seq_length``, padded per batch), ONNX Runtime (or OpenVINO, for the
``openvino`` backend) runs the exported transformer, and
numpy pools as ``1_Pooling/config.json`` says (mean or CLS token) and normalises. Only the
plain layout is supported: Transformer, Pooling, optionally Normalize; a model with more modules
(Dense layers, prompts) must use ``--embeddings-backend torch``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np

from longcontext.rag.embeddings import Embedder, EmbeddingsFingerprint, Matrix
from longcontext.rag.errors import RagError
from longcontext.tokenizers import HuggingFaceTokenizer, Tokenizer

Pooling = Literal["mean", "cls"]
_LEGACY_MODES = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls"}
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass(frozen=True, slots=True)
class Layout:
    """What a sentence-transformers folder asks of the ONNX path.

    Attributes:
        folder: The model folder.
        pooling: ``mean`` over the attended tokens, or the ``cls`` token's vector.
        dimension: Length of each vector.
        max_seq_length: Most tokens the model reads, special tokens included.
        lower_case: Whether sentence-transformers lowercases texts before tokenizing them.
    """

    folder: Path
    pooling: Pooling
    dimension: int
    max_seq_length: int
    lower_case: bool = False


def read_layout(folder: Path) -> Layout:
    """The layout of the sentence-transformers folder ``folder``, checked.

    Raises:
        RagError: The folder holds modules, a pooling mode or prompts the ONNX path does not
            run; the message says to use ``--embeddings-backend torch``.
    """

    def refuse(why: str) -> RagError:
        return RagError(
            f"--embeddings-backend onnx cannot run the model at {folder}: {why}; use "
            "--embeddings-backend torch"
        )

    modules = _read_json(folder / "modules.json", refuse)
    types = [str(m.get("type")) for m in modules] if isinstance(modules, list) else []
    # Newer sentence-transformers write other module paths (sentence_transformers.base.modules.
    # transformer.Transformer for sentence_transformers.models.Transformer): the class name says
    # what a module does.
    names = [t.rsplit(".", 1)[-1] if t.startswith("sentence_transformers.") else t for t in types]
    if names not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        raise refuse(f"its modules are {names or types}, not Transformer, Pooling and Normalize")
    if modules[0].get("path") not in ("", "."):
        raise refuse("its transformer is not at the top of the folder")
    if not (folder / "tokenizer.json").is_file():
        raise refuse("it has no tokenizer.json (a fast tokenizer)")
    pooling_config = _read_json(folder / modules[1]["path"] / "config.json", refuse)
    modes = _pooling_modes(pooling_config)
    if len(modes) != 1 or modes[0] not in ("mean", "cls"):
        raise refuse(f"its pooling is {modes}; only mean or CLS-token pooling is run")
    dimension = pooling_config.get("embedding_dimension") or pooling_config.get(
        "word_embedding_dimension"
    )
    if not isinstance(dimension, int) or dimension < 1:
        raise refuse("its pooling declares no embedding dimension")
    settings = folder / "config_sentence_transformers.json"
    if settings.is_file() and _read_json(settings, refuse).get("default_prompt_name"):
        raise refuse("it adds a default prompt to every text")
    bert = folder / "sentence_bert_config.json"
    config = _read_json(bert, refuse) if bert.is_file() else {}
    limit = config.get("max_seq_length") or _model_limit(folder)
    if not isinstance(limit, int) or limit < 2:
        raise refuse("it declares no max_seq_length")
    return Layout(
        folder=folder,
        pooling=modes[0],  # type: ignore[arg-type]
        dimension=dimension,
        max_seq_length=limit,
        lower_case=bool(config.get("do_lower_case", False)),
    )


def _pooling_modes(config: dict[str, Any]) -> list[str]:
    """The pooling modes a Pooling config turns on: ``pooling_mode`` (a name or a list, as
    sentence-transformers 6 writes it), or the older ``pooling_mode_*`` flags (none on means
    mean, as sentence-transformers reads them)."""
    if "pooling_mode" in config:
        mode = config["pooling_mode"]
        return [mode] if isinstance(mode, str) else [str(m) for m in mode]
    flags = [k for k, on in config.items() if k.startswith("pooling_mode_") and on]
    return [_LEGACY_MODES.get(k, k) for k in flags] or ["mean"]


def _read_json(path: Path, refuse: Any) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise refuse(f"cannot read {path.name} ({exc})") from exc


def _model_limit(folder: Path) -> int | None:
    """sentence-transformers' limit without max_seq_length: the smaller of the model's positions
    and the tokenizer's ``model_max_length``."""
    limits = []
    for name, key in (
        ("config.json", "max_position_embeddings"),
        ("tokenizer_config.json", "model_max_length"),
    ):
        try:
            value = json.loads((folder / name).read_text(encoding="utf-8")).get(key)
        except (OSError, ValueError):
            continue
        if isinstance(value, int) and value < 1 << 20:  # transformers writes 1e30 for "none"
            limits.append(value)
    return min(limits, default=None)


class OnnxEmbedder(Embedder):
    """An exported model run by ONNX Runtime (``--embeddings-backend onnx`` or ``onnx-int8``) or
    by OpenVINO (``openvino``, on the float32 file; the backend comes from ``fingerprint``).

    Args:
        model_file: The ONNX file (:func:`longcontext.rag.onnx_export.exported_model`).
        layout: The model folder's layout (:func:`read_layout`).
        fingerprint: What the vectors are made with.
    """

    def __init__(
        self, model_file: Path, layout: Layout, fingerprint: EmbeddingsFingerprint
    ) -> None:
        from tokenizers import Tokenizer as RustTokenizer

        self.layout = layout
        self.fingerprint = fingerprint
        self.model_file = model_file
        if fingerprint.backend == "openvino":
            self._inputs, self._infer = _openvino(model_file)
        else:
            self._inputs, self._infer = _onnxruntime(model_file)
        self._backend = RustTokenizer.from_file(str(layout.folder / "tokenizer.json"))
        # The folder's tokenizer.json may carry its own truncation and padding (all-MiniLM-L6-v2
        # pads to 128): sentence-transformers truncates at max_seq_length; we pad per batch.
        padding = self._backend.padding or {}  # the pad id, before padding is turned off
        self._pad_id = int(padding.get("pad_id", 0))
        self._backend.enable_truncation(layout.max_seq_length)
        self._backend.no_padding()

    @cached_property
    def tokenizer(self) -> Tokenizer:
        return HuggingFaceTokenizer(self._backend, name=str(self.layout.folder))

    @property
    def max_tokens(self) -> int:
        return self.layout.max_seq_length - self._backend.num_special_tokens_to_add(False)

    def encode(self, texts: list[str], batch_size: int) -> Matrix:
        if not texts:
            return np.zeros((0, self.fingerprint.dimension), dtype=np.float32)
        if self.layout.lower_case:
            texts = [t.lower() for t in texts]
        encodings = self._backend.encode_batch(texts)
        # Longest first, so each batch pads to about its own length; rows go back in place.
        order = sorted(range(len(texts)), key=lambda i: -len(encodings[i].ids))
        out = np.empty((len(texts), self.fingerprint.dimension), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            out[rows] = self._run([encodings[i] for i in rows])
        return out

    def _run(self, encodings: list[Any]) -> Matrix:
        """Unit vectors of one batch of encodings."""
        width = max(len(e.ids) for e in encodings)
        arrays = {name: np.zeros((len(encodings), width), dtype=np.int64) for name in _INPUTS}
        arrays["input_ids"].fill(self._pad_id)
        for row, encoding in enumerate(encodings):
            size = len(encoding.ids)
            arrays["input_ids"][row, :size] = encoding.ids
            arrays["attention_mask"][row, :size] = 1
            arrays["token_type_ids"][row, :size] = encoding.type_ids
        hidden = self._infer({name: arrays[name] for name in self._inputs})
        mask = arrays["attention_mask"]
        if self.layout.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            weights = mask[:, :, None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        # As torch.nn.functional.normalize: a zero vector stays zero.
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        unit: Matrix = (pooled / np.maximum(norms, 1e-12)).astype(np.float32)
        return unit


Infer = Callable[[Mapping[str, np.ndarray]], np.ndarray]


def _onnxruntime(model_file: Path) -> tuple[list[str], Infer]:
    """The model's input names and a call that returns its last hidden state, on ONNX Runtime."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: no notes about unused initializers
    session = onnxruntime.InferenceSession(
        str(model_file), options, providers=["CPUExecutionProvider"]
    )

    def infer(inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        hidden: np.ndarray = session.run(None, dict(inputs))[0]
        return hidden

    return [i.name for i in session.get_inputs()], infer


def _openvino(model_file: Path) -> tuple[list[str], Infer]:
    """The same on OpenVINO's CPU plugin, which picks its own precision (bfloat16 on CPUs that
    have it); one request, used by one thread at a time."""
    import openvino

    compiled = openvino.Core().compile_model(
        str(model_file), "CPU", {"PERFORMANCE_HINT": "LATENCY"}
    )
    request = compiled.create_infer_request()
    lock = threading.Lock()

    def infer(inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        with lock:  # the request's output buffer is reused by its next call: copy it out
            return np.array(request.infer(dict(inputs))[0], dtype=np.float32)

    return [port.any_name for port in compiled.inputs], infer
