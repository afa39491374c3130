"""LangChain components for longcontext."""
