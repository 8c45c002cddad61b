/* Paged attention for the CPU: each query token attends to its sequence's keys [0, pos]
 * read in place from the block-paged KV cache (no gathered, padded copies).
 *
 * Layouts (float32, contiguous):
 *   q            (T, n_heads, head_dim)             rows of the flat batch, q_stride floats apart
 *   k/v cache    blocks of block_size slots x n_kv_heads heads x head_dim, any strides
 *                (in floats) between blocks, slots and heads; head_dim contiguous
 *   block_tables (num_queries, max_blocks) int32    block ids of each query's sequence
 *   out          (T, n_heads * head_dim)
 * Query i is row query_token[i] of q and out, at position query_pos[i].
 *
 * The n_heads / n_kv_heads query heads that share a KV head are scored together, so each
 * key and value row is read once per query token (GQA). Softmax is exact (two passes over
 * the scores); exp is a vectorisable polynomial, relative error ~1e-7. Built with AVX2 (the
 * build uses -march=native), keys are scored eight at a time and each output slice is
 * accumulated in registers; elsewhere, or for a head_dim not a multiple of 8, plain loops.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#ifdef __AVX2__
#include <immintrin.h>
#endif

static inline float exp_nonpositive(float x) {
    /* exp(x) for x <= 0: x = n ln2 + r, |r| <= ln2 / 2; e^r by a degree-6 polynomial. */
    x = x < -87.0f ? -87.0f : x;
    float n = rintf(x * 1.44269504088896341f);
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

#define INLINE static inline __attribute__((always_inline))

/* scores[h][j] = scale * q_h . key_j for the group's heads and keys [0, length). */
INLINE void score_keys(const float *q, const float *k_cache, const int32_t *table, int64_t length,
                       int64_t group, const int64_t strides[3], int64_t kv_head, int64_t head_dim,
                       int64_t block_size, float scale, float *scores) {
    const int64_t row = strides[1];
    for (int64_t j0 = 0, b = 0; j0 < length; j0 += block_size, ++b) {
        const int64_t in_block = length - j0 < block_size ? length - j0 : block_size;
        const float *keys = k_cache + (int64_t)table[b] * strides[0] + kv_head * strides[2];
        int64_t s = 0;
#ifdef __AVX2__
        /* Eight keys at once: one accumulator per key, then a transposing horizontal add. */
        if (head_dim % 8 == 0) {
            for (; s + 8 <= in_block; s += 8) {
                for (int64_t h = 0; h < group; ++h) {
                    const float *qh = q + h * head_dim;
                    __m256 acc[8];
                    for (int r = 0; r < 8; ++r) acc[r] = _mm256_setzero_ps();
                    for (int64_t d = 0; d < head_dim; d += 8) {
                        const __m256 qv = _mm256_loadu_ps(qh + d);
                        for (int r = 0; r < 8; ++r)
                            acc[r] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(keys + (s + r) * row + d), acc[r]);
                    }
                    const __m256 a = _mm256_hadd_ps(_mm256_hadd_ps(acc[0], acc[1]), _mm256_hadd_ps(acc[2], acc[3]));
                    const __m256 c = _mm256_hadd_ps(_mm256_hadd_ps(acc[4], acc[5]), _mm256_hadd_ps(acc[6], acc[7]));
                    const __m256 sums = _mm256_add_ps(_mm256_permute2f128_ps(a, c, 0x20),
                                                      _mm256_permute2f128_ps(a, c, 0x31));
                    _mm256_storeu_ps(scores + h * length + j0 + s, _mm256_mul_ps(sums, _mm256_set1_ps(scale)));
                }
            }
        }
#endif
        for (; s < in_block; ++s) {
            const float *key = keys + s * row;
            for (int64_t h = 0; h < group; ++h) {
                const float *qh = q + h * head_dim;
                float dot = 0.0f;
                #pragma omp simd reduction(+:dot)
                for (int64_t d = 0; d < head_dim; ++d) dot += qh[d] * key[d];
                scores[h * length + j0 + s] = dot * scale;
            }
        }
    }
}

/* Each of the group's score rows becomes its softmax, in place. */
INLINE void softmax_rows(float *scores, int64_t group, int64_t length) {
    for (int64_t h = 0; h < group; ++h) {
        float *sh = scores + h * length;
        float top = sh[0];
        #pragma omp simd reduction(max:top)
        for (int64_t j = 1; j < length; ++j) top = sh[j] > top ? sh[j] : top;
        float total = 0.0f;
        #pragma omp simd reduction(+:total)
        for (int64_t j = 0; j < length; ++j) {
            sh[j] = exp_nonpositive(sh[j] - top);
            total += sh[j];
        }
        const float inv = 1.0f / total;
        #pragma omp simd
        for (int64_t j = 0; j < length; ++j) sh[j] *= inv;
    }
}

/* out_h = sum_j weights[h][j] * value_j for the group's heads. */
INLINE void weigh_values(const float *weights, const float *v_cache, const int32_t *table, int64_t length,
                         float *out, int64_t group, const int64_t strides[3], int64_t kv_head,
                         int64_t head_dim, int64_t block_size) {
    const int64_t row = strides[1];
#ifdef __AVX2__
    /* Per head and 64-wide slice of head_dim: the output slice stays in eight registers. */
    if (head_dim % 8 == 0) {
        for (int64_t h = 0; h < group; ++h) {
            const float *wh = weights + h * length;
            for (int64_t d0 = 0; d0 < head_dim; d0 += 64) {
                const int width = head_dim - d0 < 64 ? (int)(head_dim - d0) / 8 : 8;
                __m256 acc[8];
                for (int r = 0; r < 8; ++r) acc[r] = _mm256_setzero_ps();
                for (int64_t j0 = 0, b = 0; j0 < length; j0 += block_size, ++b) {
                    const int64_t in_block = length - j0 < block_size ? length - j0 : block_size;
                    const float *values = v_cache + (int64_t)table[b] * strides[0] + kv_head * strides[2] + d0;
                    for (int64_t s = 0; s < in_block; ++s) {
                        const __m256 w = _mm256_set1_ps(wh[j0 + s]);
                        for (int r = 0; r < width; ++r)
                            acc[r] = _mm256_fmadd_ps(w, _mm256_loadu_ps(values + s * row + 8 * r), acc[r]);
                    }
                }
                for (int r = 0; r < width; ++r) _mm256_storeu_ps(out + h * head_dim + d0 + 8 * r, acc[r]);
            }
        }
        return;
    }
#endif
    memset(out, 0, sizeof(float) * (size_t)(group * head_dim));
    for (int64_t j0 = 0, b = 0; j0 < length; j0 += block_size, ++b) {
        const int64_t in_block = length - j0 < block_size ? length - j0 : block_size;
        const float *values = v_cache + (int64_t)table[b] * strides[0] + kv_head * strides[2];
        for (int64_t s = 0; s < in_block; ++s) {
            const float *value = values + s * row;
            for (int64_t h = 0; h < group; ++h) {
                const float w = weights[h * length + j0 + s];
                float *oh = out + h * head_dim;
                #pragma omp simd
                for (int64_t d = 0; d < head_dim; ++d) oh[d] += w * value[d];
            }
        }
    }
}

INLINE void attend_one(const float *q, const float *k_cache, const float *v_cache, const int32_t *table,
                       int64_t length, float *out, int64_t group, const int64_t strides[3] /* block, slot, head */,
                       int64_t kv_head, int64_t head_dim, int64_t block_size, float scale,
                       float *scores /* (group, length) */) {
    score_keys(q, k_cache, table, length, group, strides, kv_head, head_dim, block_size, scale, scores);
    softmax_rows(scores, group, length);
    weigh_values(scores, v_cache, table, length, out, group, strides, kv_head, head_dim, block_size);
}

/* One query token, one KV head; head_dim fixed at compile time for the common sizes so
 * the dot products and row updates unroll into whole vector registers. */
#define ATTEND_FIXED(DIM) \
    static void attend_##DIM(const float *q, const float *k, const float *v, const int32_t *table, \
                             int64_t length, float *out, int64_t group, const int64_t strides[3], \
                             int64_t kv_head, int64_t block_size, float scale, float *scores) { \
        attend_one(q, k, v, table, length, out, group, strides, kv_head, DIM, block_size, scale, scores); \
    }
ATTEND_FIXED(32)
ATTEND_FIXED(64)
ATTEND_FIXED(128)

static void attend_any(const float *q, const float *k, const float *v, const int32_t *table, int64_t length,
                       float *out, int64_t group, const int64_t strides[3], int64_t kv_head, int64_t head_dim,
                       int64_t block_size, float scale, float *scores) {
    switch (head_dim) {
        case 32: attend_32(q, k, v, table, length, out, group, strides, kv_head, block_size, scale, scores); break;
        case 64: attend_64(q, k, v, table, length, out, group, strides, kv_head, block_size, scale, scores); break;
        case 128: attend_128(q, k, v, table, length, out, group, strides, kv_head, block_size, scale, scores); break;
        default: attend_one(q, k, v, table, length, out, group, strides, kv_head, head_dim, block_size, scale, scores);
    }
}

/* Returns 0, or -1 when the scratch buffer could not be allocated. */
int chatstack_paged_attention(const float *q, int64_t q_stride, const float *k_cache, const float *v_cache,
                              const int32_t *block_tables, int64_t max_blocks,
                              const int64_t *query_token, const int64_t *query_pos, int64_t num_queries,
                              float *out, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                              int64_t block_size, int64_t block_stride, int64_t slot_stride,
                              int64_t head_stride, float scale) {
    const int64_t strides[3] = {block_stride, slot_stride, head_stride};
    const int64_t group = n_heads / n_kv_heads;
    int64_t longest = 0;
    for (int64_t i = 0; i < num_queries; ++i) longest = query_pos[i] + 1 > longest ? query_pos[i] + 1 : longest;
    float *scores = malloc(sizeof(float) * (size_t)(group * longest > 0 ? group * longest : 1));
    if (scores == NULL) return -1;
    for (int64_t i = 0; i < num_queries; ++i) {
        const int64_t t = query_token[i];
        for (int64_t g = 0; g < n_kv_heads; ++g) {
            attend_any(q + t * q_stride + g * group * head_dim, k_cache, v_cache,
                       block_tables + i * max_blocks, query_pos[i] + 1,
                       out + (t * n_heads + g * group) * head_dim, group, strides, g, head_dim,
                       block_size, scale, scores);
        }
    }
    free(scores);
    return 0;
}
