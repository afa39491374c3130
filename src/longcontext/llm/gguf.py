"""GGUF model files: the config, the tokenizer and the weights of a ``.gguf``, for both backends.

transformers 5 loads a GGUF (``from_pretrained(folder, gguf_file=name)``, dequantizing the
weights; needs the ``gguf`` and ``accelerate`` packages). vLLM 0.33 has no GGUF loader (no
``gguf`` quantization, and its ``ModelConfig`` wants a folder), so the vLLM backend serves a
model folder exported from the GGUF once (dequantized safetensors, config and tokenizer), cached
by the file's content.

Speed: for the architectures outside transformers' fast GGUF reader (Gemma 3, Llama, Qwen2...),
``AutoConfig.from_pretrained(gguf_file=...)`` parses every metadata field, the whole vocabulary
included: about 25 s for Gemma 3 270M's 262,144 tokens, and ``AutoTokenizer`` does it once more.
The config is a handful of scalars, so :func:`load_config` reads them with transformers' fast
metadata reader and maps them with transformers' own GGUF table; the tokenizer is built by its
concrete class, which reads only the vocabulary arrays; :func:`load_model` dequantizes the
tensors with the same maps and processors transformers uses, from a tensor table read without
the vocabulary. Gemma 3 270M loads in ~15 s of CPU instead of ~90 s.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: Architectures read by the fast path below: ones whose config transformers' legacy reader
#: builds by renaming keys alone and whose tensors it renames with no special case, and for which
#: the fast path was checked equal to it (config, and every tensor bit for bit). Others (a
#: Mistral GGUF says "llama", for one) go through transformers' own loader.
_PLAIN_ARCHITECTURES = frozenset({"gemma3"})


def is_gguf(model: str | os.PathLike[str]) -> bool:
    """Whether ``model`` names a GGUF file (by its ``.gguf`` suffix)."""
    return os.fspath(model).lower().endswith(".gguf")


def check_file(path: str | os.PathLike[str]) -> str:
    """The GGUF file's absolute path; a clear error when it is missing or not GGUF."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"GGUF file {os.fspath(path)!r} does not exist")
    with file.open("rb") as handle:
        magic = handle.read(4)
    if magic != b"GGUF":
        raise ValueError(
            f"{os.fspath(path)!r} ends in .gguf but does not start with the GGUF magic bytes "
            f"(got {magic!r}); the file is truncated or not a GGUF model"
        )
    return str(file.resolve())


def _split(path: str) -> tuple[str, str]:
    file = Path(path)
    return str(file.parent), file.name


def config_dict(path: str) -> dict[str, Any]:
    """The transformers config dict of a GGUF file, as ``AutoConfig(gguf_file=...)`` builds it."""
    from transformers.integrations.gguf.gguf_config_mapping import (
        GGUF_CONFIG_ARCHS,
        get_gguf_config,
    )
    from transformers.integrations.gguf.reader import read_gguf_metadata

    metadata, tensor_names = read_gguf_metadata(path)
    architecture = str(metadata["general.architecture"])
    if architecture in GGUF_CONFIG_ARCHS:  # transformers' own fast path
        fast: dict[str, Any] = get_gguf_config(metadata, tensor_names)
        return fast
    if architecture not in _PLAIN_ARCHITECTURES:
        from transformers import AutoConfig

        folder, name = _split(path)
        slow: dict[str, Any] = AutoConfig.from_pretrained(folder, gguf_file=name).to_dict()
        return slow
    from transformers.integrations.ggml import GGUF_CONFIG_DEFAULTS_MAPPING
    from transformers.modeling_gguf_pytorch_utils import GGUF_TO_TRANSFORMERS_MAPPING

    # The legacy reader's steps for these architectures: defaults, tied embeddings when there is
    # no output matrix, then every metadata key its table renames.
    config: dict[str, Any] = dict(GGUF_CONFIG_DEFAULTS_MAPPING.get(architecture) or {})
    config["tie_word_embeddings"] = "output.weight" not in tensor_names
    renames: dict[str, dict[str, Any]] = GGUF_TO_TRANSFORMERS_MAPPING["config"]  # type: ignore[assignment]
    for key, value in metadata.items():
        prefix, _, rest = key.partition(".")
        target = renames.get(prefix, {}).get(rest)
        if target is not None and target != -1:
            config[target] = value
    if config.get("model_type") == "gemma3":  # the GGUF holds the text backbone only
        config["model_type"] = "gemma3_text"
    if "vocab_size" not in config:
        # The fast reader leaves an unrequested string array as its length: the vocabulary size.
        config["vocab_size"] = int(metadata["tokenizer.ggml.tokens"])
    return config


def load_config(path: str) -> Any:
    """A transformers ``PretrainedConfig`` for the GGUF file at ``path``."""
    from transformers import AutoConfig

    values = config_dict(path)
    return AutoConfig.for_model(**values)


def load_tokenizer(path: str, config: Any) -> Any:
    """The GGUF's own tokenizer (vocabulary, merges, special tokens), as transformers builds it."""
    from transformers import AutoTokenizer
    from transformers.integrations.gguf.reader import read_gguf_metadata
    from transformers.models.auto.tokenization_auto import (
        TOKENIZER_MAPPING_NAMES,
        tokenizer_class_from_name,
    )

    folder, name = _split(path)
    class_name = TOKENIZER_MAPPING_NAMES.get(config.model_type)
    tokenizer_class = tokenizer_class_from_name(class_name) if class_name else None
    if tokenizer_class is None:  # AutoTokenizer reads the config from the file again: slower
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    else:
        tokenizer = tokenizer_class.from_pretrained(folder, gguf_file=name)
    # transformers' GGUF tokenizer ignores tokenizer.ggml.add_bos_token / add_eos_token: a Gemma
    # prompt then starts without <bos> and the model answers from a distribution it never saw.
    metadata, _ = read_gguf_metadata(path)
    for flag in ("add_bos_token", "add_eos_token"):
        wanted = metadata.get(f"tokenizer.ggml.{flag}")
        if wanted is not None and getattr(tokenizer, flag, None) != bool(wanted):
            setattr(tokenizer, flag, bool(wanted))  # rebuilds the post-processor
    return tokenizer


def load_model(path: str, config: Any, **kwargs: Any) -> Any:
    """``AutoModelForCausalLM`` from the GGUF, dequantized, with ``config`` (RoPE scaling and
    all) instead of the file's own; ``kwargs`` go to ``from_pretrained``.

    The weights are read with transformers' fast metadata reader and gguf's dequantization and
    renamed by transformers' own GGUF tensor map and processors: the same tensors as
    ``from_pretrained(gguf_file=...)`` (checked bit for bit on Gemma 3 270M) without its parse
    of every metadata field (~25 s for Gemma 3's vocabulary). Anything that path cannot read
    goes through ``from_pretrained(gguf_file=...)``.
    """
    from transformers import AutoModelForCausalLM

    kwargs.pop("trust_remote_code", None)  # a GGUF carries no code
    try:
        return _load_fast(path, config, kwargs)
    except (ImportError, KeyError, ValueError, NotImplementedError) as error:
        logger.info("GGUF fast loading failed (%s); using from_pretrained(gguf_file=...)", error)
    folder, name = _split(path)
    return AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, config=config, **kwargs)


def _load_fast(path: str, config: Any, kwargs: dict[str, Any]) -> Any:
    """The model from ``state_dict``: what ``load_gguf_checkpoint(return_tensors=True)`` does,
    step for step, on a tensor table read without parsing the vocabulary."""
    import math

    import numpy as np
    import torch
    from gguf import GGMLQuantizationType, dequantize
    from gguf.constants import GGML_QUANT_SIZES
    from transformers.integrations.gguf.reader import (
        _mapped,
        _read_metadata,
        _read_tensor_table,
    )
    from transformers.modeling_gguf_pytorch_utils import (
        TENSOR_PROCESSORS,
        TensorProcessor,
        get_gguf_hf_weights_map,
    )
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    blob = _mapped(path)
    metadata, count, pos = _read_metadata(blob, path)
    entries, pos = _read_tensor_table(blob, count, pos)
    alignment = int(metadata.get("general.alignment", 32))
    start = (pos + alignment - 1) // alignment * alignment  # the data section is aligned
    architecture = str(metadata["general.architecture"])
    if architecture not in _PLAIN_ARCHITECTURES:
        raise ValueError(f"architecture {architecture!r} needs transformers' own GGUF loader")
    model_class: Any = MODEL_FOR_CAUSAL_LM_MAPPING[type(config)]
    with torch.device("meta"):  # only the parameter names are needed for the name map
        skeleton = model_class(config)
    values = config_dict(path)
    processor_class: Any = TENSOR_PROCESSORS.get(architecture, TensorProcessor)
    processor = processor_class(config=values)
    mapping = get_gguf_hf_weights_map(skeleton, processor)  # type: ignore[no-untyped-call]
    parsed: dict[str, Any] = {"config": values, "tensors": {}}
    for name, shape, type_id, offset in entries:
        ggml_type = GGMLQuantizationType(type_id)
        block_size, type_size = GGML_QUANT_SIZES[ggml_type]
        size = math.prod(shape) // block_size * type_size
        raw = np.asarray(blob[start + offset : start + offset + size]).reshape(*shape[:-1], -1)
        result = processor.process(
            weights=dequantize(raw, ggml_type),
            name=name,
            tensor_key_mapping=mapping,
            parsed_parameters=parsed,
        )
        if result.name is not None and result.name in mapping:
            parsed["tensors"][mapping[result.name]] = torch.from_numpy(np.copy(result.weights))
    del skeleton
    return model_class.from_pretrained(None, config=config, state_dict=parsed["tensors"], **kwargs)


def default_cache_dir() -> Path:
    """Where exported GGUF folders are kept: ``$LONGCONTEXT_CACHE/gguf`` or
    ``~/.cache/longcontext/gguf``."""
    base = os.environ.get("LONGCONTEXT_CACHE") or Path.home() / ".cache" / "longcontext"
    return Path(base) / "gguf"


def _digest(path: str) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            sha.update(block)
    return sha.hexdigest()[:16]


def export_folder(
    path: str,
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    model: Any = None,
    tokenizer: Any = None,
) -> Path:
    """A model folder (config.json, model.safetensors, tokenizer) with the GGUF's weights
    dequantized, for engines without a GGUF loader (vLLM 0.33). Built once per file content and
    reused; a folder appears whole or not at all (written aside, then renamed).

    ``model`` and ``tokenizer``, when given, are the file already loaded unscaled (saves loading
    it again); else they are loaded here.
    """
    path = check_file(path)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = root / f"{Path(path).stem}-{_digest(path)}"
    if (target / "config.json").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    logger.info("exporting %s to the model folder %s (once per file)", path, target)
    if model is None or tokenizer is None:
        config = load_config(path)
        tokenizer = load_tokenizer(path, config)
        model = load_model(path, config)
    draft = Path(tempfile.mkdtemp(prefix=".draft-", dir=root))
    try:
        _save_dequantized(model, draft)
        tokenizer.save_pretrained(draft)
        try:
            draft.rename(target)
        except OSError:  # another process published it meanwhile: keep theirs
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(draft, ignore_errors=True)
    return target


def _save_dequantized(model: Any, folder: Path) -> None:
    """Save a model loaded from a GGUF as a plain checkpoint.

    ``save_pretrained`` refuses it (the GGUF quantizer is "not serializable"), though its weights
    are plain dequantized tensors: save them with safetensors (one copy of tied tensors) and the
    config without the quantization entry, so loaders see an ordinary model.
    """
    import copy

    from safetensors.torch import save_model

    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.architectures = [type(model).__name__]
    config.save_pretrained(folder)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(folder)
    save_model(model, str(folder / "model.safetensors"), metadata={"format": "pt"})
