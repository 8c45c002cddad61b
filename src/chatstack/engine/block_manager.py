"""Paged KV memory: fixed-size blocks from a preallocated pool, shared through prefix hashes.

A block holds `block_size` consecutive tokens' KV for one sequence. Full blocks are
immutable, so they are identified by a hash chained over every token before them and
shared between sequences with the same prefix (system prompts, earlier chat turns).
A freed block keeps its hash and stays reusable until the pool needs it back: free
blocks are handed out least recently freed first (LRU eviction of the prefix cache).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from chatstack.engine.sequence import Sequence

_NO_PARENT = 0


@dataclass(eq=False)
class Block:
    block_id: int
    ref_count: int = 0
    hash: int | None = None
    token_ids: tuple[int, ...] = ()


def chain_hash(parent: int, token_ids: tuple[int, ...]) -> int:
    return hash((parent, token_ids))


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True):
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self.blocks = [Block(i) for i in range(num_blocks)]
        self.free_block_ids: OrderedDict[int, None] = OrderedDict((i, None) for i in range(num_blocks))
        self.hash_to_block: dict[int, int] = {}
        self.num_cache_hits = 0  # tokens served from the prefix cache, for stats

    @property
    def num_free_blocks(self) -> int:
        return len(self.free_block_ids)

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    def blocks_needed(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    # -- prefix cache -------------------------------------------------------------

    def _cached_prefix(self, seq: Sequence) -> list[int]:
        """Block ids holding the longest cached prefix of `seq`, leaving >= 1 token to compute."""
        if not self.enable_prefix_caching:
            return []
        hits, parent = [], _NO_PARENT
        for index in range((seq.num_tokens - 1) // self.block_size):
            tokens = seq.block_tokens(index, self.block_size)
            parent = chain_hash(parent, tokens)
            block_id = self.hash_to_block.get(parent)
            if block_id is None or self.blocks[block_id].token_ids != tokens:
                break
            hits.append(block_id)
        return hits

    def cache_full_blocks(self, seq: Sequence) -> None:
        """Publish the hashes of blocks whose tokens' KV is now fully computed."""
        if not self.enable_prefix_caching:
            return
        full, done = seq.num_computed_tokens // self.block_size, seq.num_hashed_blocks
        if full <= done:  # a decode step that filled no block: nothing to walk
            return
        parent = self.blocks[seq.block_table[done - 1]].hash if done else _NO_PARENT
        for index in range(done, full):
            block = self.blocks[seq.block_table[index]]
            if block.hash is not None:  # a cached block this sequence shares
                parent = block.hash
                continue
            tokens = seq.block_tokens(index, self.block_size)
            parent = chain_hash(parent, tokens)
            block.hash, block.token_ids = parent, tokens
            self.hash_to_block.setdefault(parent, block.block_id)
        seq.num_hashed_blocks = full

    # -- allocation ---------------------------------------------------------------

    def _take_free_block(self) -> int:
        block_id, _ = self.free_block_ids.popitem(last=False)
        block = self.blocks[block_id]
        if block.hash is not None:  # evict it from the prefix cache
            if self.hash_to_block.get(block.hash) == block_id:
                del self.hash_to_block[block.hash]
            block.hash, block.token_ids = None, ()
        block.ref_count = 1
        return block_id

    def _acquire(self, block_id: int) -> None:
        block = self.blocks[block_id]
        if block.ref_count == 0:
            del self.free_block_ids[block_id]
        block.ref_count += 1

    def free_blocks_to_hold(self, seq: Sequence, num_tokens: int) -> int:
        """Free blocks a sequence with no blocks yet would take to hold its first `num_tokens` tokens: its
        cached prefix is shared, but a cached block nobody holds leaves the free list too."""
        hits = self._cached_prefix(seq)
        revived = sum(1 for b in hits if self.blocks[b].ref_count == 0)
        return self.blocks_needed(max(num_tokens, len(hits) * self.block_size)) - len(hits) + revived

    def can_allocate(self, seq: Sequence, num_new_tokens: int) -> bool:
        """Whether `allocate` of a sequence with no blocks yet would succeed."""
        cached = len(self._cached_prefix(seq)) * self.block_size
        return self.free_blocks_to_hold(seq, min(seq.num_tokens, cached + num_new_tokens)) <= self.num_free_blocks

    def allocate(self, seq: Sequence, num_new_tokens: int) -> bool:
        """Give a waiting sequence its cached prefix plus blocks for up to `num_new_tokens` more.

        Returns False (and changes nothing) when the pool cannot hold them.
        """
        assert not seq.block_table, "allocate is for sequences without blocks"
        if not self.can_allocate(seq, num_new_tokens):
            return False
        hits = self._cached_prefix(seq)
        for block_id in hits:
            self._acquire(block_id)
        seq.block_table = hits
        seq.num_computed_tokens = seq.num_cached_tokens = len(hits) * self.block_size
        seq.num_hashed_blocks = len(hits)
        self.num_cache_hits += seq.num_cached_tokens
        return self.append_slots(seq, min(num_new_tokens, seq.num_uncomputed_tokens))

    def append_slots(self, seq: Sequence, num_new_tokens: int) -> bool:
        """Grow the block table to cover `num_new_tokens` more computed tokens, or return False."""
        needed = self.blocks_needed(seq.num_computed_tokens + num_new_tokens) - len(seq.block_table)
        if needed > self.num_free_blocks:
            return False
        if needed > 0:
            seq.block_table.extend(self._take_free_block() for _ in range(needed))
        return True

    def free(self, seq: Sequence) -> None:
        """Release a sequence's blocks; blocks nobody else holds go to the back of the free list."""
        for block_id in reversed(seq.block_table):
            block = self.blocks[block_id]
            block.ref_count -= 1
            if block.ref_count == 0:
                self.free_block_ids[block_id] = None
                if block.hash is None:  # nothing to reuse: hand it out before cached blocks
                    self.free_block_ids.move_to_end(block_id, last=False)
        seq.block_table = []
        seq.num_computed_tokens = seq.num_hashed_blocks = 0
