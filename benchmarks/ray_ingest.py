"""`longcontext index` locally against `longcontext index --ray` with 1 and 2 workers.

Indexes the five shared corpora (0.76 MB) into a new index with each mode, every run a fresh
``longcontext index ... --json`` process, the way a user runs it: ``wall s`` counts everything
(Python start, imports, the driver's model load, for Ray starting a local Ray and the actors'
model loads), ``index s`` the ``build_index`` call the JSON report times. Each Ray index is then
compared with the local one: the same chunks, and the largest difference of a vector component.

    .venv/bin/python benchmarks/ray_ingest.py [--workers 1,2] [--repeats 1] [--json FILE]
    .venv/bin/python benchmarks/ray_ingest.py --address ray://HEAD:10001   # an existing cluster

A local Ray on a small machine mostly adds overhead: the actors load the model again, and the
work is the same forward passes on the same cores. Ray pays off when the cluster has more
cores or GPUs than the machine running ``longcontext index`` (see docs/ray.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import CORPUS_FILES, REPO_ROOT, markdown_table, setup_offline, shared_dir


def run_index(folder: Path, index: Path, extra: list[str]) -> dict[str, Any]:
    """One ``longcontext index`` process: its JSON report, with ``wall`` seconds added."""
    shutil.rmtree(index, ignore_errors=True)
    command = [sys.executable, "-m", "longcontext.cli", "index", str(folder), "--index", str(index)]
    began = time.perf_counter()
    done = subprocess.run(
        [*command, "--json", *extra], capture_output=True, text=True, cwd=REPO_ROOT, check=False
    )
    wall = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command + extra)} failed:\n{done.stderr}")
    report: dict[str, Any] = json.loads(done.stdout)
    report["wall"] = wall
    return report


def compare(index: Path, reference: Path) -> tuple[bool, float, str]:
    """Same chunks?, largest vector difference, and the backend the embeddings ran on."""
    from longcontext.rag.store import VectorStore

    got, want = VectorStore.load(index), VectorStore.load(reference)
    same = got.chunks == want.chunks
    diff = float(abs(got.vectors - want.vectors).max()) if same and len(want.chunks) else -1.0
    return same, diff, str(getattr(want.embeddings, "backend", "torch"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1,2", help="--ray-workers values to run")
    parser.add_argument("--address", default=None, help="--ray ADDRESS (default: a local Ray)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each mode; best is kept")
    parser.add_argument("--json", type=Path, default=None, help="write the rows to this file")
    parser.add_argument("--extra", default="", help="more `index` options, e.g. '--chunk-size 120'")
    args = parser.parse_args()
    setup_offline()
    os.environ.setdefault("RAY_ADDRESS", "")  # a local Ray unless --address says otherwise

    root = Path(tempfile.mkdtemp(prefix="longcontext-ray-bench-"))
    folder = root / "corpora"
    folder.mkdir()
    source = shared_dir() / "data" / "corpora"
    for name in CORPUS_FILES:
        shutil.copyfile(source / name, folder / name)
    megabytes = sum((folder / n).stat().st_size for n in CORPUS_FILES) / 1e6
    extra = args.extra.split()
    ray_option = ["--ray", args.address] if args.address else ["--ray"]

    modes: list[tuple[str, list[str]]] = [("local (no Ray)", [])]
    for workers in (int(w) for w in args.workers.split(",") if w.strip()):
        modes.append((f"Ray, {workers} worker(s)", [*ray_option, "--ray-workers", str(workers)]))
    rows: list[dict[str, Any]] = []
    try:
        for label, options in modes:
            index = root / f"index-{len(rows)}"
            best: dict[str, Any] | None = None
            for _ in range(args.repeats):
                report = run_index(folder, index, [*extra, *options])
                if best is None or report["wall"] < best["wall"]:
                    best = report
            assert best is not None
            same, diff, backend = compare(index, root / "index-0")
            rows.append(
                {
                    "mode": label,
                    "wall_s": round(best["wall"], 1),
                    "index_s": round(best["seconds"], 1),
                    "chunks": best["chunks"],
                    "mb_per_s": round(megabytes / best["wall"], 4),
                    "same_chunks": same,
                    "max_vector_diff": diff,
                    "backend": backend,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    local = rows[0]["wall_s"]
    table = [
        (
            r["mode"],
            r["wall_s"],
            r["index_s"],
            r["mb_per_s"],
            f"{local / r['wall_s']:.2f}x",
            r["chunks"],
            "yes" if r["same_chunks"] else "NO",
            f"{r['max_vector_diff']:.1e}",
        )
        for r in rows
    ]
    headers = ("mode", "wall s", "index s", "MB/s", "vs local", "chunks", "same chunks", "max diff")
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    print(f"\n{megabytes:.2f} MB, the five shared corpora; {machine}")
    print(f"embeddings backend: {rows[0]['backend']}\n")
    print(markdown_table(headers, table))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
