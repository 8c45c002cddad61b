"""Stop a transformers/TRL Trainer when a wall-clock budget runs out."""

from __future__ import annotations

import time

from transformers import TrainerCallback


class TimeBudget(TrainerCallback):
    def __init__(self, seconds: float):
        self.seconds = seconds
        self.started = time.monotonic()
        self.stopped_early = False

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.monotonic()

    def on_step_end(self, args, state, control, **kwargs):
        if time.monotonic() - self.started > self.seconds:
            control.should_training_stop = True
            self.stopped_early = True
        return control
