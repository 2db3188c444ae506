// The recurrent product of bfloat16 calls on AVX512-BF16 (VDPBF16PS), for the variant
// compiled with -mavx512bf16 ("avx512_bf16"); the other variants run the same numerics on
// their float kernels (cpu/bf16.h) and never call these (kNativeBf16 is false there).
//
// The packed operand holds bfloat16 pairs along K: for the panel of block p,
//   panel16[kp][g·W + w][e] = bf16(M[2·kp + e, g·H + p·W + w])      (0 past K or H)
// so one 64-byte row of a panel is 16 output columns × 2 consecutive k, exactly what one
// VDPBF16PS multiplies by a broadcast pair (A[r, 2kp], A[r, 2kp + 1]). The left operand is
// a bfloat16 matrix (rows × lda, lda = K rounded up to even, the pad column 0).
// VDPBF16PS adds, per lane, the two exact products to the float accumulator, rounding
// to nearest even; it treats subnormal inputs as zero and flushes subnormal results (the
// float kernels keep them). Sums run over k in order, pair by pair, as in packed.h.
#pragma once

#include <cstdint>
#include <cstring>

#include "cpu/bf16.h"
#include "cpu/kernel_common.h"

#if defined(__AVX512BF16__)
#include <immintrin.h>
#endif

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN
namespace cpu {
namespace LSTMCORE_ISA_NS {

#if defined(__AVX512BF16__)
constexpr bool kNativeBf16 = true;
#else
constexpr bool kNativeBf16 = false;
#endif

using bf16_t = std::uint16_t;

// The bits of v rounded to bfloat16 (round_bf16's rounding).
inline bf16_t bf16_bits(float v) { return static_cast<bf16_t>(__builtin_bit_cast(std::uint32_t, round_bf16(v)) >> 16); }

// K rounded up to a whole number of pairs.
inline i64 pair_width(i64 K) { return (K + 1) / 2 * 2; }

// dst[r·ldd + j] = bf16(src[r·lds + j]) for r < rows, j in [j0, j1).
inline void to_bf16(const float* src, i64 lds, bf16_t* dst, i64 ldd, i64 rows, i64 j0, i64 j1) {
  map_columns(src, lds, dst, ldd, rows, j0, j1, [](float v) { return bf16_bits(v); });
}

// Packs a K × (G·H) operand as above, blocks of W units: value(k, c) is M[k, c] (c < G·H).
// Panel p starts at out + p · pair_width(K) · G · W. Only the blocks [blk0, blk1) are
// written (a recurrence's threads each pack the blocks they read). A few pairs of rows at a
// time for all the blocks (as pack_recurrent does): block by block would stride over every
// row of M once per block. `rows` (optional): M stored row by row, M[k, c] = rows[k·ld + c]
// (what value gives too); whole pairs of a whole block then go as 32-bit words, a loop the
// compiler vectorises, with the same bits.
template <class Value>
void pack_pairs(i64 K, i64 H, i64 G, i64 W, i64 blk0, i64 blk1, Value&& value, bf16_t* out,
                const float* rows = nullptr, i64 ld = 0) {
  typedef std::uint32_t pair_t __attribute__((may_alias));
  const i64 Kp = pair_width(K) / 2;
  constexpr i64 kPairs = 8;
  for (i64 kp0 = 0; kp0 < Kp; kp0 += kPairs) {
    const i64 kp1 = std::min(Kp, kp0 + kPairs);
    for (i64 blk = blk0; blk < blk1; ++blk) {
      bf16_t* dst = out + blk * Kp * 2 * G * W;
      const i64 u0 = blk * W;
      for (i64 kp = kp0; kp < kp1; ++kp)
        for (i64 g = 0; g < G; ++g) {
          bf16_t* d = dst + (kp * G + g) * W * 2;
          if (rows && 2 * kp + 1 < K && u0 + W <= H) {
            const float* r0 = rows + 2 * kp * ld + g * H + u0;
            const float* r1 = r0 + ld;
            auto* d32 = reinterpret_cast<pair_t*>(d);
            LSTMCORE_SIMD
            for (i64 w = 0; w < W; ++w) d32[w] = std::uint32_t(bf16_bits(r0[w])) | std::uint32_t(bf16_bits(r1[w])) << 16;
            continue;
          }
          for (i64 w = 0; w < W; ++w)
            for (i64 e = 0; e < 2; ++e) {
              const i64 k = 2 * kp + e, u = u0 + w;
              d[w * 2 + e] = k < K && u < H ? bf16_bits(value(k, g * H + u)) : bf16_t(0);
            }
        }
    }
  }
}

#if defined(__AVX512BF16__)
// out (MR rows × SW vectors of 16 floats, row stride `stride` floats) (+)= A (MR × 2·Kp
// bf16, lda) · panel (Kp pair rows of `stride` / 16 vectors; the kernel reads SW of them).
template <int SW, int MR>
inline void micro_kernel_bf16(const bf16_t* A, i64 lda, const bf16_t* panel, i64 stride, i64 Kp, float* out,
                              bool resume) {
  __m512 acc[MR][SW];
#pragma GCC unroll 32
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 32
    for (int s = 0; s < SW; ++s) acc[r][s] = resume ? _mm512_loadu_ps(out + r * stride + s * 16) : _mm512_setzero_ps();
  for (i64 kp = 0; kp < Kp; ++kp) {
    const bf16_t* wk = panel + kp * stride * 2;
    __m512bh w[SW];
#pragma GCC unroll 32
    for (int s = 0; s < SW; ++s) w[s] = (__m512bh)_mm512_loadu_si512(wk + s * 32);
#pragma GCC unroll 32
    for (int r = 0; r < MR; ++r) {
      std::int32_t pair;
      std::memcpy(&pair, A + r * lda + 2 * kp, sizeof(pair));
      const __m512bh a = (__m512bh)_mm512_set1_epi32(pair);
#pragma GCC unroll 32
      for (int s = 0; s < SW; ++s) acc[r][s] = _mm512_dpbf16_ps(acc[r][s], a, w[s]);
    }
  }
#pragma GCC unroll 32
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 32
    for (int s = 0; s < SW; ++s) _mm512_storeu_ps(out + r * stride + s * 16, acc[r][s]);
}

// MR rows times all S vectors of a panel row: pairs of vectors, then the odd one.
template <int MR>
inline void rows_bf16(const bf16_t* A, i64 lda, const bf16_t* pk, i64 S, i64 Kp, float* tile, bool resume) {
  const i64 stride = S * 16;
  i64 s = 0;
  for (; s + 2 <= S; s += 2) micro_kernel_bf16<2, MR>(A, lda, pk + s * 32, stride, Kp, tile + s * 16, resume);
  if (s < S) micro_kernel_bf16<1, MR>(A, lda, pk + s * 32, stride, Kp, tile + s * 16, resume);
}
#endif

// tile (rows × S·16 floats) = A (rows × lda bf16) · the panel of one block (S vectors wide),
// K cut into slices of 16 KiB of panel that stay in L1 while every group of rows passes.
// With `resume_all`, the sums continue from the tile's values (a product over more K).
inline void panel_product_bf16(const bf16_t* A, i64 lda, i64 rows, const bf16_t* panel, i64 S, i64 K, float* tile,
                               bool resume_all = false) {
#if defined(__AVX512BF16__)
  const i64 Kp = pair_width(K) / 2, stride = S * 16;
  const i64 slice = std::max<i64>(1, 16384 / (S * 64));
  for (i64 k0 = 0; k0 < Kp; k0 += slice) {
    const i64 kn = std::min(slice, Kp - k0);
    const bool resume = resume_all || k0 > 0;
    const bf16_t* pk = panel + k0 * stride * 2;
    const bf16_t* a = A + 2 * k0;
    // Rows 12 at a time; a last 12 + 4 go as 8 + 8 (the 4-row kernel's 8 accumulators
    // cannot hide VDPBF16PS's latency). A row's sums do not depend on its group.
    const i64 tail = rows >= 16 && rows % 12 == 4 ? 16 : 0;
    i64 r = 0;
    for (; r + 12 <= rows - tail; r += 12) rows_bf16<12>(a + r * lda, lda, pk, S, kn, tile + r * stride, resume);
    for (; r + 8 <= rows; r += 8) rows_bf16<8>(a + r * lda, lda, pk, S, kn, tile + r * stride, resume);
    for (; r + 4 <= rows; r += 4) rows_bf16<4>(a + r * lda, lda, pk, S, kn, tile + r * stride, resume);
    for (; r < rows; ++r) rows_bf16<1>(a + r * lda, lda, pk, S, kn, tile + r * stride, resume);
  }
#else
  (void)A, (void)lda, (void)rows, (void)panel, (void)S, (void)K, (void)tile, (void)resume_all;
  __builtin_trap();  // never called: kNativeBf16 is false in this variant
#endif
}

}  // namespace LSTMCORE_ISA_NS
}  // namespace cpu
LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
