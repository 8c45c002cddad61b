/* One storage type's layer ops (see layer_ops.c); included once per type with T, SFX,
 * TO_F32, FROM_F32 and ROUND (float -> the value T would hold, as float) defined. */
#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)

/* x, out: (rows, n); delta: (rows, n) or NULL; weight: (n,). */
void CAT(chatstack_add_rms_norm_, SFX)(T *x, const T *delta, const T *weight, int64_t rows, int64_t n,
                                       float eps, T *out) {
    for (int64_t r = 0; r < rows; ++r) {
        T *xr = x + r * n, *o = out + r * n;
        float squares = 0.0f;
        if (delta != NULL) {
            const T *d = delta + r * n;
            #pragma omp simd reduction(+:squares)
            for (int64_t i = 0; i < n; ++i) {
                const T sum = FROM_F32(TO_F32(xr[i]) + TO_F32(d[i]));
                const float v = TO_F32(sum);
                xr[i] = sum;
                squares += v * v;
            }
        } else {
            #pragma omp simd reduction(+:squares)
            for (int64_t i = 0; i < n; ++i) {
                const float v = TO_F32(xr[i]);
                squares += v * v;
            }
        }
        const float inv = 1.0f / sqrtf(squares / (float)n + eps);
        #pragma omp simd
        for (int64_t i = 0; i < n; ++i) o[i] = FROM_F32(TO_F32(weight[i]) * ROUND(TO_F32(xr[i]) * inv));
    }
}

/* gate_up: (rows, 2 * inter), gate then up; out: (rows, inter). silu(g) = g * sigmoid(g), with
 * sigmoid from e = exp(-|g|) <= 1 so it never overflows. */
void CAT(chatstack_silu_mul_, SFX)(const T *gate_up, int64_t rows, int64_t inter, T *out) {
    for (int64_t r = 0; r < rows; ++r) {
        const T *g = gate_up + r * 2 * inter, *u = g + inter;
        T *o = out + r * inter;
        int64_t j = 0;
#ifdef __AVX512F__
        const __m512 zero = _mm512_setzero_ps(), one = _mm512_set1_ps(1.0f);
        for (; j + 16 <= inter; j += 16) {
            const __m512 x = LOAD16(g + j);
            const __m512 e = exp_nonpositive16(_mm512_sub_ps(zero, _mm512_abs_ps(x)));
            const __m512 num = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, zero, _CMP_GE_OQ), e, one);
            const __m512 sigmoid = _mm512_div_ps(num, _mm512_add_ps(one, e));
            STORE16(o + j, _mm512_mul_ps(ROUND16(_mm512_mul_ps(x, sigmoid)), LOAD16(u + j)));
        }
#elif defined(__AVX2__)
        const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f);
        const __m256 sign = _mm256_set1_ps(-0.0f);
        for (; j + 8 <= inter; j += 8) {
            const __m256 x = LOAD8(g + j);
            const __m256 e = exp_nonpositive8(_mm256_or_ps(x, sign));  /* -|x| */
            const __m256 num = _mm256_blendv_ps(e, one, _mm256_cmp_ps(x, zero, _CMP_GE_OQ));
            const __m256 sigmoid = _mm256_div_ps(num, _mm256_add_ps(one, e));
            STORE8(o + j, _mm256_mul_ps(ROUND8(_mm256_mul_ps(x, sigmoid)), LOAD8(u + j)));
        }
#endif
        #pragma omp simd
        for (int64_t k = j; k < inter; ++k) {
            const float x = TO_F32(g[k]);
            const float e = exp_nonpositive(-fabsf(x));
            const float sigmoid = (x >= 0.0f ? 1.0f : e) / (1.0f + e);
            o[k] = FROM_F32(ROUND(x * sigmoid) * TO_F32(u[k]));
        }
    }
}

/* One head (head_dim) rotated: x * cos + rotate_half(x) * sin, rotate_half(x) = (-x2, x1). */
static inline void CAT(rotate_head_, SFX)(const T *x, const T *cos, const T *sin, int64_t head_dim, T *out) {
    const int64_t half = head_dim / 2;
    #pragma omp simd
    for (int64_t d = 0; d < half; ++d) {
        const float x1 = TO_F32(x[d]), x2 = TO_F32(x[d + half]);
        const float a = ROUND(x1 * TO_F32(cos[d])), b = ROUND(-x2 * TO_F32(sin[d]));
        const float c = ROUND(x2 * TO_F32(cos[d + half])), e = ROUND(x1 * TO_F32(sin[d + half]));
        out[d] = FROM_F32(a + b);
        out[d + half] = FROM_F32(c + e);
    }
}

/* qkv: (rows, (n_heads + 2 n_kv_heads) head_dim), q heads then k then v; positions, slots: (rows,);
 * cos, sin: (max_positions, head_dim); q_out: (rows, n_heads, head_dim); the caches hold num_slots
 * slots laid out as `layout` says (block_size, block / slot / head strides in elements). Returns 0,
 * or -1 (nothing written) when a position or slot is out of range. */
int CAT(chatstack_rope_store_, SFX)(const T *qkv, int64_t rows, const int64_t *positions, const T *cos,
                                    const T *sin, int64_t max_positions, int64_t n_heads, int64_t n_kv_heads,
                                    int64_t head_dim, const int64_t *slots, int64_t num_slots, const int64_t layout[4],
                                    T *q_out, T *k_cache, T *v_cache) {
    const int64_t width = (n_heads + 2 * n_kv_heads) * head_dim, block_size = layout[0];
    for (int64_t r = 0; r < rows; ++r)
        if (positions[r] < 0 || positions[r] >= max_positions || slots[r] < 0 || slots[r] >= num_slots) return -1;
    for (int64_t r = 0; r < rows; ++r) {
        const T *row = qkv + r * width;
        const T *c = cos + positions[r] * head_dim, *s = sin + positions[r] * head_dim;
        const int64_t at = slots[r] / block_size * layout[1] + slots[r] % block_size * layout[2];
        for (int64_t h = 0; h < n_heads; ++h)
            CAT(rotate_head_, SFX)(row + h * head_dim, c, s, head_dim, q_out + (r * n_heads + h) * head_dim);
        for (int64_t h = 0; h < n_kv_heads; ++h) {
            CAT(rotate_head_, SFX)(row + (n_heads + h) * head_dim, c, s, head_dim, k_cache + at + h * layout[3]);
            memcpy(v_cache + at + h * layout[3], row + (n_heads + n_kv_heads + h) * head_dim,
                   sizeof(T) * (size_t)head_dim);
        }
    }
    return 0;
}

#undef CAT
#undef CAT_
/* the parameters this file was included with, so the next inclusion defines its own */
#undef T
#undef SFX
#undef TO_F32
#undef FROM_F32
#undef ROUND
#undef LOAD16
#undef STORE16
#undef ROUND16
#undef LOAD8
#undef STORE8
#undef ROUND8
