"""The two example pipelines end to end on CPU: real all-MiniLM-L6-v2 embeddings, real FAISS,
real LangChain and LlamaIndex objects, and a tiny real model (random weights, so the answer's
words mean nothing; the tests check the pipeline around it). Plus the path where no model loads."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest
import rag_fixtures
import tiny_models

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ("langchain_rag", "llamaindex_rag")
CITATION = re.compile(r"\[(\d+)\] (\S+), characters (\d+)-(\d+) \(score (-?[\d.]+)")
UNLOADABLE = "longcontext-tests/no-such-model"  # a hub id that cannot load offline

corpus = rag_fixtures.corpus
tiny_qwen2_dir = tiny_models.tiny_qwen2_dir


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sources(output: str) -> list[tuple[str, int, int]]:
    block = output.split("\nSources:\n", 1)[1]
    return [(s, int(a), int(b)) for _, s, a, b, _ in CITATION.findall(block)]


@pytest.mark.parametrize("name", EXAMPLES)
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_example_answers_with_a_tiny_model_and_cites(
    name: str, stream: bool, corpus, tiny_qwen2_dir: Path, capsys
) -> None:
    folder, texts = corpus
    argv = [
        "--docs",
        str(folder),
        "--question",
        "Who are the two households in Verona?",
        "--model",
        str(tiny_qwen2_dir),
        "--max-tokens",
        "8",
        "--top-k",
        "4",
    ]
    code = load_example(name).main(argv + (["--stream"] if stream else []))
    out, err = capsys.readouterr()
    assert code == 0
    assert "8192-token window, RoPE yarn, transformers backend" in err  # 2048 stretched 4x
    assert "generation skipped" not in out
    answer, _ = out.split("\nSources:\n", 1)
    assert answer.strip()
    cited = sources(out)
    assert cited and cited[0][0] == "play/romeo.txt"  # the best source is cited first
    for source, start, end in cited:
        assert 0 <= start < end <= len(texts[source])


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_without_a_model_still_retrieves_packs_and_reorders(
    name: str, corpus, capsys
) -> None:
    folder, texts = corpus
    argv = [
        "--docs",
        str(folder),
        "--question",
        "What does the president say about jobs?",
        "--model",
        UNLOADABLE,
        "--top-k",
        "5",
        "--context-length",
        "1200",
        "--max-tokens",
        "100",
    ]
    code = load_example(name).main(argv)
    out, _ = capsys.readouterr()
    assert code == 0
    (skipped,) = [line for line in out.splitlines() if line.startswith("generation skipped")]
    assert f"could not load model {UNLOADABLE!r}" in skipped
    summary = re.search(
        r"packed (\d+) source\(s\) from (\d+) retrieved chunk\(s\): (\d+) context "
        r"tokens of a (\d+)-token budget, (\d+) prompt tokens",
        out,
    )
    assert summary is not None
    kept, retrieved, context, budget, prompt = map(int, summary.groups())
    assert 1 <= kept <= retrieved == 5
    assert context <= budget < 1200 - 100 and prompt > context
    prompt_text = out.split("=== packed prompt ===", 1)[1].split("=== end of packed prompt ===")[0]
    cited = sources(out)
    assert len(cited) == kept and cited[0][0] == "speech.md"
    for source, start, end in cited:
        assert texts[source][start:end] in prompt_text  # each source is its exact span
    # The sources appear in the prompt in the order the citations list them.
    positions = [prompt_text.index(texts[s][a:b]) for s, a, b in cited]
    assert positions == sorted(positions)


def test_examples_default_to_the_projects_own_docs(capsys) -> None:
    module = load_example("langchain_rag")
    assert module.DEFAULT_DOCS == ROOT / "docs" and module.DEFAULT_MODEL == (
        "Qwen/Qwen2.5-0.5B-Instruct"
    )
    assert module.main(["--model", UNLOADABLE, "--question", "What is the U-shaped curve?"]) == 0
    out, _ = capsys.readouterr()
    assert "generation skipped" in out
    cited = sources(out)
    assert cited and all((ROOT / "docs" / s).is_file() for s, _, _ in cited)
