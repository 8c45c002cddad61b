"""The one-call decode step: a scheduled step that holds only decoding sequences (one, or up to
`EngineConfig.decode_rows_max_seqs` of them) runs every layer, the final norm and the LM head in C
(`kernels/decode_step.c`) instead of ~25 torch ops per layer, its matmuls over column panels that a few rows
read faster than oneDNN does (docs/benchmarks.md, "Decode-only steps in one C call").

Applies on the CPU with the C kernels available, to unquantized float32 or bfloat16 weights (where
they are prepacked the loader keeps a plain copy for this step to pack) and to int8 or int4 weight-only
models with float32 activations (int8 panels and each projection's per-column scale; int4 panels of packed codes
and each group's scales and zero * scales); the engine's batched path handles everything else (float16, torch
attention, compile). bfloat16 panels hold the rows in pairs where the kernel has the AVX512-BF16 pair dot product.

The step reads its own copy of the projections: column panels (`panel_layout.panels`), every layer's and
the LM head's in one buffer on 2 MiB huge pages where Linux grants them, so a step's ~100 MiB weight
stream crosses a few dozen pages instead of ~26,000 (a single-thread read of 4 KiB-paged weights ran at
about two thirds of the huge-paged speed here; docs/benchmarks.md). The model runner then drops the plain
copies kept beside prepacked weights, which served only this copy.
"""

from __future__ import annotations

import ctypes

import torch

from chatstack.engine.cpu_kernels import DecodeStepKernel, cache_layout, decode_step_kernel
from chatstack.engine.panel_layout import panels, row_words
from chatstack.engine.huge_pages import huge_page_zeros
from chatstack.engine.llama import LlamaForPagedDecoding
from chatstack.engine.quant import Dense, Int4Linear, Int8Linear, PackedDense


DECODE_ROWS_PER_THREAD = 4  # the fewest rows a thread's part of a decode-only step takes (`rows`)


class SingleDecodePath:
    def __init__(self, model: LlamaForPagedDecoding, kv_cache: torch.Tensor, kernel: DecodeStepKernel):
        self.model = model
        num_blocks, block_size = kv_cache.shape[2], kv_cache.shape[3]
        self.cache_slots, self._block_size = num_blocks * block_size, block_size
        self._embed = embed = model.embed.weight.detach().contiguous()  # (vocab, hidden); rows copied by address
        self._vocab, self._row_bytes = embed.shape[0], embed.shape[1] * embed.element_size()
        self._embed_ptr = embed.data_ptr()
        self._x = torch.empty(embed.shape[1], dtype=embed.dtype)  # the residual stream of the step in flight
        self._x_ptr = self._x.data_ptr()
        self._table: tuple[list[int], torch.Tensor] = ([], torch.zeros(0, dtype=torch.int32))
        modules = [m for layer in model.layers for m in (layer.qkv, layer.o_proj, layer.gate_up, layer.down)]
        modules.append(model.lm_head)
        projections = [m.packed if isinstance(m, Int4Linear) else m.weight_t for m in modules]
        scales = [quantization_scales(m) for m in modules]
        self._scales = scales  # the step reads them by address
        # every projection in panels, in one buffer (huge pages where granted), in the order the step reads them
        self.weights = huge_page_zeros((sum(w.numel() for w in projections),), projections[0].dtype)[0]
        # bfloat16 where the kernel has the AVX512-BF16 pair dot product and every input width is even: panels of
        # row pairs (decode_step_bf16dp.h)
        self.pairs = (kernel.bf16_pairs and projections[0].dtype == torch.bfloat16
                      and all(w.shape[0] % 2 == 0 for w in projections))
        packed, offset = [], 0
        for weight_t in projections:
            segment = self.weights[offset:offset + weight_t.numel()]
            if weight_t.dtype == torch.uint8 or self.pairs:  # words of eight int4 codes, or of two bfloat16 rows
                panels(row_words(weight_t), segment.view(torch.int32))
            else:
                panels(weight_t, segment)
            packed.append(segment)
            offset += weight_t.numel()
        self.weight_bytes = self.weights.numel() * self.weights.element_size()
        pointers: list[int | None] = []
        for i, (layer, kv) in enumerate(zip(model.layers, kv_cache)):
            qkv, o_proj, gate_up, down = packed[4 * i:4 * i + 4]
            for tensor in (layer.input_norm.weight, qkv, layer.qkv.bias, o_proj, layer.o_proj.bias,
                           layer.post_attention_norm.weight, gate_up, down, kv[0], kv[1], *scales[4 * i:4 * i + 4]):
                pointers.append(None if tensor is None else tensor.data_ptr())
        # (layers * LAYER_POINTERS,) addresses; the tensors live as long as the model, the cache and self.weights
        self.layers = (ctypes.c_void_p * len(pointers))(*pointers)
        spec = model.spec
        self._step = kernel.prepare(self.layers, spec.num_layers, model.norm.weight, packed[-1], scales[-1],
                                    projections[-1].shape[1], model.cos, model.sin, self.cache_slots, spec.num_heads,
                                    spec.num_kv_heads, spec.head_dim, spec.intermediate_size,
                                    cache_layout(kv_cache[0, 0]), spec.rms_norm_eps, self.pairs)

    @staticmethod
    def applies(model: LlamaForPagedDecoding, kv_cache: torch.Tensor) -> str | None:
        """None where the path applies to this model and cache, else why not."""
        if kv_cache.device.type != "cpu" or kv_cache.dtype not in DecodeStepKernel.DTYPES:
            return f"it runs float32 or bfloat16 on the CPU, not {kv_cache.dtype} on {kv_cache.device.type}"
        projections = [m for layer in model.layers for m in (layer.qkv, layer.o_proj, layer.gate_up, layer.down)]
        projections.append(model.lm_head)
        for kind, name in ((Int8Linear, "int8"), (Int4Linear, "int4")):
            if all(isinstance(m, kind) for m in projections):
                if kv_cache.dtype != torch.float32:
                    return f"with {name} weights it runs float32 activations, not {kv_cache.dtype}"
                if kind is Int4Linear and any(m.group_size != DecodeStepKernel.Q4_GROUP for m in projections):
                    return f"with int4 weights it takes groups of {DecodeStepKernel.Q4_GROUP} input channels"
                return None
        if not all(isinstance(m, (Dense, PackedDense)) for m in projections):
            return "it needs unquantized, int8 or int4 weights, the same kind in every projection"
        if not all(m.weight_t is not None and m.weight_t.dtype == kv_cache.dtype for m in projections):
            return "the prepacked projections keep no plain copy (single_decode 'on' keeps one)"
        return None

    @classmethod
    def create(cls, model: LlamaForPagedDecoding, kv_cache: torch.Tensor) -> "SingleDecodePath | None":
        """The path for this model and cache, or None where it does not apply."""
        if cls.applies(model, kv_cache) is not None:
            return None
        kernel = decode_step_kernel()
        return None if kernel is None else cls(model, kv_cache, kernel)

    def logits(self, token: int, position: int, block_table: list[int]) -> torch.Tensor:
        """The next-token logits (1, vocab) of one sequence; writes its K/V at `position` on every layer."""
        return self._step.logits(self._x, self._load(token, block_table), position)[None].float()

    def greedy(self, token: int, position: int, block_table: list[int]) -> int:
        """The argmax of those logits, picked inside the C step (a plain greedy decode needs nothing else)."""
        return self._step.greedy(self._x, self._load(token, block_table), position)

    def greedy_steps(self, token: int, position: int, block_table: list[int], steps: int,
                     stop_ids: tuple[int, ...]) -> list[int]:
        """Up to `steps` greedy tokens in one C call, `greedy` step after step, ending after a token in `stop_ids`."""
        return self._step.greedy_steps(self._embed, self._x, self._table_of(block_table), position, token, steps,
                                       stop_ids)

    def rows(self, tokens: list[int], positions: list[int], block_tables: list[list[int]],
             greedy: bool = False, threads: int = 1) -> torch.Tensor:
        """One step of several decoding sequences: sequence i feeds tokens[i] at positions[i] (writing its K/V there
        on every layer) through block_tables[i]. Returns the (rows, vocab) float32 logits, or with `greedy` the
        (rows,) argmax tokens the C step picked. `threads` > 1: in parts of at least DECODE_ROWS_PER_THREAD rows,
        a C call each on threads of their own (each part reads the whole weight stream, which parts of fewer rows
        paid for more than their threads saved)."""
        ids = torch.tensor(tokens, dtype=torch.long)
        if ids.numel() and not (0 <= int(ids.min()) and int(ids.max()) < self._vocab):
            raise ValueError(f"tokens must lie in the vocabulary (0 to {self._vocab - 1}), got {tokens}")
        for position, table in zip(positions, block_tables):  # the padding below must never be written through
            if not 0 <= position < len(table) * self._block_size:
                raise ValueError(f"positions must lie in their own block tables: {position} is outside "
                                 f"{len(table)} blocks of {self._block_size}")
        width = max(len(table) for table in block_tables)
        tables = torch.tensor([table + [0] * (width - len(table)) for table in block_tables], dtype=torch.int32)
        out = self._step.rows(self._embed.index_select(0, ids), tables, torch.tensor(positions, dtype=torch.long),
                              greedy, threads, DECODE_ROWS_PER_THREAD)
        return out if greedy else out.float()

    def _table_of(self, block_table: list[int]) -> torch.Tensor:
        listed, table = self._table
        if block_table != listed:  # a sequence gains a block every block_size tokens: convert only then
            listed, table = list(block_table), torch.tensor(block_table, dtype=torch.int32)
            self._table = listed, table
        return table

    def _load(self, token: int, block_table: list[int]) -> torch.Tensor:
        """Copy the token's embedding into the step's residual stream; the block table as int32."""
        table = self._table_of(block_table)
        if not 0 <= token < self._vocab:
            raise ValueError(f"token {token} is outside the vocabulary (0 to {self._vocab - 1})")
        ctypes.memmove(self._x_ptr, self._embed_ptr + token * self._row_bytes, self._row_bytes)  # its embedding
        return table


def quantization_scales(module) -> torch.Tensor | None:
    """What the step applies to a quantized projection's sums, float32, read by address: int8's (out,) scale per
    column; int4's (groups, 2, out) scales and zero * scales, a group's sum being scale * sum(x * code) -
    zero * scale * sum(x); None for unquantized weights."""
    if isinstance(module, Int8Linear):
        return module.scale.float().contiguous()
    if isinstance(module, Int4Linear):
        scale, zero = module.scale.float(), module.zero.float()
        return torch.stack((scale, zero * scale), dim=1).contiguous()
    return None
