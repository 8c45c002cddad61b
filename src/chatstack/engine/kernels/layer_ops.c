/* The element-wise parts of a decoder layer, fused, for a batch of rows (float32 or bfloat16).
 *
 * Between its matmuls a Llama layer runs about twenty small torch ops per step (norms with
 * their float32 statistics, RoPE's split / negate / concatenate / multiply / add, the K/V
 * scatter, SiLU and the gate product, residual adds); on a small model at decode batch sizes
 * they cost as much as the projections. Here each group is one pass over its rows:
 *
 *   add_rms_norm  x += delta (the residual add, skipped when delta is NULL), out = RMSNorm(x)
 *   silu_mul      out = silu(gate) * up from the fused gate_up projection
 *   rope_store    q and k heads rotated (RoPE, rotate-half), q written out, k and v written
 *                 into the paged cache at each row's slot
 *
 * Arithmetic is float32. In bfloat16 each result is rounded where the torch ops it replaces
 * round (the normalised row before the weight, silu before the product, each RoPE product
 * and their sum), so the outputs equal the torch path's bit for bit up to the order of the
 * norm's sum of squares. All tensors are contiguous rows but the caches: a layer's
 * (blocks, block_size, n_kv_heads, head_dim) with any strides between blocks, slots and heads
 * (`layout`: block_size, then those three strides in elements) and a contiguous head_dim.
 * With AVX-512, SiLU runs sixteen lanes at a time written out (the compiler's own loop was
 * 1.1-1.35x slower; a refined reciprocal estimate in place of the division was no faster and
 * moved some bfloat16 results by a step, so the division stays); with AVX2 only, eight (the
 * compiler left that loop scalar: 5 % of a float32 engine run on the AVX2 machine).
 */
#include <stdint.h>
#include "common.h"

#define T float
#define SFX f32
#define TO_F32(x) (x)
#define FROM_F32(x) (x)
#define ROUND(x) (x)
#define LOAD16(p) _mm512_loadu_ps(p)
#define STORE16(p, v) _mm512_storeu_ps(p, v)
#define ROUND16(v) (v)
#define LOAD8(p) _mm256_loadu_ps(p)
#define STORE8(p, v) _mm256_storeu_ps(p, v)
#define ROUND8(v) (v)
#include "layer_ops_impl.h"

#define T uint16_t
#define SFX bf16
#define TO_F32(x) bf16_to_f32(x)
#define FROM_F32(x) f32_to_bf16(x)
#define ROUND(x) bf16_to_f32(f32_to_bf16(x))
#define LOAD16(p) bf16x16_load(p)
#define STORE16(p, v) bf16x16_store(p, v)
#define ROUND16(v) bf16x16_round(v)
#define LOAD8(p) bf16x8_load(p)
#define STORE8(p, v) bf16x8_store(p, v)
#define ROUND8(v) bf16x8_round(v)
#include "layer_ops_impl.h"
