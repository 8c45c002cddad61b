/* The decode step's panel kernels for int4 weights (Int4Linear): float32 activations, each weight an unsigned
 * 4-bit code with a scale and zero point per group of Q4_GROUP input rows and output column, w = (code - zero) * scale.
 *
 * Weights: the codes of (k_padded, n), k padded to whole groups, eight to a 32-bit word along the input (row
 * 8u + j in bits 4j to 4j + 3 of word row u), in column panels as every weight of the step: panel t holds word
 * rows 0 to k_padded / 8 - 1 of columns t * PANEL onwards, row after row. A vector of words then gives eight
 * rows' codes by a mask each (no byte widening), the code of row j left in place as code * 16^j. For one row
 * through a 512 x 2816 int4 matmul from cache this took 57 us; Int4Linear's byte layout, widened a row pair at a
 * time, took 64 us (2026-12-06, Zen 5). `qs` holds (groups, 2, n) floats:
 * row 2g each column's scale in group g, row 2g + 1 its zero * scale. A group's sum is then
 * scale * sum(x * code) - zero * scale * sum(x), so the codes go into the FMAs as they are and each group costs
 * one correction per column; the weight stream is half a byte a weight plus 8 bytes per group and column.
 * Included by decode_step.c (PANEL, MAX_ROWS defined) before decode_step_impl.h, whose matmul_ it gives its panel
 * kernels. */
enum { Q4_GROUP = 32 };
static const float Q4_UNITS[7] = {1.0f, 0x1p-4f, 0x1p-8f, 0x1p-12f, 0x1p-16f, 0x1p-20f, 0x1p-24f};  /* 16^-j */

/* sums (rows x width) += the panel's product over rows [g0, end) of one group (end - g0 <= Q4_GROUP), any width,
 * no vectors beyond what the compiler makes of it: partial panels, and every panel without AVX2 */
static void panel_group_q4_any(const float *x, int64_t k, const uint32_t *panel, int64_t width, int64_t g0,
                               int64_t end, const float *scale, const float *zs, float sums[][PANEL], int64_t rows) {
    float codes[PANEL];
    for (int64_t m = 0; m < rows; ++m) {
        float xs = 0.0f;
        memset(codes, 0, sizeof(codes));
        for (int64_t i = g0; i < end; ++i) {
            const float xi = x[m * k + i];
            const uint32_t *r = panel + (i / 8) * width;
            const int shift = (int)(i & 7) * 4;
            xs += xi;
            #pragma omp simd
            for (int64_t c = 0; c < width; ++c) codes[c] += xi * (float)((r[c] >> shift) & 15);
        }
        #pragma omp simd
        for (int64_t c = 0; c < width; ++c) sums[m][c] += scale[c] * codes[c] - zs[c] * xs;
    }
}

#if defined(__AVX512F__) || defined(__AVX2__)
#if defined(__AVX512F__)
#define VEC __m512
#define LANES 16
#define WORDS(p) _mm512_loadu_si512((const void *)(p))
#define VAND_AT(v, bits) _mm512_and_si512(v, _mm512_set1_epi32(15 << (bits)))
#define VSHR(v, bits) _mm512_srli_epi32(v, bits)
#define VCVT _mm512_cvtepi32_ps
#define VZERO _mm512_setzero_ps
#define VSET1 _mm512_set1_ps
#define VFMA _mm512_fmadd_ps
#define VFNMA _mm512_fnmadd_ps
#define VLOAD _mm512_loadu_ps
#define VSTORE _mm512_storeu_ps
#else
#define VEC __m256
#define LANES 8
#define WORDS(p) _mm256_loadu_si256((const __m256i *)(p))
#define VAND_AT(v, bits) _mm256_and_si256(v, _mm256_set1_epi32(15 << (bits)))
#define VSHR(v, bits) _mm256_srli_epi32(v, bits)
#define VCVT _mm256_cvtepi32_ps
#define VZERO _mm256_setzero_ps
#define VSET1 _mm256_set1_ps
#define VFMA _mm256_fmadd_ps
#define VFNMA _mm256_fnmadd_ps
#define VLOAD _mm256_loadu_ps
#define VSTORE _mm256_storeu_ps
#endif
/* sums (rows x PANEL) += one full panel's product over one group's rows [g0, end), rows <= MAX_ROWS (a constant
 * where inlined): as panel_rows_ does for the other weights, four vectors of code sums a row in registers, each
 * weight row's codes taken out of its word vectors once for every row */
static inline __attribute__((always_inline)) void panel_group_q4(const float *x, int64_t k, const uint32_t *panel,
                                                                 int64_t g0, int64_t end, const float *scale,
                                                                 const float *zs, float sums[][PANEL],
                                                                 const int rows) {
    for (int part = 0; part < PANEL; part += 4 * LANES) {
        VEC a[MAX_ROWS][4];
        float xs[MAX_ROWS];
        for (int m = 0; m < rows; ++m) {
            xs[m] = 0.0f;
            for (int c = 0; c < 4; ++c) a[m][c] = VZERO();
        }
        for (int64_t i = g0; i < end; i += 8) {
            const uint32_t *r = panel + (i / 8) * PANEL + part;
            const int count = end - i < 8 ? (int)(end - i) : 8;  /* fewer where k ends inside the word */
            for (int j = 0; j < count; ++j) {
                /* row j's codes masked in place, code * 16^j (exact as a float), against x * 16^-j (exact too,
                 * a power of two, short of subnormals): the same products, one shift fewer; the top nibble is
                 * shifted down instead, as 15 * 16^7 overflows a signed lane */
                VEC w[4];
                for (int c = 0; c < 4; ++c)
                    w[c] = VCVT(j == 7 ? VSHR(WORDS(r + c * LANES), 28) : VAND_AT(WORDS(r + c * LANES), 4 * j));
                const float unit = j == 7 ? 1.0f : Q4_UNITS[j];
                for (int m = 0; m < rows; ++m) {
                    const float xi = x[m * k + i + j];
                    const VEC xv = VSET1(xi * unit);
                    xs[m] += xi;
                    for (int c = 0; c < 4; ++c) a[m][c] = VFMA(xv, w[c], a[m][c]);
                }
            }
        }
        for (int c = 0; c < 4; ++c) {
            const VEC s = VLOAD(scale + part + c * LANES), z = VLOAD(zs + part + c * LANES);
            for (int m = 0; m < rows; ++m) {
                float *sm = sums[m] + part + c * LANES;
                VSTORE(sm, VFNMA(z, VSET1(xs[m]), VFMA(s, a[m][c], VLOAD(sm))));
            }
        }
    }
}
#undef VEC
#undef LANES
#undef WORDS
#undef VAND_AT
#undef VSHR
#undef VCVT
#undef VZERO
#undef VSET1
#undef VFMA
#undef VFNMA
#undef VLOAD
#undef VSTORE
#define Q4_VECTORS 1
#else
#define Q4_VECTORS 0
#endif

/* sums (rows x width) = x (rows of k) @ one panel of int4 words, group after group; qs: the scales from the panel's
 * first column (two rows a group, n apart) */
static inline __attribute__((always_inline)) void panel_rows_q4(const float *x, const uint32_t *panel, int64_t k,
                                                                int64_t width, const float *qs, int64_t n,
                                                                float sums[][PANEL], const int rows) {
    for (int m = 0; m < rows; ++m) memset(sums[m], 0, sizeof(float) * PANEL);
    for (int64_t g0 = 0; g0 < k; g0 += Q4_GROUP) {
        const int64_t end = k - g0 < Q4_GROUP ? k : g0 + Q4_GROUP;
        const float *scale = qs + (g0 / Q4_GROUP) * 2 * n, *zs = scale + n;
#if Q4_VECTORS
        if (width == PANEL) {
            panel_group_q4(x, k, panel, g0, end, scale, zs, sums, rows);
            continue;
        }
#endif
        panel_group_q4_any(x, k, panel, width, g0, end, scale, zs, sums, rows);
    }
}
/* decode_step_impl.h's matmul_ over these panels: a panel column is half a byte per row padded to whole groups; the
 * kernels apply the scales, and the bias is added before the one rounding */
#define FULL_PANEL(x, panel, k, qs, n, sums, rows) \
    panel_rows_q4(x, (const uint32_t *)(panel), k, PANEL, qs, n, sums, rows)
#define PART_PANEL(x, panel, k, width, qs, n, sums, rows) \
    panel_rows_q4(x, (const uint32_t *)(panel), k, width, qs, n, sums, rows)
#define PANEL_COLUMN_ELEMS(k) (((k) + Q4_GROUP - 1) / Q4_GROUP * Q4_GROUP / 2)
#define COLUMN_SCALES 0
#undef Q4_VECTORS
