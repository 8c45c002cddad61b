"""User feedback on answers (thumbs up/down, corrections) and preference pairs for DPO."""
