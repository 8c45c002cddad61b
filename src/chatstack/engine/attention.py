"""Paged attention over block tables.

One step computes a chunk of new tokens for each scheduled sequence. Their K/V are
written into the paged cache first (`paged_attention`, or by the C layer ops before
`attend`). Each longer chunk (a prefill or a prefill piece) then gathers its sequence's keys
(cached prefix + new chunk) through its block table and is attended with SDPA on its own, so
no sequence pays for another's padding: causal without a mask when the chunk starts at
position 0, masked after a cached prefix.
Single-token chunks (decodes) go to the CPU kernel (`cpu_kernels.py`), which reads the
blocks in place; where it is not used (CUDA, or no compiler) they share one batched
masked SDPA call over gathered, padded keys (vectorized torch, CPU or CUDA).
With `chunk_kernel`, every token of a longer chunk is a query of that kernel too, attending
keys [0, its position] in place: no gathered copy, and causal for free; on one core it took
a 512-token prompt's attention from 6.5 ms in SDPA to ~2.1 ms (docs/benchmarks.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from chatstack.engine.cpu_kernels import paged_attention_kernel


@dataclass(frozen=True)
class AttentionGroup:
    """Sequences attended in one SDPA call."""

    flat_index: torch.Tensor  # (G,) where the group's queries sit in the flat batch
    query_index: torch.Tensor  # (B, Qmax) flat position of each (padded) query
    query_valid: torch.Tensor  # (B, Qmax) False for padding
    block_tables: torch.Tensor  # (B, max_blocks) padded with block 0
    mask: torch.Tensor | None  # (B, 1, Qmax, max_blocks * block_size) True where a query may attend
    causal_rows: tuple[int, int] | None = None  # one chunk from position 0, flat rows [first, end): causal, no mask

    @classmethod
    def build(cls, chunks: list[tuple[int, int, int, list[int]]], block_size: int, device) -> "AttentionGroup":
        """`chunks`: (flat offset, start position, num_tokens, block_table) per sequence."""
        if len(chunks) == 1 and chunks[0][1] == 0:  # a whole prompt, or its first piece
            offset, _, n, table = chunks[0]
            rows = torch.arange(offset, offset + n, device=device)
            return cls(flat_index=rows, query_index=rows[None, :], query_valid=torch.ones(1, n, dtype=torch.bool,
                       device=device), block_tables=torch.tensor([table], dtype=torch.long, device=device),
                       mask=None, causal_rows=(offset, offset + n))
        q_max = max(n for _, _, n, _ in chunks)
        blocks_max = max(len(table) for _, _, _, table in chunks)
        query_index, query_pos, tables, lengths = [], [], [], []
        for offset, start, n, table in chunks:
            query_index.append(list(range(offset, offset + n)) + [offset] * (q_max - n))
            query_pos.append(list(range(start, start + n)) + [0] * (q_max - n))
            tables.append(table + [0] * (blocks_max - len(table)))
            lengths.append(n)
        as_long = lambda rows: torch.tensor(rows, dtype=torch.long, device=device)  # noqa: E731
        query_valid = torch.arange(q_max, device=device)[None, :] < as_long(lengths)[:, None]
        query_index_t = as_long(query_index)
        key_pos = torch.arange(blocks_max * block_size, device=device)
        return cls(
            flat_index=query_index_t[query_valid],
            query_index=query_index_t,
            query_valid=query_valid,
            block_tables=as_long(tables),
            mask=(key_pos[None, None, :] <= as_long(query_pos)[:, :, None]).unsqueeze(1),
        )


MIN_KEYS_PER_THREAD = 4096  # below this a thread hand-off costs more than it saves


def split_work(lengths: list[int], threads: int) -> tuple[tuple[int, int], ...]:
    """Contiguous (first, end) ranges of `lengths` with about equal sums, at most `threads` of them."""
    total = sum(lengths)
    parts = max(1, min(threads, len(lengths), total // MIN_KEYS_PER_THREAD))
    bounds, running, first = [], 0, 0
    for index, length in enumerate(lengths):
        target = total * (len(bounds) + 1) / parts
        # cut before this one when stopping short of the target misses it by no more than taking it
        if len(bounds) < parts - 1 and index > first and target - running <= running + length - target:
            bounds.append((first, index))
            first = index
        running += length
    return tuple(bounds) + ((first, len(lengths)),)


@dataclass(frozen=True)
class KernelDecodes:
    """Single-token queries attended by the CPU kernel, keys read in place."""

    query_token: torch.Tensor  # (N,) int64 row of each query in the flat batch
    query_pos: torch.Tensor  # (N,) int64 its position: it attends to keys [0, pos]
    block_tables: torch.Tensor  # (N, max_blocks) int32, padded with block 0 (never read)
    parts: tuple[tuple[int, int], ...]  # query ranges of about equal work, one per thread

    @classmethod
    def build(cls, chunks: list[tuple[int, int, int, list[int]]], threads: int = 1) -> "KernelDecodes":
        """`chunks`: (flat offset, start position, num_tokens, block_table); each token is one query."""
        blocks_max = max(len(table) for _, _, _, table in chunks)
        tables = torch.tensor([table + [0] * (blocks_max - len(table)) for _, _, _, table in chunks],
                              dtype=torch.int32)
        tokens = [offset + i for offset, _, n, _ in chunks for i in range(n)]
        positions = [start + i for _, start, n, _ in chunks for i in range(n)]
        if len(tokens) > len(chunks):  # a chunk's queries share its table row
            tables = tables.repeat_interleave(torch.tensor([n for _, _, n, _ in chunks]), dim=0)
        return cls(
            parts=split_work([pos + 1 for pos in positions], threads),
            query_token=torch.tensor(tokens, dtype=torch.long),
            query_pos=torch.tensor(positions, dtype=torch.long),
            block_tables=tables,
        )


@dataclass(frozen=True)
class AttentionMetadata:
    """Per-step layout of the flattened batch; built once, shared by every layer."""

    slot_mapping: torch.Tensor  # (T,) flat cache slot of each new token
    groups: tuple[AttentionGroup, ...]
    kernel_decodes: KernelDecodes | None = None

    @classmethod
    def build(cls, chunks: list[tuple[int, int, list[int]]], block_size: int, device,
              decode_kernel: bool = False, kernel_threads: int = 1, chunk_kernel: bool = False) -> "AttentionMetadata":
        """`chunks`: (start position, num_tokens, block_table) per sequence, in flat-batch order;
        `decode_kernel`: attend single-token chunks with the CPU kernel (CPU tensors only), split over
        up to `kernel_threads` threads; `chunk_kernel` (with `decode_kernel`): longer chunks as well."""
        slots, decodes, groups, offset = [], [], [], 0
        for start, n, table in chunks:
            slots.extend(table[p // block_size] * block_size + p % block_size for p in range(start, start + n))
            if n == 1 or (chunk_kernel and decode_kernel):
                decodes.append((offset, start, n, table))
            else:
                groups.append(AttentionGroup.build([(offset, start, n, table)], block_size, device))
            offset += n
        kernel_decodes = None
        if decodes and decode_kernel:
            kernel_decodes = KernelDecodes.build(decodes, kernel_threads)
        elif decodes:
            groups.append(AttentionGroup.build(decodes, block_size, device))
        return cls(torch.tensor(slots, dtype=torch.long, device=device), tuple(groups), kernel_decodes)


def write_kv(cache: torch.Tensor, slot_mapping: torch.Tensor, new: torch.Tensor) -> None:
    """cache: (num_blocks, block_size, n_kv_heads, head_dim), any strides; new: (T, n_kv_heads, head_dim)."""
    block_size = cache.shape[1]
    cache.index_put_((slot_mapping // block_size, slot_mapping % block_size), new)


def gather_kv(cache: torch.Tensor, block_tables: torch.Tensor) -> torch.Tensor:
    """Each sequence's keys (or values) in position order: (B, n_kv_heads, max_blocks * block_size, head_dim)."""
    batch, blocks = block_tables.shape
    _, block_size, heads, dim = cache.shape
    gathered = cache.index_select(0, block_tables.flatten())  # (B * max_blocks, block_size, n_kv_heads, head_dim)
    return gathered.reshape(batch, blocks * block_size, heads, dim).transpose(1, 2)


def paged_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
    k_cache: torch.Tensor, v_cache: torch.Tensor, meta: AttentionMetadata,
) -> torch.Tensor:
    """q: (T, n_heads, head_dim); k, v: (T, n_kv_heads, head_dim) -> (T, n_heads * head_dim)."""
    write_kv(k_cache, meta.slot_mapping, k)
    write_kv(v_cache, meta.slot_mapping, v)
    return attend(q, k_cache, v_cache, meta)


def attend(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, meta: AttentionMetadata) -> torch.Tensor:
    """q: (T, n_heads, head_dim) against caches that already hold this step's K/V -> (T, n_heads * head_dim)."""
    out = q.new_empty(q.shape[0], q.shape[1] * q.shape[2])
    for group in meta.groups:
        keys = gather_kv(k_cache, group.block_tables)
        values = gather_kv(v_cache, group.block_tables)
        if group.causal_rows is not None:  # keys [0, n) are the chunk's own: the causal kernel skips the masked half
            first, end = group.causal_rows
            n = end - first
            attended = F.scaled_dot_product_attention(q[first:end].transpose(0, 1)[None], keys[:, :, :n],
                                                      values[:, :, :n], is_causal=True, enable_gqa=True)
            out[first:end] = attended[0].transpose(0, 1).flatten(1)
            continue
        queries = q[group.query_index].transpose(1, 2)  # (B, n_heads, Qmax, head_dim)
        attended = F.scaled_dot_product_attention(queries, keys, values, attn_mask=group.mask, enable_gqa=True)
        attended = attended.transpose(1, 2)[group.query_valid]  # (G, n_heads, head_dim)
        out.index_copy_(0, group.flat_index, attended.flatten(1))
    if meta.kernel_decodes is not None:
        d = meta.kernel_decodes
        paged_attention_kernel()(q, k_cache, v_cache, d.block_tables, d.query_token, d.query_pos, out,
                                 q.shape[-1] ** -0.5, d.parts)
    return out
