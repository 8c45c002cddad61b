/* Scalar helpers the C kernels share: bfloat16 <-> float32 (widening is a 16-bit shift;
 * narrowing rounds to nearest even and keeps NaN a quiet NaN, as torch rounds) and exp for
 * x <= 0. All vectorise inside `omp simd` loops. */
#ifndef CHATSTACK_KERNELS_COMMON_H
#define CHATSTACK_KERNELS_COMMON_H
#include <stdint.h>
#include <string.h>
#include <math.h>

static inline float exp_nonpositive(float x) {
    /* exp(x) for x <= 0: x = n ln2 + r, |r| <= ln2 / 2; e^r by a degree-6 polynomial. */
    x = x < -87.0f ? -87.0f : x;
    float n = rintf(x * 1.44269504088896341f);
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

static inline float bf16_to_f32(uint16_t x) {
    const uint32_t bits = (uint32_t)x << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static inline uint16_t f32_to_bf16(float f) {
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    if (f != f) return 0x7fc0;  /* a quiet NaN */
    return (uint16_t)((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

#endif
