"""The README and every docs page run as written.

The Python blocks of a page run in order in one namespace, from the repository root, as a reader
would paste them. Two stand-ins, and only these, replace what a test cannot download:

- a Hugging Face model id of a generation model (``Qwen/...``, ``path/to/Llama-3-8B``) becomes a
  tiny model of the same architecture built in a fixture (random weights);
- ``vllm.LLM(...)`` needs a GPU to start an engine, so its arguments go to vLLM's own
  ``EngineArgs(...).create_model_config()``, which validates them on the CPU.

Embedding models are not replaced: the docs use the packaged all-MiniLM-L6-v2, which works offline.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT
from tiny_models import tiny_llama_dir, tiny_qwen2_dir  # noqa: F401 - pytest fixtures

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
# Generation models named by hub id, and which tiny fixture stands in for each architecture.
HUB_MODELS = {
    "Qwen/Qwen2.5-0.5B-Instruct": "tiny_qwen2_dir",
    "path/to/Llama-3-8B": "tiny_llama_dir",
}


def python_blocks(page: Path) -> list[str]:
    return BLOCK.findall(page.read_text(encoding="utf-8"))


RUNNABLE = [page for page in PAGES if python_blocks(page)]


def _engine_config(**kwargs: Any) -> Any:
    """Stand-in for ``vllm.LLM(**kwargs)``: vLLM checks the same arguments without a GPU."""
    from vllm.engine.arg_utils import EngineArgs

    return EngineArgs(**kwargs, skip_tokenizer_init=True).create_model_config()


def _page_source(page: Path, request: pytest.FixtureRequest) -> str:
    source = "\n".join(python_blocks(page))
    for hub_id, fixture in HUB_MODELS.items():
        if hub_id in source:
            local = str(request.getfixturevalue(fixture))
            source = source.replace(f'"{hub_id}"', repr(local))
    return re.sub(r"^from vllm import LLM$", "LLM = _engine_config", source, flags=re.M)


@pytest.mark.parametrize("page", RUNNABLE, ids=lambda p: str(p.relative_to(ROOT)))
def test_page_runs_as_written(
    page: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    namespace: dict[str, Any] = {"_engine_config": _engine_config, "__name__": "__docs__"}
    exec(compile(_page_source(page, request), str(page), "exec"), namespace)


def test_every_page_with_code_is_checked() -> None:
    assert {p.name for p in RUNNABLE} >= {"README.md", "langchain.md", "llamaindex.md", "rope.md"}


def test_readme_has_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make run" in readme and "make test" in readme
