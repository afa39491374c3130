"""The README's quickstart works as written (blocks that need model weights are left out)."""

from __future__ import annotations

import re

import pytest
from conftest import ROOT

BLOCKS = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs(index: int) -> None:
    block = BLOCKS[index]
    if "LongContextLLM(" in block:
        pytest.skip("needs a real model's weights from a hub, which tests never download")
    exec(compile(block, f"README block {index}", "exec"), {})


def test_readme_has_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make run" in readme and "make test" in readme
