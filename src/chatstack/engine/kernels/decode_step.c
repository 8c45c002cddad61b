/* One decode step of a single sequence through the whole Llama layer stack, in one call.
 *
 * When a step holds exactly one decoding token, the ~25 small torch ops per layer cost more
 * than the memory traffic they do; this runs every layer for that token in C (float32):
 * RMSNorm, fused QKV matvec, RoPE (rotate-half, tables precomputed with any scaling), the KV
 * write, paged attention (paged_attention.c), output projection, residuals, SwiGLU MLP.
 * The caller applies the final norm and the LM head. Weights are the engine's transposed
 * (in, out) matrices, so each matvec streams its weight once, row by row.
 *
 * Per layer, `layers` holds LAYER_POINTERS pointers in this order: input_norm, qkv, qkv_bias
 * (or NULL), o_proj, o_bias (or NULL), post_norm, gate_up, down, k_cache, v_cache.
 */
#include "paged_attention.c"

enum { LAYER_POINTERS = 10 };

/* out (n) = x (k) @ w (k, n) [+ bias]: scaled rows of w added eight at a time, so the output
 * is read and written once per eight weight rows while the weight streams through once. */
static void matvec(const float *x, const float *w, const float *bias, int64_t k, int64_t n, float *out) {
    if (bias) memcpy(out, bias, sizeof(float) * (size_t)n);
    else memset(out, 0, sizeof(float) * (size_t)n);
    int64_t i = 0;
    for (; i + 8 <= k; i += 8) {
        const float *r = w + i * n;
        const float x0 = x[i], x1 = x[i + 1], x2 = x[i + 2], x3 = x[i + 3];
        const float x4 = x[i + 4], x5 = x[i + 5], x6 = x[i + 6], x7 = x[i + 7];
        #pragma omp simd
        for (int64_t j = 0; j < n; ++j)
            out[j] += x0 * r[j] + x1 * r[n + j] + x2 * r[2 * n + j] + x3 * r[3 * n + j]
                    + x4 * r[4 * n + j] + x5 * r[5 * n + j] + x6 * r[6 * n + j] + x7 * r[7 * n + j];
    }
    for (; i < k; ++i) {
        const float xi = x[i];
        const float *row = w + i * n;
        #pragma omp simd
        for (int64_t j = 0; j < n; ++j) out[j] += xi * row[j];
    }
}

static void rms_norm(const float *x, const float *weight, int64_t n, float eps, float *out) {
    float squares = 0.0f;
    #pragma omp simd reduction(+:squares)
    for (int64_t i = 0; i < n; ++i) squares += x[i] * x[i];
    const float inv = 1.0f / sqrtf(squares / (float)n + eps);
    #pragma omp simd
    for (int64_t i = 0; i < n; ++i) out[i] = weight[i] * (x[i] * inv);
}

/* x (heads, head_dim) in place: x * cos + rotate_half(x) * sin, rotate_half = (-x2, x1). */
static void rotate_heads(float *x, int64_t heads, int64_t head_dim, const float *cos, const float *sin) {
    const int64_t half = head_dim / 2;
    for (int64_t h = 0; h < heads; ++h) {
        float *v = x + h * head_dim;
        #pragma omp simd
        for (int64_t d = 0; d < half; ++d) {
            const float x1 = v[d], x2 = v[d + half];
            v[d] = x1 * cos[d] - x2 * sin[d];
            v[d + half] = x2 * cos[d + half] + x1 * sin[d + half];
        }
    }
}

/* x (hidden) in place: the residual stream after every layer, for a token at `position`.
 * Returns 0, or -1 when scratch memory could not be allocated. */
int chatstack_decode_step_f32(float *x, const void *const *layers, int64_t num_layers,
                              const float *cos, const float *sin, const int32_t *block_table,
                              int64_t num_blocks_in_table, int64_t position, int64_t hidden, int64_t n_heads,
                              int64_t n_kv_heads, int64_t head_dim, int64_t intermediate, int64_t block_size,
                              float eps) {
    const int64_t q_size = n_heads * head_dim, kv_size = n_kv_heads * head_dim;
    const int64_t qkv_size = q_size + 2 * kv_size;
    float *h = malloc(sizeof(float) * (size_t)(hidden + qkv_size + q_size + 3 * intermediate + hidden));
    if (h == NULL) return -1;
    float *qkv = h + hidden, *attended = qkv + qkv_size, *gate_up = attended + q_size;
    float *act = gate_up + 2 * intermediate, *delta = act + intermediate;
    const int64_t token = 0;
    const int64_t slot = (int64_t)block_table[position / block_size] * block_size + position % block_size;
    for (int64_t l = 0; l < num_layers; ++l) {
        const float *const *p = (const float *const *)(layers + l * LAYER_POINTERS);
        float *k_cache = (float *)p[8], *v_cache = (float *)p[9];
        rms_norm(x, p[0], hidden, eps, h);
        matvec(h, p[1], p[2], hidden, qkv_size, qkv);
        rotate_heads(qkv, n_heads + n_kv_heads, head_dim, cos, sin);  /* q heads, then k heads */
        memcpy(k_cache + slot * kv_size, qkv + q_size, sizeof(float) * (size_t)kv_size);
        memcpy(v_cache + slot * kv_size, qkv + q_size + kv_size, sizeof(float) * (size_t)kv_size);
        if (chatstack_paged_attention_f32(qkv, qkv_size, k_cache, v_cache, block_table, num_blocks_in_table,
                                          &token, &position, 1, attended, n_heads, n_kv_heads, head_dim,
                                          block_size, block_size * kv_size, kv_size, head_dim,
                                          1.0f / sqrtf((float)head_dim)) != 0) {
            free(h);
            return -1;
        }
        matvec(attended, p[3], p[4], q_size, hidden, delta);
        for (int64_t i = 0; i < hidden; ++i) x[i] += delta[i];
        rms_norm(x, p[5], hidden, eps, h);
        matvec(h, p[6], NULL, hidden, 2 * intermediate, gate_up);
        for (int64_t i = 0; i < intermediate; ++i) {
            const float g = gate_up[i];
            act[i] = g / (1.0f + expf(-g)) * gate_up[intermediate + i];  /* silu(gate) * up */
        }
        matvec(act, p[7], NULL, intermediate, hidden, delta);
        for (int64_t i = 0; i < hidden; ++i) x[i] += delta[i];
    }
    free(h);
    return 0;
}
