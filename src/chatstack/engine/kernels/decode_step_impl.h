/* One storage type's decode step (see decode_step.c); included once per type with T, SFX,
 * TO_F32, FROM_F32, WIDENS (1: T is bfloat16, widened to float32 as it is read), OPS (the suffix
 * of the layer_ops / paged_attention functions for T), W and W_TO_F32 (the weights' storage type: T, or
 * int8_t with a float32 scale per output column) and LOAD16 / LOAD8 (sixteen / eight values of W as
 * floats, AVX-512 / AVX2) defined. A weight layout of its own (int4 words, decode_step_q4.h; bfloat16 pairs,
 * decode_step_bf16dp.h) defines instead, before including this, the panel kernels matmul_ calls:
 * FULL_PANEL(x, panel, k, qs, n, sums, rows) for a PANEL-wide panel, PART_PANEL(x, panel, k, width, qs, n, sums,
 * rows) for the narrower last one (both writing sums; qs: the weights' scales from the panel's first column,
 * rows n apart), PANEL_COLUMN_ELEMS(k) (W elements per column of a panel) and COLUMN_SCALES (0: the kernels
 * apply the scales themselves). */
#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)

#ifndef FULL_PANEL
/* sums (rows x width) = x (rows of k) @ a panel of `width` columns (k x width, row after row): the last,
 * narrower panel, and every panel without vectors */
static void CAT(part_panel_, SFX)(const T *x, const W *panel, int64_t k, int64_t width, float sums[][PANEL],
                                  int64_t rows) {
    for (int64_t m = 0; m < rows; ++m) {
        memset(sums[m], 0, sizeof(float) * PANEL);
        for (int64_t i = 0; i < k; ++i) {
            const float xi = TO_F32(x[m * k + i]);
            const W *r = panel + i * width;
            #pragma omp simd
            for (int64_t c = 0; c < width; ++c) sums[m][c] += xi * W_TO_F32(r[c]);
        }
    }
}
/* sums (rows x PANEL) = x (rows of k, `k` apart) @ one full panel (k x PANEL), rows <= MAX_ROWS, rows a constant
 * where inlined: every row's PANEL sums stay in registers across the k panel rows, each weight vector read (and
 * widened) once for all the rows. */
static inline __attribute__((always_inline)) void CAT(panel_rows_, SFX)(const T *x, const W *panel, int64_t k,
                                                                         float sums[][PANEL], const int rows) {
#if defined(__AVX512F__) || defined(__AVX2__)
#if defined(__AVX512F__)
#define VEC __m512
#define LANES 16
#define VLOAD(p) LOAD16(p)
#define VZERO _mm512_setzero_ps
#define VSET1 _mm512_set1_ps
#define VFMA _mm512_fmadd_ps
#define VSTORE _mm512_storeu_ps
#else
#define VEC __m256
#define LANES 8
#define VLOAD(p) LOAD8(p)
#define VZERO _mm256_setzero_ps
#define VSET1 _mm256_set1_ps
#define VFMA _mm256_fmadd_ps
#define VSTORE _mm256_storeu_ps
#endif
    /* four vectors a row: the whole panel in one pass with AVX-512, half of it a pass with AVX2's sixteen registers */
    for (int part = 0; part < PANEL; part += 4 * LANES) {
        VEC a[MAX_ROWS][4];
        for (int m = 0; m < rows; ++m)
            for (int c = 0; c < 4; ++c) a[m][c] = VZERO();
        for (int64_t i = 0; i < k; ++i) {
            const W *r = panel + i * PANEL + part;
            const VEC w0 = VLOAD(r), w1 = VLOAD(r + LANES), w2 = VLOAD(r + 2 * LANES), w3 = VLOAD(r + 3 * LANES);
            for (int m = 0; m < rows; ++m) {
                const VEC xi = VSET1(TO_F32(x[m * k + i]));
                a[m][0] = VFMA(xi, w0, a[m][0]);
                a[m][1] = VFMA(xi, w1, a[m][1]);
                a[m][2] = VFMA(xi, w2, a[m][2]);
                a[m][3] = VFMA(xi, w3, a[m][3]);
            }
        }
        for (int m = 0; m < rows; ++m)
            for (int c = 0; c < 4; ++c) VSTORE(sums[m] + part + LANES * c, a[m][c]);
    }
#undef VEC
#undef LANES
#undef VLOAD
#undef VZERO
#undef VSET1
#undef VFMA
#undef VSTORE
#else
    CAT(part_panel_, SFX)(x, panel, k, PANEL, sums, rows);
#endif
}

#define FULL_PANEL(x, panel, k, qs, n, sums, rows) CAT(panel_rows_, SFX)(x, panel, k, sums, rows)
#define PART_PANEL(x, panel, k, width, qs, n, sums, rows) CAT(part_panel_, SFX)(x, panel, k, width, sums, rows)
#define PANEL_COLUMN_ELEMS(k) (k)
#define COLUMN_SCALES 1  /* int8: one per output column, applied to each sum */
#endif

/* out (rows, n) = x (rows, k) @ w (k, n) [+ bias], w in column panels (see decode_step.c): panel t holds columns
 * t * PANEL onwards (the last one n % PANEL wide) for all k rows, row after row, so the matmul reads its weight
 * as one forward stream. The rows go through each panel in groups of at most MAX_ROWS (split evenly), the first
 * group reading it from memory and the others from cache; sums in float32, each stored once (the bias added
 * before that one rounding, as the batched step's prepacked projections add it). */
static void CAT(matmul_, SFX)(const T *x, int64_t rows, const W *w, const float *scale, const T *bias, int64_t k,
                               int64_t n, T *out) {
    float sums[MAX_ROWS][PANEL];
    const int64_t groups = (rows + MAX_ROWS - 1) / MAX_ROWS;
    for (int64_t j0 = 0; j0 < n; j0 += PANEL) {
        const int64_t width = n - j0 < PANEL ? n - j0 : PANEL;
        const W *panel = w + j0 * PANEL_COLUMN_ELEMS(k);
        const float *qs = scale ? scale + j0 : NULL;
        for (int64_t m0 = 0, g = 0; g < groups; ++g) {
            const int64_t count = (rows - m0) / (groups - g);
            const T *xg = x + m0 * k;
            if (width == PANEL) {
                switch (count) {
#define ROWS_CASE(R) case R: FULL_PANEL(xg, panel, k, qs, n, sums, R); break;
                    ROWS_CASE(1)
#if MAX_ROWS >= 2
                    ROWS_CASE(2)
#endif
#if MAX_ROWS >= 4
                    ROWS_CASE(3)
                    ROWS_CASE(4)
#endif
#if MAX_ROWS >= 6
                    ROWS_CASE(5)
                    ROWS_CASE(6)
#endif
#undef ROWS_CASE
                    default: break;
                }
            } else {
                PART_PANEL(xg, panel, k, width, qs, n, sums, count);
            }
            for (int64_t m = 0; m < count; ++m) {
                float *sm = sums[m];
                T *om = out + (m0 + m) * n + j0;
                if (COLUMN_SCALES && qs) {  /* int8 weights: each output column's scale, then the bias */
                    #pragma omp simd
                    for (int64_t c = 0; c < width; ++c) sm[c] *= qs[c];
                }
                if (bias) {
                    #pragma omp simd
                    for (int64_t c = 0; c < width; ++c) om[c] = FROM_F32(sm[c] + TO_F32(bias[j0 + c]));
                } else {
                    #pragma omp simd
                    for (int64_t c = 0; c < width; ++c) om[c] = FROM_F32(sm[c]);
                }
            }
            m0 += count;
        }
    }
}

/* One decode step of `rows` sequences, row r for the token at positions[r] of the sequence whose block table is
 * row r of block_tables (rows x table_width int32). x (rows, hidden): the tokens' embeddings, then their residual
 * streams; logits (rows, vocab): the LM head (lm_head: (hidden, vocab) in panels, as every weight here) over the
 * final norm of each stream after every layer. cos, sin: the whole (max_positions, head_dim) RoPE tables; the
 * caches hold cache_slots slots. `top`, unless NULL, gets each row's greedy token: the argmax of its logits as
 * stored (torch.argmax's choice on them, widened to float32), so a plain greedy decode needs no sampler.
 * Returns 0, or -1 when scratch memory could not be allocated or a position or its slot lies outside the tables
 * or the cache (nothing written then). */
int CAT(chatstack_decode_rows_, SFX)(int64_t rows, T *x, T *logits, int64_t *top, const void *const *layers,
                                     int64_t num_layers, const T *final_norm, const W *lm_head,
                                     const float *lm_head_scale, int64_t vocab, const T *cos, const T *sin,
                                     int64_t max_positions, const int32_t *block_tables, int64_t table_width,
                                     int64_t cache_slots, const int64_t *positions, int64_t hidden, int64_t n_heads,
                                     int64_t n_kv_heads, int64_t head_dim, int64_t intermediate,
                                     const int64_t layout[4], float eps) {
    const int64_t block_size = layout[0];
    const int64_t q_size = n_heads * head_dim, kv_size = n_kv_heads * head_dim;
    const int64_t qkv_size = q_size + 2 * kv_size;
    if (rows < 1) return -1;
    for (int64_t r = 0; r < rows; ++r)
        if (positions[r] < 0 || positions[r] >= table_width * block_size) return -1;
    /* per row: the normed stream, qkv, q, the attended heads, the output projection, gate_up, the SiLU product and
     * the MLP's output; then each row's slot and token index, and the logits widened for the argmax */
    T *h = malloc(sizeof(T) * (size_t)(rows * (3 * hidden + qkv_size + 2 * q_size + 3 * intermediate)));
    int64_t *slots = malloc(sizeof(int64_t) * (size_t)(2 * rows));
    float *acc = WIDENS && top != NULL ? malloc(sizeof(float) * (size_t)(rows * vocab)) : NULL;
    if (h == NULL || slots == NULL || (WIDENS && top != NULL && acc == NULL)) {
        free(h);
        free(slots);
        free(acc);
        return -1;
    }
    T *qkv = h + rows * hidden, *q = qkv + rows * qkv_size, *attended = q + rows * q_size;
    T *projected = attended + rows * q_size, *gate_up = projected + rows * hidden;
    T *act = gate_up + rows * 2 * intermediate, *delta = act + rows * intermediate;
    int64_t *tokens = slots + rows;
    for (int64_t r = 0; r < rows; ++r) {
        const int32_t *table = block_tables + r * table_width;
        slots[r] = (int64_t)table[positions[r] / block_size] * block_size + positions[r] % block_size;
        tokens[r] = r;
    }
    int status = 0;
    for (int64_t l = 0; l < num_layers && status == 0; ++l) {
        const T *const *p = (const T *const *)(layers + l * LAYER_POINTERS);
        const W *const *wp = (const W *const *)(layers + l * LAYER_POINTERS);
        const float *const *sp = (const float *const *)(layers + l * LAYER_POINTERS);
        T *k_cache = (T *)p[8], *v_cache = (T *)p[9];
        CAT(chatstack_add_rms_norm_, OPS)(x, l == 0 ? NULL : delta, p[0], rows, hidden, eps, h);
        CAT(matmul_, SFX)(h, rows, wp[1], sp[10], p[2], hidden, qkv_size, qkv);
        status = CAT(chatstack_rope_store_, OPS)(qkv, rows, positions, cos, sin, max_positions, n_heads, n_kv_heads,
                                                 head_dim, slots, cache_slots, layout, q, k_cache, v_cache);
        if (status == 0)
            status = CAT(chatstack_paged_attention_, OPS)(q, q_size, k_cache, v_cache, block_tables, table_width,
                                                          tokens, positions, rows, attended, n_heads, n_kv_heads,
                                                          head_dim, block_size, layout[1], layout[2], layout[3],
                                                          1.0f / sqrtf((float)head_dim));
        if (status != 0) break;
        CAT(matmul_, SFX)(attended, rows, wp[3], sp[11], p[4], q_size, hidden, projected);
        CAT(chatstack_add_rms_norm_, OPS)(x, projected, p[5], rows, hidden, eps, h);
        CAT(matmul_, SFX)(h, rows, wp[6], sp[12], NULL, hidden, 2 * intermediate, gate_up);
        CAT(chatstack_silu_mul_, OPS)(gate_up, rows, intermediate, act);
        CAT(matmul_, SFX)(act, rows, wp[7], sp[13], NULL, intermediate, hidden, delta);
    }
    if (status == 0) {
        CAT(chatstack_add_rms_norm_, OPS)(x, num_layers ? delta : NULL, final_norm, rows, hidden, eps, h);
        CAT(matmul_, SFX)(h, rows, lm_head, lm_head_scale, NULL, hidden, vocab, logits);
        if (top != NULL) {
#if WIDENS
            #pragma omp simd
            for (int64_t j = 0; j < rows * vocab; ++j) acc[j] = TO_F32(logits[j]);  /* the values as stored */
            chatstack_argmax_rows(acc, rows, vocab, vocab, top);
#else
            chatstack_argmax_rows(logits, rows, vocab, vocab, top);
#endif
        }
    }
    free(h);
    free(slots);
    free(acc);
    return status;
}

/* Up to `steps` greedy decode steps of one sequence in one call: step i feeds token (the first: `token`, then the
 * last one picked) at position + i, writes its K/V and picks the next token into tokens[i]; a token in
 * stop_ids (n_stop of them) ends the run after it is written. embed: (vocab, hidden) rows; the block table must
 * already cover position + steps - 1. Returns how many tokens it wrote (>= 1), or -1 as the single step fails. */
int CAT(chatstack_decode_steps_, SFX)(int64_t steps, int64_t token, const int64_t *stop_ids, int64_t n_stop,
                                      int64_t *tokens, const T *embed, T *x, T *logits,
                                      const void *const *layers, int64_t num_layers,
                                      const T *final_norm, const W *lm_head, const float *lm_head_scale, int64_t vocab,
                                      const T *cos, const T *sin, int64_t max_positions,
                                      const int32_t *block_table, int64_t num_blocks_in_table, int64_t cache_slots,
                                      int64_t position, int64_t hidden, int64_t n_heads, int64_t n_kv_heads,
                                      int64_t head_dim, int64_t intermediate, const int64_t layout[4], float eps) {
    for (int64_t i = 0; i < steps; ++i) {
        if (token < 0 || token >= vocab) return -1;
        memcpy(x, embed + token * hidden, sizeof(T) * (size_t)hidden);
        const int64_t at = position + i;
        if (CAT(chatstack_decode_rows_, SFX)(1, x, logits, &tokens[i], layers, num_layers, final_norm, lm_head,
                                             lm_head_scale, vocab, cos, sin, max_positions, block_table,
                                             num_blocks_in_table, cache_slots, &at, hidden, n_heads, n_kv_heads,
                                             head_dim, intermediate, layout, eps) != 0)
            return i ? i : -1;
        token = tokens[i];
        for (int64_t s = 0; s < n_stop; ++s)
            if (token == stop_ids[s]) return i + 1;
    }
    return steps;
}

#undef CAT
#undef CAT_
/* the parameters this file was included with, so the next inclusion defines its own */
#undef T
#undef SFX
#undef TO_F32
#undef FROM_F32
#undef WIDENS
#undef W
#undef W_TO_F32
#undef OPS
#undef LOAD16
#undef LOAD8
#undef FULL_PANEL
#undef PART_PANEL
#undef PANEL_COLUMN_ELEMS
#undef COLUMN_SCALES
