"""Inference engines behind ``LongContextLLM``; each module imports its library lazily."""
