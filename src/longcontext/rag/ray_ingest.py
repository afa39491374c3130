"""Chunk and embed the changed files of an index run on Ray Data: ``longcontext index --ray``.

The driver (the process running ``longcontext index``) does what must stay in one place: it
lists and reads the corpus with the local reader (so the same files are read and the same ones
skipped), decides which files changed, checks the embeddings, and writes the index under its
lock. Only the changed files go through Ray:

1. chunking, as CPU tasks (``map_batches`` over files), with the driver's own tokenizer object
   and the same splitter settings, so every chunk is the chunk a local run cuts. The chunks
   come back tagged with (file number, chunk number) and are put in that order on the driver;
2. embedding, by a pool of actors that each load the embedding model once (one GPU each where
   the cluster has GPUs) and check that its files are the driver's. Each actor embeds whole
   steps of :data:`EMBED_STEP` chunks, cut where the local path cuts its steps, so every forward
   pass sees the same batch as locally. That matters: int8 ONNX quantizes each batch's
   activations with the batch's own scale, so a chunk's vector depends on its batch mates.

The index written is the one a local run writes: the same chunks, and vectors equal within
float tolerance (thread counts and GPUs round differently).

The semantic splitter cuts with the model's own sentence vectors, in batches that run across
files; with ``--splitter semantic`` the driver cuts (as locally, so the chunks are the same
whatever the backend) and only the embedding of the chunks runs on Ray.

Ray is imported only here and only when asked for: ``pip install 'longcontext[ray]'``.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from longcontext.rag.embeddings import Embedder, EmbeddingsFingerprint, Matrix, load_embedder
from longcontext.rag.errors import RagError

if TYPE_CHECKING:
    from longcontext.rag.corpus import SourceFile
    from longcontext.rag.indexer import SplitterSettings
    from longcontext.rag.store import IndexedChunk
    from longcontext.tokenizers import Tokenizer

LOCAL = "local"  # ``--ray`` without an address: start a Ray on this machine
INSTALL = "pip install 'longcontext[ray]'"
EMBED_BATCH = 64  # chunks per forward pass, as the local path embeds
# Chunks per actor call: Embedder.embed sorts and batches its texts in steps of 8 batches (512),
# so a call on a slice that starts at a multiple of 512 makes the batches a local run makes.
EMBED_STEP = 8 * EMBED_BATCH
_CONNECT_TIMEOUT_S = 5.0  # a host that does not answer a TCP connect in this time is not there
# How a RagError ends a traceback that Ray passes on as text.
_RAG_ERROR_LINE = re.compile(r"^longcontext\.rag\.errors\.\w+: (.+)$", re.M)


@dataclass(frozen=True, slots=True)
class RaySettings:
    """Where and how wide to run.

    Attributes:
        address: ``local`` to start a Ray on this machine (or join ``$RAY_ADDRESS`` when set),
            ``auto`` for the cluster this machine belongs to, ``ray://HOST:10001`` for a Ray
            client connection, or ``HOST:6379`` for a cluster's GCS.
        workers: Chunking tasks and CPU embedding actors at once; None means the cluster's CPUs.
            With GPUs, the embedding actors are at most one per GPU.
    """

    address: str = LOCAL
    workers: int | None = None


def check_ray(address: str, workers: int | None = None) -> RaySettings:
    """Check that Ray Data is installed and the address has a known form, before any work.

    Raises:
        RagError: Ray is missing (the message names the install command), the address has no
            known form, or ``workers`` is below 1.
    """
    _import_ray()
    if workers is not None and workers < 1:
        raise RagError(f"--ray-workers must be at least 1, got {workers}")
    if address not in (LOCAL, "auto"):
        _host_port(address)
    return RaySettings(address, workers)


def check_reachable(address: str) -> None:
    """Fail in seconds, with one line, when nothing listens at a cluster's address: Ray itself
    retries for a long time. ``local`` and ``auto`` are not probed.

    Raises:
        RagError: The host is unknown, refuses the connection, or does not answer in time.
    """
    if address in (LOCAL, "auto"):
        return
    host, port = _host_port(address)
    try:
        with socket.create_connection((host, port), timeout=_CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        if isinstance(exc, TimeoutError | socket.timeout):
            reason = f"no answer in {_CONNECT_TIMEOUT_S:g} s"
        raise RagError(
            f"cannot reach a Ray cluster at {address} ({reason}): start one with "
            "`ray start --head` and give its address, e.g. --ray ray://HOST:10001"
        ) from None


def split_and_embed(
    files: list[SourceFile],
    settings: SplitterSettings,
    embedder: Embedder,
    ray_settings: RaySettings,
    progress: bool | None = None,
) -> tuple[dict[str, list[IndexedChunk]], Matrix]:
    """Chunks of each file and their vectors, computed on Ray.

    Args:
        files: The files to chunk and embed, in corpus order.
        settings: Resolved splitter settings.
        embedder: The driver's embedder: its tokenizer cuts the chunks, its fingerprint is what
            each actor's model must match, and its name (and backend) is what actors load.
        ray_settings: Where to run (:func:`check_ray`).
        progress: Ray Data's progress bars; None shows them on a terminal only.

    Returns:
        The chunks by file path (every file present, in ``files`` order) and one vector per
        chunk, in the order of the chunks file after file.

    Raises:
        RagError: Ray cannot be reached or started, or a worker could not load the embeddings
            or loaded other model files than the driver's.
    """
    if not files:  # nothing changed: no need for Ray at all
        return {}, np.zeros((0, embedder.fingerprint.dimension), dtype=np.float32)
    ray = _import_ray()
    started = _connect(ray, ray_settings)
    try:
        pools = _Pools.of(ray, ray_settings.workers, _load_spec(embedder).get("backend"))
        _quiet_data(ray, progress)
        if settings.kind == "semantic":
            from longcontext.rag.indexer import split_files

            chunks = split_files(files, settings, embedder.tokenizer, embedder)
        else:
            chunks = _chunk(ray, files, settings, embedder, pools)
        texts = [c.text for file_chunks in chunks.values() for c in file_chunks]
        vectors = _embed(ray, texts, embedder, pools)
    except RagError:
        raise
    except Exception as exc:  # Ray wraps a worker's error in its own types
        message = _rag_cause(exc)
        if message is not None:
            raise RagError(message) from exc
        raise
    finally:
        if started:
            ray.shutdown()
    return chunks, vectors


# ------------------------------------------------------------------------------ on the driver
def _import_ray() -> Any:
    try:
        import ray
        import ray.data  # pandas and pyarrow come with the [data] extra
    except ImportError as exc:
        raise RagError(
            f"--ray needs Ray Data ({exc.name or 'ray'} is missing): {INSTALL}"
        ) from None
    return ray


def _host_port(address: str) -> tuple[str, int]:
    """HOST and PORT of ``ray://HOST:PORT`` or ``HOST:PORT``."""
    rest = address.removeprefix("ray://")
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit() or "/" in rest:
        raise RagError(
            f"--ray {address!r} is not a Ray address: give ray://HOST:10001 (Ray client), "
            "HOST:6379 (the head node), auto (this machine's cluster), or no address to start "
            "Ray here"
        )
    return host.strip("[]"), int(port)


def _connect(ray: Any, wanted: RaySettings) -> bool:
    """Start or join Ray; True when this call started it (and so must shut it down)."""
    if ray.is_initialized():  # the caller's own Ray (a notebook, a test): use it as it is
        return False
    address = wanted.address
    if address == LOCAL and os.environ.get("RAY_ADDRESS"):
        address = os.environ["RAY_ADDRESS"]  # Ray's own convention: join the named cluster
    # Quiet: Ray's notices are not the user's business; errors still surface as exceptions.
    quiet: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False}
    try:
        if address == LOCAL:
            ray.init(num_cpus=wanted.workers, include_dashboard=False, **quiet)
        else:
            check_reachable(address)  # again: the model loaded meanwhile
            ray.init(address=address, **quiet)
    except RagError:
        raise
    except Exception as exc:  # ConnectionError, RuntimeError, ValueError, gRPC's errors
        if address == LOCAL:
            raise RagError(f"could not start Ray on this machine: {_first_line(exc)}") from None
        raise RagError(
            f"could not connect to Ray at {address}: {_first_line(exc)}. Check the address "
            "(`ray status` on the head prints it); a cluster with token authentication also "
            "needs RAY_AUTH_MODE=token and its token here (see docs/ray.md)"
        ) from None
    return True


@dataclass(frozen=True, slots=True)
class _Pools:
    """How many chunking tasks and embedding actors run at once, and what each actor holds."""

    tasks: int
    actors: int
    per_actor: dict[str, Any]

    @classmethod
    def of(cls, ray: Any, workers: int | None, backend: str | None) -> _Pools:
        resources = ray.cluster_resources()
        width = workers or max(1, int(resources.get("CPU", 1)))
        # Only torch runs on a GPU here: ONNX Runtime's CPU session would leave it idle.
        gpus = int(resources.get("GPU", 0)) if backend in (None, "torch") else 0
        if gpus:  # one GPU per actor; the CPUs left chunk
            return cls(width, min(width, gpus), {"num_gpus": 1})
        return cls(width, width, {"num_cpus": 1})


def _quiet_data(ray: Any, progress: bool | None) -> None:
    context = ray.data.DataContext.get_current()
    shown = sys.stderr.isatty() if progress is None else progress
    context.enable_progress_bars = shown
    context.enable_operator_progress_bars = shown
    context.print_on_execution_start = False
    context.enable_auto_log_stats = False
    # Ray Data logs a worker's error with its traceback, on stdout (where --json writes); the
    # error itself comes back as an exception, and leaves as one line.
    logging.getLogger("ray.data").setLevel(logging.CRITICAL)


def _chunk(
    ray: Any, files: list[SourceFile], settings: SplitterSettings, embedder: Embedder, pools: _Pools
) -> dict[str, list[IndexedChunk]]:
    """Cut the files in CPU tasks; the chunks by file, in file order."""
    from longcontext.rag.store import IndexedChunk

    items = [{"file": i, "path": f.path, "text": f.text} for i, f in enumerate(files)]
    # A few blocks per task: big and small files even out.
    data = ray.data.from_items(items, override_num_blocks=min(len(items), pools.tasks * 4))
    rows = _gather(
        data.map_batches(
            _chunk_files,
            fn_kwargs={"tokenizer": embedder.tokenizer, "settings": settings},
            batch_size=None,
            batch_format="numpy",
            compute=ray.data.TaskPoolStrategy(size=min(pools.tasks, len(items))),
            num_cpus=1,
        )
    )
    chunks: dict[str, list[IndexedChunk]] = {f.path: [] for f in files}
    if not rows:
        return chunks
    for i in np.lexsort((rows["chunk"], rows["file"])):  # by file, then chunk
        source = files[int(rows["file"][i])].path
        start, end, tokens = (int(rows[key][i]) for key in ("start", "end", "tokens"))
        chunks[source].append(IndexedChunk(source, start, end, tokens, str(rows["text"][i])))
    return chunks


def _embed(ray: Any, texts: list[str], embedder: Embedder, pools: _Pools) -> Matrix:
    """Vectors of ``texts`` from the actor pool, one step of :data:`EMBED_STEP` per call."""
    dimension = embedder.fingerprint.dimension
    if not texts:
        return np.zeros((0, dimension), dtype=np.float32)
    steps = [
        {"start": start, "texts": texts[start : start + EMBED_STEP]}
        for start in range(0, len(texts), EMBED_STEP)
    ]
    data = ray.data.from_items(steps, override_num_blocks=len(steps))
    rows = _gather(
        data.map_batches(
            _EmbedActor,
            fn_constructor_kwargs={"spec": _load_spec(embedder), "expected": embedder.fingerprint},
            batch_size=1,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=min(pools.actors, len(steps))),
            **pools.per_actor,
        )
    )
    got = rows.get("row", np.zeros(0, dtype=np.int64))
    if len(got) != len(texts) or len(np.unique(got)) != len(texts):
        raise RuntimeError(f"Ray returned {len(got)} vectors for {len(texts)} chunks")
    vectors = np.zeros((len(texts), dimension), dtype=np.float32)
    vectors[got] = rows["vector"]
    return vectors


def _gather(data: Any) -> dict[str, np.ndarray]:
    """Every row of a dataset, as columns, in no particular order ({} when none)."""
    batches = data.iter_batches(batch_size=None, batch_format="numpy")
    parts = [p for p in batches if p and len(next(iter(p.values())))]
    if not parts:
        return {}
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def _load_spec(embedder: Embedder) -> dict[str, Any]:
    """What an actor passes to :func:`load_embedder` to load the driver's model: the canonical
    name (a local folder by its absolute path: it must exist at that path on every node) and the
    backend where the embedder has one."""
    spec: dict[str, Any] = {"name": embedder.fingerprint.name}
    backend = getattr(embedder.fingerprint, "backend", None)  # torch, onnx or onnx-int8
    if backend is not None:
        spec["backend"] = backend
    return spec


def _rag_cause(exc: BaseException) -> str | None:
    """The message of the RagError a worker raised, found in the exceptions Ray wraps it in.

    A task's error keeps the original as ``cause``; an actor that died in ``__init__`` keeps only
    its traceback text, where the error's last line names it."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, RagError) and type(current).__module__.startswith("longcontext"):
            return _first_line(current)  # the original, not Ray's copy with a traceback
        pending += [current.__cause__, current.__context__, getattr(current, "cause", None)]
    found = _RAG_ERROR_LINE.findall(str(exc))
    return found[-1] if found else None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# ------------------------------------------------------------------------------- on the workers
def _chunk_files(
    batch: dict[str, np.ndarray], tokenizer: Tokenizer, settings: SplitterSettings
) -> dict[str, np.ndarray]:
    """A CPU task: the chunks of a batch of files (cut as the local path cuts), one row each."""
    from longcontext.rag.corpus import SourceFile
    from longcontext.rag.indexer import split_files

    files = [SourceFile(str(p), str(t), "") for p, t in zip(batch["path"], batch["text"])]
    split = split_files(files, settings, tokenizer, None, num_threads=1)
    rows = [
        (int(number), index, c.start, c.end, c.token_count, c.text)
        for number, source in zip(batch["file"], files)
        for index, c in enumerate(split[source.path])
    ]
    names = ("file", "chunk", "start", "end", "tokens")
    out = {name: np.array([r[i] for r in rows], dtype=np.int64) for i, name in enumerate(names)}
    out["text"] = np.array([r[5] for r in rows], dtype=object)
    return out


class _EmbedActor:
    """An embedding actor: loads the model once, then embeds one step of chunks per call.

    Raises:
        RagError: The model cannot be loaded here, or its files are not the driver's.
    """

    def __init__(self, spec: dict[str, Any], expected: EmbeddingsFingerprint) -> None:
        self.embedder = load_embedder(**spec)
        got = self.embedder.fingerprint
        if got != expected:
            raise RagError(
                f"embeddings on Ray node {socket.gethostname()} are {got.describe()} with files "
                f"{got.weights[:12] or 'unknown'}, not the driver's {expected.describe()} with "
                f"files {expected.weights[:12] or 'unknown'}: install the same model on every node"
            )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows, vectors = [], []
        for start, texts in zip(batch["start"], batch["texts"]):
            step = [str(t) for t in texts]
            rows.append(np.arange(int(start), int(start) + len(step), dtype=np.int64))
            vectors.append(self.embedder.embed(step, batch_size=EMBED_BATCH, progress=False))
        return {"row": np.concatenate(rows), "vector": np.concatenate(vectors)}
