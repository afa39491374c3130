"""Embeddings backends on CPU: throughput and retrieval quality of torch, ONNX and int8 ONNX.

The five shared corpora are cut as ``longcontext index`` cuts them (200-token windows of
all-MiniLM-L6-v2 word pieces, 40 shared), every chunk is embedded by each backend through the
same :class:`longcontext.rag.embeddings.Embedder` the index uses, and the 132 dev questions
retrieve their top 5 chunks from one index of all five corpora (Chroma's protocol, as in
chunk_quality.py): recall@5 is the share of each question's reference characters covered by the
retrieved chunks. Throughput is chunks embedded per second of wall time and per second of
process CPU time (all threads; best of ``--repeat`` runs; the ONNX files are exported before
timing), with the ratio to the first backend. On a machine other jobs share, wall time depends on
them; CPU time much less so.

    python benchmarks/embeddings_backends.py [--backends torch,onnx,onnx-int8] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Iterable, Sequence

from _common import load_corpora, load_questions, markdown_table, setup_offline

setup_offline()

import numpy as np  # noqa: E402  (after the offline set-up)

from longcontext.rag.embeddings import BACKENDS, Embedder, load_embedder  # noqa: E402
from longcontext.splitters import TokenSplitter  # noqa: E402

K = 5
Span = tuple[int, int]


def union_length(spans: Iterable[Span]) -> int:
    total, end = 0, -1
    for start, stop in sorted(spans):
        if stop > end:
            total += stop - max(start, end)
            end = stop
    return total


def recall_at_k(
    questions: Sequence[dict[str, object]], index: Sequence[tuple[str, Span]], top: np.ndarray
) -> float:
    """Mean share of reference characters covered by the retrieved chunks of the right corpus."""
    recalls = []
    for question, rows in zip(questions, top):
        refs = [(r["start_index"], r["end_index"]) for r in question["references"]]  # type: ignore[attr-defined]
        covered = union_length(
            (max(a, ra), min(b, rb))
            for corpus, (a, b) in (index[i] for i in rows)
            if corpus == question["corpus_id"]
            for ra, rb in refs
            if max(a, ra) < min(b, rb)
        )
        recalls.append(covered / union_length(refs))
    return 100 * float(np.mean(recalls))


def timed_embed(
    embedder: Embedder, texts: list[str], repeat: int
) -> tuple[np.ndarray, float, float]:
    """The vectors, and the least wall and CPU seconds of ``repeat`` runs."""
    wall = cpu = float("inf")
    vectors = np.zeros(0)
    for _ in range(repeat):
        began, began_cpu = time.perf_counter(), time.process_time()
        vectors = embedder.embed(texts, progress=False)
        wall = min(wall, time.perf_counter() - began)
        cpu = min(cpu, time.process_time() - began_cpu)
    return vectors, wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all)")
    parser.add_argument("--repeat", type=int, default=1, help="timed runs per backend")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)

    corpora = load_corpora()
    questions = load_questions()
    backends = args.backends.split(",")
    embedders = {b: load_embedder(None, backend=b) for b in backends}  # exports before timing
    if args.threads:
        for embedder in embedders.values():
            session = getattr(embedder, "session", None)
            if session is not None:  # a new session with the thread count asked for
                import onnxruntime

                options = onnxruntime.SessionOptions()
                options.intra_op_num_threads = args.threads
                embedder.session = onnxruntime.InferenceSession(  # type: ignore[attr-defined]
                    str(embedder.model_file),  # type: ignore[attr-defined]
                    options,
                    providers=["CPUExecutionProvider"],
                )
    first = embedders[backends[0]]
    splitter = TokenSplitter(first.tokenizer, 200, 40)
    index: list[tuple[str, Span]] = []
    texts: list[str] = []
    for name, text in corpora.items():
        for chunk in splitter.split(text):
            index.append((name.rsplit(".", 1)[0], (chunk.start, chunk.end)))
            texts.append(chunk.text)
    megabytes = sum(len(t.encode("utf-8")) for t in corpora.values()) / 1e6
    print(f"{len(texts)} chunks of {megabytes:.2f} MB, {len(questions)} questions, k={K}")

    rows = []
    reference: np.ndarray | None = None
    base_rate = base_cpu_rate = 0.0
    for backend, embedder in embedders.items():
        vectors, seconds, cpu_seconds = timed_embed(embedder, texts, args.repeat)
        queries = embedder.embed([str(q["question"]) for q in questions], progress=False)
        top = np.argsort(-(queries @ vectors.T), axis=1)[:, :K]
        recall = recall_at_k(questions, index, top)
        rate, cpu_rate = len(texts) / seconds, len(texts) / cpu_seconds
        base_rate, base_cpu_rate = base_rate or rate, base_cpu_rate or cpu_rate
        if reference is None:
            reference, base_recall = vectors, recall
        cosine = np.sum(vectors * reference, axis=1)
        rows.append(
            [
                backend,
                f"{rate:.1f}",
                f"{rate / base_rate:.2f}x",
                f"{cpu_rate:.1f}",
                f"{cpu_rate / base_cpu_rate:.2f}x",
                f"{recall:.1f}",
                f"{recall - base_recall:+.1f}",
                f"{cosine.mean():.4f} / {cosine.min():.4f}",
            ]
        )
        print(f"  {backend}: {seconds:.1f} s, {cpu_seconds:.1f} CPU s", flush=True)
    headers = [
        "backend",
        "chunks/s",
        f"vs {backends[0]}",
        "chunks/CPU s",
        f"vs {backends[0]}",
        "recall@5",
        f"Δ recall vs {backends[0]}",
        f"cosine to {backends[0]} (mean / min)",
    ]
    print(markdown_table(headers, rows))


if __name__ == "__main__":
    main()
