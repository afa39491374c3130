"""`longcontext index --ray`: Ray Data chunks and embeds, the driver writes the same index.

One real local Ray (2 CPUs) serves the module; real all-MiniLM-L6-v2 embeddings in the Ray
actors, real text from ../shared, real FAISS. The CLI's address errors run in a separate process,
where no Ray is started. Ray being absent is not tested: that would take a mock.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rag_fixtures

from longcontext.rag.corpus import read_corpus
from longcontext.rag.embeddings import load_embedder
from longcontext.rag.errors import RagError
from longcontext.rag.indexer import SplitterSettings, build_index
from longcontext.rag.ray_ingest import EMBED_STEP, RaySettings, check_ray, split_and_embed
from longcontext.rag.store import VectorStore

ray = pytest.importorskip("ray", reason="the [ray] extra is not installed")
pytest.importorskip("ray.data", reason="the [ray] extra is not installed")

corpus = rag_fixtures.corpus
Corpus = tuple[Path, dict[str, str]]
# Tiny chunks: about 600, more than one embedding step, so both actors work and order matters.
SMALL = SplitterSettings("token", 6, 0)


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """One Ray for the module (starting one takes seconds); build_index finds it initialized
    and uses it as it is, without shutting it down."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def assert_same_index(ray_index: Path, local_index: Path) -> None:
    on_ray, local = VectorStore.load(ray_index), VectorStore.load(local_index)
    assert on_ray.chunks == local.chunks  # texts, sources, offsets and token counts
    assert on_ray.files == local.files and on_ray.splitter == local.splitter
    assert on_ray.embeddings == local.embeddings
    assert on_ray.vectors.shape == local.vectors.shape
    assert np.allclose(on_ray.vectors, local.vectors, atol=1e-5)


def test_ray_writes_the_index_a_local_run_writes(
    local_ray: None, corpus: Corpus, tmp_path: Path
) -> None:
    folder, texts = corpus
    local = build_index(folder, tmp_path / "local", splitter=SMALL)
    report = build_index(folder, tmp_path / "ray", splitter=SMALL, ray="local", ray_workers=2)
    assert sorted(report.embedded) == sorted(texts)
    assert report.new_chunks == report.chunks == local.chunks > EMBED_STEP  # several steps
    assert_same_index(tmp_path / "ray", tmp_path / "local")
    for chunk in VectorStore.load(tmp_path / "ray").chunks:
        assert texts[chunk.source][chunk.start : chunk.end] == chunk.text

    # One file changed: only it goes through Ray, and the result is still a local run's.
    changed = "play/romeo.txt"
    (folder / changed).write_text(texts[changed][:3000] + "\n\nExeunt omnes.\n", encoding="utf-8")
    again = build_index(folder, tmp_path / "ray", splitter=SMALL, ray="local", ray_workers=2)
    assert again.embedded == [changed]
    store = VectorStore.load(tmp_path / "ray")
    assert again.new_chunks == sum(c.source == changed for c in store.chunks) < again.chunks
    build_index(folder, tmp_path / "local", splitter=SMALL)
    assert_same_index(tmp_path / "ray", tmp_path / "local")

    # Nothing changed: nothing to send to Ray.
    unchanged = build_index(folder, tmp_path / "ray", splitter=SMALL, ray="local")
    assert unchanged.embedded == [] and unchanged.new_chunks == 0


def test_semantic_chunks_are_cut_as_locally(
    local_ray: None, corpus: Corpus, tmp_path: Path
) -> None:
    folder, texts = corpus
    for other in list(texts)[1:]:  # one file is enough: the driver cuts, the actors embed
        (folder / other).unlink()
    semantic = SplitterSettings("semantic", 60)
    build_index(folder, tmp_path / "local", splitter=semantic)
    build_index(folder, tmp_path / "ray", splitter=semantic, ray="local", ray_workers=1)
    assert_same_index(tmp_path / "ray", tmp_path / "local")


def test_an_actor_with_other_model_files_is_one_clear_error(
    local_ray: None, corpus: Corpus
) -> None:
    """A worker whose model files differ from the driver's refuses to embed; the error comes
    back through Ray's wrappers as one RagError line, not a Ray traceback."""
    folder, _ = corpus
    driver = copy.copy(load_embedder())
    # As if the driver's model folder held other weights than the workers' copy.
    driver.fingerprint = dataclasses.replace(driver.fingerprint, weights="0" * 64)
    files = read_corpus(folder).files[:1]
    with pytest.raises(RagError) as caught:
        split_and_embed(files, SplitterSettings().resolved(), driver, RaySettings("local", 1))
    message = str(caught.value)
    assert "\n" not in message and "install the same model on every node" in message
    assert "not the driver's" in message and "000000000000" in message


def test_addresses_and_workers_are_checked_before_any_work() -> None:
    for bad in ("nohost", "ray://nohost", "ray://host:port", "http://host:1/x"):
        with pytest.raises(RagError, match="is not a Ray address"):
            check_ray(bad)
    with pytest.raises(RagError, match="--ray-workers must be at least 1"):
        check_ray("local", 0)
    assert check_ray("ray://head.example:10001", 3).workers == 3


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # nothing listens once the socket is closed


def test_an_unreachable_cluster_is_one_line_and_exit_2(corpus: Corpus, tmp_path: Path) -> None:
    folder, _ = corpus
    address = f"ray://127.0.0.1:{_closed_port()}"
    command = [sys.executable, "-m", "longcontext.cli", "index", str(folder)]
    command += ["--index", str(tmp_path / "idx"), "--ray", address]
    env = {**os.environ, "RAY_ADDRESS": ""}
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("longcontext index: error: cannot reach")
    assert address in lines[0] and "ray start --head" in lines[0]
    assert not (tmp_path / "idx" / "manifest.json").exists()

    done = subprocess.run(
        [*command[:-1], "localhost"], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 2 and "is not a Ray address" in done.stderr
