/* One decode step of a batch of decoding sequences through the whole Llama layer stack, in one call.
 *
 * When a step holds only decoding tokens, the ~25 small torch ops per layer cost more than the
 * memory traffic they do, and oneDNN's matmuls run a few rows at a fraction of this core's speed; this runs
 * every layer for those tokens in C (chatstack_decode_rows_*), for float32 (_f32) and bfloat16 (_bf16) weights,
 * caches and activations, for int8 weight-only models (_f32i8: float32 caches and activations, each int8
 * weight widened as it is read and its column's scale applied to the sum) and for int4 ones (_f32q4: 4-bit codes
 * with a scale and zero point per group of 32 input rows, decode_step_q4.h). It makes the batched step's calls in
 * the batched step's order: the fused residual add + RMSNorm, RoPE + K/V write and SiLU product of layer_ops.c,
 * paged attention (paged_attention.c), and a matmul for each projection; so in bfloat16 every value is rounded
 * where the batched step rounds it, and the two differ only in the order of the matmuls' float32 sums. It ends
 * with the final norm and the LM head; the caller samples from the logits, or takes the greedy tokens the step
 * picked (argmax.c). chatstack_decode_steps_* runs several greedy steps of one sequence in one call.
 *
 * Weights are (in, out) matrices stored in column panels, the step's own copy (single_decode.py): panel t
 * holds columns t * PANEL to t * PANEL + PANEL - 1 (the last panel the n % PANEL left over) of every row,
 * the rows of a panel one after another, each panel after the one before. A matmul then reads its
 * weight front to back as one stream, and a panel's PANEL sums stay in registers over all its rows
 * (row-by-row streaming of the plain (in, out) layout read several rows at once and wrote the partial
 * sums back every pass; docs/benchmarks.md has both).
 * Per layer, `layers` holds LAYER_POINTERS pointers in this order: input_norm, qkv, qkv_bias
 * (or NULL), o_proj, o_bias (or NULL), post_norm, gate_up, down, k_cache, v_cache, then the float32
 * scales of qkv, o_proj, gate_up and down (int8 weights: one per column, chatstack_decode_rows_f32i8; int4:
 * the (groups, 2, n) scales and zero * scales, _f32q4; NULL otherwise).
 */
#include "paged_attention.c"
#include "layer_ops.c"
#include "argmax.c"

enum { LAYER_POINTERS = 14, PANEL = 64 };
/* the most rows one pass through a weight panel keeps in registers (matmul_ in decode_step_impl.h): four
 * accumulators a row with AVX-512, four (a half panel) with AVX2's sixteen registers */
#if defined(__AVX512F__)
#define MAX_ROWS 6
#elif defined(__AVX2__)
#define MAX_ROWS 2
#else
#define MAX_ROWS 4
#endif

#define T float
#define W float
#define SFX f32
#define OPS f32
#define TO_F32(x) (x)
#define W_TO_F32(x) (x)
#define FROM_F32(x) (x)
#define WIDENS 0
#define LOAD16(p) _mm512_loadu_ps(p)
#define LOAD8(p) _mm256_loadu_ps(p)
#include "decode_step_impl.h"

#define T uint16_t
#define W uint16_t
#define SFX bf16
#define OPS bf16
#define TO_F32(x) bf16_to_f32(x)
#define W_TO_F32(x) bf16_to_f32(x)
#define FROM_F32(x) f32_to_bf16(x)
#define WIDENS 1
#define LOAD16(p) bf16x16_load(p)
#define LOAD8(p) bf16x8_load(p)
#include "decode_step_impl.h"

/* int8 weights (Int8Linear: per output column, w = q * scale) with float32 activations and caches */
#ifdef __AVX512F__
static inline __m512 i8x16_load(const int8_t *p) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)p)));
}
#endif
#ifdef __AVX2__
static inline __m256 i8x8_load(const int8_t *p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}
#endif
#define T float
#define W int8_t
#define SFX f32i8
#define OPS f32
#define TO_F32(x) (x)
#define W_TO_F32(x) ((float)(x))
#define FROM_F32(x) (x)
#define WIDENS 0
#define LOAD16(p) i8x16_load(p)
#define LOAD8(p) i8x8_load(p)
#include "decode_step_impl.h"

/* int4 weights (Int4Linear, group Q4_GROUP: codes two a byte, a scale and zero point per group and column) with
 * float32 activations and caches; each layer's scale pointers give the (groups, 2, n) scales and zero * scales */
#include "decode_step_q4.h"
#define T float
#define W uint8_t
#define SFX f32q4
#define OPS f32
#define TO_F32(x) (x)
#define FROM_F32(x) (x)
#define WIDENS 0
#include "decode_step_impl.h"

/* bfloat16 by the AVX512-BF16 pair dot product (decode_step_bf16dp.h), where the compiler targets it: the same step
 * as _bf16 over weights whose panels hold the rows in pairs; single_decode.py takes it where every input width is
 * even */
#if defined(__AVX512BF16__)
#include "decode_step_bf16dp.h"
#define T uint16_t
#define W uint16_t
#define SFX bf16dp
#define OPS bf16
#define TO_F32(x) bf16_to_f32(x)
#define FROM_F32(x) f32_to_bf16(x)
#define WIDENS 1
#include "decode_step_impl.h"
#endif

/* The float32 panel matmul alone, for its microbenchmark (chatstack.bench.panel_matmul) and tests: out (rows, n)
 * = x (rows, k) @ w (k, n in panels, as the step's weights) [+ bias]. */
void chatstack_panel_matmul_f32(const float *x, int64_t rows, const float *w, const float *bias, int64_t k, int64_t n,
                                float *out) {
    matmul_f32(x, rows, w, NULL, bias, k, n, out);
}
