"""Post-training: supervised fine-tuning and preference optimisation (TRL + PEFT)."""
