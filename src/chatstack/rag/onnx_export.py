"""Export a BERT-class sentence encoder (HF folder) to ONNX with pooling built in.

Graph inputs: `input_ids`, `attention_mask` (B, T) int64. Output: `embedding` (B, dim),
the attention-masked mean of the last hidden states, L2-normalised.
"""

from __future__ import annotations

from pathlib import Path

import torch

OPSET = 17


class PooledEncoder(torch.nn.Module):
    """A transformers encoder followed by mean pooling and L2 normalisation."""

    def __init__(self, encoder: torch.nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, H)
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        summed = (hidden * mask).sum(dim=1)  # (B, H)
        mean = summed / mask.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(mean, p=2.0, dim=1)


def load_pooled_encoder(model_dir: Path) -> PooledEncoder:
    from transformers import AutoModel

    # eager attention: the SDPA path decides on the mask in Python, which tracing would freeze
    encoder = AutoModel.from_pretrained(str(model_dir), local_files_only=True, attn_implementation="eager")
    return PooledEncoder(encoder).eval()


def export_embedder(model_dir: Path, out_path: Path) -> Path:
    """Write `out_path` (.onnx) for the encoder in `model_dir`; returns `out_path`."""
    model = load_pooled_encoder(model_dir)
    # the example batch is padded, so no all-ones-mask shortcut can be traced into the graph
    example = {
        "input_ids": torch.tensor([[101, 2023, 2003, 1037, 3231, 102], [101, 7592, 102, 0, 0, 0]]),
        "attention_mask": torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0]]),
    }
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(".onnx.tmp")
    with torch.no_grad():
        torch.onnx.export(
            model,
            (),
            str(tmp),
            kwargs=example,
            input_names=["input_ids", "attention_mask"],
            output_names=["embedding"],
            dynamic_axes={"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
                          "embedding": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
    tmp.replace(out_path)
    return out_path
