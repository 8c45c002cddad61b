"""Retrieval-augmented generation: ingest (documents, chunking, store), the ONNX embedder, retrieval, grounding, evaluation."""
