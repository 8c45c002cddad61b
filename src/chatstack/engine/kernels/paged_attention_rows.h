/* Part of paged_attention_impl.h (float32 caches, AVX-512, head_dim % 16 == 0): a run of a prompt
 * chunk's query rows attended 32 rows at a time, the rows in the vector lanes.
 *
 * The one-row loops score a key against a query with a dot product, which ends in a horizontal sum.
 * With 32 rows to score against every key, the rows go in the lanes instead: the run's queries are
 * transposed once (qt: head_dim x 32), and a key's scores for all 32 rows are head_dim pairs of FMAs
 * of one broadcast key element with two qt vectors, nothing to reduce (two FMAs per broadcast load:
 * with sixteen rows, one, the loads bound the loop and it ran slower than the dot products). The
 * scores stay key-major (32 per key), so the softmax is lane-wise too: each lane masks the keys past
 * its row's position. */

/* scores[j * 32 + i] = scale * q_i . key_j for keys [0, length) of one KV head; qt: the rows transposed. */
INLINE void NAME(score_rows)(const float *qt, const KV_T *k_cache, const int32_t *table, int64_t length,
                             const int64_t strides[3], int64_t kv_head, int64_t head_dim, int64_t block_size,
                             float scale, float *scores) {
    const __m512 scale16 = _mm512_set1_ps(scale);
    const int64_t row = strides[1];
    for (int64_t j0 = 0, b = 0; j0 < length; j0 += block_size, ++b) {
        const int64_t in_block = length - j0 < block_size ? length - j0 : block_size;
        const float *keys = k_cache + (int64_t)table[b] * strides[0] + kv_head * strides[2];
        for (int64_t s = 0; s < in_block; s += 8) {  /* up to eight keys: sixteen accumulators */
            const int count = in_block - s < 8 ? (int)(in_block - s) : 8;
            __m512 lo[8], hi[8];
            for (int t = 0; t < 8; ++t) lo[t] = hi[t] = _mm512_setzero_ps();
            if (count == 8) {
                for (int64_t d = 0; d < head_dim; ++d) {
                    const __m512 qa = _mm512_loadu_ps(qt + d * ROW_LANES), qb = _mm512_loadu_ps(qt + d * ROW_LANES + 16);
                    for (int t = 0; t < 8; ++t) {
                        const __m512 k = _mm512_set1_ps(keys[(s + t) * row + d]);
                        lo[t] = _mm512_fmadd_ps(k, qa, lo[t]);
                        hi[t] = _mm512_fmadd_ps(k, qb, hi[t]);
                    }
                }
            } else {
                for (int64_t d = 0; d < head_dim; ++d) {
                    const __m512 qa = _mm512_loadu_ps(qt + d * ROW_LANES), qb = _mm512_loadu_ps(qt + d * ROW_LANES + 16);
                    for (int t = 0; t < count; ++t) {
                        const __m512 k = _mm512_set1_ps(keys[(s + t) * row + d]);
                        lo[t] = _mm512_fmadd_ps(k, qa, lo[t]);
                        hi[t] = _mm512_fmadd_ps(k, qb, hi[t]);
                    }
                }
            }
            for (int t = 0; t < count; ++t) {
                _mm512_storeu_ps(scores + (j0 + s + t) * ROW_LANES, _mm512_mul_ps(lo[t], scale16));
                _mm512_storeu_ps(scores + (j0 + s + t) * ROW_LANES + 16, _mm512_mul_ps(hi[t], scale16));
            }
        }
    }
}

/* Each lane's scores become exp(score - its max) over keys below its valid count, 0 past it; inv[i]
 * becomes 1 / lane i's sum (the softmax's normalisation, applied to the output). */
INLINE void NAME(exp_rows)(float *scores, int64_t length, const int64_t *valid, float *inv) {
    for (int half = 0; half < ROW_LANES; half += 16) {
        int32_t counts[16];
        for (int i = 0; i < 16; ++i) counts[i] = (int32_t)valid[half + i];
        const __m512i valid16 = _mm512_loadu_si512(counts);
        __m512 top = _mm512_set1_ps(-INFINITY);
        for (int64_t j = 0; j < length; ++j) {
            const __mmask16 live = _mm512_cmpgt_epi32_mask(valid16, _mm512_set1_epi32((int32_t)j));
            top = _mm512_mask_max_ps(top, live, top, _mm512_loadu_ps(scores + j * ROW_LANES + half));
        }
        __m512 total = _mm512_setzero_ps();
        for (int64_t j = 0; j < length; ++j) {
            float *at = scores + j * ROW_LANES + half;
            const __mmask16 live = _mm512_cmpgt_epi32_mask(valid16, _mm512_set1_epi32((int32_t)j));
            const __m512 shifted = _mm512_min_ps(_mm512_sub_ps(_mm512_loadu_ps(at), top), _mm512_setzero_ps());
            const __m512 e = _mm512_maskz_mov_ps(live, exp_nonpositive16(shifted));
            _mm512_storeu_ps(at, e);
            total = _mm512_add_ps(total, e);
        }
        _mm512_storeu_ps(inv + half, _mm512_div_ps(_mm512_set1_ps(1.0f), total));
    }
}

/* out[i] = inv[i] * sum_j weights[j * 32 + i] * value_j for rows i < rows (<= 32); out rows head_dim apart.
 * Four rows at a time hold a 64-wide slice of their outputs in registers. */
INLINE void NAME(weigh_rows)(const float *weights, const float *inv, const KV_T *v_cache, const int32_t *table,
                             int64_t length, int64_t rows, const int64_t strides[3], int64_t kv_head,
                             int64_t head_dim, int64_t block_size, float *out) {
    for (int64_t i0 = 0; i0 < rows; i0 += 4) {
        const int64_t n = rows - i0 < 4 ? rows - i0 : 4;
        for (int64_t d0 = 0; d0 < head_dim; d0 += 64) {
            const int width = head_dim - d0 < 64 ? (int)(head_dim - d0) / 16 : 4;
            __m512 acc[4][4];
            for (int i = 0; i < 4; ++i)
                for (int r = 0; r < 4; ++r) acc[i][r] = _mm512_setzero_ps();
            for (int64_t j0 = 0, b = 0; j0 < length; j0 += block_size, ++b) {
                const int64_t in_block = length - j0 < block_size ? length - j0 : block_size;
                const float *values = v_cache + (int64_t)table[b] * strides[0] + kv_head * strides[2] + d0;
                for (int64_t s = 0; s < in_block; ++s) {
                    const float *w = weights + (j0 + s) * ROW_LANES + i0;
                    __m512 v[4];
                    for (int r = 0; r < width; ++r) v[r] = _mm512_loadu_ps(values + s * strides[1] + 16 * r);
                    for (int i = 0; i < 4; ++i) {
                        const __m512 wi = _mm512_set1_ps(w[i]);
                        for (int r = 0; r < width; ++r) acc[i][r] = _mm512_fmadd_ps(wi, v[r], acc[i][r]);
                    }
                }
            }
            for (int64_t i = 0; i < n; ++i)
                for (int r = 0; r < width; ++r)
                    _mm512_storeu_ps(out + (i0 + i) * head_dim + d0 + 16 * r,
                                     _mm512_mul_ps(acc[i][r], _mm512_set1_ps(inv[i0 + i])));
        }
    }
}

/* The run's `rows` query rows (q: rows x head_dim floats, row r attending keys [0, valid[r]), valid
 * non-decreasing) into out (rows x head_dim floats), 32 rows at a time (the last group padded with
 * copies of its last row); qt: 32 * head_dim floats of scratch, scores: 32 * valid[rows - 1] floats. */
INLINE void NAME(attend_rows)(const float *q, const KV_T *k_cache, const KV_T *v_cache, const int32_t *table,
                              const int64_t *valid, float *out, int64_t rows, const int64_t strides[3],
                              int64_t kv_head, int64_t head_dim, int64_t block_size, float scale, float *scores,
                              float *qt) {
    for (int64_t r0 = 0; r0 < rows; r0 += ROW_LANES) {
        const int64_t n = rows - r0 < ROW_LANES ? rows - r0 : ROW_LANES;
        int64_t lane_valid[ROW_LANES];
        for (int64_t i = 0; i < ROW_LANES; ++i) lane_valid[i] = valid[r0 + (i < n ? i : n - 1)];
        for (int64_t d = 0; d < head_dim; ++d)
            for (int64_t i = 0; i < ROW_LANES; ++i) qt[d * ROW_LANES + i] = q[(r0 + (i < n ? i : n - 1)) * head_dim + d];
        const int64_t length = lane_valid[ROW_LANES - 1];
        float inv[ROW_LANES];
        NAME(score_rows)(qt, k_cache, table, length, strides, kv_head, head_dim, block_size, scale, scores);
        NAME(exp_rows)(scores, length, lane_valid, inv);
        NAME(weigh_rows)(scores, inv, v_cache, table, length, n, strides, kv_head, head_dim, block_size,
                         out + r0 * head_dim);
    }
}
