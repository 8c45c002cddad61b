"""Single-stream decode against the bandwidth floor: the weights a decode step reads, read once at the bandwidth of
a buffer their size, sampled beside the steps (from memory, or from the last-level cache where it holds them)."""

from __future__ import annotations

import dataclasses
import time

import torch

from chatstack.backends.base import GenerationRequest, SamplingParams
from chatstack.engine.llm_engine import LLMEngine
from chatstack.engine.quant import Dense, Int4Linear, Int8Linear, PackedDense

DRAM_PROBE_BYTES = 2 * 2**30  # larger than any last-level cache here (the Xeon's is 480 MiB)


def read_bandwidth_gbps(nbytes: int = DRAM_PROBE_BYTES) -> float:
    """Read bandwidth at torch's thread count, summing a float32 buffer of `nbytes` (at least 1 MiB), best of
    five passes after a first one: from memory for a buffer larger than the caches, from cache for one they hold."""
    data = torch.ones(max(nbytes, 2**20) // 4)
    data.sum()
    best = min(timed(data.sum) for _ in range(5))
    return data.numel() * 4 / best / 1e9


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def decode_weight_bytes(model: torch.nn.Module) -> int:
    """Bytes one decode step must read: every projection (lm_head included) and norm; of a prepacked projection that
    keeps a plain copy too, one of the two."""
    total = 0
    for module in model.modules():
        if isinstance(module, (Dense, PackedDense, Int8Linear, Int4Linear)) or type(module).__name__ == "RMSNorm":
            tensors = list(module.parameters()) + [b for name, b in module.named_buffers()
                                                   if not (isinstance(module, PackedDense) and name == "weight_t")]
            total += sum(t.numel() * t.element_size() for t in tensors)
    return total


@dataclasses.dataclass(frozen=True)
class SingleStream:
    """One greedy stream's decode steps, each followed by two reads of a buffer the size of the weights a step
    reads (the floor's probe), the second timed, so that steps and floor are sampled side by side under the same
    conditions: on these shared machines the cache bandwidth a probe sees moves by 1.5x from minute to minute, and a
    buffer left alone for a millisecond partly leaves the cache (the first read warms it as the steps keep the
    weights warm)."""

    step_ms: float  # median time per token over the steps (a step of several decode steps counts per token)
    floor_ms: float  # median read of the probe
    fastest_step_ms: float
    fastest_floor_ms: float

    @property
    def ratio(self) -> float:
        return self.step_ms / self.floor_ms

    @property
    def fastest_ratio(self) -> float:
        return self.fastest_step_ms / self.fastest_floor_ms

    def bandwidth_gbps(self, weight_bytes: int) -> float:
        return weight_bytes / (self.floor_ms * 1e6)


def single_stream(engine: LLMEngine, prompt: tuple[int, ...], tokens: int, weight_bytes: int) -> SingleStream:
    probe = torch.ones(max(weight_bytes, 2**20) // 4)
    probe.sum()
    engine.add_request(GenerationRequest("single", prompt, SamplingParams(max_tokens=tokens, temperature=0.0,
                                                                          ignore_eos=True)))
    engine.step()  # prefill
    steps, reads = [], []
    while engine.has_unfinished():  # a step may give several tokens (lone_decode_steps): time per token
        start = time.perf_counter()
        tokens = sum(len(result.new_token_ids) for result in engine.step())
        steps.append((time.perf_counter() - start) / max(tokens, 1))
        probe.sum()  # back into the cache, as the steps keep the weights there; then the timed read
        reads.append(timed(probe.sum) * weight_bytes / (probe.numel() * 4))
    median = lambda values: 1000 * sorted(values)[len(values) // 2]  # noqa: E731
    return SingleStream(median(steps), median(reads), 1000 * min(steps), 1000 * min(reads))


def single_stream_ms(engine: LLMEngine, prompt: tuple[int, ...], tokens: int) -> float:
    """Median ms per decode step of one greedy stream."""
    return single_stream(engine, prompt, tokens, decode_weight_bytes(engine.runner.model)).step_ms
