"""``import longcontext`` stays light: no heavy framework loads until a name needs it."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = (
    "torch",
    "transformers",
    "vllm",
    "langchain_core",
    "llama_index",
    "sentence_transformers",
    "faiss",
)


def _modules_after(statement: str) -> set[str]:
    code = f"import sys, json; {statement}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_import_longcontext_loads_no_heavy_module() -> None:
    loaded = _modules_after("import longcontext")
    assert not [m for m in loaded if m.split(".")[0] in HEAVY]


def test_splitting_loads_no_heavy_module() -> None:
    loaded = _modules_after(
        "import longcontext; longcontext.TokenSplitter('cl100k_base', 64, 8).split('hello world');"
        "longcontext.SemanticSplitter('cl100k_base', 64).split('Hello. World.')"
    )
    assert not [m for m in loaded if m.split(".")[0] in HEAVY]


def test_lazy_names_resolve() -> None:
    import longcontext

    for name in longcontext.__all__:
        assert getattr(longcontext, name) is not None
