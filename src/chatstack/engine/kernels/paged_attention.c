/* Paged attention for the CPU: each query token attends to its sequence's keys [0, pos]
 * read in place from the block-paged KV cache (no gathered, padded copies). One entry point
 * per storage type: chatstack_paged_attention_f32 and chatstack_paged_attention_bf16 (q, the
 * caches and out in bfloat16; all arithmetic in float32, the output rounded to nearest even).
 *
 * Layouts:
 *   q            (T, n_heads, head_dim)             rows of the flat batch, q_stride elements apart
 *   k/v cache    blocks of block_size slots x n_kv_heads heads x head_dim, any strides
 *                (in elements) between blocks, slots and heads; head_dim contiguous
 *   block_tables (num_queries, max_blocks) int32    block ids of each query's sequence
 *   out          (T, n_heads * head_dim)
 * Query i is row query_token[i] of q and out, at position query_pos[i].
 *
 * The n_heads / n_kv_heads query heads that share a KV head are scored together, so each
 * key and value row is read once per query token (GQA). Softmax is exact (two passes over
 * the scores); exp is a vectorisable polynomial, relative error ~1e-7. Built with AVX2 (the
 * build uses -march=native), keys are scored eight at a time and each output slice is
 * accumulated in registers; with AVX-512 the same with sixteen lanes where head_dim is a
 * multiple of 16; elsewhere, or for a head_dim not a multiple of 8, plain loops.
 * A bfloat16 block is widened to floats once, then read by every head of the group.
 * Up to RUN_QUERIES consecutive tokens of one prompt chunk join one group (their rows of a KV
 * head scored and weighed together, each stopping at its own position), so a chunk reads each
 * key and value row once per RUN_QUERIES tokens rather than once per token. With float32 caches and
 * AVX-512, such a run of >= ROWS_PATH_MIN rows puts 32 rows in the vector lanes instead
 * (paged_attention_rows.h): a key's scores for all of them need no horizontal sums.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "common.h"
#ifdef __AVX2__
#include <immintrin.h>
#endif

#define INLINE static inline __attribute__((always_inline))
#ifndef RUN_QUERIES
#define RUN_QUERIES 8
#endif
/* float32 with AVX-512: a run of at least ROWS_PATH_MIN query rows (tokens x the group's heads) is attended
 * ROW_LANES rows at a time with the rows in the vector lanes (paged_attention_rows.h) */
#define ROW_LANES 32
#define ROWS_PATH_MIN 24

/* Each of the group's score rows (`stride` apart) becomes its softmax over its first valid[h] entries,
 * in place; the entries past those become 0. */
INLINE void softmax_rows(float *scores, int64_t group, int64_t stride, const int64_t *valid) {
    for (int64_t h = 0; h < group; ++h) {
        float *sh = scores + h * stride;
        const int64_t length = valid[h];
        float top = sh[0];
        #pragma omp simd reduction(max:top)
        for (int64_t j = 1; j < length; ++j) top = sh[j] > top ? sh[j] : top;
        float total = 0.0f;
        int64_t j = 0;
        /* GCC left the loop below scalar (measured: the exp was ~40 % of a decode step's attention on AVX2) */
#ifdef __AVX512F__
        __m512 sums16 = _mm512_setzero_ps();
        for (; j + 16 <= length; j += 16) {
            const __m512 e = exp_nonpositive16(_mm512_sub_ps(_mm512_loadu_ps(sh + j), _mm512_set1_ps(top)));
            _mm512_storeu_ps(sh + j, e);
            sums16 = _mm512_add_ps(sums16, e);
        }
        total += _mm512_reduce_add_ps(sums16);
#endif
#ifdef __AVX2__
        __m256 sums8 = _mm256_setzero_ps();
        for (; j + 8 <= length; j += 8) {
            const __m256 e = exp_nonpositive8(_mm256_sub_ps(_mm256_loadu_ps(sh + j), _mm256_set1_ps(top)));
            _mm256_storeu_ps(sh + j, e);
            sums8 = _mm256_add_ps(sums8, e);
        }
        float lanes[8];
        _mm256_storeu_ps(lanes, sums8);
        for (int r = 0; r < 8; ++r) total += lanes[r];
#endif
        for (; j < length; ++j) {
            sh[j] = exp_nonpositive(sh[j] - top);
            total += sh[j];
        }
        const float inv = 1.0f / total;
        #pragma omp simd
        for (int64_t j = 0; j < length; ++j) sh[j] *= inv;
        for (int64_t j = length; j < stride; ++j) sh[j] = 0.0f;
    }
}

#ifdef __AVX2__
/* Lane r of the result is the sum of the eight lanes of v[r]: a transposing horizontal add. */
INLINE __m256 sum_each_of_eight(const __m256 v[8]) {
    const __m256 a = _mm256_hadd_ps(_mm256_hadd_ps(v[0], v[1]), _mm256_hadd_ps(v[2], v[3]));
    const __m256 c = _mm256_hadd_ps(_mm256_hadd_ps(v[4], v[5]), _mm256_hadd_ps(v[6], v[7]));
    return _mm256_add_ps(_mm256_permute2f128_ps(a, c, 0x20), _mm256_permute2f128_ps(a, c, 0x31));
}
#endif

#ifdef __AVX512F__
/* out[r] = scale * (the sum of the sixteen lanes of acc[r]), r < 8: each sum folded to eight
 * lanes, then added across as sum_each_of_eight does. */
INLINE void store_scaled_sums_of_eight(const __m512 acc[8], float scale, float *out) {
    __m256 half[8];
    for (int r = 0; r < 8; ++r)
        half[r] = _mm256_add_ps(_mm512_castps512_ps256(acc[r]),
                                _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc[r]), 1)));
    _mm256_storeu_ps(out, _mm256_mul_ps(sum_each_of_eight(half), _mm256_set1_ps(scale)));
}
#endif

#define KV_T float
#define SFX f32
#define KV_IS_FLOAT 1
#define KV_TO_F32(x) (x)
#define KV_FROM_F32(x) (x)
#include "paged_attention_impl.h"

#define KV_T uint16_t
#define SFX bf16
#define KV_IS_FLOAT 0
#define KV_TO_F32(x) bf16_to_f32(x)
#define KV_FROM_F32(x) f32_to_bf16(x)
#include "paged_attention_impl.h"
