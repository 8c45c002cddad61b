/* The decode step's matmul for bfloat16 weights and activations by the AVX512-BF16 pair dot product (vdpbf16ps):
 * each instruction multiplies sixteen columns' weights of two input rows by those two rows' x and adds both
 * products to float32 sums, where the widening panels (decode_step_impl.h) widened each weight and made one FMA
 * per row. The two products of a pair are added in a different order from one FMA after the other; as in every
 * panel matmul, the sums are float32 and the result is rounded to bfloat16 once, after the bias.
 *
 * Weights: (k, n), k even, in column panels as every weight of the step, each panel's rows in pairs: word row u
 * of a panel holds, for each of its columns, the weights of rows 2u (low half) and 2u + 1 (high half) side by
 * side, so a 64-byte load is sixteen columns of two rows. Included by decode_step.c (PANEL, MAX_ROWS defined)
 * before decode_step_impl.h with OWN_MATMUL, only where the compiler targets AVX512-BF16. */

/* sums (rows x PANEL) = x (rows of k, k even) @ one full panel in pairs, rows <= MAX_ROWS (a constant where
 * inlined): four vectors of sixteen sums a row in registers, each pair vector read once for all the rows */
static inline __attribute__((always_inline)) void panel_rows_dp(const uint16_t *x, const uint16_t *panel, int64_t k,
                                                                float sums[][PANEL], const int rows) {
    __m512 a[MAX_ROWS][4];
    for (int m = 0; m < rows; ++m)
        for (int c = 0; c < 4; ++c) a[m][c] = _mm512_setzero_ps();
    for (int64_t u = 0; u < k / 2; ++u) {
        const uint16_t *r = panel + u * 2 * PANEL;
        __m512bh w[4];
        for (int c = 0; c < 4; ++c) w[c] = (__m512bh)_mm512_loadu_si512((const void *)(r + 32 * c));
        for (int m = 0; m < rows; ++m) {
            int32_t pair;
            memcpy(&pair, x + m * k + 2 * u, sizeof(pair));  /* x[2u] low, x[2u + 1] high, as the weights */
            const __m512bh xv = (__m512bh)_mm512_set1_epi32(pair);
            for (int c = 0; c < 4; ++c) a[m][c] = _mm512_dpbf16_ps(a[m][c], xv, w[c]);
        }
    }
    for (int m = 0; m < rows; ++m)
        for (int c = 0; c < 4; ++c) _mm512_storeu_ps(sums[m] + 16 * c, a[m][c]);
}

/* out (rows, n) = x (rows, k) @ w [+ bias], w in panels of pairs as above; rows through each panel in groups of at
 * most MAX_ROWS (split evenly), as matmul_ in decode_step_impl.h; sums in float32, the bias added before the one
 * rounding to bfloat16 */
static void matmul_bf16dp(const uint16_t *x, int64_t rows, const uint16_t *w, const float *scale,
                          const uint16_t *bias, int64_t k, int64_t n, uint16_t *out) {
    (void)scale;  /* bfloat16 weights carry none */
    float sums[MAX_ROWS][PANEL];
    const int64_t groups = (rows + MAX_ROWS - 1) / MAX_ROWS;
    for (int64_t j0 = 0; j0 < n; j0 += PANEL) {
        const int64_t width = n - j0 < PANEL ? n - j0 : PANEL;
        const uint16_t *panel = w + j0 * k;
        for (int64_t m0 = 0, g = 0; g < groups; ++g) {
            const int64_t count = (rows - m0) / (groups - g);
            const uint16_t *xg = x + m0 * k;
            if (width == PANEL) {
                switch (count) {
#define ROWS_CASE(R) case R: panel_rows_dp(xg, panel, k, sums, R); break;
                    ROWS_CASE(1)
                    ROWS_CASE(2)
                    ROWS_CASE(3)
                    ROWS_CASE(4)
                    ROWS_CASE(5)
                    ROWS_CASE(6)
#undef ROWS_CASE
                    default: break;
                }
            } else {  /* the last, narrower panel: element (i, c) at word row i / 2, column c, half i % 2 */
                for (int64_t m = 0; m < count; ++m) {
                    memset(sums[m], 0, sizeof(float) * PANEL);
                    for (int64_t i = 0; i < k; ++i) {
                        const float xi = bf16_to_f32(xg[m * k + i]);
                        const uint16_t *r = panel + (i / 2) * 2 * width + (i & 1);
                        #pragma omp simd
                        for (int64_t c = 0; c < width; ++c) sums[m][c] += xi * bf16_to_f32(r[2 * c]);
                    }
                }
            }
            for (int64_t m = 0; m < count; ++m) {
                uint16_t *om = out + (m0 + m) * n + j0;
                if (bias) {
                    #pragma omp simd
                    for (int64_t c = 0; c < width; ++c) om[c] = f32_to_bf16(sums[m][c] + bf16_to_f32(bias[j0 + c]));
                } else {
                    #pragma omp simd
                    for (int64_t c = 0; c < width; ++c) om[c] = f32_to_bf16(sums[m][c]);
                }
            }
            m0 += count;
        }
    }
}
