"""LoRA and LongLoRA adapters: tell the kinds apart, check they fit the base, merge them once.

Three kinds of fine-tune reach ``LongContextLLM``:

* a merged checkpoint (LongLoRA's released ``*-longlora-*`` models): just a model directory,
  passed as ``model``;
* a plain LoRA adapter (``adapter_config.json`` + ``adapter_model.*`` touching attention/MLP
  only): vLLM serves it with a ``LoRARequest``;
* an adapter that also trains whole tensors: peft's ``modules_to_save`` or LongLoRA's
  ``trainable_params.bin`` with the embeddings and norms. vLLM's LoRA cannot carry those, so it
  is merged into the base weights once and the merged checkpoint is kept in a cache directory
  keyed by hashes of the base and the adapter.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
TRAINABLE_PARAMS = "trainable_params.bin"  # LongLoRA: embeddings and norms trained in full
_PEFT_PREFIX = "base_model.model."
_HASH_SAMPLE = 1 << 20  # bytes read from each end of a base weight file for its fingerprint


@dataclass(frozen=True)
class Adapter:
    """A LoRA adapter directory as found on disk.

    Attributes:
        path: the adapter directory.
        config: the parsed ``adapter_config.json``.
        weights: the ``adapter_model.*`` file.
        trainable_params: LongLoRA's ``trainable_params.bin``, when there is one.
    """

    path: Path
    config: dict[str, Any]
    weights: Path
    trainable_params: Path | None

    @property
    def base_model(self) -> str | None:
        """The base model the adapter was trained on, as peft recorded it."""
        base = self.config.get("base_model_name_or_path")
        return str(base) if base else None

    @property
    def rank(self) -> int:
        """The LoRA rank ``r``, the larger of the default and any per-module rank."""
        ranks = [
            int(self.config.get("r", 8)),
            *map(int, self.config.get("rank_pattern", {}).values()),
        ]
        return max(ranks)

    @property
    def is_plain_lora(self) -> bool:
        """Only low-rank updates, no whole tensors: servable by vLLM's ``LoRARequest``."""
        return self.trainable_params is None and not self.config.get("modules_to_save")


def inspect_adapter(path: str | os.PathLike[str]) -> Adapter:
    """Read an adapter directory; a clear error when it is not one."""
    directory = Path(path).expanduser()
    if not directory.is_dir():
        raise FileNotFoundError(f"LoRA adapter path {os.fspath(path)!r} is not a directory")
    config_file = directory / ADAPTER_CONFIG
    if not config_file.is_file():
        if (directory / "config.json").is_file():
            raise ValueError(
                f"lora={os.fspath(path)!r} is a full model (config.json, no {ADAPTER_CONFIG}): a "
                "merged checkpoint; pass it as model= instead of lora="
            )
        raise ValueError(f"lora={os.fspath(path)!r} has no {ADAPTER_CONFIG}: not a LoRA adapter")
    config = json.loads(config_file.read_text(encoding="utf-8"))
    if config.get("peft_type", "LORA") != "LORA":
        raise ValueError(f"lora={os.fspath(path)!r} is a {config['peft_type']} adapter, not LoRA")
    weights = next((directory / n for n in ADAPTER_WEIGHTS if (directory / n).is_file()), None)
    if weights is None:
        raise ValueError(f"lora={os.fspath(path)!r} has none of {ADAPTER_WEIGHTS}")
    trainable = directory / TRAINABLE_PARAMS
    return Adapter(directory.resolve(), config, weights, trainable if trainable.is_file() else None)


# -- shapes -----------------------------------------------------------------------------------


def _load_tensors(path: Path) -> dict[str, Any]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(path)))
    import torch

    loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(loaded, dict):
        raise ValueError(f"{path} does not hold a state dict")
    return loaded


def _base_key(key: str) -> str:
    return key.removeprefix(_PEFT_PREFIX)


def base_weight_shapes(model_dir: str | os.PathLike[str]) -> dict[str, tuple[int, ...]]:
    """Shapes of a local checkpoint's tensors, from the safetensors headers (no weights load)."""
    from safetensors import safe_open

    shapes: dict[str, tuple[int, ...]] = {}
    for file in sorted(Path(model_dir).glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 - safe_open is not a mapping
                shapes[key] = tuple(handle.get_slice(key).get_shape())
    return shapes


def expected_shapes(adapter: Adapter) -> Iterator[tuple[str, tuple[int, ...], str]]:
    """What the adapter says about the base: (base tensor name, shape it needs, source key).

    A LoRA pair ``A: (r, in)``, ``B: (out, r)`` needs a base weight ``(out, in)``; a whole tensor
    (``modules_to_save``, ``trainable_params.bin``) needs a base tensor of its own shape, except
    embeddings and output heads, which may grow (LongLoRA adds a pad token).
    """
    tensors = _load_tensors(adapter.weights)
    if adapter.trainable_params is not None:
        tensors.update(_load_tensors(adapter.trainable_params))
    for key, tensor in tensors.items():
        name = _base_key(key)
        if ".lora_A." in name:
            b_key = key.replace(".lora_A.", ".lora_B.")
            if b_key in tensors:
                module = name.split(".lora_A.")[0]
                shape = (int(tensors[b_key].shape[0]), int(tensor.shape[1]))
                yield f"{module}.weight", shape, key
        elif ".lora_B." not in name and ".lora_" not in name:
            yield name.replace(".modules_to_save.default", ""), tuple(tensor.shape), key


def _resizable(name: str) -> bool:
    return "embed_tokens" in name or "lm_head" in name or "wte" in name


def check_adapter_fits(base: str, adapter: Adapter) -> None:
    """Raise ``ValueError`` naming both models when the adapter was made for another base.

    Only a local base is checked here (its shapes come from the safetensors headers); for a hub
    id, peft's own loading raises the mismatch, which ``merged_checkpoint`` rewords.
    """
    shapes = base_weight_shapes(base) if Path(base).is_dir() else {}
    if not shapes:
        return
    for name, needed, source in expected_shapes(adapter):
        have = shapes.get(name)
        if have is None:
            raise ValueError(_mismatch(base, adapter, f"{source} targets {name}, which it lacks"))
        if have != needed and not (_resizable(name) and have[1:] == needed[1:]):
            raise ValueError(
                _mismatch(
                    base, adapter, f"{name} is {list(have)} but {source} needs {list(needed)}"
                )
            )


def _mismatch(base: str, adapter: Adapter, detail: str) -> str:
    trained_on = adapter.base_model or "an unrecorded base model"
    return (
        f"LoRA adapter {str(adapter.path)!r} (trained on {trained_on!r}) does not fit base model "
        f"{base!r}: {detail}; pass the base model the adapter was made for"
    )


# -- merging ----------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """``$LONGCONTEXT_CACHE/merged``, else ``~/.cache/longcontext/merged``."""
    root = os.environ.get("LONGCONTEXT_CACHE") or Path.home() / ".cache" / "longcontext"
    return Path(root) / "merged"


def _hash_files(files: Iterable[Path], digest: Any, *, sample: bool) -> None:
    for file in sorted(files):
        digest.update(file.name.encode())
        size = file.stat().st_size
        digest.update(str(size).encode())
        with file.open("rb") as handle:
            if not sample or size <= 2 * _HASH_SAMPLE:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            else:  # a multi-GB base: its header, size and both ends identify it
                digest.update(handle.read(_HASH_SAMPLE))
                handle.seek(-_HASH_SAMPLE, os.SEEK_END)
                digest.update(handle.read(_HASH_SAMPLE))


def merge_key(base: str, adapter: Adapter) -> str:
    """A cache key from the base (config and weight fingerprints) and the adapter (all bytes)."""
    digest = hashlib.sha256()
    base_dir = Path(base)
    if base_dir.is_dir():
        files = [p for p in base_dir.iterdir() if p.is_file() and not p.name.startswith(".")]
        _hash_files(files, digest, sample=True)
    else:
        digest.update(base.encode())
    digest.update(b"\0adapter\0")
    _hash_files([p for p in adapter.path.iterdir() if p.is_file()], digest, sample=False)
    return digest.hexdigest()[:24]


def merged_checkpoint(
    base: str, adapter: Adapter, *, cache_dir: str | os.PathLike[str] | None = None
) -> Path:
    """The base with the adapter merged in, built once and then reused from ``cache_dir``."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = root / merge_key(base, adapter)
    if (target / "config.json").is_file():
        logger.info("reusing merged checkpoint %s", target)
        return target
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".merging-", dir=root))
    try:
        merge_adapter(base, adapter).save_pretrained(str(work))
        _copy_tokenizer(base, adapter, work)
        try:
            work.rename(target)
        except OSError:  # another process finished the same merge first
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    logger.info("merged %s into %s -> %s", adapter.path, base, target)
    return target


def merge_adapter(base: str, adapter: Adapter) -> Any:
    """Load the base, merge the low-rank updates (``merge_and_unload``), then load whole trained
    tensors (``modules_to_save`` via peft, ``trainable_params.bin`` here); return the model."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    trainable = _load_tensors(adapter.trainable_params) if adapter.trainable_params else {}
    trainable = {_base_key(k): v for k, v in trainable.items()}
    _grow_vocabulary(model, trainable)
    try:
        peft_model = PeftModel.from_pretrained(model, str(adapter.path))
    except RuntimeError as error:  # size mismatch when loading the adapter's state dict
        raise ValueError(_mismatch(base, adapter, str(error).splitlines()[0])) from error
    merged = peft_model.merge_and_unload()
    if trainable:
        missing = [k for k in trainable if k not in merged.state_dict()]
        if missing:
            raise ValueError(_mismatch(base, adapter, f"{TRAINABLE_PARAMS} has unknown {missing}"))
        merged.load_state_dict(trainable, strict=False)
    return merged


def _grow_vocabulary(model: Any, trainable: dict[str, Any]) -> None:
    """LongLoRA adds a pad token: make room for the larger trained embedding before loading it."""
    rows = [t.shape[0] for k, t in trainable.items() if "embed_tokens" in k or "lm_head" in k]
    if rows and max(rows) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(max(rows))


def _copy_tokenizer(base: str, adapter: Adapter, out: Path) -> None:
    """The adapter's tokenizer when it ships one (it may add tokens), else the base's."""
    from transformers import AutoTokenizer

    has_own = any((adapter.path / n).is_file() for n in ("tokenizer.json", "tokenizer.model"))
    AutoTokenizer.from_pretrained(str(adapter.path) if has_own else base).save_pretrained(str(out))
