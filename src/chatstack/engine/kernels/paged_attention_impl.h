/* The typed half of paged_attention.c, included once per KV storage type. Expects KV_T (the
 * element type of q, the caches and out), SFX (the name suffix), KV_IS_FLOAT (1 when KV_T is
 * float), KV_TO_F32 and KV_FROM_F32 (one element to / from float). */
#define NAME(base) NAME_(base, SFX)
#define NAME_(base, sfx) NAME__(base, sfx)
#define NAME__(base, sfx) base##_##sfx

/* The next block sits elsewhere in the pool (often another page), out of the hardware prefetcher's
 * reach: ask for its rows while this block is computed. The vector loops ask for one next-block row
 * per row they compute (`prefetch_row`), which keeps a steady few misses in flight; a burst of every
 * row at the block's start (`prefetch_rows`, for the other loops) left the kernel at ~10 GB/s where
 * the spread requests reach ~13 (docs/benchmarks.md). */
INLINE void NAME(prefetch_row)(const KV_T *row, int64_t width) {
    if (row == NULL) return;
    for (int64_t d = 0; d < width; d += 64 / (int64_t)sizeof(KV_T)) __builtin_prefetch(row + d, 0, 3);
}

INLINE void NAME(prefetch_rows)(const KV_T *rows, int64_t count, int64_t row, int64_t head_dim) {
    for (int64_t s = 0; s < count; ++s) NAME(prefetch_row)(rows + s * row, head_dim);
}

/* Where block `b + 1` of this KV head starts, else `after` (the first block of the next sweep, or NULL). */
INLINE const KV_T *NAME(next_block)(const KV_T *cache, const int32_t *table, int64_t b, int64_t j0, int64_t length,
                                    int64_t block_size, const int64_t strides[3], int64_t kv_head, const KV_T *after) {
    return j0 + block_size < length ? cache + (int64_t)table[b + 1] * strides[0] + kv_head * strides[2] : after;
}

/* The block's first `count` rows of this KV head as floats, `*stride` apart: the cache itself
 * for float caches, else converted once into `tile` (count x head_dim) so that every head of
 * the group reads floats. */
INLINE const float *NAME(block_rows)(const KV_T *rows, int64_t count, int64_t row, int64_t head_dim,
                                     float *tile, int64_t *stride) {
#if KV_IS_FLOAT
    (void)count, (void)head_dim, (void)tile;
    *stride = row;
    return rows;
#else
    for (int64_t s = 0; s < count; ++s) {
        int64_t d = 0;
#ifdef __AVX512F__
        for (; d + 16 <= head_dim; d += 16) _mm512_storeu_ps(tile + s * head_dim + d, bf16x16_load(rows + s * row + d));
#endif
#ifdef __AVX2__
        for (; d + 8 <= head_dim; d += 8) _mm256_storeu_ps(tile + s * head_dim + d, bf16x8_load(rows + s * row + d));
#endif
        for (; d < head_dim; ++d) tile[s * head_dim + d] = KV_TO_F32(rows[s * row + d]);
    }
    *stride = head_dim;
    return tile;
#endif
}

#include "paged_attention_blocks.h"
#if KV_IS_FLOAT && defined(__AVX512F__)
#include "paged_attention_rows.h"
#define ROWS_PATH 1
#else
#define ROWS_PATH 0
#endif

/* scores[h][j] = scale * q_h . key_j for the group's heads and keys [0, length). */
INLINE void NAME(score_keys)(const float *q, const KV_T *k_cache, const int32_t *table, int64_t length,
                             int64_t group, const int64_t strides[3], int64_t kv_head, int64_t head_dim,
                             int64_t block_size, float scale, float *scores, float *tile, const KV_T *after) {
    for (int64_t j0 = 0, b = 0; j0 < length; j0 += block_size, ++b) {
#if KV_IS_FLOAT
        const int taken = NAME(score_whole_blocks)(q, k_cache, table, b, j0, length, group, strides, kv_head,
                                                   head_dim, block_size, scale, scores);
        if (taken) {
            j0 += (taken - 1) * block_size, b += taken - 1;
            continue;
        }
#endif
        const int64_t in_block = length - j0 < block_size ? length - j0 : block_size;
        int64_t row;
        const KV_T *next = NAME(next_block)(k_cache, table, b, j0, length, block_size, strides, kv_head, after);
        const float *keys = NAME(block_rows)(k_cache + (int64_t)table[b] * strides[0] + kv_head * strides[2],
                                             in_block, strides[1], head_dim, tile, &row);
        int64_t s = 0;
#ifdef __AVX512F__
        /* Eight keys at once, sixteen dimensions per instruction; two heads of the group per key load. */
        if (head_dim % 16 == 0) {
            for (; s + 8 <= in_block; s += 8) {
                if (next != NULL)
                    for (int r = 0; r < 8; ++r) NAME(prefetch_row)(next + (s + r) * strides[1], head_dim);
                int64_t h = 0;
                for (; h + 2 <= group; h += 2) {
                    const float *qa = q + h * head_dim, *qb = qa + head_dim;
                    __m512 acc_a[8], acc_b[8];
                    for (int r = 0; r < 8; ++r) acc_a[r] = acc_b[r] = _mm512_setzero_ps();
                    for (int64_t d = 0; d < head_dim; d += 16) {
                        const __m512 qva = _mm512_loadu_ps(qa + d), qvb = _mm512_loadu_ps(qb + d);
                        for (int r = 0; r < 8; ++r) {
                            const __m512 key = _mm512_loadu_ps(keys + (s + r) * row + d);
                            acc_a[r] = _mm512_fmadd_ps(qva, key, acc_a[r]);
                            acc_b[r] = _mm512_fmadd_ps(qvb, key, acc_b[r]);
                        }
                    }
                    store_scaled_sums_of_eight(acc_a, scale, scores + h * length + j0 + s);
                    store_scaled_sums_of_eight(acc_b, scale, scores + (h + 1) * length + j0 + s);
                }
                for (; h < group; ++h) {
                    const float *qh = q + h * head_dim;
                    __m512 acc[8];
                    for (int r = 0; r < 8; ++r) acc[r] = _mm512_setzero_ps();
                    for (int64_t d = 0; d < head_dim; d += 16) {
                        const __m512 qv = _mm512_loadu_ps(qh + d);
                        for (int r = 0; r < 8; ++r)
                            acc[r] = _mm512_fmadd_ps(qv, _mm512_loadu_ps(keys + (s + r) * row + d), acc[r]);
                    }
                    store_scaled_sums_of_eight(acc, scale, scores + h * length + j0 + s);
                }
            }
        }
#endif
#ifdef __AVX2__
        /* Eight keys at once: one accumulator per key, then a transposing horizontal add. */
        if (head_dim % 8 == 0) {
            for (; s + 8 <= in_block; s += 8) {
                if (next != NULL)
                    for (int r = 0; r < 8; ++r) NAME(prefetch_row)(next + (s + r) * strides[1], head_dim);
                for (int64_t h = 0; h < group; ++h) {
                    const float *qh = q + h * head_dim;
                    __m256 acc[8];
                    for (int r = 0; r < 8; ++r) acc[r] = _mm256_setzero_ps();
                    for (int64_t d = 0; d < head_dim; d += 8) {
                        const __m256 qv = _mm256_loadu_ps(qh + d);
                        for (int r = 0; r < 8; ++r)
                            acc[r] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(keys + (s + r) * row + d), acc[r]);
                    }
                    _mm256_storeu_ps(scores + h * length + j0 + s,
                                     _mm256_mul_ps(sum_each_of_eight(acc), _mm256_set1_ps(scale)));
                }
            }
        }
#endif
        for (; s < in_block; ++s) {
            const float *key = keys + s * row;
            if (next != NULL) NAME(prefetch_row)(next + s * strides[1], head_dim);
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

#ifdef __AVX512F__
/* out[h0 .. h0 + HEADS) += weights . values over one block's rows, for a 64-wide (or narrower, `width`
 * vectors) slice at d0: HEADS x width accumulators stay in registers, each value row widened once;
 * `next` (or NULL): the block whose same slice to prefetch, a row per row. */
#define WEIGH_HEADS(HEADS) \
    INLINE void NAME(weigh_##HEADS##_heads)(const float *weights, int64_t length, int64_t j0, const KV_T *values, \
                                             int64_t row, int64_t in_block, float *out, int64_t h0, int64_t head_dim, \
                                             int64_t d0, int width, const KV_T *next) { \
        __m512 acc[HEADS][4]; \
        for (int h = 0; h < HEADS; ++h) \
            for (int r = 0; r < width; ++r) acc[h][r] = _mm512_loadu_ps(out + (h0 + h) * head_dim + d0 + 16 * r); \
        for (int64_t s = 0; s < in_block; ++s) { \
            if (next != NULL) NAME(prefetch_row)(next + s * row + d0, 16 * width); \
            __m512 v[4]; \
            for (int r = 0; r < width; ++r) v[r] = NAME(load16)(values + s * row + d0 + 16 * r); \
            for (int h = 0; h < HEADS; ++h) { \
                const __m512 w = _mm512_set1_ps(weights[(h0 + h) * length + j0 + s]); \
                for (int r = 0; r < width; ++r) acc[h][r] = _mm512_fmadd_ps(w, v[r], acc[h][r]); \
            } \
        } \
        for (int h = 0; h < HEADS; ++h) \
            for (int r = 0; r < width; ++r) _mm512_storeu_ps(out + (h0 + h) * head_dim + d0 + 16 * r, acc[h][r]); \
    }
WEIGH_HEADS(4)
WEIGH_HEADS(1)
#undef WEIGH_HEADS
#endif
/* out_h = sum_j weights[h][j] * value_j for the group's heads; out (group, head_dim) floats. */
INLINE void NAME(weigh_values)(const float *weights, const KV_T *v_cache, const int32_t *table, int64_t length,
                               float *out, int64_t group, const int64_t strides[3], int64_t kv_head,
                               int64_t head_dim, int64_t block_size, float *tile) {
    memset(out, 0, sizeof(float) * (size_t)(group * head_dim));
    for (int64_t j0 = 0, b = 0; j0 < length; j0 += block_size, ++b) {
#if KV_IS_FLOAT && (defined(__AVX512F__) || defined(__AVX2__))
        const int taken = NAME(weigh_whole_blocks)(weights, v_cache, table, b, j0, length, out, group, strides,
                                                   kv_head, head_dim, block_size);
        if (taken) {
            j0 += (taken - 1) * block_size, b += taken - 1;
            continue;
        }
#endif
        const int64_t in_block = length - j0 < block_size ? length - j0 : block_size;
        int64_t row;
        const KV_T *next = NAME(next_block)(v_cache, table, b, j0, length, block_size, strides, kv_head, NULL);
#if KV_IS_FLOAT && defined(__AVX512F__)
        const int spread = head_dim % 16 == 0 && group >= 4;  /* weigh_4_heads prefetches as it goes */
#else
        const int spread = 0;
#endif
        if (next != NULL && !spread) NAME(prefetch_rows)(next, block_size, strides[1], head_dim);
        const float *values = NAME(block_rows)(v_cache + (int64_t)table[b] * strides[0] + kv_head * strides[2],
                                               in_block, strides[1], head_dim, tile, &row);
        int64_t h = 0;
#if KV_IS_FLOAT && defined(__AVX512F__)
        /* Each value row read once for four heads of the group (the bfloat16 routine's loop, float loads). */
        if (spread) {
            for (int64_t d0 = 0; d0 < head_dim; d0 += 64) {
                const int width = head_dim - d0 < 64 ? (int)(head_dim - d0) / 16 : 4;
                for (h = 0; h + 4 <= group; h += 4)
                    NAME(weigh_4_heads)(weights, length, j0, values, row, in_block, out, h, head_dim, d0, width,
                                        h == 0 ? next : NULL);
            }
        }
#endif
        for (; h < group; ++h) {
            const float *wh = weights + h * length + j0;
            float *oh = out + h * head_dim;
            int64_t d0 = 0;
#ifdef __AVX512F__
            /* A 128-wide slice of the output stays in eight registers across the block's rows. */
            for (; head_dim % 16 == 0 && d0 < head_dim; d0 += 128) {
                const int width = head_dim - d0 < 128 ? (int)(head_dim - d0) / 16 : 8;
                __m512 acc[8];
                for (int r = 0; r < width; ++r) acc[r] = _mm512_loadu_ps(oh + d0 + 16 * r);
                for (int64_t s = 0; s < in_block; ++s) {
                    const __m512 w = _mm512_set1_ps(wh[s]);
                    for (int r = 0; r < width; ++r)
                        acc[r] = _mm512_fmadd_ps(w, _mm512_loadu_ps(values + s * row + d0 + 16 * r), acc[r]);
                }
                for (int r = 0; r < width; ++r) _mm512_storeu_ps(oh + d0 + 16 * r, acc[r]);
            }
#endif
#ifdef __AVX2__
            /* A 64-wide slice of the output stays in eight registers across the block's rows. */
            for (; head_dim % 8 == 0 && d0 < head_dim; d0 += 64) {
                const int width = head_dim - d0 < 64 ? (int)(head_dim - d0) / 8 : 8;
                __m256 acc[8];
                for (int r = 0; r < width; ++r) acc[r] = _mm256_loadu_ps(oh + d0 + 8 * r);
                for (int64_t s = 0; s < in_block; ++s) {
                    const __m256 w = _mm256_set1_ps(wh[s]);
                    for (int r = 0; r < width; ++r)
                        acc[r] = _mm256_fmadd_ps(w, _mm256_loadu_ps(values + s * row + d0 + 8 * r), acc[r]);
                }
                for (int r = 0; r < width; ++r) _mm256_storeu_ps(oh + d0 + 8 * r, acc[r]);
            }
#endif
            for (int64_t s = 0; d0 < head_dim && s < in_block; ++s) {
                const float w = wh[s];
                const float *value = values + s * row;
                #pragma omp simd
                for (int64_t d = d0; d < head_dim; ++d) oh[d] += w * value[d];
            }
        }
    }
}

#if !KV_IS_FLOAT && defined(__AVX512BF16__)
/* The bfloat16 cache read in place where the CPU has AVX512-BF16 (no widened copy of a block).
 * Keys: each dot product takes 32 bf16 pairs per instruction (products exact in float32, sums
 * rounded to nearest even as the scalar path rounds its FMAs); q stays bfloat16. Values: widened
 * in registers as they are loaded, and each row is read once for four heads of the group. */
/* As score_keys, for head_dim % 32 == 0; q: the group's bfloat16 rows. */
INLINE void NAME(score_keys_dpbf16)(const KV_T *q, const KV_T *k_cache, const int32_t *table, int64_t length,
                                    int64_t group, const int64_t strides[3], int64_t kv_head, int64_t head_dim,
                                    int64_t block_size, float scale, float *scores, const KV_T *after) {
    for (int64_t j0 = 0, b = 0; j0 < length; j0 += block_size, ++b) {
        const int taken = NAME(score_whole_blocks_dpbf16)(q, k_cache, table, b, j0, length, group, strides,
                                                          kv_head, head_dim, block_size, scale, scores);
        if (taken) {
            j0 += (taken - 1) * block_size, b += taken - 1;
            continue;
        }
        const int64_t in_block = length - j0 < block_size ? length - j0 : block_size;
        const KV_T *keys = k_cache + (int64_t)table[b] * strides[0] + kv_head * strides[2];
        const int64_t row = strides[1];
        /* here a burst at the block's start measured as fast as spread requests (docs/benchmarks.md) */
        const KV_T *next = NAME(next_block)(k_cache, table, b, j0, length, block_size, strides, kv_head, after);
        if (next != NULL) NAME(prefetch_rows)(next, block_size, row, head_dim);
        int64_t s = 0;
        for (; s + 8 <= in_block; s += 8) {
            for (int64_t h = 0; h < group; ++h) {
                const KV_T *qh = q + h * head_dim;
                __m512 acc[8];
                for (int r = 0; r < 8; ++r) acc[r] = _mm512_setzero_ps();
                for (int64_t d = 0; d < head_dim; d += 32) {
                    const __m512bh qv = (__m512bh)_mm512_loadu_si512(qh + d);
                    for (int r = 0; r < 8; ++r)
                        acc[r] = _mm512_dpbf16_ps(acc[r], qv, (__m512bh)_mm512_loadu_si512(keys + (s + r) * row + d));
                }
                store_scaled_sums_of_eight(acc, scale, scores + h * length + j0 + s);
            }
        }
        for (; s < in_block; ++s) {
            const KV_T *key = keys + s * row;
            for (int64_t h = 0; h < group; ++h) {
                const KV_T *qh = q + h * head_dim;
                float dot = 0.0f;
                #pragma omp simd reduction(+:dot)
                for (int64_t d = 0; d < head_dim; ++d) dot += KV_TO_F32(qh[d]) * KV_TO_F32(key[d]);
                scores[h * length + j0 + s] = dot * scale;
            }
        }
    }
}


/* As weigh_values, for head_dim % 16 == 0. */
INLINE void NAME(weigh_values_bf16)(const float *weights, const KV_T *v_cache, const int32_t *table, int64_t length,
                                    float *out, int64_t group, const int64_t strides[3], int64_t kv_head,
                                    int64_t head_dim, int64_t block_size) {
    memset(out, 0, sizeof(float) * (size_t)(group * head_dim));
    for (int64_t j0 = 0, b = 0; j0 < length; j0 += block_size, ++b) {
        const int taken = NAME(weigh_whole_blocks)(weights, v_cache, table, b, j0, length, out, group, strides,
                                                   kv_head, head_dim, block_size);
        if (taken) {
            j0 += (taken - 1) * block_size, b += taken - 1;
            continue;
        }
        const int64_t in_block = length - j0 < block_size ? length - j0 : block_size;
        const KV_T *values = v_cache + (int64_t)table[b] * strides[0] + kv_head * strides[2];
        const KV_T *next = NAME(next_block)(v_cache, table, b, j0, length, block_size, strides, kv_head, NULL);
        if (next != NULL) NAME(prefetch_rows)(next, block_size, strides[1], head_dim);
        for (int64_t d0 = 0; d0 < head_dim; d0 += 64) {
            const int width = head_dim - d0 < 64 ? (int)(head_dim - d0) / 16 : 4;
            int64_t h = 0;
            for (; h + 4 <= group; h += 4)
                NAME(weigh_4_heads)(weights, length, j0, values, strides[1], in_block, out, h, head_dim, d0, width,
                                    NULL);
            for (; h < group; ++h)
                NAME(weigh_1_heads)(weights, length, j0, values, strides[1], in_block, out, h, head_dim, d0, width,
                                    NULL);
        }
    }
}
#endif

/* q: the group's rows as floats; q_raw: the same rows as stored (KV_T). */
INLINE void NAME(attend_one)(const float *q, const KV_T *q_raw, const KV_T *k_cache, const KV_T *v_cache,
                             const int32_t *table, int64_t length, const int64_t *valid, float *out, int64_t group,
                             const int64_t strides[3], int64_t kv_head, int64_t head_dim, int64_t block_size,
                             float scale, float *scores, float *tile) {
    const KV_T *first_values = v_cache + (int64_t)table[0] * strides[0] + kv_head * strides[2];  /* asked for early */
#if !KV_IS_FLOAT && defined(__AVX512BF16__)
    if (head_dim % 32 == 0) {
        (void)q, (void)tile;
        NAME(score_keys_dpbf16)(q_raw, k_cache, table, length, group, strides, kv_head, head_dim, block_size, scale,
                                scores, first_values);
        softmax_rows(scores, group, length, valid);
        NAME(weigh_values_bf16)(scores, v_cache, table, length, out, group, strides, kv_head, head_dim, block_size);
        return;
    }
#endif
    (void)q_raw;
    NAME(score_keys)(q, k_cache, table, length, group, strides, kv_head, head_dim, block_size, scale, scores, tile,
                     first_values);
    softmax_rows(scores, group, length, valid);
    NAME(weigh_values)(scores, v_cache, table, length, out, group, strides, kv_head, head_dim, block_size, tile);
}

/* head_dim fixed at compile time for the common sizes, so loops unroll into whole registers. */
#define ATTEND_FIXED(DIM) \
    static void NAME(attend_##DIM)(const float *q, const KV_T *q_raw, const KV_T *k, const KV_T *v, \
                                   const int32_t *table, int64_t length, const int64_t *valid, float *out, \
                                   int64_t group, \
                                   const int64_t strides[3], int64_t kv_head, int64_t block_size, float scale, \
                                   float *scores, float *tile) { \
        NAME(attend_one)(q, q_raw, k, v, table, length, valid, out, group, strides, kv_head, DIM, block_size, scale, \
                         scores, tile); \
    }
ATTEND_FIXED(32)
ATTEND_FIXED(64)
ATTEND_FIXED(128)
#undef ATTEND_FIXED

/* Returns 0, or -1 when the scratch buffer could not be allocated. */
int NAME(chatstack_paged_attention)(const KV_T *q, int64_t q_stride, const KV_T *k_cache, const KV_T *v_cache,
                                    const int32_t *block_tables, int64_t max_blocks,
                                    const int64_t *query_token, const int64_t *query_pos, int64_t num_queries,
                                    KV_T *out, int64_t n_heads, int64_t n_kv_heads, int64_t head_dim,
                                    int64_t block_size, int64_t block_stride, int64_t slot_stride,
                                    int64_t head_stride, float scale) {
    const int64_t strides[3] = {block_stride, slot_stride, head_stride};
    const int64_t group = n_heads / n_kv_heads, width = group * head_dim;
    int64_t longest = 1;
    for (int64_t i = 0; i < num_queries; ++i) longest = query_pos[i] + 1 > longest ? query_pos[i] + 1 : longest;
    /* scores (RUN_QUERIES * group, longest); the run's queries and outputs as floats and its queries as stored;
     * one block's rows as floats; each row's valid key count */
    const int64_t rows_max = RUN_QUERIES * group;
    const int64_t score_rows = rows_max > ROW_LANES ? rows_max : ROW_LANES;
    float *scores = malloc(sizeof(float) * (size_t)(score_rows * longest + 2 * rows_max * head_dim + block_size * head_dim
                                                    + ROW_LANES * head_dim)
                           + sizeof(KV_T) * (size_t)(rows_max * head_dim) + sizeof(int64_t) * (size_t)rows_max);
    if (scores == NULL) return -1;
    float *q_f32 = scores + score_rows * longest, *out_f32 = q_f32 + rows_max * head_dim;
    float *tile = out_f32 + rows_max * head_dim;
    float *qt = tile + block_size * head_dim;  /* a row group transposed (paged_attention_rows.h) */
    KV_T *q_run = (KV_T *)(qt + ROW_LANES * head_dim);
    int64_t *valid = (int64_t *)(void *)(q_run + rows_max * head_dim);
    for (int64_t i = 0, run; i < num_queries; i += run) {
        /* consecutive tokens of one chunk (rows and positions in step, the same table) are scored as one
         * group of run * group rows, each key block read once for all of them; row r of query i + r / group
         * stops at that query's position (softmax_rows zeroes its later weights) */
        const int32_t *table = block_tables + i * max_blocks;
        for (run = 1; run < RUN_QUERIES && i + run < num_queries; ++run) {
            const int64_t j = i + run;
            if (query_token[j] != query_token[j - 1] + 1 || query_pos[j] != query_pos[j - 1] + 1
                || memcmp(block_tables + j * max_blocks, table, sizeof(int32_t) * (size_t)max_blocks) != 0)
                break;
        }
        const int64_t rows = run * group, length = query_pos[i + run - 1] + 1;
        for (int64_t r = 0; r < rows; ++r) valid[r] = query_pos[i + r / group] + 1;
        for (int64_t g = 0; g < n_kv_heads; ++g) {
            for (int64_t k = 0; k < run; ++k) {
                const KV_T *qg = q + query_token[i + k] * q_stride + g * width;
                for (int64_t d = 0; d < width; ++d) {
                    q_f32[k * width + d] = KV_TO_F32(qg[d]);
                    q_run[k * width + d] = qg[d];
                }
            }
            if (ROWS_PATH && rows >= ROWS_PATH_MIN && head_dim % 16 == 0) {
#if ROWS_PATH  /* head_dim a constant where it is 64 or 128, so the output slices' loops unroll into registers */
#define ATTEND_ROWS(DIM) NAME(attend_rows)(q_f32, k_cache, v_cache, table, valid, out_f32, rows, strides, g, DIM, \
                                           block_size, scale, scores, qt)
                if (head_dim == 64) ATTEND_ROWS(64);
                else if (head_dim == 128) ATTEND_ROWS(128);
                else ATTEND_ROWS(head_dim);
#undef ATTEND_ROWS
#endif
            } else switch (head_dim) {
                case 32: NAME(attend_32)(q_f32, q_run, k_cache, v_cache, table, length, valid, out_f32, rows, strides, g, block_size, scale, scores, tile); break;
                case 64: NAME(attend_64)(q_f32, q_run, k_cache, v_cache, table, length, valid, out_f32, rows, strides, g, block_size, scale, scores, tile); break;
                case 128: NAME(attend_128)(q_f32, q_run, k_cache, v_cache, table, length, valid, out_f32, rows, strides, g, block_size, scale, scores, tile); break;
                default: NAME(attend_one)(q_f32, q_run, k_cache, v_cache, table, length, valid, out_f32, rows, strides, g,
                                          head_dim, block_size, scale, scores, tile);
            }
            for (int64_t k = 0; k < run; ++k) {
                KV_T *og = out + (query_token[i + k] * n_heads + g * group) * head_dim;
                for (int64_t d = 0; d < width; ++d) og[d] = KV_FROM_F32(out_f32[k * width + d]);
            }
        }
    }
    free(scores);
    return 0;
}

#undef ROWS_PATH
#undef NAME
#undef NAME_
#undef NAME__
/* the parameters this file was included with, so the next inclusion defines its own */
#undef KV_T
#undef SFX
#undef KV_IS_FLOAT
#undef KV_TO_F32
#undef KV_FROM_F32
