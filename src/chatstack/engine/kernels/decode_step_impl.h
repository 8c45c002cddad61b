/* One storage type's decode step (see decode_step.c); included once per type with T, SFX,
 * TO_F32, FROM_F32, WIDENS (1: T is bfloat16, widened to float32 as it is read), OPS (the suffix
 * of the layer_ops / paged_attention functions for T), W and W_TO_F32 (the weights' storage type: T, or
 * int8_t with a float32 scale per output column) and LOAD16 / LOAD8 (sixteen / eight values of W as
 * floats, AVX-512 / AVX2) defined. */
#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)

/* out (n) = x (k) @ w (k, n) [+ bias], w in column panels (see decode_step.c): panel t holds columns
 * t * PANEL onwards (the last one n % PANEL wide) for all k rows, row after row, so the whole matvec
 * reads its weight as one forward stream. A full panel's PANEL sums stay in registers across the k rows,
 * in float32, and are stored once (the bias added before that one rounding, as the batched step's
 * prepacked projections add it). */
static void CAT(matvec_, SFX)(const T *x, const W *w, const float *scale, const T *bias, int64_t k, int64_t n,
                               T *out) {
    for (int64_t j0 = 0; j0 < n; j0 += PANEL) {
        const int64_t width = n - j0 < PANEL ? n - j0 : PANEL;
        const W *panel = w + j0 * k;
        float sums[PANEL];
        if (width == PANEL) {
#if defined(__AVX512F__)
            __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            for (int64_t i = 0; i < k; ++i) {
                const W *r = panel + i * PANEL;
                const __m512 xi = _mm512_set1_ps(TO_F32(x[i]));
                a0 = _mm512_fmadd_ps(xi, LOAD16(r), a0);
                a1 = _mm512_fmadd_ps(xi, LOAD16(r + 16), a1);
                a2 = _mm512_fmadd_ps(xi, LOAD16(r + 32), a2);
                a3 = _mm512_fmadd_ps(xi, LOAD16(r + 48), a3);
            }
            _mm512_storeu_ps(sums, a0);
            _mm512_storeu_ps(sums + 16, a1);
            _mm512_storeu_ps(sums + 32, a2);
            _mm512_storeu_ps(sums + 48, a3);
#elif defined(__AVX2__)
            __m256 a[PANEL / 8];
            for (int c = 0; c < PANEL / 8; ++c) a[c] = _mm256_setzero_ps();
            for (int64_t i = 0; i < k; ++i) {
                const W *r = panel + i * PANEL;
                const __m256 xi = _mm256_set1_ps(TO_F32(x[i]));
                for (int c = 0; c < PANEL / 8; ++c) a[c] = _mm256_fmadd_ps(xi, LOAD8(r + 8 * c), a[c]);
            }
            for (int c = 0; c < PANEL / 8; ++c) _mm256_storeu_ps(sums + 8 * c, a[c]);
#else
            memset(sums, 0, sizeof sums);
            for (int64_t i = 0; i < k; ++i) {
                const float xi = TO_F32(x[i]);
                const W *r = panel + i * PANEL;
                #pragma omp simd
                for (int c = 0; c < PANEL; ++c) sums[c] += xi * W_TO_F32(r[c]);
            }
#endif
        } else {
            memset(sums, 0, sizeof sums);
            for (int64_t i = 0; i < k; ++i) {
                const float xi = TO_F32(x[i]);
                const W *r = panel + i * width;
                #pragma omp simd
                for (int64_t c = 0; c < width; ++c) sums[c] += xi * W_TO_F32(r[c]);
            }
        }
        if (scale) {  /* int8 weights: each output column's scale, then the bias */
            #pragma omp simd
            for (int64_t c = 0; c < width; ++c) sums[c] *= scale[j0 + c];
        }
        if (bias) {
            #pragma omp simd
            for (int64_t c = 0; c < width; ++c) out[j0 + c] = FROM_F32(sums[c] + TO_F32(bias[j0 + c]));
        } else {
            #pragma omp simd
            for (int64_t c = 0; c < width; ++c) out[j0 + c] = FROM_F32(sums[c]);
        }
    }
}

/* x (hidden): the token's embedding, then its residual stream; logits (vocab): the LM head
 * (lm_head: (hidden, vocab) in panels, as every weight here) over the final norm of the stream after every layer, for a token at
 * `position`. cos, sin: the whole (max_positions, head_dim) RoPE tables; the caches hold
 * cache_slots slots. `top`, unless NULL, gets the greedy token: the argmax of the logits as stored
 * (torch.argmax's choice on them, widened to float32), so a plain greedy decode needs no sampler.
 * Returns 0, or -1 when scratch memory could not be allocated or the position or its slot lies
 * outside the tables or the cache. */
int CAT(chatstack_decode_step_, SFX)(T *x, T *logits, int64_t *top, const void *const *layers, int64_t num_layers,
                                     const T *final_norm, const W *lm_head, const float *lm_head_scale, int64_t vocab,
                                     const T *cos, const T *sin, int64_t max_positions,
                                     const int32_t *block_table, int64_t num_blocks_in_table, int64_t cache_slots,
                                     int64_t position, int64_t hidden, int64_t n_heads, int64_t n_kv_heads,
                                     int64_t head_dim, int64_t intermediate, const int64_t layout[4], float eps) {
    const int64_t block_size = layout[0];
    const int64_t q_size = n_heads * head_dim, kv_size = n_kv_heads * head_dim;
    const int64_t qkv_size = q_size + 2 * kv_size;
    if (position < 0 || position >= num_blocks_in_table * block_size) return -1;
    const int64_t slot = (int64_t)block_table[position / block_size] * block_size + position % block_size;
    T *h = malloc(sizeof(T) * (size_t)(2 * hidden + qkv_size + 2 * q_size + 3 * intermediate + hidden));
    float *acc = malloc(sizeof(float) * (size_t)vocab);  /* the logits widened for the argmax */
    if (h == NULL || acc == NULL) {
        free(h);
        free(acc);
        return -1;
    }
    T *qkv = h + hidden, *q = qkv + qkv_size, *attended = q + q_size, *projected = attended + q_size;
    T *gate_up = projected + hidden, *act = gate_up + 2 * intermediate, *delta = act + intermediate;
    const int64_t token = 0;
    int status = 0;
    for (int64_t l = 0; l < num_layers && status == 0; ++l) {
        const T *const *p = (const T *const *)(layers + l * LAYER_POINTERS);
        const W *const *wp = (const W *const *)(layers + l * LAYER_POINTERS);
        const float *const *sp = (const float *const *)(layers + l * LAYER_POINTERS);
        T *k_cache = (T *)p[8], *v_cache = (T *)p[9];
        CAT(chatstack_add_rms_norm_, OPS)(x, l == 0 ? NULL : delta, p[0], 1, hidden, eps, h);
        CAT(matvec_, SFX)(h, wp[1], sp[10], p[2], hidden, qkv_size, qkv);
        status = CAT(chatstack_rope_store_, OPS)(qkv, 1, &position, cos, sin, max_positions, n_heads, n_kv_heads,
                                                 head_dim, &slot, cache_slots, layout, q, k_cache, v_cache);
        if (status == 0)
            status = CAT(chatstack_paged_attention_, OPS)(q, q_size, k_cache, v_cache, block_table, num_blocks_in_table,
                                                          &token, &position, 1, attended, n_heads, n_kv_heads,
                                                          head_dim, block_size, layout[1], layout[2], layout[3],
                                                          1.0f / sqrtf((float)head_dim));
        if (status != 0) break;
        CAT(matvec_, SFX)(attended, wp[3], sp[11], p[4], q_size, hidden, projected);
        CAT(chatstack_add_rms_norm_, OPS)(x, projected, p[5], 1, hidden, eps, h);
        CAT(matvec_, SFX)(h, wp[6], sp[12], NULL, hidden, 2 * intermediate, gate_up);
        CAT(chatstack_silu_mul_, OPS)(gate_up, 1, intermediate, act);
        CAT(matvec_, SFX)(act, wp[7], sp[13], NULL, intermediate, hidden, delta);
    }
    if (status == 0) {
        CAT(chatstack_add_rms_norm_, OPS)(x, num_layers ? delta : NULL, final_norm, 1, hidden, eps, h);
        CAT(matvec_, SFX)(h, lm_head, lm_head_scale, NULL, hidden, vocab, logits);
        if (top != NULL) {
#if WIDENS
            #pragma omp simd
            for (int64_t j = 0; j < vocab; ++j) acc[j] = TO_F32(logits[j]);  /* the values as stored */
            chatstack_argmax_rows(acc, 1, vocab, vocab, top);
#else
            chatstack_argmax_rows(logits, 1, vocab, vocab, top);
#endif
        }
    }
    free(h);
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
        if (CAT(chatstack_decode_step_, SFX)(x, logits, &tokens[i], layers, num_layers, final_norm, lm_head, lm_head_scale, vocab,
                                             cos, sin, max_positions, block_table, num_blocks_in_table, cache_slots,
                                             position + i, hidden, n_heads, n_kv_heads, head_dim, intermediate,
                                             layout, eps) != 0)
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
