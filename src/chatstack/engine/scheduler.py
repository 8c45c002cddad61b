"""Continuous batching: which sequences run in the next step, and how many tokens each.

Every step has a token budget (`max_num_batched_tokens`) and a sequence cap
(`max_num_seqs`). Sequences are ordered by (priority, arrival): FCFS unless a request
asks for a lower priority number. Running sequences are served first in that order
(decodes cost one token, unfinished prefills take a chunk of what is left), then
waiting ones are admitted in that order while budget and KV blocks last, keeping room for every
running sequence's next `admission_lookahead` tokens (and the newcomer's). When a running
sequence cannot get a block, the last running sequence in that order is preempted: its
blocks are freed and it goes back to the waiting queue, in its place by (priority,
arrival), to be recomputed later (its full blocks usually survive in the prefix cache).
"""

from __future__ import annotations

import bisect
import itertools
from typing import NamedTuple

from chatstack.backends.base import FinishReason
from chatstack.engine.block_manager import BlockManager
from chatstack.engine.config import EngineConfig
from chatstack.engine.sequence import Sequence, SequenceStatus


class ScheduledChunk(NamedTuple):  # a tuple: built for every sequence on every step, cheaply
    """Compute tokens `[start, start + num_tokens)` of `seq`; sample after it if `samples`. A decode with
    `decode_steps` > 1 goes on from its sampled token, greedily, for up to that many tokens in all."""

    seq: Sequence
    start: int
    num_tokens: int
    decode_steps: int = 1

    @property
    def samples(self) -> bool:
        return self.start + self.num_tokens == self.seq.num_tokens


class SchedulerOutput(NamedTuple):
    chunks: tuple[ScheduledChunk, ...]
    preempted: tuple[str, ...] = ()

    @property
    def num_tokens(self) -> int:
        return sum(c.num_tokens for c in self.chunks)

    @property
    def is_empty(self) -> bool:
        return not self.chunks


class Scheduler:
    def __init__(self, config: EngineConfig):
        self.config = config
        self.block_manager = BlockManager(config.num_kv_blocks, config.block_size, config.enable_prefix_caching)
        self.waiting: list[Sequence] = []  # sorted by _order
        self.running: list[Sequence] = []  # sorted by _order
        self.num_preemptions = 0
        self._arrivals = itertools.count()

    def add(self, seq: Sequence) -> None:
        seq.arrival = next(self._arrivals)
        self._enqueue(seq)

    @staticmethod
    def _order(seq: Sequence) -> tuple[int, int]:
        return seq.priority, seq.arrival

    def _enqueue(self, seq: Sequence) -> None:
        seq.status = SequenceStatus.WAITING
        bisect.insort(self.waiting, seq, key=self._order)

    def has_unfinished(self) -> bool:
        return bool(self.waiting or self.running)

    def schedule(self, lone_decode_steps: int = 1) -> SchedulerOutput:
        """The next step's chunks; `lone_decode_steps` > 1: a lone plain-greedy decode with nobody waiting may take
        that many tokens at once (the runner says how many fit its time budget)."""
        budget = self.config.max_num_batched_tokens
        chunks: list[ScheduledChunk] = []
        preempted: list[str] = []
        for seq in list(self.running):
            if budget == 0:
                break
            if seq.status is not SequenceStatus.RUNNING:  # preempted earlier in this loop
                continue
            num_new = min(seq.num_uncomputed_tokens, budget)
            while not self.block_manager.append_slots(seq, num_new):
                victim = self.running[-1]
                self._preempt(victim)
                preempted.append(victim.seq_id)
                if victim is seq:
                    break
            if seq.status is SequenceStatus.RUNNING:
                chunks.append(ScheduledChunk(seq, seq.num_computed_tokens, num_new))
                budget -= num_new
        if self.waiting and not preempted:
            budget = self._admit_waiting(chunks, budget)
        elif lone_decode_steps > 1 and len(chunks) == 1 and not self.waiting:
            chunks[0] = self._lone_decode(chunks[0], lone_decode_steps)
        return SchedulerOutput(tuple(chunks), tuple(preempted))

    def _lone_decode(self, chunk: ScheduledChunk, steps: int) -> ScheduledChunk:
        """The chunk with up to `steps` decode steps where it is a plain-greedy decode and the blocks for them are free."""
        seq = chunk.seq
        if chunk.num_tokens != 1 or not chunk.samples or not seq.samples_by_argmax:
            return chunk
        steps = min(steps, seq.sampling.max_tokens - seq.num_completion_tokens)
        if steps < 2 or not self.block_manager.append_slots(seq, steps):
            return chunk
        return chunk._replace(decode_steps=steps)

    def _lookahead_tokens(self, seq: Sequence) -> int:
        """The sequence's tokens once its prompt is computed and `admission_lookahead` more are decoded."""
        remaining = seq.sampling.max_tokens - seq.num_completion_tokens
        return seq.num_tokens + max(0, min(self.config.admission_lookahead, remaining))

    def _growth_blocks(self, seq: Sequence) -> int:
        """Blocks a running sequence still takes before it reaches its lookahead (`_lookahead_tokens`)."""
        return max(0, self.block_manager.blocks_needed(self._lookahead_tokens(seq)) - len(seq.block_table))

    def _admit_waiting(self, chunks: list[ScheduledChunk], budget: int) -> int:
        growth = sum(map(self._growth_blocks, self.running)) if self.config.admission_lookahead else 0
        while self.waiting and budget > 0 and len(self.running) < self.config.max_num_seqs:
            seq = self.waiting[0]
            if self.running and self.config.admission_lookahead:
                taken = self.block_manager.free_blocks_to_hold(seq, self._lookahead_tokens(seq))
                if growth + taken > self.block_manager.num_free_blocks:
                    break
            if not self.block_manager.allocate(seq, budget):
                break
            if self.config.admission_lookahead:
                growth += self._growth_blocks(seq)
            self.waiting.pop(0)
            seq.status = SequenceStatus.RUNNING
            bisect.insort(self.running, seq, key=self._order)
            num_new = min(seq.num_uncomputed_tokens, budget)
            chunks.append(ScheduledChunk(seq, seq.num_computed_tokens, num_new))
            budget -= num_new
        return budget

    def _preempt(self, seq: Sequence) -> None:
        self.running.remove(seq)
        self.block_manager.free(seq)
        self._enqueue(seq)
        self.num_preemptions += 1

    def complete(self, output: SchedulerOutput, sampled: dict[str, int]) -> list[Sequence]:
        """Record a finished step; `sampled` maps seq_id to the token drawn for chunks that sample (the tokens, in
        order, for a chunk of several decode steps).

        Returns the sequences that got a new token (finished ones included, already freed).
        """
        advanced = []
        for chunk in output.chunks:
            seq = chunk.seq
            if seq.status is not SequenceStatus.RUNNING:  # cancelled while the step ran
                continue
            if chunk.decode_steps > 1:  # each token as a one-token step would have recorded it
                for token in sampled[seq.seq_id]:
                    seq.num_computed_tokens += 1
                    self.block_manager.cache_full_blocks(seq)
                    self._append_token(seq, token)
                    if seq.status is not SequenceStatus.RUNNING:
                        break
                advanced.append(seq)
                continue
            seq.num_computed_tokens += chunk.num_tokens
            self.block_manager.cache_full_blocks(seq)
            if chunk.samples:
                self._append_token(seq, sampled[seq.seq_id])
                advanced.append(seq)
        return advanced

    def _append_token(self, seq: Sequence, token: int) -> None:
        if token in seq.stop_token_ids and not seq.sampling.ignore_eos:
            self.finish(seq, FinishReason.STOP)  # the stop token is not part of the output
            return
        seq.token_ids.append(token)
        if seq.num_completion_tokens >= seq.sampling.max_tokens:
            self.finish(seq, FinishReason.LENGTH)

    def finish(self, seq: Sequence, reason: FinishReason) -> None:
        """End a sequence for any reason (stop, length, cancel, error) and free its blocks now."""
        if seq.status is SequenceStatus.RUNNING:
            self.running.remove(seq)
        elif seq.status is SequenceStatus.WAITING:
            self.waiting.remove(seq)
        self.block_manager.free(seq)
        seq.status = SequenceStatus.FINISHED
        seq.finish_reason = reason
