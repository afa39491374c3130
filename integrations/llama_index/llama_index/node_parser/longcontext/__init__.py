"""See llama_index.node_parser.longcontext."""
