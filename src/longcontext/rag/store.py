"""A FAISS index and its chunk records, saved together in one folder, one generation at a time.

Layout of an index folder:

- ``manifest.json``: format version; the generation folder holding the data, with the size and
  SHA-256 of each of its files; the corpus folder; the embeddings fingerprint (model name,
  dimension, digest of the model's files, backend: torch when a manifest predates it); the
  splitter settings; each file's content hash and
  the chunk count;
- ``gen-N/chunks.jsonl``: one chunk per line, in vector order: source file, character span,
  tokens, text;
- ``gen-N/vectors.faiss``: a flat FAISS inner-product index over unit vectors (scores are cosine
  similarity): the exact vectors, always kept;
- ``gen-N/search.faiss``: past a size (or as ``--index-type`` asks), an approximate index over the
  same vectors, HNSW or IVF (see :mod:`longcontext.rag.ann`), named with its settings in the
  manifest's ``index``; its candidates are scored exactly with the vectors;
- ``.lock``: locked by the ``longcontext index`` run writing the folder, which notes its pid.

:meth:`VectorStore.save` writes a new ``gen-N`` folder, syncs it to disk, then publishes it by
replacing ``manifest.json`` in one atomic rename: whenever a writer is killed, a reader finds the
previous index or the new one, never a mix. :meth:`VectorStore.load` checks each file's size
against the manifest before reading it and its checksum before parsing it, so a damaged or hostile
file is refused before it can claim memory; the manifest's sizes are themselves bounded by what
its chunk count, dimension and index settings allow, and each FAISS header is checked against
them before FAISS reads the file. Generation folders the manifest does not name are
leftovers of an interrupted save, removed by the next one.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import struct
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from longcontext.rag import ann
from longcontext.rag.embeddings import BACKENDS, EmbeddingsFingerprint, Matrix, interchangeable
from longcontext.rag.errors import (
    EmbeddingsMismatchError,
    EmptyIndexError,
    IndexLockedError,
    RagError,
)

FORMAT = 2
MANIFEST = "manifest.json"
CHUNKS = "chunks.jsonl"
VECTORS = "vectors.faiss"
SEARCH = "search.faiss"
LOCK = ".lock"
_MANIFEST_TMP = f".{MANIFEST}.tmp"
_GENERATION = re.compile(r"gen-([0-9]{1,12})")
# What FAISS writes for a flat index: b"IxFI", dimension (int32), vector count (int64), two unused
# int64, is_trained (bool), metric (int32), the number of floats (int64), then the float32 rows.
_FLAT_HEADER = struct.Struct("<4siqqq?iq")
_MAX_DIMENSION = 1 << 16
_READ_ATTEMPTS = 5  # generations a reader follows while `index` keeps publishing new ones


@dataclass(frozen=True, slots=True)
class IndexedChunk:
    """A chunk as the index keeps it: ``source`` file text ``[start:end] == text``."""

    source: str
    start: int
    end: int
    token_count: int
    text: str


@dataclass(frozen=True, slots=True)
class Hit:
    """A retrieved chunk and its cosine similarity to the question."""

    chunk: IndexedChunk
    score: float


@dataclass(slots=True)
class VectorStore:
    """Chunks of a corpus with one unit vector each.

    Attributes:
        corpus: The folder the chunks were read from.
        embeddings: What the vectors were made with.
        splitter: The splitter settings the chunks were cut with.
        files: Content hash of each indexed file, by its path relative to ``corpus``.
        chunks: The chunks, row ``i`` of ``vectors`` belonging to ``chunks[i]``.
        vectors: A float32 array of shape ``(len(chunks), dimension)``.
        index_type: The search index asked for: ``"auto"`` (by size: see
            :mod:`longcontext.rag.ann`) or one of ``flat``, ``hnsw``, ``ivf-sq8``, ``ivf-pq``.
            The manifest keeps it, so a later ``index`` run asks the same.
        index_kind: The type the index has (``auto`` settled by size), once saved, loaded or
            searched.
        index_params: The settings of ``index_kind`` (lists, probes, graph degree).
    """

    corpus: str
    embeddings: EmbeddingsFingerprint
    splitter: dict[str, Any]
    files: dict[str, str] = field(default_factory=dict)
    chunks: list[IndexedChunk] = field(default_factory=list)
    vectors: Matrix = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    index_type: str = "auto"
    index_kind: str | None = None
    index_params: dict[str, int] = field(default_factory=dict)
    _search_index: Any = field(default=None, repr=False, compare=False)

    def check_embeddings(
        self,
        asked: EmbeddingsFingerprint | str,
        path: str | Path,
        weights: bool = True,
        backend: bool = True,
    ) -> None:
        """Refuse embeddings other than the index's own.

        Args:
            asked: A fingerprint, or just a canonical model name (checked before loading it).
            path: The index folder, named in the message.
            weights: Also refuse a fingerprint whose model files changed since the index was
                built (when both digests are known).
            backend: Also refuse a fingerprint whose backend makes other vectors than the
                index's (torch and float32 ONNX are interchangeable; int8 ONNX only with itself).

        Raises:
            EmbeddingsMismatchError: The name, the dimension, the backend or the model files
                differ.
        """
        name = asked if isinstance(asked, str) else asked.name
        same = name == self.embeddings.name and (
            isinstance(asked, str) or asked.dimension == self.embeddings.dimension
        )
        if not same:
            wanted = asked if isinstance(asked, str) else asked.describe()
            raise EmbeddingsMismatchError(
                f"the index at {path} was built with embeddings {self.embeddings.describe()}, "
                f"not {wanted}: use --embeddings {self.embeddings.name}, or a new --index folder "
                "for other embeddings"
            )
        ours = self.embeddings.backend
        if (
            backend
            and isinstance(asked, EmbeddingsFingerprint)
            and not interchangeable(ours, asked.backend)
        ):
            raise EmbeddingsMismatchError(
                f"the index at {path} was embedded with backend {ours}, and {asked.backend} "
                f"makes other vectors: ask with --embeddings-backend {ours}, or index again "
                f"with --embeddings-backend {asked.backend}"
            )
        if weights and isinstance(asked, EmbeddingsFingerprint) and self.embeddings.changed(asked):
            raise EmbeddingsMismatchError(
                f"the files of embeddings {name} changed since the index at {path} was built "
                f"(digest {self.embeddings.weights[:12]}, now {asked.weights[:12]}): run "
                "`longcontext index` again to re-embed every file with them"
            )

    def check_not_empty(self) -> None:
        """Raise :class:`EmptyIndexError` when there is nothing to retrieve."""
        if not self.chunks:
            raise EmptyIndexError(
                f"the index of {self.corpus} holds no chunks (its files hold no text): add text "
                "files and run `longcontext index` again"
            )

    def search(self, query: Matrix, top_k: int) -> list[Hit]:
        """The ``top_k`` chunks closest to ``query`` (one unit vector), best first.

        Raises:
            EmptyIndexError: The index holds no chunks.
        """
        self.check_not_empty()
        if self.index_kind is None:
            self.index_kind = ann.choose(self.index_type, len(self.chunks))
            self.index_params = ann.params_for(self.index_kind, *self.vectors.shape)
        kind = ann.choose(self.index_kind, len(self.chunks))
        if self._search_index is None:  # built on the first search, kept for the next
            self._search_index = ann.build(self.vectors, kind, self.index_params)
        vector = np.asarray(query, dtype=np.float32).reshape(1, -1)
        _, found = self._search_index.search(vector, ann.candidates(kind, top_k))
        rows = found[0][found[0] >= 0]  # FAISS pads with -1 past the number of vectors
        # Exact cosine of each candidate: approximate codes only propose; ties keep row order.
        exact = self.vectors[rows] @ vector[0]
        order = sorted(range(len(rows)), key=lambda i: (-exact[i], rows[i]))[:top_k]
        return [Hit(self.chunks[rows[i]], float(exact[i])) for i in order]

    def save(self, path: str | Path) -> None:
        """Publish the index as a new generation of the folder ``path`` (created if missing).

        Raises:
            RagError: The disk is full or not writable; the previous index is left as it was.
        """
        import faiss

        folder = Path(path)
        index = faiss.IndexFlatIP(self.embeddings.dimension)
        if len(self.chunks):
            index.add(self.vectors)
        data = {
            CHUNKS: "".join(
                json.dumps(asdict(c), ensure_ascii=False) + "\n" for c in self.chunks
            ).encode("utf-8"),
            VECTORS: faiss.serialize_index(index).tobytes(),
        }
        kind = ann.choose(self.index_type, len(self.chunks))
        params = ann.params_for(kind, len(self.chunks), self.embeddings.dimension)
        if (kind, params) != (self.index_kind, self.index_params):
            self._search_index = None  # built for other settings, or none yet
        if kind != "flat":
            if self._search_index is None:
                self._search_index = ann.build(self.vectors, kind, params)
            data[SEARCH] = faiss.serialize_index(self._search_index).tobytes()
        self.index_kind, self.index_params = kind, params
        generation = folder / f"gen-{max(_generations(folder), default=0) + 1}"
        manifest = {
            "format": FORMAT,
            "generation": generation.name,
            "data": {
                name: {"bytes": len(blob), "sha256": hashlib.sha256(blob).hexdigest()}
                for name, blob in data.items()
            },
            "corpus": self.corpus,
            "embeddings": asdict(self.embeddings),
            "splitter": self.splitter,
            "chunks": len(self.chunks),
            "files": self.files,
            "index": {"type": kind, "params": params, "asked": self.index_type},
        }
        try:
            folder.mkdir(parents=True, exist_ok=True)
            os.mkdir(generation)
            for name, blob in data.items():
                _write(generation / name, blob)
            _sync(generation)
            _sync(folder)  # the new folder's entry is on disk before the manifest names it
            text = json.dumps(manifest, indent=2, ensure_ascii=False).encode("utf-8")
            _write(folder / _MANIFEST_TMP, text)
            os.replace(folder / _MANIFEST_TMP, folder / MANIFEST)  # the one publishing step
        except OSError as exc:
            for draft in (generation, folder / _MANIFEST_TMP):
                _remove(draft)
            raise RagError(
                f"could not write the index at {folder}: {exc.strerror or exc}; the previous "
                "index, if any, is unchanged"
            ) from exc
        _sync(folder)
        for leftover in _leftovers(folder, keep=generation.name):
            _remove(leftover)

    @classmethod
    def load(cls, path: str | Path) -> VectorStore:
        """Read the index folder ``path`` written by :meth:`save`, checking every file.

        Raises:
            RagError: ``path`` holds no index, an index of another format, or a damaged one
                (the message names the file).
        """
        folder = Path(path)
        manifest = read_manifest(folder)
        for _ in range(_READ_ATTEMPTS):
            if manifest is None:
                raise RagError(
                    f"no index at {folder}: build one with `longcontext index DIR --index {folder}`"
                )
            try:
                return cls._read(folder, manifest)
            except RagError:
                # A concurrent `index` may have published a new generation and removed ours.
                newer = read_manifest(folder)
                if newer == manifest:
                    raise
                manifest = newer
        raise RagError(f"the index at {folder} changed {_READ_ATTEMPTS} times while being read")

    @classmethod
    def _read(cls, folder: Path, manifest: dict[str, Any]) -> VectorStore:
        try:
            fingerprint, count, generation = _check_manifest(manifest)
            asked, kind, params = _check_index(manifest, count, fingerprint.dimension)
            chunks_data = _read_checked(folder / generation, CHUNKS, manifest)
            vectors_data = _read_checked(folder / generation, VECTORS, manifest)
            lines = chunks_data.decode("utf-8").split("\n")  # not splitlines: text holds U+2028
            chunks = [IndexedChunk(**json.loads(line)) for line in lines if line]
            if len(chunks) != count:
                raise ValueError(f"{CHUNKS} holds {len(chunks)} chunks, the manifest says {count}")
            vectors = _vectors(vectors_data, count, fingerprint.dimension)
            search_index = None
            if kind != "flat":
                search_data = _read_checked(folder / generation, SEARCH, manifest)
                search_index = _search_index(search_data, kind, params, count, vectors.shape[1])
        except (OSError, RuntimeError, TypeError, ValueError, KeyError) as exc:
            raise RagError(
                f"the index at {folder} is damaged ({exc}): run `longcontext index` again "
                "with a new --index folder"
            ) from exc
        return cls(
            corpus=manifest["corpus"],
            embeddings=fingerprint,
            splitter=manifest["splitter"],
            files=manifest["files"],
            chunks=chunks,
            vectors=vectors,
            index_type=asked,
            index_kind=kind,
            index_params=params,
            _search_index=search_index,
        )


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest of an index folder, or None when ``folder`` holds no index.

    Raises:
        RagError: ``folder`` is a file, or its manifest is unreadable or of another format.
    """
    if folder.exists() and not folder.is_dir():
        raise RagError(f"--index {folder} is a file, not an index folder: give a folder path")
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        return None
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RagError(f"cannot read {manifest_path}: {exc}") from exc
    version = manifest.get("format") if isinstance(manifest, dict) else None
    if version != FORMAT:
        raise RagError(
            f"{manifest_path} has format {version!r}, this version reads {FORMAT}: build the "
            f"index again, into a new --index folder or after deleting {folder}"
        )
    return manifest  # type: ignore[no-any-return]


def foreign_entries(folder: Path) -> list[str]:
    """Names in ``folder`` that no index save wrote: an index is never written over them."""
    if not folder.is_dir():
        return []
    ours = {MANIFEST, _MANIFEST_TMP, LOCK}
    return sorted(
        entry.name
        for entry in folder.iterdir()
        if entry.name not in ours
        and not (
            entry.is_dir()
            and not entry.is_symlink()
            and _GENERATION.fullmatch(entry.name)
            and {e.name for e in entry.iterdir()} <= {CHUNKS, VECTORS, SEARCH}
        )
    )


@contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold the write lock of the index folder ``folder`` (created if missing) for one run.

    The lock is an ``flock`` on ``folder/.lock``, released by the kernel however the run ends. A
    folder this call created is removed again when nothing but the lock was written to it.

    Raises:
        IndexLockedError: Another process holds the lock.
    """
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise IndexLockedError(
                f"another `longcontext index` is writing {folder} (pid {holder}); wait for it "
                "or use another --index"
            ) from None
        pid = f"{os.getpid()}\n".encode("ascii")
        os.pwrite(fd, pid, 0)
        os.ftruncate(fd, len(pid))
        yield
    finally:
        os.close(fd)
        if created and [p.name for p in folder.iterdir()] == [LOCK]:
            (folder / LOCK).unlink(missing_ok=True)
            folder.rmdir()


def stack(parts: Sequence[Matrix], dimension: int) -> Matrix:
    """Rows of several vector blocks as one float32 array (an empty one keeps its width)."""
    blocks = [p for p in parts if len(p)]
    if not blocks:
        return np.zeros((0, dimension), dtype=np.float32)
    return np.concatenate(blocks).astype(np.float32, copy=False)


def _check_manifest(manifest: dict[str, Any]) -> tuple[EmbeddingsFingerprint, int, str]:
    """The fingerprint, chunk count and generation of a manifest whose numbers agree."""
    fingerprint = EmbeddingsFingerprint(**manifest["embeddings"])
    if fingerprint.backend not in BACKENDS:
        raise ValueError(
            f"the manifest names embeddings backend {fingerprint.backend!r}, not one of "
            f"{', '.join(BACKENDS)}"
        )
    count, dimension = manifest["chunks"], fingerprint.dimension
    for name, value, low, top in (
        ("chunks", count, 0, 1 << 40),
        ("dimension", dimension, 1, _MAX_DIMENSION),
    ):
        if type(value) is not int or not low <= value <= top:
            raise ValueError(f"the manifest's {name} {value!r} is not a count from {low} to {top}")
    generation = manifest["generation"]
    if not isinstance(generation, str) or not _GENERATION.fullmatch(generation):
        raise ValueError(f"the manifest names generation {generation!r}, not gen-N")
    expected = _FLAT_HEADER.size + count * dimension * 4
    if manifest["data"][VECTORS]["bytes"] != expected:
        raise ValueError(
            f"the manifest gives {VECTORS} {manifest['data'][VECTORS]['bytes']!r} bytes, not the "
            f"{expected} that {count} vectors of {dimension} dimensions take"
        )
    return fingerprint, count, generation


def _check_index(
    manifest: dict[str, Any], count: int, dimension: int
) -> tuple[str, ann.IndexType, dict[str, int]]:
    """The index type asked, the one built and its settings, as a manifest names them (flat
    when it predates them), with the size it gives the search index bounded by what they
    allow."""
    named = manifest.get("index", {"type": "flat", "params": {}, "asked": "auto"})
    if not isinstance(named, dict):
        raise ValueError(f"the manifest's index {named!r} is not a type with settings")
    kind = ann.check_params(named.get("type"), named.get("params"), dimension)
    params: dict[str, int] = named["params"]
    asked = named.get("asked", kind)
    if asked not in ann.CHOICES:
        raise ValueError(f"the manifest asks for index type {asked!r}, not one of {ann.CHOICES}")
    if kind == "flat":
        if SEARCH in manifest["data"]:
            raise ValueError(f"the manifest names a flat index and a {SEARCH}")
        return asked, kind, params
    if ann.choose(kind, count) != kind:  # an IVF index over fewer vectors than it trains on
        raise ValueError(f"a {kind} index cannot hold {count} vectors")
    claimed, bound = (
        manifest["data"][SEARCH]["bytes"],
        ann.max_bytes(kind, params, count, dimension),
    )
    if type(claimed) is not int or not 0 < claimed <= bound:
        raise ValueError(
            f"the manifest gives {SEARCH} {claimed!r} bytes, more than the {bound} a {kind} "
            f"index of {count} vectors of {dimension} dimensions can take"
        )
    return asked, kind, params


def _search_index(
    data: bytes, kind: ann.IndexType, params: dict[str, int], count: int, dimension: int
) -> Any:
    """The approximate index, its header checked first and its contents after FAISS reads it."""
    ann.check_header(data, kind, params, count, dimension)
    index = _deserialize(data, ann.table_bytes(kind, params, dimension))
    if (index.d, index.ntotal) != (dimension, count):
        raise ValueError(f"{SEARCH} holds {index.ntotal} vectors of {index.d} dimensions")
    ann.tune(index, kind, params)
    return index


def _read_checked(generation: Path, name: str, manifest: dict[str, Any]) -> bytes:
    """A file of the generation, read only when its size and then its checksum agree."""
    path = generation / name
    expected = manifest["data"][name]
    size = path.stat().st_size
    if size != expected["bytes"]:
        raise ValueError(f"{path} holds {size} bytes, the manifest says {expected['bytes']}")
    with path.open("rb") as file:
        data = file.read(size + 1)  # never more than the manifest allows, even if it grew
    if len(data) != size or hashlib.sha256(data).hexdigest() != expected["sha256"]:
        raise ValueError(f"{path} does not match its SHA-256 in the manifest")
    return data


def _vectors(data: bytes, count: int, dimension: int) -> Matrix:
    """The rows of a flat FAISS index, its header checked before FAISS allocates anything."""
    fourcc, d, ntotal, _, _, _, _, floats = _FLAT_HEADER.unpack_from(data)
    if (fourcc, d, ntotal, floats) != (b"IxFI", dimension, count, count * dimension):
        raise ValueError(
            f"{VECTORS} has a header for {ntotal} vectors of {d} dimensions ({fourcc!r}), not a "
            f"flat index of {count} vectors of {dimension}"
        )
    if not count:
        return np.zeros((0, dimension), dtype=np.float32)
    index = _deserialize(data)
    return np.asarray(index.reconstruct_n(0, count), dtype=np.float32)


def _deserialize(data: bytes, tables: int = 0) -> Any:
    """FAISS's reading of ``data``, no array in it allowed more bytes than the file holds (or
    ``tables``, the lookup tables FAISS computes on load from settings the manifest bounds).

    Past the header, a FAISS file gives the length of each array before its contents, and FAISS
    allocates that length before reading (up to 1 TiB by default): a file whose checksum agrees
    with a hostile manifest could still claim gigabytes. Every honest array lies inside the file,
    so its size is the limit.
    """
    import faiss

    limit = faiss.get_deserialization_vector_byte_limit()
    faiss.set_deserialization_vector_byte_limit(max(len(data), tables, 1))
    try:
        return faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
    finally:
        faiss.set_deserialization_vector_byte_limit(limit)


def _generations(folder: Path) -> list[int]:
    """Numbers of the ``gen-N`` folders in ``folder``, published or left over."""
    if not folder.is_dir():
        return []
    return [int(m.group(1)) for p in folder.iterdir() if (m := _GENERATION.fullmatch(p.name))]


def _leftovers(folder: Path, keep: str) -> list[Path]:
    """What earlier interrupted saves left in ``folder``: other generations, a manifest draft."""
    return [
        p
        for p in folder.iterdir()
        if p.name == _MANIFEST_TMP or (p.name != keep and _GENERATION.fullmatch(p.name))
    ]


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        os.unlink(path)


def _write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` and sync it to disk."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync(folder: Path) -> None:
    """Sync a folder's entries to disk (what was created or renamed in it)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
