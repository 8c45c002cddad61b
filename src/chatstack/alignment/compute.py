"""Where and how a recipe trains: device, precision, activation checkpointing, accumulation.

The defaults are the demo's CPU settings (fp32, no checkpointing: TRL defaults to bf16
autocast and is slow on CPUs without bf16 units). GPU recipes (the Llama-3-8B scale path,
run under `accelerate launch` with FSDP or DeepSpeed ZeRO-3) set `device: cuda` and bf16.
"""

from __future__ import annotations

from dataclasses import dataclass

DEVICES = ("cpu", "cuda")
PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class ComputeSettings:
    device: str = "cpu"
    precision: str = "fp32"
    gradient_checkpointing: bool = False
    gradient_accumulation_steps: int = 1

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ValueError(f"compute.device must be one of {DEVICES}, got {self.device!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"compute.precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.device == "cpu" and self.precision == "fp16":
            raise ValueError("compute.precision fp16 needs device cuda (CPU training supports fp32 or bf16)")
        if not isinstance(self.gradient_checkpointing, bool):
            raise ValueError(f"compute.gradient_checkpointing must be true or false, got {self.gradient_checkpointing!r}")
        if (isinstance(self.gradient_accumulation_steps, bool) or not isinstance(self.gradient_accumulation_steps, int)
                or self.gradient_accumulation_steps < 1):
            raise ValueError(f"compute.gradient_accumulation_steps must be an integer >= 1, "
                             f"got {self.gradient_accumulation_steps!r}")

    def trainer_kwargs(self) -> dict:
        """The transformers/TRL TrainingArguments these settings stand for."""
        return {"use_cpu": self.device == "cpu", "bf16": self.precision == "bf16", "fp16": self.precision == "fp16",
                "gradient_checkpointing": self.gradient_checkpointing,
                "gradient_accumulation_steps": self.gradient_accumulation_steps}
