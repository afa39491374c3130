"""See llama_index.llms.longcontext."""
