"""The README's quickstart works as written.

The block that loads a model from the hub runs against a tiny Qwen2 model built in a fixture
(same architecture, random weights): the one stand-in, for weights tests never download.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import ROOT
from tiny_models import tiny_qwen2_dir  # noqa: F401 - pytest fixture

BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs(index: int, request: pytest.FixtureRequest) -> None:
    block = BLOCKS[index]
    hub_ids = re.findall(r'LongContextLLM\(\s*"([^"]+)"', block)
    if hub_ids:
        local: Path = request.getfixturevalue("tiny_qwen2_dir")
        for hub_id in hub_ids:
            block = block.replace(f'"{hub_id}"', repr(str(local)))
    exec(compile(block, f"README block {index}", "exec"), {})


def test_readme_has_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make run" in readme and "make test" in readme
