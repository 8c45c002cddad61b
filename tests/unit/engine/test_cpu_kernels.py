"""The C kernels equal their torch references, are built once per source, and fall back cleanly."""

from __future__ import annotations

import math
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from chatstack.engine import cpu_kernels
from chatstack.engine.attention import AttentionMetadata, paged_attention, split_work
from chatstack.engine.config import EngineConfig
from chatstack.engine.layer_ops import layer_ops_kernel
from chatstack.engine.model_runner import ModelRunner
from chatstack.engine.panel_layout import panels, row_words

from tests.unit.engine.helpers import needs_c_compiler

pytestmark = needs_c_compiler


def random_layout(num_seqs: int, block_size: int, num_blocks: int, max_len: int, seed: int):
    """Decode chunks (start position, 1, block_table) over shuffled, disjoint blocks of one pool."""
    rng = random.Random(seed)
    free = list(range(1, num_blocks))
    rng.shuffle(free)
    lengths = [1, block_size - 1, block_size, block_size + 1] + [rng.randint(1, max_len) for _ in range(num_seqs - 4)]
    chunks = []
    for position in lengths:
        needed = math.ceil((position + 1) / block_size)
        chunks.append((position, 1, [free.pop() for _ in range(needed)]))
    return chunks


@pytest.mark.parametrize("n_heads, n_kv_heads, head_dim, block_size", [
    (4, 2, 32, 16),   # GQA 2:1, a fixed-size head
    (8, 1, 64, 16),   # MQA
    (4, 4, 128, 8),   # MHA
    (6, 3, 24, 5),    # a head size without a specialised loop, odd block size
    (4, 2, 48, 16),   # a multiple of 16 (the AVX-512 loops) that is not a fixed size
    (2, 1, 40, 16),   # a multiple of 8 but not of 16 (the AVX2 loops where AVX-512 is built)
    (2, 2, 160, 16),  # more than one 128-wide output slice
    (12, 2, 64, 16),  # a group of six: four heads per value row, then two
    (6, 2, 16, 16),   # a group of three: scored two heads per key load, then one
])
def test_kernel_decode_equals_the_sdpa_path(n_heads, n_kv_heads, head_dim, block_size):
    torch.manual_seed(0)
    chunks = random_layout(12, block_size, 400, 300, seed=head_dim)
    cache = torch.randn(2, 400, block_size, n_kv_heads, head_dim)
    # q and k as the model makes them: views into one (T, n_heads + n_kv_heads, head_dim) tensor
    q, k = torch.randn(len(chunks), n_heads + n_kv_heads, head_dim).split([n_heads, n_kv_heads], dim=1)
    v = torch.randn(len(chunks), n_kv_heads, head_dim)
    outputs = []
    for decode_kernel in (False, True):
        k_cache, v_cache = cache.clone()
        meta = AttentionMetadata.build(chunks, block_size, "cpu", decode_kernel)
        assert (meta.kernel_decodes is not None) == decode_kernel
        outputs.append(paged_attention(q, k, v, k_cache, v_cache, meta))
    torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype, tolerance", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize("threads", [1, 2])
def test_prompt_chunks_through_the_kernel_equal_sdpa(dtype, tolerance, threads):
    """A whole prompt, a piece after a cached prefix, a piece ending mid-block, and decodes: each chunk token
    as a kernel query (causal by its position) equals the SDPA path's gathered, masked attention."""
    torch.manual_seed(8)
    rng = random.Random(9)
    free = list(range(1, 300))
    rng.shuffle(free)
    layout = []
    for start, n in ((0, 77), (64, 48), (130, 5), (33, 1), (200, 1), (0, 2)):
        layout.append((start, n, [free.pop() for _ in range(math.ceil((start + n) / 16))]))
    total = sum(n for _, n, _ in layout)
    cache = torch.randn(2, 300, 16, 2, 64).to(dtype)
    q, k = torch.randn(total, 10, 64).to(dtype).split([8, 2], dim=1)
    v = torch.randn(total, 2, 64).to(dtype)
    outputs = []
    for chunk_kernel in (False, True):
        k_cache, v_cache = cache.clone()
        meta = AttentionMetadata.build(layout, 16, "cpu", True, kernel_threads=threads, chunk_kernel=chunk_kernel)
        assert len(meta.groups) == (0 if chunk_kernel else 4)
        assert meta.kernel_decodes.query_token.numel() == (total if chunk_kernel else 2)
        outputs.append(paged_attention(q, k, v, k_cache, v_cache, meta).float())
    torch.testing.assert_close(outputs[1], outputs[0], rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("n_heads, n_kv_heads, head_dim", [
    (8, 2, 64),   # runs of 8 tokens x 4 heads: one 32-row group; a 7-token run: 28 rows, padded
    (8, 1, 128),  # 8 heads a token: two 32-row groups a run, two 64-wide output slices
    (6, 2, 32),   # 3 heads a token: a run is 24 rows, padded to 32
    (4, 1, 48),   # a head_dim the fixed sizes leave out
])
def test_prompt_chunk_runs_of_many_rows_equal_sdpa(n_heads, n_kv_heads, head_dim):
    """Float32 chunks whose runs hold >= 24 query rows (tokens x the group's heads) take the rows-in-lanes loops
    where the CPU has AVX-512: each must equal SDPA, whatever the padding of its last row group."""
    torch.manual_seed(3)
    rng = random.Random(4)
    free = list(range(1, 200))
    rng.shuffle(free)
    layout = []
    for start, n in ((0, 71), (16, 7), (40, 30), (5, 1)):
        layout.append((start, n, [free.pop() for _ in range(math.ceil((start + n) / 16))]))
    total = sum(n for _, n, _ in layout)
    cache = torch.randn(2, 200, 16, n_kv_heads, head_dim)
    q, k = torch.randn(total, n_heads + n_kv_heads, head_dim).split([n_heads, n_kv_heads], dim=1)
    v = torch.randn(total, n_kv_heads, head_dim)
    outputs = []
    for chunk_kernel in (False, True):
        k_cache, v_cache = cache.clone()
        meta = AttentionMetadata.build(layout, 16, "cpu", True, chunk_kernel=chunk_kernel)
        outputs.append(paged_attention(q, k, v, k_cache, v_cache, meta))
    torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n_heads, n_kv_heads, head_dim", [
    (8, 2, 64),   # the AVX512-BF16 path where the CPU has it: four heads per value pass
    (6, 1, 32),   # ... four heads, then two one at a time
    (2, 2, 128),  # ... one head per value pass, two 64-wide slices
    (8, 2, 48),   # widened blocks (not a multiple of 32)
    (8, 2, 24),
])
def test_bfloat16_kernel_equals_float32_attention_of_the_same_values(n_heads, n_kv_heads, head_dim):
    """bf16 q / K / V in, bf16 out: equal to float32 attention over the bf16 values, then rounded."""
    torch.manual_seed(4)
    chunks = random_layout(10, 16, 300, 400, seed=5)
    cache = torch.randn(2, 300, 16, n_kv_heads, head_dim).bfloat16()
    q = torch.randn(len(chunks), n_heads, head_dim).bfloat16()
    k = torch.randn(len(chunks), n_kv_heads, head_dim).bfloat16()
    v = torch.randn(len(chunks), n_kv_heads, head_dim).bfloat16()
    k_f32, v_f32 = cache.float().clone()
    meta_f32 = AttentionMetadata.build(chunks, 16, "cpu", False)
    expected = paged_attention(q.float(), k.float(), v.float(), k_f32, v_f32, meta_f32).bfloat16()
    k_cache, v_cache = cache.clone()
    got = paged_attention(q, k, v, k_cache, v_cache, AttentionMetadata.build(chunks, 16, "cpu", True))
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), expected.float(), rtol=8e-3, atol=8e-3)  # one bf16 rounding step


def test_kernel_reads_a_strided_view_of_the_engine_cache():
    torch.manual_seed(1)
    chunks = random_layout(6, 4, 64, 100, seed=3)
    kv = torch.randn(3, 2, 64, 4, 2, 16)  # (layers, k/v, blocks, block_size, kv heads, head_dim)
    head_major = kv.transpose(3, 4).contiguous().transpose(3, 4)  # same values, other strides
    q = torch.randn(len(chunks), 4, 16)
    meta = AttentionMetadata.build(chunks, 4, "cpu", True).kernel_decodes
    results = []
    for cache in (kv, head_major):
        out = torch.zeros(len(chunks), 64)
        cpu_kernels.paged_attention_kernel()(q, cache[1, 0], cache[1, 1], meta.block_tables, meta.query_token,
                                             meta.query_pos, out, 0.25)
        results.append(out)
    torch.testing.assert_close(results[0], results[1])


def test_kernel_rejects_tensors_it_cannot_read():
    kernel = cpu_kernels.paged_attention_kernel()
    cache = torch.zeros(4, 4, 1, 8)
    tables, index = torch.zeros(1, 1, dtype=torch.int32), torch.zeros(1, dtype=torch.long)
    with pytest.raises(ValueError, match="block_tables"):
        kernel(torch.zeros(1, 1, 8), cache, cache, tables.long(), index, index, torch.zeros(1, 8), 1.0)
    with pytest.raises(ValueError, match="^q "):
        kernel(torch.zeros(1, 8, 2).transpose(1, 2), cache, cache, tables, index, index, torch.zeros(1, 16), 1.0)
    with pytest.raises(ValueError, match="^q "):
        kernel(torch.zeros(1, 1, 8, dtype=torch.float64), cache, cache, tables, index, index, torch.zeros(1, 8), 1.0)
    with pytest.raises(ValueError, match="k_cache and v_cache must be torch.bfloat16 like q"):
        kernel(torch.zeros(1, 1, 8).bfloat16(), cache, cache, tables, index, index, torch.zeros(1, 8).bfloat16(), 1.0)
    with pytest.raises(ValueError, match="k_cache and v_cache"):
        kernel(torch.zeros(1, 1, 8), cache.double(), cache.double(), tables, index, index, torch.zeros(1, 8), 1.0)


def test_argmax_kernel_equals_torch_argmax_with_ties_infinities_and_nans():
    kernel = cpu_kernels.argmax_kernel()
    torch.manual_seed(2)
    x = torch.randn(9, 300)
    x[1, 5] = x[1, 200] = x[1].max() + 1   # tie: the first index wins
    x[2] = float("-inf")
    x[3, 150] = float("inf")
    x[4, 250] = float("nan")                # a NaN wins, wherever the maximum is
    x[5, 3], x[5, 299] = float("nan"), float("nan")
    x[6, 299] = 100.0                       # the last element, in a partial 64-wide chunk
    for view in (x, x[:, 7:200], x[:, :1], x[::2]):
        assert kernel(view) == torch.argmax(view, dim=-1).tolist()
    with pytest.raises(ValueError, match="matrix"):
        kernel(x.t())


def test_build_is_cached_per_source_and_rebuilt_when_the_source_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("CHATSTACK_KERNEL_CACHE", str(tmp_path / "cache"))
    source = tmp_path / "k.c"
    source.write_text("int chatstack_answer(void) { return 42; }\n")
    first = cpu_kernels.build(source)
    built = first.stat()
    assert cpu_kernels.build(source) == first and built.st_size > 0
    again = first.stat()  # not compiled again: a rebuild publishes a new file (new inode) by os.replace
    assert (again.st_ino, again.st_mtime_ns) == (built.st_ino, built.st_mtime_ns)
    source.write_text("int chatstack_answer(void) { return 43; }\n")
    assert cpu_kernels.build(source) != first


def test_a_compiler_warning_in_utf_8_builds_under_an_ascii_locale(tmp_path):
    """GCC quotes names in its warnings with curly quotes; a Triton model's interpreter runs an ASCII locale, where
    decoding them failed the whole kernel build (a UnicodeDecodeError, not a fallback)."""
    compiler = tmp_path / "cc-quoting"
    compiler.write_text("#!/bin/sh\nprintf 'warning: \\342\\200\\230x\\342\\200\\231 unused\\n' >&2\nexec cc \"$@\"\n")
    compiler.chmod(0o755)
    source = tmp_path / "k.c"
    source.write_text("int chatstack_answer(void) { return 42; }\n")
    script = "import sys; from chatstack.engine import cpu_kernels; print(cpu_kernels.build(__import__('pathlib').Path(sys.argv[1])))"
    env = {**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0", "CC": str(compiler),
           "CHATSTACK_KERNEL_CACHE": str(tmp_path / "cache")}
    run = subprocess.run([sys.executable, "-c", script, str(source)], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    assert Path(run.stdout.strip()).exists()


def test_without_a_compiler_auto_falls_back_and_kernel_is_refused(tmp_path, monkeypatch, tiny_llama):
    monkeypatch.setenv("CHATSTACK_KERNEL_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("CC", "false")
    loaders = (cpu_kernels.paged_attention_kernel, cpu_kernels.decode_step_kernel, layer_ops_kernel)
    for loader in loaders:
        loader.cache_clear()
    try:
        assert cpu_kernels.paged_attention_kernel() is None
        runner = ModelRunner(tiny_llama, EngineConfig(num_kv_blocks=8))
        assert runner.decode_kernel is False and runner.model.layer_ops is None and runner.single_decode is None
        with pytest.raises(ValueError, match="attention 'kernel' is unavailable"):
            ModelRunner(tiny_llama, EngineConfig(num_kv_blocks=8, attention="kernel"))
    finally:
        for loader in loaders:  # the None results must not outlive the missing compiler
            loader.cache_clear()


def test_kernel_is_refused_for_dtypes_it_does_not_read(tiny_llama):
    with pytest.raises(ValueError, match="attention 'kernel' needs float32 or bfloat16"):
        ModelRunner(tiny_llama, EngineConfig(num_kv_blocks=8, attention="kernel"), dtype=torch.float16)
    assert ModelRunner(tiny_llama, EngineConfig(num_kv_blocks=8), dtype=torch.float16).decode_kernel is False
    assert ModelRunner(tiny_llama, EngineConfig(num_kv_blocks=8), dtype=torch.bfloat16).decode_kernel is True
    with pytest.raises(ValueError, match="attention must be one of"):
        EngineConfig(attention="flash")


def test_split_work_gives_contiguous_ranges_of_about_equal_work():
    lengths = [5000, 100, 100, 4800, 2000, 3000]
    parts = split_work(lengths, 2)
    assert parts[0][0] == 0 and parts[-1][1] == len(lengths)
    assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
    sums = [sum(lengths[first:end]) for first, end in parts]
    assert parts == ((0, 3), (3, 6)) and sums == [5200, 9800]  # the most even cut of these lengths
    assert split_work([100, 200], 4) == ((0, 2),)  # too little work to hand off
    assert split_work([9000], 4) == ((0, 1),)


def test_kernel_split_over_threads_equals_one_call():
    torch.manual_seed(6)
    chunks = random_layout(40, 16, 2400, 800, seed=7)
    kv = torch.randn(2, 2400, 16, 2, 32)
    q = torch.randn(len(chunks), 4, 32)
    outputs = []
    for threads in (1, 3):
        meta = AttentionMetadata.build(chunks, 16, "cpu", True, kernel_threads=threads).kernel_decodes
        assert len(meta.parts) == threads
        out = torch.zeros(len(chunks), 128)
        cpu_kernels.paged_attention_kernel()(q, kv[0], kv[1], meta.block_tables, meta.query_token, meta.query_pos,
                                             out, 32 ** -0.5, meta.parts)
        outputs.append(out)
    assert torch.equal(outputs[0], outputs[1])
    with pytest.raises(ValueError, match="parts must be ranges"):
        cpu_kernels.paged_attention_kernel()(q, kv[0], kv[1], meta.block_tables, meta.query_token, meta.query_pos,
                                             out, 1.0, ((0, 99),))


def test_engine_pool_stores_each_kv_heads_block_slots_contiguously(tiny_llama):
    runner = ModelRunner(tiny_llama, EngineConfig(num_kv_blocks=8, block_size=4))
    k_cache = runner.kv_cache[0, 0]  # (blocks, block_size, n_kv_heads, head_dim) as the layers see it
    head_dim, heads = k_cache.shape[3], k_cache.shape[2]
    assert k_cache.stride()[1:] == (head_dim, 4 * head_dim, 1)  # slot, KV head, dimension
    assert cpu_kernels.cache_layout(k_cache) == (4, heads * 4 * head_dim, head_dim, 4 * head_dim)


def test_decode_step_panels_hold_64_columns_of_every_row_then_what_is_left():
    weight_t = torch.arange(3 * 150, dtype=torch.float32).view(3, 150)  # (in, out): two full panels and 22 columns
    packed = panels(weight_t, torch.empty(3 * 150))
    assert torch.equal(packed[:3 * 64].view(3, 64), weight_t[:, :64])
    assert torch.equal(packed[3 * 64:3 * 128].view(3, 64), weight_t[:, 64:128])
    assert torch.equal(packed[3 * 128:].view(3, 22), weight_t[:, 128:])
    with pytest.raises(ValueError, match="450 contiguous values"):
        panels(weight_t, torch.empty(449))


def test_row_words_hold_eight_int4_codes_or_two_bfloat16_rows_of_a_column_low_bits_first():
    codes = torch.randint(0, 16, (16, 5), generator=torch.Generator().manual_seed(0))  # (rows, cols) of 4 bits
    packed = (codes[0::2] | (codes[1::2] << 4)).to(torch.uint8)  # Int4Linear's bytes: row 2b in the low nibble
    words = row_words(packed)
    assert words.shape == (2, 5) and words.dtype == torch.int32
    for u in range(2):
        for j in range(8):
            assert torch.equal((words[u] >> (4 * j)) & 15, codes[8 * u + j])  # row 8u + j in bits 4j..4j+3
    halves = torch.arange(6 * 3, dtype=torch.int16).view(6, 3).view(torch.bfloat16)
    pairs = row_words(halves)
    assert pairs.shape == (3, 3)
    assert torch.equal((pairs & 0xFFFF).to(torch.int16), halves[0::2].view(torch.int16))  # row 2u low
    assert torch.equal((pairs >> 16).to(torch.int16), halves[1::2].view(torch.int16))
    with pytest.raises(ValueError, match="go 2 to a word"):
        row_words(halves[:5])
    with pytest.raises(ValueError, match="go 1 to a word"):
        row_words(torch.zeros(4, 2))


def test_kernel_microbenchmark_reports_a_time_and_rejects_bad_shapes():
    from chatstack.bench import attention_kernel

    report = attention_kernel.main(["--sequences", "3", "--repeats", "1", "--dtype", "bfloat16"])
    assert "bfloat16" in report and "ms per call" in report and "GB/s" in report
    report = attention_kernel.main(["--sequences", "3", "--repeats", "1", "--layout", "head-major"])
    assert "head-major, float32" in report and "ms per call" in report
    report = attention_kernel.main(["--sequences", "3", "--repeats", "1", "--chunk-tokens", "8"])
    assert report.startswith("3 chunks of 8 tokens") and "GFLOP/s" in report
    with pytest.raises(SystemExit):
        attention_kernel.main(["--heads", "6", "--kv-heads", "4"])
    with pytest.raises(SystemExit):
        attention_kernel.main(["--chunk-tokens", "33"])


def test_every_kernel_builds_where_a_compiler_exists():
    """A failing build would otherwise turn every kernel test into a skip."""
    loaders = (cpu_kernels.paged_attention_kernel, cpu_kernels.argmax_kernel, cpu_kernels.decode_step_kernel,
               layer_ops_kernel)
    assert [loader.__name__ for loader in loaders if loader() is None] == []
