"""Scheduler and block manager without a model: fake tokens, real bookkeeping (vLLM v1 style)."""

from __future__ import annotations

import pytest

from chatstack.backends.base import FinishReason, SamplingParams
from chatstack.engine.config import EngineConfig
from chatstack.engine.scheduler import ScheduledChunk, Scheduler, SchedulerOutput
from chatstack.engine.sequence import Sequence, SequenceStatus

BLOCK = 4


def make_scheduler(**overrides) -> Scheduler:
    settings = dict(block_size=BLOCK, num_kv_blocks=64, max_num_seqs=8, max_num_batched_tokens=64) | overrides
    return Scheduler(EngineConfig(**settings))


def make_seq(seq_id: str, prompt, max_tokens: int = 4, stop=(), priority: int = 0) -> Sequence:
    return Sequence(seq_id, list(prompt), SamplingParams(max_tokens=max_tokens, temperature=0.0), frozenset(stop),
                    priority=priority)


def fake_token(seq: Sequence) -> int:
    """A deterministic 'model': the next token depends only on the tokens so far."""
    return (sum(seq.token_ids) * 31 + seq.num_tokens) % 1000


def step(scheduler: Scheduler):
    output = scheduler.schedule()
    sampled = {c.seq.seq_id: fake_token(c.seq) for c in output.chunks if c.samples}
    scheduler.complete(output, sampled)
    return output


def run_to_completion(scheduler: Scheduler, limit: int = 1000) -> int:
    steps = 0
    while scheduler.has_unfinished():
        step(scheduler)
        steps += 1
        assert steps < limit
    return steps


def expected_tokens(prompt, max_tokens: int) -> list[int]:
    seq = make_seq("reference", prompt, max_tokens)
    for _ in range(max_tokens):
        seq.token_ids.append(fake_token(seq))
    return seq.completion_token_ids


def add_three_requests(scheduler: Scheduler) -> list[Sequence]:
    """Three 6-token prompts with 10 tokens to go: 4 blocks of 4 slots each."""
    seqs = [make_seq(f"s{i}", range(10 * i, 10 * i + 6), max_tokens=10) for i in range(3)]
    for seq in seqs:
        scheduler.add(seq)
    return seqs


def assert_three_requests_done(seqs: list[Sequence]) -> None:
    for i, seq in enumerate(seqs):
        assert seq.completion_token_ids == expected_tokens(range(10 * i, 10 * i + 6), 10)


def assert_all_free(scheduler: Scheduler) -> None:
    manager = scheduler.block_manager
    assert not scheduler.running and not scheduler.waiting
    assert manager.num_free_blocks == manager.num_blocks
    assert all(block.ref_count == 0 for block in manager.blocks)


def test_prefill_is_chunked_by_the_token_budget_then_decodes_one_token_per_step():
    scheduler = make_scheduler(max_num_batched_tokens=16)
    seq = make_seq("a", range(40), max_tokens=3)
    scheduler.add(seq)
    sizes = [step(scheduler).chunks[0].num_tokens for _ in range(5)]
    assert sizes == [16, 16, 8, 1, 1]  # the last prefill chunk samples the first token
    assert seq.finish_reason is FinishReason.LENGTH
    assert seq.completion_token_ids == expected_tokens(range(40), 3)
    assert_all_free(scheduler)


def test_new_requests_join_the_running_batch_between_steps():
    scheduler = make_scheduler()
    first, second = make_seq("first", range(8), max_tokens=6), make_seq("second", range(50, 55), max_tokens=3)
    scheduler.add(first)
    step(scheduler)
    step(scheduler)
    scheduler.add(second)
    output = step(scheduler)
    assert [(c.seq.seq_id, c.num_tokens) for c in output.chunks] == [("first", 1), ("second", 5)]
    run_to_completion(scheduler)
    assert first.completion_token_ids == expected_tokens(range(8), 6)
    assert second.completion_token_ids == expected_tokens(range(50, 55), 3)
    assert_all_free(scheduler)


def test_max_num_seqs_caps_the_running_batch():
    scheduler = make_scheduler(max_num_seqs=2)
    for i in range(3):
        scheduler.add(make_seq(f"s{i}", range(i, i + 5)))
    output = step(scheduler)
    assert len(output.chunks) == 2 and len(scheduler.waiting) == 1
    run_to_completion(scheduler)
    assert_all_free(scheduler)


def test_a_decode_is_never_starved_by_a_long_prefill():
    scheduler = make_scheduler(max_num_batched_tokens=8)
    decoding = make_seq("decoding", range(4), max_tokens=10)
    scheduler.add(decoding)
    step(scheduler)
    scheduler.add(make_seq("long", range(100, 164), max_tokens=1))
    for _ in range(5):
        chunks = step(scheduler).chunks
        assert chunks[0].seq is decoding and chunks[0].num_tokens == 1
        assert sum(c.num_tokens for c in chunks) <= 8
    run_to_completion(scheduler)
    assert_all_free(scheduler)


def test_stop_token_finishes_without_being_appended():
    stop = expected_tokens(range(6), 3)[1]
    scheduler = make_scheduler()
    seq = make_seq("stop", range(6), max_tokens=10, stop=(stop,))
    scheduler.add(seq)
    run_to_completion(scheduler)
    assert seq.finish_reason is FinishReason.STOP
    assert seq.completion_token_ids == expected_tokens(range(6), 1)
    assert_all_free(scheduler)


def test_repeated_prefix_reuses_full_blocks_and_shares_them_while_both_run():
    scheduler = make_scheduler()
    prompt = list(range(10))  # two full blocks + 2 tokens
    first = make_seq("first", prompt, max_tokens=8)
    scheduler.add(first)
    step(scheduler)
    second = make_seq("second", prompt + [77], max_tokens=2)
    scheduler.add(second)
    step(scheduler)
    assert second.num_cached_tokens == 2 * BLOCK
    assert second.block_table[:2] == first.block_table[:2]
    assert scheduler.block_manager.blocks[first.block_table[0]].ref_count == 2
    run_to_completion(scheduler)
    assert second.completion_token_ids == expected_tokens(prompt + [77], 2)
    assert_all_free(scheduler)


def test_next_turn_reuses_the_previous_turns_prompt_and_reply():
    scheduler = make_scheduler()
    turn1 = make_seq("turn1", range(9), max_tokens=7)
    scheduler.add(turn1)
    run_to_completion(scheduler)
    history = turn1.token_ids  # 16 tokens; the KV of the first 15 was computed
    turn2 = make_seq("turn2", history + [5, 6, 7], max_tokens=2)
    scheduler.add(turn2)
    step(scheduler)
    assert turn2.num_cached_tokens == 3 * BLOCK
    run_to_completion(scheduler)
    assert_all_free(scheduler)


def test_fully_cached_prompt_still_computes_its_last_token():
    scheduler = make_scheduler()
    scheduler.add(make_seq("warm", range(8), max_tokens=1))
    run_to_completion(scheduler)
    again = make_seq("again", range(8), max_tokens=1)
    scheduler.add(again)
    output = step(scheduler)
    assert again.num_cached_tokens == BLOCK and output.chunks[0].num_tokens == 4
    assert_all_free(scheduler)


def test_free_cached_blocks_are_evicted_least_recently_freed_first():
    scheduler = make_scheduler(num_kv_blocks=6)
    manager = scheduler.block_manager
    scheduler.add(make_seq("old", range(100, 109), max_tokens=1))  # 2 full cached blocks + 1
    run_to_completion(scheduler)
    scheduler.add(make_seq("new", range(200, 209), max_tokens=1))
    run_to_completion(scheduler)
    assert len(manager.hash_to_block) == 4
    scheduler.add(make_seq("big", range(300, 313), max_tokens=1))  # needs 4 blocks
    run_to_completion(scheduler)
    reused = make_seq("reuse-new", range(200, 209), max_tokens=1)
    scheduler.add(reused)
    step(scheduler)
    assert reused.num_cached_tokens == 2 * BLOCK  # "new" survived; "old" was evicted
    run_to_completion(scheduler)
    stale = make_seq("reuse-old", range(100, 109), max_tokens=1)
    scheduler.add(stale)
    step(scheduler)
    assert stale.num_cached_tokens == 0
    run_to_completion(scheduler)
    assert all(manager.blocks[b].hash == h for h, b in manager.hash_to_block.items())
    assert_all_free(scheduler)


def test_prefix_caching_can_be_disabled():
    scheduler = make_scheduler(enable_prefix_caching=False)
    for name in ("a", "b"):
        seq = make_seq(name, range(12), max_tokens=1)
        scheduler.add(seq)
        run_to_completion(scheduler)
        assert seq.num_cached_tokens == 0
    assert_all_free(scheduler)


def test_running_out_of_blocks_preempts_the_newest_and_recomputes_it_later():
    scheduler = make_scheduler(num_kv_blocks=6, enable_prefix_caching=False, admission_lookahead=0)
    seqs = [make_seq(f"s{i}", range(10 * i, 10 * i + 6), max_tokens=10) for i in range(3)]
    for seq in seqs:
        scheduler.add(seq)
    preempted = []
    while scheduler.has_unfinished():
        preempted.extend(step(scheduler).preempted)
        used = sum(len(s.block_table) for s in scheduler.running)
        assert used <= 6
    assert preempted and scheduler.num_preemptions == len(preempted)
    for i, seq in enumerate(seqs):
        assert seq.finish_reason is FinishReason.LENGTH
        assert seq.completion_token_ids == expected_tokens(range(10 * i, 10 * i + 6), 10)
    assert_all_free(scheduler)


def test_admission_keeps_room_for_the_running_sequences_lookahead_so_none_is_preempted():
    # three 6-token prompts with 10 tokens to go need 4 blocks each; 10 blocks hold two of them to the end
    scheduler = make_scheduler(num_kv_blocks=10, enable_prefix_caching=False, admission_lookahead=10)
    seqs = add_three_requests(scheduler)
    first = step(scheduler)
    assert [c.seq.seq_id for c in first.chunks] == ["s0", "s1"] and scheduler.waiting == [seqs[2]]
    preempted = []
    while scheduler.has_unfinished():
        preempted.extend(step(scheduler).preempted)
    assert preempted == [] and scheduler.num_preemptions == 0
    assert_three_requests_done(seqs)
    assert_all_free(scheduler)


def test_without_lookahead_the_same_requests_are_admitted_at_once_and_one_is_preempted():
    scheduler = make_scheduler(num_kv_blocks=10, enable_prefix_caching=False, admission_lookahead=0)
    seqs = add_three_requests(scheduler)
    assert len(step(scheduler).chunks) == 3
    run_to_completion(scheduler)
    assert scheduler.num_preemptions >= 1
    assert_three_requests_done(seqs)
    assert_all_free(scheduler)


def test_lookahead_counts_only_each_sequences_own_remaining_tokens_and_its_unshared_blocks():
    # max_tokens 2 caps the lookahead of 64; the second prompt's first 8 tokens are the first's cached blocks,
    # so 4 blocks hold both: the first's 3 (8 prompt + 2 generated = 10 tokens) plus the second's third block
    scheduler = make_scheduler(num_kv_blocks=4, admission_lookahead=64)
    shared = list(range(8))
    first, second = make_seq("first", shared + [8], max_tokens=2), make_seq("second", shared + [9], max_tokens=2)
    scheduler.add(first)
    step(scheduler)
    scheduler.add(second)
    assert "second" in [c.seq.seq_id for c in step(scheduler).chunks]
    assert second.num_cached_tokens == 8
    run_to_completion(scheduler)
    assert scheduler.num_preemptions == 0
    assert_all_free(scheduler)


def test_a_sequence_whose_lookahead_exceeds_the_pool_is_still_admitted_when_nothing_runs():
    scheduler = make_scheduler(num_kv_blocks=4, enable_prefix_caching=False, admission_lookahead=64)
    seq = make_seq("long", range(6), max_tokens=10)  # 16 tokens: all 4 blocks
    scheduler.add(seq)
    run_to_completion(scheduler)
    assert seq.completion_token_ids == expected_tokens(range(6), 10)
    assert_all_free(scheduler)


def test_a_lower_priority_number_is_admitted_first_and_ties_are_fcfs():
    scheduler = make_scheduler(max_num_seqs=1)
    for name, priority in [("late-relaxed", 5), ("urgent", 0), ("relaxed", 5)]:
        scheduler.add(make_seq(name, range(len(name)), max_tokens=1, priority=priority))
    order = [step(scheduler).chunks[0].seq.seq_id for _ in range(3)]
    assert order == ["urgent", "late-relaxed", "relaxed"]
    assert_all_free(scheduler)


def test_preemption_takes_the_least_urgent_sequence_even_if_it_arrived_first():
    scheduler = make_scheduler(num_kv_blocks=6, enable_prefix_caching=False, admission_lookahead=0)
    relaxed = make_seq("relaxed", range(6), max_tokens=10, priority=1)
    urgent = make_seq("urgent", range(50, 56), max_tokens=10, priority=0)
    scheduler.add(relaxed)
    scheduler.add(urgent)
    preempted = []
    while scheduler.has_unfinished():
        preempted.extend(step(scheduler).preempted)
    assert preempted and set(preempted) == {"relaxed"}
    assert urgent.completion_token_ids == expected_tokens(range(50, 56), 10)
    assert relaxed.completion_token_ids == expected_tokens(range(6), 10)
    assert_all_free(scheduler)


def test_finish_of_a_waiting_or_running_sequence_frees_its_blocks_at_once():
    scheduler = make_scheduler(max_num_seqs=1)
    running, waiting = make_seq("running", range(9), max_tokens=50), make_seq("waiting", range(3))
    scheduler.add(running)
    scheduler.add(waiting)
    step(scheduler)
    assert running.block_table
    scheduler.finish(running, FinishReason.CANCELLED)
    scheduler.finish(waiting, FinishReason.CANCELLED)
    assert running.status is SequenceStatus.FINISHED and running.finish_reason is FinishReason.CANCELLED
    assert_all_free(scheduler)


def test_a_step_result_for_a_sequence_cancelled_mid_step_is_ignored():
    scheduler = make_scheduler()
    seq = make_seq("gone", range(5))
    scheduler.add(seq)
    output = scheduler.schedule()
    scheduler.finish(seq, FinishReason.CANCELLED)
    assert scheduler.complete(output, {"gone": 1}) == []
    assert seq.completion_token_ids == []
    assert_all_free(scheduler)


@pytest.mark.parametrize("field, value", [("block_size", 0), ("num_kv_blocks", 0), ("max_num_seqs", 0),
                                          ("max_num_batched_tokens", 0), ("quantization", "int3"),
                                          ("admission_lookahead", -1)])
def test_bad_engine_config_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        EngineConfig(**{field: value})


def test_a_lone_greedy_decode_gets_several_steps_only_alone_and_within_its_max_tokens():
    scheduler = make_scheduler()
    alone = make_seq("a", range(1, 7), max_tokens=6)
    scheduler.add(alone)
    assert scheduler.schedule(lone_decode_steps=4).chunks[0].decode_steps == 1  # a prefill takes no extra steps
    scheduler.complete(SchedulerOutput((ScheduledChunk(alone, 0, 6),)), {"a": 11})
    (chunk,) = scheduler.schedule(lone_decode_steps=4).chunks
    assert (chunk.start, chunk.num_tokens, chunk.decode_steps) == (6, 1, 4)
    assert len(alone.block_table) * BLOCK >= 6 + 4  # slots for every step's K/V
    scheduler.complete(SchedulerOutput((chunk,)), {"a": [12, 13, 14, 15]})
    assert alone.token_ids[6:] == [11, 12, 13, 14, 15] and alone.num_computed_tokens == 10
    (chunk,) = scheduler.schedule(lone_decode_steps=4).chunks
    assert chunk.decode_steps == 1  # one token left of max_tokens 6
    waiting = make_seq("w", range(50, 53))
    scheduler.add(waiting)
    output = scheduler.schedule(lone_decode_steps=4)
    assert [c.decode_steps for c in output.chunks] == [1, 1]  # someone joined: one token each again


def test_a_stop_token_inside_several_steps_finishes_the_sequence_and_frees_its_blocks():
    scheduler = make_scheduler()
    seq = make_seq("s", range(1, 6), max_tokens=10, stop=(99,))
    scheduler.add(seq)
    output = scheduler.schedule()
    scheduler.complete(output, {"s": 7})
    (chunk,) = scheduler.schedule(lone_decode_steps=8).chunks
    assert chunk.decode_steps == 8
    scheduler.complete(SchedulerOutput((chunk,)), {"s": [8, 99]})  # the kernel ends its run after a stop token
    assert seq.finish_reason is FinishReason.STOP and seq.token_ids[5:] == [7, 8]
    assert not scheduler.has_unfinished()
    assert scheduler.block_manager.num_free_blocks == scheduler.block_manager.num_blocks


def test_a_sampling_or_penalised_lone_decode_keeps_one_step():
    for sampling in (SamplingParams(max_tokens=8, temperature=0.7), SamplingParams(max_tokens=8, temperature=0.0,
                                                                                     presence_penalty=0.5)):
        scheduler = make_scheduler()
        seq = Sequence("p", [1, 2, 3], sampling)
        scheduler.add(seq)
        scheduler.complete(scheduler.schedule(), {"p": 4})
        assert scheduler.schedule(lone_decode_steps=8).chunks[0].decode_steps == 1
