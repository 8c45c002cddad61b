"""Runs one scheduled step: flattens the chunks into one batch, one forward, then samples."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from chatstack.backends.base import TokenLogprob
from chatstack.engine.attention import AttentionMetadata
from chatstack.engine.config import EngineConfig
from chatstack.engine.cpu_kernels import paged_attention_kernel
from chatstack.engine.huge_pages import huge_page_zeros
from chatstack.engine.layer_ops import LayerOpsKernel, layer_ops_kernel
from chatstack.engine.llama import load_llama
from chatstack.engine.quant import PackedDense, float32_prepack_pays
from chatstack.engine.sampler import sample
from chatstack.engine.scheduler import ScheduledChunk, SchedulerOutput
from chatstack.engine.sequence import Sequence
from chatstack.engine.single_decode import SingleDecodePath


# With half-precision weights that oneDNN runs natively (dot-product instructions), its matmul caught up with the
# one-call step's widening panels at 16-23 rows and beat them from 24 (docs/benchmarks.md): such steps stay there,
# unless the step has the pair dot product itself (decode_step_bf16dp.h).
HALF_PRECISION_DECODE_ROWS = 15


class ModelRunner:
    def __init__(self, model_dir: str | Path, config: EngineConfig, device: str = "cpu",
                 dtype: torch.dtype = torch.float32):
        self.config = config
        self.device = torch.device(device)
        # compile traces plain matmuls (a prepacked oneDNN weight is opaque to it and failed every bf16 step)
        prepack_float32 = self._prepack_float32(config, dtype)
        self.model = load_llama(model_dir, dtype, self.device, config.quantization, prepack=not config.compile,
                                keep_plain=config.single_decode != "off",  # for the one-call step to pack
                                prepack_float32=prepack_float32)
        self.spec = spec = self.model.spec
        # stored (layers, k/v, num_blocks, n_kv_heads, block_size, head_dim): each KV head's slots of a block are
        # contiguous, which the decode kernel reads faster than heads side by side (docs/benchmarks.md); seen as
        # (layers, k/v, num_blocks, block_size, n_kv_heads, head_dim) through strides
        shape = (spec.num_layers, 2, config.num_kv_blocks, spec.num_kv_heads, config.block_size, spec.head_dim)
        if self.device.type == "cpu" and config.kv_cache_huge_pages:
            pool = huge_page_zeros(shape, dtype)[0]
        else:
            pool = torch.zeros(shape, dtype=dtype, device=self.device)
        self.kv_cache = pool.transpose(3, 4)
        if config.compile:
            for layer in self.model.layers:
                layer.project_qkv = torch.compile(layer.project_qkv, dynamic=True)
                layer.attention_out_and_mlp = torch.compile(layer.attention_out_and_mlp, dynamic=True)
        self.decode_kernel = self._use_decode_kernel(config.attention, dtype)
        # the element-wise work between the matmuls in C, where it applies (compile fuses it its own way)
        if self.device.type == "cpu" and dtype in LayerOpsKernel.DTYPES and not config.compile:
            self.model.layer_ops = layer_ops_kernel()
        # a step with one decoding sequence runs all layers in one C call (not with compile: that is its own path)
        self.single_decode = self._single_decode_path(config)
        self.decode_rows_max_seqs = config.decode_rows_max_seqs  # the most sequences a one-call decode step takes
        # half-precision weights that oneDNN runs natively, on widening panels: oneDNN's matmul caught up with them
        # from 16 rows at one thread, and several threads were not measured there, so they stay on one. The pair
        # dot product beat oneDNN at 2-128 rows on one and on two threads (docs/benchmarks.md): no limit on it.
        self._native_half = (dtype != torch.float32 and isinstance(self.model.layers[0].qkv, PackedDense)
                             and not (self.single_decode is not None and self.single_decode.pairs))
        if self._native_half:
            self.decode_rows_max_seqs = min(self.decode_rows_max_seqs, HALF_PRECISION_DECODE_ROWS)
        # the plain copies kept beside prepacked weights served only the one-call step, which has its own copy now
        for module in self.model.modules():
            if isinstance(module, PackedDense):
                module.weight_t = None
        self._lone_token_s: float | None = None  # seconds per token of the last lone greedy decode step

    def _prepack_float32(self, config: EngineConfig, dtype: torch.dtype) -> bool:
        applies = (self.device.type == "cpu" and dtype == torch.float32 and not config.compile
                   and config.quantization is None and PackedDense.applies(torch.zeros(0), float32=True))
        if config.float32_prepack == "on" and not applies:
            raise ValueError("float32_prepack 'on' needs unquantized float32 weights on the CPU without compile, "
                             "and torch built with oneDNN")
        if config.float32_prepack == "off" or not applies:
            return False
        return config.float32_prepack == "on" or float32_prepack_pays(torch.get_num_threads())

    def _single_decode_path(self, config: EngineConfig) -> SingleDecodePath | None:
        if config.single_decode == "off":
            return None
        why_not = ("it is not used with compile" if config.compile else
                   SingleDecodePath.applies(self.model, self.kv_cache)
                   or (None if self.decode_kernel else "it needs the C attention kernel"))
        path = None if why_not else SingleDecodePath.create(self.model, self.kv_cache)
        if config.single_decode == "on" and path is None:
            raise ValueError(f"single_decode 'on' does not apply here: {why_not or 'the C kernel could not be built'}")
        return path

    def _use_decode_kernel(self, attention: str, dtype: torch.dtype) -> bool:
        if attention == "torch":
            return False
        applies = self.device.type == "cpu" and dtype in (torch.float32, torch.bfloat16)
        if attention == "kernel" and not applies:
            raise ValueError(f"attention 'kernel' needs float32 or bfloat16 on the CPU; got {dtype} on {self.device.type}")
        available = applies and paged_attention_kernel() is not None
        if attention == "kernel" and not available:
            raise ValueError("attention 'kernel' is unavailable: the C kernel could not be built (see the log)")
        return available

    @property
    def kv_bytes_per_token(self) -> int:
        return self.kv_cache[:, :, 0, 0].numel() * self.kv_cache.element_size()

    def run(self, output: SchedulerOutput) -> tuple[dict[str, int], dict[str, TokenLogprob]]:
        """Compute the scheduled tokens' KV; return the sampled token of every chunk that samples,
        and the logprob report of those whose request asked for one."""
        lone = self._lone_decode(output)
        if lone is not None and lone.samples and lone.seq.samples_by_argmax:  # the C step picks the token: no torch op
            seq, start, steps = lone.seq, lone.start, lone.decode_steps
            began = time.perf_counter()
            if steps == 1:
                picked = self.single_decode.greedy(seq.token_ids[start], start, seq.block_table)
            else:
                stops = () if seq.sampling.ignore_eos else tuple(seq.stop_token_ids)
                picked = self.single_decode.greedy_steps(seq.token_ids[start], start, seq.block_table, steps, stops)
            self._lone_token_s = (time.perf_counter() - began) / (1 if steps == 1 else len(picked))
            return {seq.seq_id: picked}, {}
        if lone is None and self._decodes_in_one_call(output):
            return self._run_decode_rows(output)
        return self._run_and_sample(output, lone)

    def _decodes_in_one_call(self, output: SchedulerOutput) -> bool:
        """Whether the step is several decoding tokens and nothing else, few enough for the one-call step. On more
        than one torch thread the rows run as parts of at least DECODE_ROWS_PER_THREAD on that many threads (one C
        call each), which beat oneDNN's threaded matmuls at every size measured (docs/benchmarks.md); bfloat16
        weights that oneDNN runs natively keep to one thread."""
        chunks = output.chunks
        return (self.single_decode is not None and 1 < len(chunks) <= self.decode_rows_max_seqs
                and all(c.num_tokens == 1 and c.samples for c in chunks)
                and (torch.get_num_threads() == 1 or not self._native_half))

    @torch.inference_mode()
    def _run_decode_rows(self, output: SchedulerOutput) -> tuple[dict[str, int], dict[str, TokenLogprob]]:
        seqs = [c.seq for c in output.chunks]
        tokens = [seq.token_ids[c.start] for seq, c in zip(seqs, output.chunks)]
        positions = [c.start for c in output.chunks]
        tables = [seq.block_table for seq in seqs]
        threads = torch.get_num_threads()
        if all(seq.samples_by_argmax for seq in seqs):  # the C step picks every token
            picked = self.single_decode.rows(tokens, positions, tables, greedy=True, threads=threads).tolist()
            return {seq.seq_id: token for seq, token in zip(seqs, picked)}, {}
        return self._sample(self.single_decode.rows(tokens, positions, tables, threads=threads), seqs)

    def lone_decode_steps(self) -> int:
        """How many decode steps a lone plain-greedy sequence may take in one step: as many one-call tokens as the
        last such step's time per token fits in the budget (1 until one has run, or without the one-call path)."""
        if self.single_decode is None or self._lone_token_s is None:
            return 1
        fit = int(self.config.lone_decode_budget_ms / 1000 / max(self._lone_token_s, 1e-9))
        return max(1, min(self.config.lone_decode_steps, fit))

    @torch.inference_mode()
    def _run_and_sample(self, output: SchedulerOutput, lone: ScheduledChunk | None):
        if lone is not None:
            logits = self.single_decode.logits(lone.seq.token_ids[lone.start], lone.start, lone.seq.block_table)
        else:
            logits = self._batched_logits(output)
        sampling = [c.seq for c in output.chunks if c.samples]
        return self._sample(logits, sampling) if sampling else ({}, {})

    @staticmethod
    def _sample(logits: torch.Tensor, seqs: list[Sequence]) -> tuple[dict[str, int], dict[str, TokenLogprob]]:
        """Each sequence's token from its row of the logits, and the logprob reports of those that asked."""
        sampled = sample(logits, seqs)
        tokens = {seq.seq_id: token for seq, token in zip(seqs, sampled.tokens)}
        return tokens, {seq.seq_id: lp for seq, lp in zip(seqs, sampled.logprobs) if lp is not None}

    def _lone_decode(self, output: SchedulerOutput) -> ScheduledChunk | None:
        """The step's one chunk where it is a single decoding token the one-call step takes, else None."""
        if self.single_decode is None or len(output.chunks) != 1 or output.chunks[0].num_tokens != 1:
            return None
        return output.chunks[0]

    def _batched_logits(self, output: SchedulerOutput) -> torch.Tensor:
        """Logits (S, vocab) of the chunks that sample, from one forward over all scheduled tokens."""
        input_ids, positions, logits_index, layout = [], [], [], []
        for chunk in output.chunks:
            seq, start, n = chunk.seq, chunk.start, chunk.num_tokens
            input_ids.extend(seq.token_ids[start:start + n])
            positions.extend(range(start, start + n))
            layout.append((start, n, seq.block_table))
            if chunk.samples:
                logits_index.append(len(input_ids) - 1)
        as_long = lambda values: torch.tensor(values, dtype=torch.long, device=self.device)  # noqa: E731
        meta = AttentionMetadata.build(layout, self.config.block_size, self.device, self.decode_kernel,
                                       torch.get_num_threads(), self.config.prefill_attention == "kernel")
        return self.model(as_long(input_ids), as_long(positions), self.kv_cache, meta, as_long(logits_index))
