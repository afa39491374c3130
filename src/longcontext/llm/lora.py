"""LoRA and LongLoRA adapters: tell the kinds apart, check they fit the base, merge them once.

Three kinds of fine-tune reach ``LongContextLLM``:

* a merged checkpoint (LongLoRA's released ``*-longlora-*`` models): just a model directory,
  passed as ``model``;
* a plain LoRA adapter (``adapter_config.json`` + ``adapter_model.*`` touching attention/MLP
  only): vLLM serves it with a ``LoRARequest``;
* an adapter that also trains whole tensors: peft's ``modules_to_save`` or LongLoRA's
  ``trainable_params.bin`` with the embeddings and norms. vLLM's LoRA cannot carry those, so it
  is merged into the base weights once and the merged checkpoint is kept in a cache directory
  keyed by the SHA-256 of every file of the base and the adapter.
"""

from __future__ import annotations

import contextlib
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
# Written by `longcontext finetune`: how the adapter was trained, and the window it serves.
RUN_FILE = "longcontext_finetune.json"
_PEFT_PREFIX = "base_model.model."
_HASH_BLOCK = 1 << 20  # bytes hashed at a time


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


class _Digests:
    """SHA-256 of whole files, kept in ``.digests.json`` in the merge cache by path, size and
    modification time: a multi-GB base is read once, not on every start."""

    def __init__(self, root: Path | None) -> None:
        self.file = root / ".digests.json" if root is not None else None
        self.known: dict[str, list[Any]] = {}
        self.changed = False
        if self.file is not None and self.file.is_file():
            with contextlib.suppress(OSError, ValueError):
                loaded = json.loads(self.file.read_text(encoding="utf-8"))
                self.known = loaded if isinstance(loaded, dict) else {}

    def of(self, file: Path) -> str:
        stat = file.stat()
        key = str(file.resolve())
        cached = self.known.get(key)
        if isinstance(cached, list) and cached[:2] == [stat.st_size, stat.st_mtime_ns]:
            return str(cached[2])
        digest = hashlib.sha256()
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(_HASH_BLOCK), b""):
                digest.update(block)
        self.known[key] = [stat.st_size, stat.st_mtime_ns, digest.hexdigest()]
        self.changed = True
        return digest.hexdigest()

    def save(self) -> None:
        """Write the digests back (atomically: a concurrent reader sees the old or new file)."""
        if self.file is None or not self.changed:
            return
        self.file.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=".digests-", dir=self.file.parent)
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(self.known, out)
        os.replace(temporary, self.file)


def _hash_files(files: Iterable[Path], digest: Any, digests: _Digests) -> None:
    for file in sorted(files):
        digest.update(file.name.encode() + b"\0" + digests.of(file).encode())


def merge_key(
    base: str, adapter: Adapter, *, cache_dir: str | os.PathLike[str] | None = None
) -> str:
    """A cache key from the content of every file of a local base (a hub base: its id and the
    commit cached locally) and of the adapter.

    Every byte counts: two bases that differ anywhere get two keys. The files' digests are
    kept in ``cache_dir`` (by path, size and modification time) when it is given.
    """
    digests = _Digests(Path(cache_dir) if cache_dir is not None else None)
    digest = hashlib.sha256()
    base_dir = Path(base)
    if base_dir.is_dir():
        files = [p for p in base_dir.iterdir() if p.is_file() and not p.name.startswith(".")]
        _hash_files(files, digest, digests)
    else:
        digest.update(f"{base}@{_hub_commit(base)}".encode())
    digest.update(b"\0adapter\0")
    _hash_files([p for p in adapter.path.iterdir() if p.is_file()], digest, digests)
    digests.save()
    return digest.hexdigest()[:24]


def _hub_commit(model_id: str) -> str | None:
    """The commit of a hub model in the local Hugging Face cache (a new revision is another
    base), or ``None`` when it is not downloaded yet."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(model_id, "config.json")
    except ValueError:  # not a valid repository id
        return None
    return Path(found).parent.name if isinstance(found, str) else None


def merged_checkpoint(
    base: str,
    adapter: Adapter,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    trust_remote_code: bool = False,
) -> Path:
    """The base with the adapter merged in, built once and then reused from ``cache_dir``."""
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = root / merge_key(base, adapter, cache_dir=root)
    if (target / "config.json").is_file():
        logger.info("reusing merged checkpoint %s", target)
        return target
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".merging-", dir=root))
    try:
        merge_adapter(base, adapter, trust_remote_code=trust_remote_code).save_pretrained(str(work))
        _copy_tokenizer(base, adapter, work, trust_remote_code)
        if not Path(base).is_dir():  # a hub base is downloaded now: its commit is known
            target = root / merge_key(base, adapter, cache_dir=root)
        try:
            work.rename(target)
        except OSError:  # another process finished the same merge first
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    logger.info("merged %s into %s -> %s", adapter.path, base, target)
    return target


def merge_adapter(base: str, adapter: Adapter, *, trust_remote_code: bool = False) -> Any:
    """Load the base, merge the low-rank updates (``merge_and_unload``), then load whole trained
    tensors (``modules_to_save`` via peft, ``trainable_params.bin`` here); return the model."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    # float32: the low-rank updates are added at full precision, whatever dtype serves them.
    model = AutoModelForCausalLM.from_pretrained(
        base, dtype=torch.float32, trust_remote_code=trust_remote_code
    )
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


def _copy_tokenizer(base: str, adapter: Adapter, out: Path, trust_remote_code: bool) -> None:
    """The adapter's tokenizer when it ships one (it may add tokens), else the base's."""
    from transformers import AutoTokenizer

    has_own = any((adapter.path / n).is_file() for n in ("tokenizer.json", "tokenizer.model"))
    source = str(adapter.path) if has_own else base
    tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    tokenizer.save_pretrained(str(out))


def trained_window(adapter: str | os.PathLike[str]) -> tuple[int | None, str | None]:
    """The context length and RoPE method an adapter made by ``longcontext finetune`` was trained
    for, so that loading it serves what it learned; ``(None, None)`` for any other adapter.

    Raises:
        ValueError: The adapter's ``longcontext_finetune.json`` is unreadable.
    """
    path = Path(adapter) / RUN_FILE
    if not path.is_file():
        return None, None
    try:
        serve = json.loads(path.read_text(encoding="utf-8"))["serve"]
        length, rope = serve["context_length"], serve.get("rope")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(
            f"{path} is damaged ({exc!r}): pass context_length= and rope= yourself, or "
            "fine-tune the adapter again"
        ) from exc
    return int(length), None if rope is None else str(rope)
