/* Part of paged_attention_impl.h (included there, once per KV storage type, with its NAME and KV_T): the
 * loops that read several whole blocks of a sequence side by side. Blocks sit scattered through the pool;
 * read one after another they stay at ~10 GB/s however far ahead they are prefetched, while two, four or
 * eight forward streams at once let the hardware prefetchers follow that many pages (docs/benchmarks.md,
 * "Eight KV blocks read side by side"). Each loop takes the stream count as a constant (`WITH_STREAMS`), so
 * every count inlines into its own unrolled loops. */
#ifndef PAGED_ATTENTION_STREAMS_OF
#define PAGED_ATTENTION_STREAMS_OF
/* how many blocks to read side by side where `whole` whole blocks are left (at least two) */
#define STREAMS_OF(whole) ((whole) >= 8 ? 8 : (whole) >= 4 ? 4 : 2)
#define WITH_STREAMS(streams, CALL) \
    do { if ((streams) == 8) CALL(8); else if ((streams) == 4) CALL(4); else CALL(2); } while (0)
#endif

/* Where each of `streams` blocks b onwards of this KV head starts. */
INLINE void NAME(stream_blocks)(const KV_T *cache, const int32_t *table, int64_t b, int streams,
                                const int64_t strides[3], int64_t kv_head, const KV_T **blocks) {
    for (int i = 0; i < streams; ++i) blocks[i] = cache + (int64_t)table[b + i] * strides[0] + kv_head * strides[2];
}

/* The eight rows read together at slot s: 8 / streams consecutive rows of each block (`row` apart), and each
 * one's key index (j0 + its block * block_size + its slot). */
INLINE void NAME(eight_rows)(const KV_T *const *blocks, int streams, int64_t s, int64_t row, int64_t j0,
                             int64_t block_size, const KV_T **rows, int64_t *at) {
    const int per_block = 8 / streams;
    for (int r = 0; r < 8; ++r) {
        const int64_t slot = s + r % per_block, from = r / per_block;
        rows[r] = blocks[from] + slot * row;
        at[r] = j0 + from * block_size + slot;
    }
}

#ifdef __AVX512F__
/* Sixteen elements of a cache row as floats. */
INLINE __m512 NAME(load16)(const KV_T *p) {
#if KV_IS_FLOAT
    return _mm512_loadu_ps(p);
#else
    return bf16x16_load(p);
#endif
}
#endif

#if KV_IS_FLOAT && defined(__AVX512F__)
/* score_keys (below) over `streams` (1, 2, 4 or 8: a constant where it is inlined) whole blocks b .. b + streams - 1
 * (keys j0 onwards) at once: each group of eight keys takes 8 / streams rows from each block, so the loads run
 * that many forward streams side by side. Blocks scattered through the pool, read one at a time, stay at
 * ~10 GB/s however far ahead they are prefetched; eight at once let the hardware prefetchers follow eight
 * pages (docs/benchmarks.md). */
INLINE void NAME(score_blocks)(const float *q, const KV_T *k_cache, const int32_t *table, int64_t b, int64_t j0,
                               int64_t length, int64_t group, const int64_t strides[3], int64_t kv_head,
                               int64_t head_dim, int64_t block_size, float scale, float *scores, const int streams) {
    const KV_T *blocks[8];
    NAME(stream_blocks)(k_cache, table, b, streams, strides, kv_head, blocks);
    for (int64_t s = 0; s < block_size; s += 8 / streams) {
        const KV_T *keys[8];
        int64_t at[8];  /* each key's index in the score rows */
        NAME(eight_rows)(blocks, streams, s, strides[1], j0, block_size, keys, at);
        float sums[8];
        int64_t h = 0;
        for (; h + 2 <= group; h += 2) {
            const float *qa = q + h * head_dim, *qb = qa + head_dim;
            __m512 acc_a[8], acc_b[8];
            for (int r = 0; r < 8; ++r) acc_a[r] = acc_b[r] = _mm512_setzero_ps();
            for (int64_t d = 0; d < head_dim; d += 16) {
                const __m512 qva = _mm512_loadu_ps(qa + d), qvb = _mm512_loadu_ps(qb + d);
                for (int r = 0; r < 8; ++r) {
                    const __m512 key = _mm512_loadu_ps(keys[r] + d);
                    acc_a[r] = _mm512_fmadd_ps(qva, key, acc_a[r]);
                    acc_b[r] = _mm512_fmadd_ps(qvb, key, acc_b[r]);
                }
            }
            store_scaled_sums_of_eight(acc_a, scale, sums);
            for (int r = 0; r < 8; ++r) scores[h * length + at[r]] = sums[r];
            store_scaled_sums_of_eight(acc_b, scale, sums);
            for (int r = 0; r < 8; ++r) scores[(h + 1) * length + at[r]] = sums[r];
        }
        for (; h < group; ++h) {
            const float *qh = q + h * head_dim;
            __m512 acc[8];
            for (int r = 0; r < 8; ++r) acc[r] = _mm512_setzero_ps();
            for (int64_t d = 0; d < head_dim; d += 16) {
                const __m512 qv = _mm512_loadu_ps(qh + d);
                for (int r = 0; r < 8; ++r) acc[r] = _mm512_fmadd_ps(qv, _mm512_loadu_ps(keys[r] + d), acc[r]);
            }
            store_scaled_sums_of_eight(acc, scale, sums);
            for (int r = 0; r < 8; ++r) scores[h * length + at[r]] = sums[r];
        }
    }
}
#endif

#if KV_IS_FLOAT && defined(__AVX2__)
/* score_blocks with eight lanes (AVX2; head_dim % 8 == 0): one head at a time, eight keys from `streams` blocks. */
INLINE void NAME(score_blocks8)(const float *q, const KV_T *k_cache, const int32_t *table, int64_t b, int64_t j0,
                                int64_t length, int64_t group, const int64_t strides[3], int64_t kv_head,
                                int64_t head_dim, int64_t block_size, float scale, float *scores, const int streams) {
    const KV_T *blocks[8];
    NAME(stream_blocks)(k_cache, table, b, streams, strides, kv_head, blocks);
    for (int64_t s = 0; s < block_size; s += 8 / streams) {
        const KV_T *keys[8];
        int64_t at[8];  /* each key's index in the score rows */
        NAME(eight_rows)(blocks, streams, s, strides[1], j0, block_size, keys, at);
        float sums[8];
        for (int64_t h = 0; h < group; ++h) {
            const float *qh = q + h * head_dim;
            __m256 acc[8];
            for (int r = 0; r < 8; ++r) acc[r] = _mm256_setzero_ps();
            for (int64_t d = 0; d < head_dim; d += 8) {
                const __m256 qv = _mm256_loadu_ps(qh + d);
                for (int r = 0; r < 8; ++r) acc[r] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(keys[r] + d), acc[r]);
            }
            _mm256_storeu_ps(sums, _mm256_mul_ps(sum_each_of_eight(acc), _mm256_set1_ps(scale)));
            for (int r = 0; r < 8; ++r) scores[h * length + at[r]] = sums[r];
        }
    }
}

/* One head's out += weights . values over `streams` whole blocks, row s of every block in turn (AVX2). */
INLINE void NAME(weigh_head_blocks8)(const float *wh, const KV_T *const *values, int64_t row, int64_t block_size,
                                     float *oh, int64_t head_dim, const int streams) {
    for (int64_t d0 = 0; d0 < head_dim; d0 += 64) {
        const int width = head_dim - d0 < 64 ? (int)(head_dim - d0) / 8 : 8;
        __m256 acc[8];
        for (int r = 0; r < width; ++r) acc[r] = _mm256_loadu_ps(oh + d0 + 8 * r);
        for (int64_t s = 0; s < block_size; ++s)
            for (int i = 0; i < streams; ++i) {
                const __m256 w = _mm256_set1_ps(wh[i * block_size + s]);
                for (int r = 0; r < width; ++r)
                    acc[r] = _mm256_fmadd_ps(w, _mm256_loadu_ps(values[i] + s * row + d0 + 8 * r), acc[r]);
            }
        for (int r = 0; r < width; ++r) _mm256_storeu_ps(oh + d0 + 8 * r, acc[r]);
    }
}
#endif

#ifdef __AVX512F__
/* weigh_HEADS_heads over `streams` whole blocks (`values`: each one's rows of this KV head) at once, row s of
 * every block in turn, for the same reason as score_blocks. */
#define WEIGH_HEADS_BLOCKS(HEADS) \
    INLINE void NAME(weigh_##HEADS##_heads_blocks)(const float *weights, int64_t length, int64_t j0, \
                                                    const KV_T *const *values, int64_t row, int64_t block_size, \
                                                    float *out, int64_t h0, int64_t head_dim, int64_t d0, int width, \
                                                    const int streams) { \
        __m512 acc[HEADS][4]; \
        for (int h = 0; h < HEADS; ++h) \
            for (int r = 0; r < width; ++r) acc[h][r] = _mm512_loadu_ps(out + (h0 + h) * head_dim + d0 + 16 * r); \
        for (int64_t s = 0; s < block_size; ++s) { \
            for (int i = 0; i < streams; ++i) { \
                __m512 v[4]; \
                for (int r = 0; r < width; ++r) v[r] = NAME(load16)(values[i] + s * row + d0 + 16 * r); \
                for (int h = 0; h < HEADS; ++h) { \
                    const __m512 w = _mm512_set1_ps(weights[(h0 + h) * length + j0 + i * block_size + s]); \
                    for (int r = 0; r < width; ++r) acc[h][r] = _mm512_fmadd_ps(w, v[r], acc[h][r]); \
                } \
            } \
        } \
        for (int h = 0; h < HEADS; ++h) \
            for (int r = 0; r < width; ++r) _mm512_storeu_ps(out + (h0 + h) * head_dim + d0 + 16 * r, acc[h][r]); \
    }
WEIGH_HEADS_BLOCKS(4)
WEIGH_HEADS_BLOCKS(1)
#undef WEIGH_HEADS_BLOCKS

/* out += weights . values of the group's heads over `streams` whole blocks (`values`: each one's rows of this KV
 * head, `row` apart; keys j0 onwards): four heads per value row load, then one at a time. */
INLINE void NAME(weigh_blocks)(const float *weights, const KV_T *const *values, int64_t j0, int64_t length,
                               float *out, int64_t group, int64_t row, int64_t head_dim, int64_t block_size,
                               const int streams) {
    for (int64_t d0 = 0; d0 < head_dim; d0 += 64) {
        const int width = head_dim - d0 < 64 ? (int)(head_dim - d0) / 16 : 4;
        int64_t h = 0;
        for (; h + 4 <= group; h += 4)
            NAME(weigh_4_heads_blocks)(weights, length, j0, values, row, block_size, out, h, head_dim, d0, width,
                                       streams);
        for (; h < group; ++h)
            NAME(weigh_1_heads_blocks)(weights, length, j0, values, row, block_size, out, h, head_dim, d0, width,
                                       streams);
    }
}
#endif

#if KV_IS_FLOAT
/* score_keys's keys j0 onwards from block b over as many whole blocks as are left, up to eight side by side;
 * returns how many blocks it took (0: fewer than two whole ones, or no vector loop for this shape). */
INLINE int NAME(score_whole_blocks)(const float *q, const KV_T *k_cache, const int32_t *table, int64_t b, int64_t j0,
                                    int64_t length, int64_t group, const int64_t strides[3], int64_t kv_head,
                                    int64_t head_dim, int64_t block_size, float scale, float *scores) {
    const int64_t whole = block_size % 8 == 0 ? (length - j0) / block_size : 0;
    if (whole < 2) return 0;
    const int streams = STREAMS_OF(whole);
#ifdef __AVX512F__
#define CALL(n) NAME(score_blocks)(q, k_cache, table, b, j0, length, group, strides, kv_head, head_dim, block_size, \
                                   scale, scores, n)
    if (head_dim % 16 == 0) {
        WITH_STREAMS(streams, CALL);
        return streams;
    }
#undef CALL
#endif
#ifdef __AVX2__
#define CALL(n) NAME(score_blocks8)(q, k_cache, table, b, j0, length, group, strides, kv_head, head_dim, block_size, \
                                    scale, scores, n)
    if (head_dim % 8 == 0) {
        WITH_STREAMS(streams, CALL);
        return streams;
    }
#undef CALL
#endif
    (void)q, (void)k_cache, (void)table, (void)b, (void)group, (void)strides, (void)kv_head, (void)scale, (void)scores;
    return 0;
}
#endif

#if defined(__AVX512F__) || (KV_IS_FLOAT && defined(__AVX2__))
/* weigh_values's (or weigh_values_bf16's) values j0 onwards from block b, as score_whole_blocks does. */
INLINE int NAME(weigh_whole_blocks)(const float *weights, const KV_T *v_cache, const int32_t *table, int64_t b,
                                    int64_t j0, int64_t length, float *out, int64_t group, const int64_t strides[3],
                                    int64_t kv_head, int64_t head_dim, int64_t block_size) {
    const int64_t whole = (length - j0) / block_size;
    if (whole < 2) return 0;
    const int streams = STREAMS_OF(whole);
    const KV_T *values[8];
    NAME(stream_blocks)(v_cache, table, b, streams, strides, kv_head, values);
#ifdef __AVX512F__
#define CALL(n) NAME(weigh_blocks)(weights, values, j0, length, out, group, strides[1], head_dim, block_size, n)
    if (head_dim % 16 == 0) {
        WITH_STREAMS(streams, CALL);
        return streams;
    }
#undef CALL
#endif
#if KV_IS_FLOAT && defined(__AVX2__)
#define CALL(n) NAME(weigh_head_blocks8)(weights + h * length + j0, values, strides[1], block_size, \
                                         out + h * head_dim, head_dim, n)
    if (head_dim % 8 == 0) {
        for (int64_t h = 0; h < group; ++h) WITH_STREAMS(streams, CALL);
        return streams;
    }
#undef CALL
#endif
    return 0;
}
#endif

#if !KV_IS_FLOAT && defined(__AVX512BF16__)
/* score_blocks for the bfloat16 cache read in place (head_dim % 32 == 0; q: the group's bfloat16 rows). */
INLINE void NAME(score_blocks_dpbf16)(const KV_T *q, const KV_T *k_cache, const int32_t *table, int64_t b,
                                      int64_t j0, int64_t length, int64_t group, const int64_t strides[3],
                                      int64_t kv_head, int64_t head_dim, int64_t block_size, float scale,
                                      float *scores, const int streams) {
    const KV_T *blocks[8];
    NAME(stream_blocks)(k_cache, table, b, streams, strides, kv_head, blocks);
    for (int64_t s = 0; s < block_size; s += 8 / streams) {
        const KV_T *keys[8];
        int64_t at[8];  /* each key's index in the score rows */
        NAME(eight_rows)(blocks, streams, s, strides[1], j0, block_size, keys, at);
        float sums[8];
        for (int64_t h = 0; h < group; ++h) {
            const KV_T *qh = q + h * head_dim;
            __m512 acc[8];
            for (int r = 0; r < 8; ++r) acc[r] = _mm512_setzero_ps();
            for (int64_t d = 0; d < head_dim; d += 32) {
                const __m512bh qv = (__m512bh)_mm512_loadu_si512(qh + d);
                for (int r = 0; r < 8; ++r)
                    acc[r] = _mm512_dpbf16_ps(acc[r], qv, (__m512bh)_mm512_loadu_si512(keys[r] + d));
            }
            store_scaled_sums_of_eight(acc, scale, sums);
            for (int r = 0; r < 8; ++r) scores[h * length + at[r]] = sums[r];
        }
    }
}


/* score_whole_blocks for score_keys_dpbf16 (head_dim % 32 == 0). */
INLINE int NAME(score_whole_blocks_dpbf16)(const KV_T *q, const KV_T *k_cache, const int32_t *table, int64_t b,
                                           int64_t j0, int64_t length, int64_t group, const int64_t strides[3],
                                           int64_t kv_head, int64_t head_dim, int64_t block_size, float scale,
                                           float *scores) {
    const int64_t whole = block_size % 8 == 0 ? (length - j0) / block_size : 0;
    if (whole < 2) return 0;
    const int streams = STREAMS_OF(whole);
#define CALL(n) NAME(score_blocks_dpbf16)(q, k_cache, table, b, j0, length, group, strides, kv_head, head_dim, \
                                          block_size, scale, scores, n)
    WITH_STREAMS(streams, CALL);
#undef CALL
    return streams;
}
#endif
