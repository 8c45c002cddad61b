"""The rate steps of the step-up load shape: `--step-qps 1,2,4 --step-s 20 --user-qps 0.5`.

Each user paces itself at --user-qps (constant_throughput), so a step's total rate is
reached by running ceil(rate / user_qps) users; after the last step the shape ends the run.
The Locust class itself is in loadtest/step_shape.py: importing Locust monkey-patches the
process with gevent, so library modules never import it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class RateSteps:
    rates_qps: tuple[float, ...]
    step_s: float
    user_qps: float

    def __post_init__(self) -> None:
        if not self.rates_qps or any(r <= 0 for r in self.rates_qps):
            raise ValueError(f"--step-qps must be positive rates, got {self.rates_qps}")
        if self.step_s <= 0:
            raise ValueError(f"--step-s must be > 0, got {self.step_s}")
        if self.user_qps <= 0:
            raise ValueError("--user-qps must be > 0 with the step shape (it sets users per step)")

    @classmethod
    def parse(cls, rates: str, step_s: float, user_qps: float) -> "RateSteps":
        try:
            values = tuple(float(r) for r in rates.split(",") if r.strip())
        except ValueError:
            raise ValueError(f"--step-qps must be comma-separated numbers, got {rates!r}") from None
        return cls(values, step_s, user_qps)

    def users_at(self, elapsed_s: float) -> int | None:
        """Users to run `elapsed_s` into the test; None once every step is done."""
        index = int(elapsed_s // self.step_s)
        if index >= len(self.rates_qps):
            return None
        return max(1, math.ceil(self.rates_qps[index] / self.user_qps - 1e-9))

