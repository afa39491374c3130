"""The framework adapters use only names the core exports (issue 8, section 5).

An adapter that imports ``longcontext.splitters.base.Splitter`` or ``check_strategy`` from deep
inside the core breaks whenever the core moves its internals; the exported names are the
contract. Checked on the source, so a new deep import fails here.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
from pathlib import Path

import pytest
from conftest import ROOT

ADAPTERS = [
    "integrations/langchain/langchain_longcontext/splitters.py",
    "integrations/langchain/langchain_longcontext/reorder.py",
    "integrations/llama_index/llama_index/node_parser/longcontext/base.py",
    "integrations/llama_index/llama_index/postprocessor/longcontext/base.py",
    "integrations/langchain/langchain_longcontext/_engine.py",
    "integrations/langchain/langchain_longcontext/chat_models.py",
    "integrations/langchain/langchain_longcontext/llms.py",
    "integrations/llama_index/llama_index/llms/longcontext/base.py",
]


def core_imports(path: Path) -> list[tuple[str, str]]:
    """(module, name) of every ``from longcontext... import name`` in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(a.name, "") for a in node.names if a.name.split(".")[0] == "longcontext"]
        elif (
            isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "longcontext"
        ):
            found += [(node.module or "", a.name) for a in node.names]
    return found


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_adapters_import_only_exported_core_names(adapter: str) -> None:
    imports = core_imports(ROOT / adapter)
    assert imports  # the adapter is built on the core
    for module_name, name in imports:
        exported = getattr(importlib.import_module(module_name), "__all__", None)
        assert exported is not None, f"{adapter} imports from {module_name}, which exports nothing"
        if name in exported:
            continue
        # Otherwise only a public submodule made for the adapters, whose __all__ is the contract.
        assert name and not name.startswith("_"), f"{adapter} imports {name} from {module_name}"
        assert importlib.util.find_spec(f"{module_name}.{name}"), f"{name} is not exported"
        submodule = importlib.import_module(f"{module_name}.{name}")
        assert getattr(submodule, "__all__", None), (
            f"{adapter}: {module_name}.{name} exports nothing"
        )
