"""FAISS index types in the store: the choice by size, save/load, recall against exact search,
and the durability checks (sizes bounded by the manifest, headers read before FAISS) for each.

Real FAISS throughout. The vectors are "random-ish": unit vectors scattered around cluster
centres, as embeddings of related chunks are, in 64 dimensions to keep the suite fast
(``benchmarks/faiss_scale.py`` measures 384 dimensions up to a million vectors).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rag_fixtures import BuiltIndex, built_index, corpus, run_cli  # noqa: F401 - fixtures

from longcontext.rag import ann
from longcontext.rag.embeddings import EmbeddingsFingerprint
from longcontext.rag.errors import RagError
from longcontext.rag.store import MANIFEST, SEARCH, IndexedChunk, VectorStore

DIMENSION = 64
APPROXIMATE = ("hnsw", "ivf-sq8", "ivf-pq")


def clustered(count: int, queries: int, dimension: int = DIMENSION, seed: int = 0) -> Any:
    """``count`` unit vectors around ``count / 100`` centres, and ``queries`` more like them."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(1, count // 100), dimension)).astype(np.float32)
    rows = centres[rng.integers(0, len(centres), count + queries)]
    vectors = rows + 0.8 * rng.standard_normal(rows.shape).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors[:count], vectors[count:]


def make_store(vectors: Any, index_type: str) -> VectorStore:
    return VectorStore(
        corpus="/corpus",
        embeddings=EmbeddingsFingerprint("test-model", vectors.shape[1], "0" * 64),
        splitter={"kind": "token", "chunk_size": 10, "overlap": 2},
        files={"doc.md": "f" * 64},
        chunks=[IndexedChunk("doc.md", i, i + 1, 1, f"chunk {i}") for i in range(len(vectors))],
        vectors=vectors,
        index_type=index_type,
    )


def rows(store: VectorStore, query: Any, top_k: int = 10) -> list[int]:
    return [hit.chunk.start for hit in store.search(query, top_k)]


def test_auto_picks_by_size() -> None:
    assert ann.choose("auto", 0) == ann.choose("auto", ann.FLAT_UP_TO) == "flat"
    assert ann.choose("auto", ann.FLAT_UP_TO + 1) == ann.choose("auto", ann.HNSW_UP_TO) == "hnsw"
    assert ann.choose("auto", ann.HNSW_UP_TO + 1) == "ivf-sq8"
    assert ann.choose("ivf-pq", 10**6) == "ivf-pq"  # only when asked
    with pytest.raises(ValueError, match="needs at least 39 vectors"):
        ann.choose("ivf-sq8", 38)
    with pytest.raises(ValueError, match="'annoy' is not one of auto, flat, hnsw"):
        ann.choose("annoy", 10)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One store of 3,000 vectors per type, saved and loaded back."""
    vectors, queries = clustered(3000, 20, seed=1)
    root = tmp_path_factory.mktemp("types")
    result: dict[str, Any] = {"queries": queries}
    for kind in ("flat", *APPROXIMATE):
        store = make_store(vectors, kind)
        store.save(root / kind)
        result[kind] = (store, VectorStore.load(root / kind), root / kind)
    return result


@pytest.mark.parametrize("kind", ["flat", *APPROXIMATE])
def test_save_load_round_trip(saved: dict[str, Any], kind: str) -> None:
    before, after, folder = saved[kind]
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["index"]["type"] == after.index_kind == before.index_kind == kind
    assert manifest["index"]["asked"] == after.index_type == kind
    assert manifest["index"]["params"] == after.index_params == before.index_params
    assert (folder / manifest["generation"] / SEARCH).exists() == (kind != "flat")
    np.testing.assert_array_equal(after.vectors, before.vectors)  # exact vectors kept
    for query in saved["queries"]:
        hits = after.search(query, 10)
        assert [h.chunk for h in hits] == [h.chunk for h in before.search(query, 10)]
        # Scores are exact cosines whatever proposed the candidates, best first.
        exact = [float(after.vectors[h.chunk.start] @ query) for h in hits]
        assert [h.score for h in hits] == pytest.approx(exact, abs=1e-6)
        assert exact == sorted(exact, reverse=True)


def test_recall_at_10_against_exact_search() -> None:
    vectors, queries = clustered(20_000, 50, seed=2)
    exact = make_store(vectors, "flat")
    truth = [set(rows(exact, q)) for q in queries]
    bounds = {"hnsw": 0.9, "ivf-sq8": 0.9, "ivf-pq": 0.7}
    for kind, bound in bounds.items():
        store = make_store(vectors, kind)
        recall = np.mean([len(set(rows(store, q)) & t) / 10 for q, t in zip(queries, truth)])
        assert recall >= bound, f"{kind}: recall@10 {recall:.3f} < {bound}"


def test_an_index_without_a_type_reads_as_auto_flat(saved: dict[str, Any], tmp_path: Path) -> None:
    # Indexes written before index types existed have no "index" in their manifest.
    folder = shutil.copytree(saved["flat"][2], tmp_path / "old")
    manifest = json.loads((folder / MANIFEST).read_text())
    del manifest["index"]
    (folder / MANIFEST).write_text(json.dumps(manifest))
    loaded = VectorStore.load(folder)
    assert (loaded.index_type, loaded.index_kind) == ("auto", "flat")  # what it was


def tamper(saved: dict[str, Any], kind: str, tmp_path: Path, change: Any) -> Path:
    """A copy of the saved ``kind`` index, its manifest edited by ``change`` (which may also
    rewrite the generation's files, returning the new search.faiss bytes to record)."""
    folder = Path(shutil.copytree(saved[kind][2], tmp_path / "idx"))
    manifest = json.loads((folder / MANIFEST).read_text())
    data = change(manifest, folder / manifest["generation"])
    if isinstance(data, bytes):  # a consistent manifest for a file swapped in
        manifest["data"][SEARCH] = {
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
    (folder / MANIFEST).write_text(json.dumps(manifest))
    return folder


def _swap(source: Path, cut: int | None = None) -> Any:
    def change(manifest: dict[str, Any], generation: Path) -> bytes:
        data = source / json.loads((source / MANIFEST).read_text())["generation"] / SEARCH
        blob = data.read_bytes()[:cut]
        (generation / SEARCH).write_bytes(blob)
        return blob

    return change


def _set(path: list[str], value: Any) -> Any:
    def change(manifest: dict[str, Any], generation: Path) -> None:
        node = manifest
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return change


@pytest.mark.parametrize(
    ("kind", "change", "message"),
    [
        # A manifest may not claim more bytes than an index of its size takes: refused
        # before the file is read, whatever the file holds.
        ("hnsw", _set(["data", SEARCH, "bytes"], 1 << 40), "more than the"),
        ("ivf-pq", _set(["data", SEARCH, "bytes"], 1 << 40), "more than the"),
        ("hnsw", _set(["index", "type"], "annoy"), "index type 'annoy'"),
        ("hnsw", _set(["index", "asked"], "annoy"), "asks for index type 'annoy'"),
        ("ivf-sq8", _set(["index", "params", "nlist"], 1 << 30), "nlist=1073741824"),
        ("ivf-sq8", _set(["index", "params"], {"nlist": 4}), "settings"),
        ("flat", _set(["data", SEARCH], {"bytes": 10, "sha256": "0" * 64}), "flat index and"),
        ("hnsw", _set(["data", SEARCH, "sha256"], "0" * 64), "does not match its SHA-256"),
    ],
)
def test_a_manifest_out_of_bounds_is_refused(
    saved: dict[str, Any], tmp_path: Path, kind: str, change: Any, message: str
) -> None:
    with pytest.raises(RagError, match="damaged") as error:
        VectorStore.load(tamper(saved, kind, tmp_path, change))
    assert message in str(error.value)


@pytest.mark.parametrize(
    ("kind", "other", "cut", "message"),
    [
        ("hnsw", "ivf-sq8", None, "b'IwSq'"),  # another type's file, checksum made to agree
        ("ivf-sq8", "ivf-pq", None, "b'IwPQ'"),
        ("ivf-pq", "ivf-pq", 20, "too short for a header"),
        ("hnsw", "hnsw", 4096, "damaged"),  # a valid header, then the file ends: FAISS refuses
    ],
)
def test_a_header_that_disagrees_is_refused_before_faiss_reads(
    saved: dict[str, Any], tmp_path: Path, kind: str, other: str, cut: int | None, message: str
) -> None:
    folder = tamper(saved, kind, tmp_path, _swap(saved[other][2], cut))
    with pytest.raises(RagError, match="damaged") as error:
        VectorStore.load(folder)
    assert message in str(error.value)


def test_index_command_takes_an_index_type(
    corpus: tuple[Path, dict[str, str]],  # noqa: F811
    built_index: BuiltIndex,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder, _ = corpus
    result = run_cli(capsys, "index", folder, "--index", tmp_path / "hnsw", "--index-type", "hnsw")
    assert result.code == 0, result.err
    hnsw, flat = VectorStore.load(tmp_path / "hnsw"), VectorStore.load(built_index.index)
    assert (hnsw.index_kind, flat.index_kind) == ("hnsw", "flat")
    assert flat.index_type == "auto"  # what was asked: flat is what auto picks when small
    for query in hnsw.vectors[:5]:
        assert [h.chunk for h in hnsw.search(query, 5)] == [h.chunk for h in flat.search(query, 5)]
    # A re-run without --index-type asks what the index asked; an IVF type wants more chunks.
    (folder / "new.md").write_text("A new document about lighthouses.", encoding="utf-8")
    again = run_cli(capsys, "index", folder, "--index", tmp_path / "hnsw")
    assert again.code == 0, again.err
    assert VectorStore.load(tmp_path / "hnsw").index_kind == "hnsw"
    back = run_cli(capsys, "index", folder, "--index", tmp_path / "hnsw", "--index-type", "auto")
    assert back.code == 0 and VectorStore.load(tmp_path / "hnsw").index_kind == "flat"
    refused = run_cli(
        capsys, "index", folder, "--index", tmp_path / "ivf", "--index-type", "ivf-pq"
    )
    assert refused.code == 2 and "--index-type ivf-pq needs at least 256 vectors" in refused.err


@pytest.mark.parametrize("kind", ["hnsw", "ivf-sq8"])
def test_an_array_longer_than_the_file_is_refused_before_faiss_allocates(
    saved: dict[str, Any], tmp_path: Path, kind: str
) -> None:
    """The header agrees, the checksum agrees (a hostile manifest), but an array length inside
    claims 2**33 entries (tens of GiB): FAISS would allocate them before reading. Loaded in a
    child process capped at 4 GiB of address space, so a regression fails the test instead of
    the machine."""
    count = len(saved[kind][1].chunks)

    def claim(manifest: dict[str, Any], generation: Path) -> bytes:
        blob = bytearray((generation / SEARCH).read_bytes())
        if kind == "hnsw":  # the length of the level table, the first 8 bytes equal to count
            offset = next(
                o
                for o in range(ann._HEADER.size + 8, len(blob) - 8)
                if int.from_bytes(blob[o : o + 8], "little") == count
            )
        else:  # the size of inverted list 0: "ilar", nlist, code size, "full", len(sizes)
            offset = blob.index(b"ilar") + 32
        blob[offset : offset + 8] = (1 << 33).to_bytes(8, "little")
        (generation / SEARCH).write_bytes(bytes(blob))
        return bytes(blob)

    folder = tamper(saved, kind, tmp_path, claim)
    child = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))\n"
        "from longcontext.rag.errors import RagError\n"
        "from longcontext.rag.store import VectorStore\n"
        "try:\n"
        "    VectorStore.load(sys.argv[1])\n"
        "except RagError as exc:\n"
        "    print('refused:', exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", child, str(folder)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("refused:") and "damaged" in done.stdout
    assert "deserialization" in done.stdout  # FAISS's own limit, not a failed allocation
