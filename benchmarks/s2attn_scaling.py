"""S2-Attn against full causal attention: forward + backward time and peak memory by length.

One attention layer's worth of queries, keys and values (batch 1, ``--heads`` heads of 64), the
same call the model makes in training (``longcontext.finetune.s2attn.s2_attention``) against
``scaled_dot_product_attention(is_causal=True)``. At a fixed group size S2-Attn's cost grows
linearly with the length, full attention's quadratically. Each (method, length) runs in a fresh
process so the peak memory is its own: CUDA's max allocated bytes on a GPU, the process's peak
RSS growth on a CPU (where torch's causal sdpa is a flash kernel, so memory is linear for both
and the time is what differs).

    python benchmarks/s2attn_scaling.py [--lengths 1024,2048,4096,8192] [--group 1024] [--heads 4]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from typing import Any


def measure(method: str, length: int, group: int, heads: int, repeats: int) -> dict[str, Any]:
    import torch

    from longcontext.finetune.s2attn import s2_attention

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    gen = torch.Generator(device=device).manual_seed(0)
    shape = (1, heads, length, 64)
    q, k, v = (
        torch.randn(shape, generator=gen, device=device, dtype=dtype).requires_grad_()
        for _ in range(3)
    )

    def step() -> None:
        if method == "s2attn":
            out = s2_attention(q, k, v, group)
        else:
            out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        out.float().sum().backward()

    step()  # warm-up: kernels chosen, allocator settled
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    for _ in range(repeats):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    seconds = (time.perf_counter() - started) / repeats
    return {"seconds": seconds, "peak_mib": peak, "device": device}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="1024,2048,4096,8192")
    parser.add_argument("--group", type=int, default=1024)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--one", nargs=2, metavar=("METHOD", "LENGTH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        result = measure(args.one[0], int(args.one[1]), args.group, args.heads, args.repeats)
        print(json.dumps(result))
        return
    print(f"group {args.group}, {args.heads} heads of 64, forward + backward")
    print("| length | S2-Attn s | full s | S2-Attn peak MiB | full peak MiB |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for length in map(int, args.lengths.split(",")):
        row = {}
        for method in ("s2attn", "full"):
            command = [sys.executable, __file__, "--one", method, str(length),
                       "--group", str(args.group), "--heads", str(args.heads),
                       "--repeats", str(args.repeats)]  # fmt: skip
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            row[method] = json.loads(done.stdout.strip().splitlines()[-1])
        s2, full = row["s2attn"], row["full"]
        print(
            f"| {length} | {s2['seconds']:.3f} | {full['seconds']:.3f} | "
            f"{s2['peak_mib']:.0f} | {full['peak_mib']:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
