"""A decode-only step of several sequences in one C call equals the batched forward, and the engine takes it only
for such steps, no larger than decode_rows_max_seqs."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from chatstack.backends.base import GenerationRequest, SamplingParams
from chatstack.engine.config import EngineConfig
from chatstack.engine.cpu_kernels import decode_step_kernel
from chatstack.engine.panel_layout import panels
from chatstack.engine.llm_engine import LLMEngine
from chatstack.engine.scheduler import SchedulerOutput
from tests.unit.engine.helpers import MAX_NEW, PROMPTS, assert_engine_idle, needs_c_compiler, save_random_llama

pytestmark = needs_c_compiler

# prompts of 1 to 45 tokens, no two sharing a first block, so every one is prefilled in full
MANY_PROMPTS = tuple(tuple((t + 13 * i) % 200 for t in PROMPTS[i % 4][: 3 + 5 * i]) for i in range(13))


def decoding(engine: LLMEngine, count: int, sampling: SamplingParams | None = None) -> SchedulerOutput:
    """Prefill `count` requests; return the next step's chunks (one decode each, not yet run)."""
    sampling = sampling or SamplingParams(max_tokens=8, temperature=0.0)
    for i, prompt in enumerate(MANY_PROMPTS[:count]):
        engine.add_request(GenerationRequest(f"r{i}", prompt, sampling))
    while any(seq.num_completion_tokens == 0 for seq in engine.sequences.values()):
        engine.step()  # every prompt prefilled and its first token sampled
    output = engine.scheduler.schedule()
    assert len(output.chunks) == count and all(c.num_tokens == 1 for c in output.chunks)
    return output


def rows_and_batched(engine: LLMEngine, output: SchedulerOutput, greedy: bool = False):
    """The step's rows both ways from the same cache -> (one-call result, the cache it wrote, batched logits, the
    cache the batched step wrote, the cache before either)."""
    runner, chunks = engine.runner, output.chunks
    before = runner.kv_cache.clone()
    one_call = runner.single_decode.rows([c.seq.token_ids[c.start] for c in chunks], [c.start for c in chunks],
                                         [c.seq.block_table for c in chunks], greedy=greedy)
    written = runner.kv_cache.clone()
    runner.kv_cache.copy_(before)
    batched = runner._batched_logits(output)
    return one_call, written, batched, runner.kv_cache, before


def finish(engine: LLMEngine) -> None:
    for request_id in list(engine.sequences):
        engine.abort(request_id)
    assert_engine_idle(engine)


@pytest.mark.parametrize("count", [2, 6, 7, 13])  # one panel pass; two uneven passes; three
@pytest.mark.parametrize("variant, quantization", [
    ({}, None), ({"attention_bias": True, "tie_word_embeddings": True}, None),
    ({"num_key_value_heads": 1, "head_dim": 24, "hidden_size": 96, "vocab_size": 200}, None),  # partial panels
    ({}, "int8"), ({}, "int4"),
    # int4 with partial panels and inputs of 75 / 150 channels: a partial last group, one code in down's last byte row
    ({"num_key_value_heads": 1, "head_dim": 24, "hidden_size": 96, "vocab_size": 200, "intermediate_size": 75}, "int4"),
], ids=["gqa", "biases-tied", "mqa-odd-widths", "int8", "int4", "int4-odd-widths"])
def test_rows_of_several_sequences_equal_the_batched_forward(tmp_path, variant, quantization, count):
    engine = LLMEngine(save_random_llama(tmp_path, seed=11, **variant),
                       EngineConfig(block_size=4, num_kv_blocks=128, quantization=quantization))
    one_call, written, batched, batched_written, before = rows_and_batched(engine, decoding(engine, count))
    assert one_call.shape == batched.shape == (count, engine.runner.model.spec.vocab_size)
    torch.testing.assert_close(one_call, batched, rtol=1e-4, atol=1e-4)
    assert (written != before).any()
    torch.testing.assert_close(written, batched_written, rtol=1e-5, atol=1e-5)  # every row's K/V, in its slot
    finish(engine)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_greedy_rows_are_the_argmax_of_the_logits_rows(tmp_path, dtype):
    engine = LLMEngine(save_random_llama(tmp_path, seed=12), EngineConfig(block_size=4, num_kv_blocks=128,
                                                                          single_decode="on"), dtype=dtype)
    output = decoding(engine, 9)
    logits, written, _, _, before = rows_and_batched(engine, output)
    engine.runner.kv_cache.copy_(before)
    tokens, rewritten, batched, _, _ = rows_and_batched(engine, output, greedy=True)
    assert tokens.tolist() == logits.argmax(dim=-1).tolist()
    assert torch.equal(written, rewritten)
    if dtype == torch.bfloat16:  # the two differ in the order of the float32 sums alone
        torch.testing.assert_close(logits, batched.float(), rtol=0, atol=0.1)
    finish(engine)


@pytest.mark.parametrize("variant, pairs", [
    # partial panels (a 200-token vocabulary, 24-wide heads) with every input width even: the pair dot product
    ({"num_key_value_heads": 1, "head_dim": 24, "hidden_size": 96, "vocab_size": 200}, True),
    # an odd input width (down's 75): the widening panels
    ({"intermediate_size": 75}, False)], ids=["pairs-partial-panels", "odd-width-widening"])
def test_bfloat16_rows_take_the_pair_dot_product_where_every_input_width_is_even(tmp_path, variant, pairs):
    engine = LLMEngine(save_random_llama(tmp_path, seed=16, **variant),
                       EngineConfig(block_size=4, num_kv_blocks=128, single_decode="on"), dtype=torch.bfloat16)
    assert engine.runner.single_decode.pairs == (pairs and decode_step_kernel().bf16_pairs)
    for count in (2, 7, 13):
        one_call, written, batched, batched_written, before = rows_and_batched(engine, decoding(engine, count))
        # the sums' order alone differs (pairs of products in each dot-product instruction), so a rounding step
        torch.testing.assert_close(one_call, batched.float(), rtol=0, atol=0.1)
        torch.testing.assert_close(written.float(), batched_written.float(), rtol=0.02, atol=0.02)
        finish(engine)


def count_rows_calls(engine: LLMEngine) -> list[int]:
    path, calls = engine.runner.single_decode, []
    rows = path.rows
    path.rows = lambda tokens, *a, **k: calls.append(len(tokens)) or rows(tokens, *a, **k)
    return calls


@pytest.mark.parametrize("greedy", [True, False], ids=["greedy", "sampled-penalised-logprobs"])
def test_generation_through_decode_rows_equals_the_batched_engine(tmp_path, greedy):
    """Every decode-only step of up to decode_rows_max_seqs sequences takes the rows path; the tokens (and the
    sampled, penalised and logprob-reporting requests' draws) are those of the engine without it."""
    model_dir = save_random_llama(tmp_path, seed=13)
    kinds = [SamplingParams(max_tokens=MAX_NEW, temperature=0.0)] if greedy else [
        SamplingParams(max_tokens=MAX_NEW, temperature=0.9, seed=5, top_p=0.9),
        SamplingParams(max_tokens=MAX_NEW, temperature=0.0, repetition_penalty=1.3),
        SamplingParams(max_tokens=MAX_NEW, temperature=0.0, logprobs=2)]
    # ending one after another, so the decode steps hold 7, then 6, ... then 1 sequences
    requests = [GenerationRequest(f"g{i}", p, replace(kinds[i % len(kinds)], max_tokens=MAX_NEW - 3 * i))
                for i, p in enumerate(MANY_PROMPTS[:7])]
    results = {}
    for limit in (1, 4, 32):  # 1: lone decodes only; 4: steps of five or more sequences take the batched path
        engine = LLMEngine(model_dir, EngineConfig(block_size=4, num_kv_blocks=256, decode_rows_max_seqs=limit,
                                                   lone_decode_steps=1))
        calls = count_rows_calls(engine)
        results[limit] = engine.generate(requests)
        assert all(1 < n <= limit for n in calls)
        assert set(calls) == {1: set(), 4: {2, 3, 4}, 32: {2, 3, 4, 5, 6, 7}}[limit]
        assert_engine_idle(engine)
    assert results[1] == results[4] == results[32]


def test_on_two_torch_threads_the_rows_run_in_parts_that_equal_one_call_bit_for_bit(tmp_path):
    """Two threads cut a step of 8+ rows into parts of at least DECODE_ROWS_PER_THREAD, one C call each: every
    row's sums are its own, so the logits and K/V are those of one call, bit for bit; the tokens those of one
    thread."""
    from chatstack.engine.single_decode import DECODE_ROWS_PER_THREAD

    engine = LLMEngine(save_random_llama(tmp_path, seed=15), EngineConfig(block_size=4, num_kv_blocks=128,
                                                                          lone_decode_steps=1))
    runner, output = engine.runner, decoding(engine, 13)
    args = ([c.seq.token_ids[c.start] for c in output.chunks], [c.start for c in output.chunks],
            [c.seq.block_table for c in output.chunks])
    before = runner.kv_cache.clone()
    parts = []
    call = runner.single_decode._step._call
    runner.single_decode._step._call = lambda rows, *a: parts.append(rows) or call(rows, *a)
    one = runner.single_decode.rows(*args)
    one_cache = runner.kv_cache.clone()
    runner.kv_cache.copy_(before)
    split = runner.single_decode.rows(*args, threads=2)
    assert parts[0] == 13 and sorted(parts[1:]) == [6, 7] and min(parts[1:]) >= DECODE_ROWS_PER_THREAD
    assert torch.equal(one, split) and torch.equal(one_cache, runner.kv_cache)
    runner.single_decode._step._call = call
    finish(engine)
    calls = count_rows_calls(engine)
    requests = [GenerationRequest(f"t{i}", p, SamplingParams(max_tokens=6, temperature=0.0))
                for i, p in enumerate(MANY_PROMPTS[:9])]
    torch.set_num_threads(2)  # the autouse fixture puts one back
    two_threads = engine.generate(requests)
    assert calls and max(calls) == 9  # decode-only steps took the rows path on two threads
    torch.set_num_threads(1)
    assert engine.generate(requests) == two_threads
    assert_engine_idle(engine)


def test_bfloat16_rows_on_widening_panels_keep_to_one_thread_and_15_rows_where_onednn_runs_bfloat16(tiny_llama):
    """Widening panels lost to oneDNN's native bfloat16 matmul from 16 rows: there the rows path stops at
    HALF_PRECISION_DECODE_ROWS and keeps to one thread; the pair dot product beat oneDNN everywhere: no limit."""
    from chatstack.engine.model_runner import HALF_PRECISION_DECODE_ROWS
    from chatstack.engine.quant import PackedDense

    float32 = LLMEngine(tiny_llama, EngineConfig(num_kv_blocks=16, decode_rows_max_seqs=64)).runner
    assert float32.decode_rows_max_seqs == 64
    engine = LLMEngine(tiny_llama, EngineConfig(num_kv_blocks=64, decode_rows_max_seqs=64), dtype=torch.bfloat16)
    runner = engine.runner
    native = isinstance(runner.model.layers[0].qkv, PackedDense)  # else the batched step widens to float32 too
    limited = native and not runner.single_decode.pairs
    assert runner.decode_rows_max_seqs == (HALF_PRECISION_DECODE_ROWS if limited else 64)
    output = decoding(engine, 3)
    assert runner._decodes_in_one_call(output)
    torch.set_num_threads(2)  # the autouse fixture puts one back
    assert runner._decodes_in_one_call(output) == (not limited)
    finish(engine)
    kernel = decode_step_kernel()
    if native and kernel.bf16_pairs:  # the widening panels on this CPU too: the kernel's pairs hidden
        kernel.bf16_pairs = False
        try:
            widening = LLMEngine(tiny_llama, EngineConfig(num_kv_blocks=16, decode_rows_max_seqs=64),
                                 dtype=torch.bfloat16).runner
        finally:
            kernel.bf16_pairs = True
        assert not widening.single_decode.pairs and widening.decode_rows_max_seqs == HALF_PRECISION_DECODE_ROWS
    runner = LLMEngine(tiny_llama, EngineConfig(num_kv_blocks=16, decode_rows_max_seqs=4), dtype=torch.bfloat16).runner
    assert runner.decode_rows_max_seqs == 4


def test_rows_reject_positions_outside_the_tables_and_tokens_outside_the_vocabulary(tmp_path):
    engine = LLMEngine(save_random_llama(tmp_path, seed=14), EngineConfig(block_size=4, num_kv_blocks=64))
    output, path = decoding(engine, 3), engine.runner.single_decode
    tokens = [c.seq.token_ids[c.start] for c in output.chunks]
    positions = [c.start for c in output.chunks]
    tables = [c.seq.block_table for c in output.chunks]
    before = engine.runner.kv_cache.clone()
    beyond = [positions[0], 4 * max(len(t) for t in tables), positions[2]]
    with pytest.raises(ValueError, match="positions must lie in"):
        path.rows(tokens, beyond, tables)
    with pytest.raises(ValueError, match="positions must lie in"):
        path.rows(tokens, [-1, *positions[1:]], tables)
    shortest = min(range(3), key=lambda i: len(tables[i]))  # a position in the padding of its own table
    padded = [4 * len(tables[shortest]) if i == shortest else p for i, p in enumerate(positions)]
    assert len(tables[shortest]) < max(len(t) for t in tables)
    with pytest.raises(ValueError, match="positions must lie in their own block tables"):
        path.rows(tokens, padded, tables)
    with pytest.raises(ValueError, match="tokens must lie in the vocabulary"):
        path.rows([tokens[0], engine.runner.model.spec.vocab_size, tokens[2]], positions, tables)
    assert torch.equal(engine.runner.kv_cache, before)  # nothing written
    finish(engine)


def test_a_decode_rows_limit_below_one_is_refused():
    with pytest.raises(ValueError, match="decode_rows_max_seqs must be >= 1"):
        EngineConfig(decode_rows_max_seqs=0)


@pytest.mark.parametrize("rows", [1, 2, 5, 6, 7, 12, 13, 40])
@pytest.mark.parametrize("k, n", [(64, 128), (96, 200), (24, 40)], ids=["whole-panels", "a-partial-panel", "narrow"])
def test_the_panel_matmul_equals_a_plain_matmul(rows, k, n):
    generator = torch.Generator().manual_seed(rows * 1000 + n)
    x, weight_t = torch.randn(rows, k, generator=generator), torch.randn(k, n, generator=generator)
    bias = torch.randn(n, generator=generator)
    kernel = decode_step_kernel()
    packed = panels(weight_t, torch.empty(k * n))
    torch.testing.assert_close(kernel.matmul(x, packed, n), x @ weight_t, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(kernel.matmul(x, packed, n, bias), torch.addmm(bias, x, weight_t), rtol=1e-5, atol=1e-4)


def test_the_panel_matmul_refuses_mismatched_shapes_by_name():
    kernel, x = decode_step_kernel(), torch.randn(3, 64)
    with pytest.raises(ValueError, match="weight_panels must hold in=64 x out=128"):
        kernel.matmul(x, torch.empty(64 * 100), 128)
    with pytest.raises(ValueError, match="bias must be"):
        kernel.matmul(x, torch.empty(64 * 128), 128, torch.zeros(7))
    with pytest.raises(ValueError, match="x must be"):
        kernel.matmul(x.T, torch.empty(64 * 128), 128)
    with pytest.raises(ValueError, match="x must be"):
        kernel.matmul(x[None], torch.empty(64 * 128), 128)


def test_panel_matmul_microbenchmark_reports_both_and_rejects_bad_sizes():
    from chatstack.bench import panel_matmul

    report = panel_matmul.main(["--rows", "1", "7", "--layers", "1", "--repeats", "1", "--vocab", "200"])
    lines = [line for line in report.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [line.split(" | ")[0] for line in lines] == ["| 1", "| 7"]
    assert all(float(line.split(" | ")[6].rstrip(" |")) < 1e-3 for line in lines)  # the same products
    assert torch.is_grad_enabled() and torch.get_num_threads() == 1  # the process's settings left as they were
    with pytest.raises(SystemExit):
        panel_matmul.main(["--rows", "0"])


def test_decode_rows_benchmark_times_the_three_ways_and_rejects_bad_sizes():
    from chatstack.bench import decode_rows

    threads = torch.get_num_threads()
    report = decode_rows.main(["--rows", "2", "9", "--layers", "1", "--hidden", "64", "--vocab", "300",
                               "--prompt", "5", "--repeats", "1", "--threads", "2"])
    lines = [line for line in report.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [line.split(" | ")[0] for line in lines] == ["| 2", "| 9"]
    assert all(float(value) > 0 for line in lines for value in line.split(" | ")[1:4])
    assert torch.is_grad_enabled() and torch.get_num_threads() == threads  # the process's settings as they were
    with pytest.raises(SystemExit):
        decode_rows.main(["--rows", "0"])
