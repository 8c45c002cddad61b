/* One storage type's decode step (see decode_step.c); included once per type with T, SFX,
 * TO_F32, FROM_F32 and WIDENS (1: T is bfloat16, widened to float32 as it is read) defined. */
#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)

/* out (n) = x (k) @ w (k, n) [+ bias], summed in float32 in `acc` (n) and stored once (the bias
 * added before that one rounding, as the batched step's prepacked projections add it). Scaled
 * rows of w are added eight at a time, so `acc` is read and written once per eight weight rows
 * while the weight streams through once. */
static void CAT(matvec_, SFX)(const T *x, const T *w, const T *bias, int64_t k, int64_t n, float *acc, T *out) {
    memset(acc, 0, sizeof(float) * (size_t)n);
    int64_t i = 0;
    for (; i + 8 <= k; i += 8) {
        const T *r = w + i * n;
        const float x0 = TO_F32(x[i]), x1 = TO_F32(x[i + 1]), x2 = TO_F32(x[i + 2]), x3 = TO_F32(x[i + 3]);
        const float x4 = TO_F32(x[i + 4]), x5 = TO_F32(x[i + 5]), x6 = TO_F32(x[i + 6]), x7 = TO_F32(x[i + 7]);
        int64_t j = 0;
#if defined(__AVX512F__) && WIDENS
        /* sixteen columns of eight widened rows per pass: the compiler's loop streamed ~6 GB/s here */
        const __m512 v0 = _mm512_set1_ps(x0), v1 = _mm512_set1_ps(x1), v2 = _mm512_set1_ps(x2), v3 = _mm512_set1_ps(x3);
        const __m512 v4 = _mm512_set1_ps(x4), v5 = _mm512_set1_ps(x5), v6 = _mm512_set1_ps(x6), v7 = _mm512_set1_ps(x7);
        for (; j + 16 <= n; j += 16) {
            __m512 a = _mm512_fmadd_ps(v0, bf16x16_load(r + j), _mm512_loadu_ps(acc + j));
            __m512 b = _mm512_mul_ps(v1, bf16x16_load(r + n + j));
            a = _mm512_fmadd_ps(v2, bf16x16_load(r + 2 * n + j), a);
            b = _mm512_fmadd_ps(v3, bf16x16_load(r + 3 * n + j), b);
            a = _mm512_fmadd_ps(v4, bf16x16_load(r + 4 * n + j), a);
            b = _mm512_fmadd_ps(v5, bf16x16_load(r + 5 * n + j), b);
            a = _mm512_fmadd_ps(v6, bf16x16_load(r + 6 * n + j), a);
            b = _mm512_fmadd_ps(v7, bf16x16_load(r + 7 * n + j), b);
            _mm512_storeu_ps(acc + j, _mm512_add_ps(a, b));
        }
#endif
#if defined(__AVX2__) && WIDENS
        /* the same, eight columns per pass, where the CPU has AVX2 only */
        const __m256 u0 = _mm256_set1_ps(x0), u1 = _mm256_set1_ps(x1), u2 = _mm256_set1_ps(x2), u3 = _mm256_set1_ps(x3);
        const __m256 u4 = _mm256_set1_ps(x4), u5 = _mm256_set1_ps(x5), u6 = _mm256_set1_ps(x6), u7 = _mm256_set1_ps(x7);
        for (; j + 8 <= n; j += 8) {
            __m256 a = _mm256_fmadd_ps(u0, bf16x8_load(r + j), _mm256_loadu_ps(acc + j));
            __m256 b = _mm256_mul_ps(u1, bf16x8_load(r + n + j));
            a = _mm256_fmadd_ps(u2, bf16x8_load(r + 2 * n + j), a);
            b = _mm256_fmadd_ps(u3, bf16x8_load(r + 3 * n + j), b);
            a = _mm256_fmadd_ps(u4, bf16x8_load(r + 4 * n + j), a);
            b = _mm256_fmadd_ps(u5, bf16x8_load(r + 5 * n + j), b);
            a = _mm256_fmadd_ps(u6, bf16x8_load(r + 6 * n + j), a);
            b = _mm256_fmadd_ps(u7, bf16x8_load(r + 7 * n + j), b);
            _mm256_storeu_ps(acc + j, _mm256_add_ps(a, b));
        }
#endif
        #pragma omp simd
        for (int64_t c = j; c < n; ++c)
            acc[c] += x0 * TO_F32(r[c]) + x1 * TO_F32(r[n + c]) + x2 * TO_F32(r[2 * n + c])
                    + x3 * TO_F32(r[3 * n + c]) + x4 * TO_F32(r[4 * n + c]) + x5 * TO_F32(r[5 * n + c])
                    + x6 * TO_F32(r[6 * n + c]) + x7 * TO_F32(r[7 * n + c]);
    }
    for (; i < k; ++i) {
        const float xi = TO_F32(x[i]);
        const T *row = w + i * n;
        #pragma omp simd
        for (int64_t j = 0; j < n; ++j) acc[j] += xi * TO_F32(row[j]);
    }
    if (bias) {
        #pragma omp simd
        for (int64_t j = 0; j < n; ++j) out[j] = FROM_F32(acc[j] + TO_F32(bias[j]));
    } else {
        #pragma omp simd
        for (int64_t j = 0; j < n; ++j) out[j] = FROM_F32(acc[j]);
    }
}

/* x (hidden): the token's embedding, then its residual stream; logits (vocab): the LM head
 * (lm_head: (hidden, vocab)) over the final norm of the stream after every layer, for a token at
 * `position`. cos, sin: the whole (max_positions, head_dim) RoPE tables; the caches hold
 * cache_slots slots. `top`, unless NULL, gets the greedy token: the argmax of the logits as stored
 * (torch.argmax's choice on them, widened to float32), so a plain greedy decode needs no sampler.
 * Returns 0, or -1 when scratch memory could not be allocated or the position or its slot lies
 * outside the tables or the cache. */
int CAT(chatstack_decode_step_, SFX)(T *x, T *logits, int64_t *top, const void *const *layers, int64_t num_layers,
                                     const T *final_norm, const T *lm_head, int64_t vocab,
                                     const T *cos, const T *sin, int64_t max_positions,
                                     const int32_t *block_table, int64_t num_blocks_in_table, int64_t cache_slots,
                                     int64_t position, int64_t hidden, int64_t n_heads, int64_t n_kv_heads,
                                     int64_t head_dim, int64_t intermediate, const int64_t layout[4], float eps) {
    const int64_t block_size = layout[0];
    const int64_t q_size = n_heads * head_dim, kv_size = n_kv_heads * head_dim;
    const int64_t qkv_size = q_size + 2 * kv_size, widest_in = qkv_size > hidden ? qkv_size : hidden;
    const int64_t widest_mlp = widest_in > 2 * intermediate ? widest_in : 2 * intermediate;
    const int64_t widest = widest_mlp > vocab ? widest_mlp : vocab;
    if (position < 0 || position >= num_blocks_in_table * block_size) return -1;
    const int64_t slot = (int64_t)block_table[position / block_size] * block_size + position % block_size;
    T *h = malloc(sizeof(T) * (size_t)(2 * hidden + qkv_size + 2 * q_size + 3 * intermediate + hidden));
    float *acc = malloc(sizeof(float) * (size_t)widest);
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
        T *k_cache = (T *)p[8], *v_cache = (T *)p[9];
        CAT(chatstack_add_rms_norm_, SFX)(x, l == 0 ? NULL : delta, p[0], 1, hidden, eps, h);
        CAT(matvec_, SFX)(h, p[1], p[2], hidden, qkv_size, acc, qkv);
        status = CAT(chatstack_rope_store_, SFX)(qkv, 1, &position, cos, sin, max_positions, n_heads, n_kv_heads,
                                                 head_dim, &slot, cache_slots, layout, q, k_cache, v_cache);
        if (status == 0)
            status = CAT(chatstack_paged_attention_, SFX)(q, q_size, k_cache, v_cache, block_table, num_blocks_in_table,
                                                          &token, &position, 1, attended, n_heads, n_kv_heads,
                                                          head_dim, block_size, layout[1], layout[2], layout[3],
                                                          1.0f / sqrtf((float)head_dim));
        if (status != 0) break;
        CAT(matvec_, SFX)(attended, p[3], p[4], q_size, hidden, acc, projected);
        CAT(chatstack_add_rms_norm_, SFX)(x, projected, p[5], 1, hidden, eps, h);
        CAT(matvec_, SFX)(h, p[6], NULL, hidden, 2 * intermediate, acc, gate_up);
        CAT(chatstack_silu_mul_, SFX)(gate_up, 1, intermediate, act);
        CAT(matvec_, SFX)(act, p[7], NULL, intermediate, hidden, acc, delta);
    }
    if (status == 0) {
        CAT(chatstack_add_rms_norm_, SFX)(x, num_layers ? delta : NULL, final_norm, 1, hidden, eps, h);
        CAT(matvec_, SFX)(h, lm_head, NULL, hidden, vocab, acc, logits);
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
                                      const T *final_norm, const T *lm_head, int64_t vocab,
                                      const T *cos, const T *sin, int64_t max_positions,
                                      const int32_t *block_table, int64_t num_blocks_in_table, int64_t cache_slots,
                                      int64_t position, int64_t hidden, int64_t n_heads, int64_t n_kv_heads,
                                      int64_t head_dim, int64_t intermediate, const int64_t layout[4], float eps) {
    for (int64_t i = 0; i < steps; ++i) {
        if (token < 0 || token >= vocab) return -1;
        memcpy(x, embed + token * hidden, sizeof(T) * (size_t)hidden);
        if (CAT(chatstack_decode_step_, SFX)(x, logits, &tokens[i], layers, num_layers, final_norm, lm_head, vocab,
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
