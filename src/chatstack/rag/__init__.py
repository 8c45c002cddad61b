"""Retrieval-augmented generation: retrievers and passages."""
