/* The decode step's matmul for bfloat16 weights and activations by the AVX512-BF16 pair dot product (vdpbf16ps):
 * each instruction multiplies sixteen columns' weights of two input rows by those two rows' x and adds both
 * products to float32 sums, where the widening panels (decode_step_impl.h) widened each weight and made one FMA
 * per row. The two products of a pair are added in a different order from one FMA after the other; as in every
 * panel matmul, the sums are float32 and the result is rounded to bfloat16 once, after the bias.
 *
 * Weights: (k, n), k even, in column panels as every weight of the step, each panel's rows in pairs: word row u
 * of a panel holds, for each of its columns, the weights of rows 2u (low half) and 2u + 1 (high half) side by
 * side, so a 64-byte load is sixteen columns of two rows. Included by decode_step.c (PANEL, MAX_ROWS defined)
 * before decode_step_impl.h, whose matmul_ it gives its panel kernels, only where the compiler targets AVX512-BF16. */

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

/* sums (rows x width) = x @ the last, narrower panel in pairs: element (i, c) at word row i / 2, column c, half
 * i % 2 */
static void part_panel_dp(const uint16_t *x, const uint16_t *panel, int64_t k, int64_t width, float sums[][PANEL],
                          int64_t rows) {
    for (int64_t m = 0; m < rows; ++m) {
        memset(sums[m], 0, sizeof(float) * PANEL);
        for (int64_t i = 0; i < k; ++i) {
            const float xi = bf16_to_f32(x[m * k + i]);
            const uint16_t *r = panel + (i / 2) * 2 * width + (i & 1);
            #pragma omp simd
            for (int64_t c = 0; c < width; ++c) sums[m][c] += xi * bf16_to_f32(r[2 * c]);
        }
    }
}
/* decode_step_impl.h's matmul_ over these panels (bfloat16 weights carry no scales) */
#define FULL_PANEL(x, panel, k, qs, n, sums, rows) panel_rows_dp(x, panel, k, sums, rows)
#define PART_PANEL(x, panel, k, width, qs, n, sums, rows) part_panel_dp(x, panel, k, width, sums, rows)
#define PANEL_COLUMN_ELEMS(k) (k)
#define COLUMN_SCALES 0
