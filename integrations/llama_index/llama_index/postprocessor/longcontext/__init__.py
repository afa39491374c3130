"""See llama_index.postprocessor.longcontext."""
