// The big products of bfloat16 calls' backward (cpu/weight_gradients.h): a packed GEMM
//
//   C (m × n, row stride ldc) = op(A) (m × k) · op(B) (k × n)
//
// with both operands rounded to bfloat16 while they are packed and the products summed in
// float. Where the variant has AVX512-BF16 the micro-kernel is VDPBF16PS on bfloat16 pairs
// along k; elsewhere the same kernel shape runs on floats, adding each pair's two exact
// products in VDPBF16PS's order (k + 1 first, then k: cpu/bf16.h), so every variant gives
// the same bits as the native one (subnormals apart). The order of the sums for C[i, j] is
// k = 1, 0, 3, 2, 5, 4, … whatever the blocking: blocks of k start on even k and a block's
// partial sums wait in C between blocks (floats stored and reloaded are exact).
//
// Blocking (Goto-style, sized for a 48 KiB L1 and a ≥ 512 KiB L2 per core): k in blocks of
// kGemm16Depth, n in blocks of kGemm16Width. For each (n block, k block) the threads
// together pack op(B)'s block into panels of 32 columns (256 KiB as bfloat16: L2), then
// each thread takes whole panels of MR rows of op(A), packs its MR × kGemm16Depth slice
// (12 KiB: L1) and runs it against every panel of the block (16 KiB each as bfloat16).
// Internal: not installed.
#pragma once

#include <algorithm>
#include <cstring>

#include "cpu/bf16.h"
#include "cpu/bf16_kernel.h"
#include "cpu/packed.h"
#include "cpu/plan.h"

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN
namespace cpu {
namespace LSTMCORE_ISA_NS {

// op(M)[r, k]: M[r·ld + k], or M[k·ld + r] when trans.
struct Gemm16Operand {
  const float* data;
  i64 ld;
  bool trans;
  float at(i64 r, i64 k) const { return trans ? data[k * ld + r] : data[r * ld + k]; }
};

// Rows per micro-tile: the native kernel keeps 12 × 2 accumulators in zmm registers; the
// float kernel's accumulators are arrays the compiler keeps in registers where it can.
constexpr i64 kGemm16MR = kNativeBf16 ? kGemm16Rows : 6;
static_assert(kGemm16MR <= kGemm16Rows, "the plan sizes the row slices for kGemm16Rows");
constexpr i64 kGemm16NR = kGemm16Cols;  // columns per panel: 2 vectors of 16

#if defined(__AVX512BF16__)
// c (MR × 32, ldc) (+)= a (kp_n pairs × MR rows, bfloat16 pairs) · b (kp_n × 32 columns × 2).
template <int MR>
inline void gemm16_kernel(const bf16_t* a, const bf16_t* b, i64 kp_n, float* c, i64 ldc, bool resume) {
  __m512 acc[MR][2];
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 2
    for (int s = 0; s < 2; ++s) acc[r][s] = resume ? _mm512_loadu_ps(c + r * ldc + s * 16) : _mm512_setzero_ps();
  for (i64 kp = 0; kp < kp_n; ++kp) {
    const __m512bh w0 = (__m512bh)_mm512_loadu_si512(b + kp * 64);
    const __m512bh w1 = (__m512bh)_mm512_loadu_si512(b + kp * 64 + 32);
    const bf16_t* ak = a + kp * MR * 2;
#pragma GCC unroll 16
    for (int r = 0; r < MR; ++r) {
      std::int32_t pair;
      std::memcpy(&pair, ak + 2 * r, sizeof(pair));
      const __m512bh x = (__m512bh)_mm512_set1_epi32(pair);
      acc[r][0] = _mm512_dpbf16_ps(acc[r][0], x, w0);
      acc[r][1] = _mm512_dpbf16_ps(acc[r][1], x, w1);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 2
    for (int s = 0; s < 2; ++s) _mm512_storeu_ps(c + r * ldc + s * 16, acc[r][s]);
}
#endif

// The float twin: a (kp_n × MR × 2 rounded floats), b (kp_n × 2 × 32 rounded floats: the
// pair's k then k + 1 as two rows of 32), each pair added as VDPBF16PS adds it.
template <int MR>
inline void gemm16_kernel(const float* a, const float* b, i64 kp_n, float* c, i64 ldc, bool resume) {
  float acc[MR][32];
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < 32; ++j) acc[r][j] = resume ? c[r * ldc + j] : 0.0f;
  for (i64 kp = 0; kp < kp_n; ++kp) {
    const float* b0 = b + kp * 64;
    const float* b1 = b0 + 32;
    const float* ak = a + kp * MR * 2;
    for (int r = 0; r < MR; ++r) {
      const float a0 = ak[2 * r], a1 = ak[2 * r + 1];
      LSTMCORE_SIMD
      for (int j = 0; j < 32; ++j) {
        const float t = acc[r][j] + a1 * b1[j];  // each product exact: fused or not, the same sum
        acc[r][j] = t + a0 * b0[j];
      }
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < 32; ++j) c[r * ldc + j] = acc[r][j];
}

// The packed element type: bfloat16 bits (native) or the rounded float.
using Gemm16Elem = std::conditional_t<kNativeBf16, bf16_t, float>;

inline Gemm16Elem gemm16_elem(float v) {
  if constexpr (kNativeBf16)
    return bf16_bits(v);
  else
    return round_bf16(v);
}

// Packs op(B)[k0 : k0 + kc, j0 + 32·q : …] for panels q in [q0, q1) (kc even, or the
// block ending at an odd k; pairs past k and columns past n are zero). Panel q starts at
// out + q · kp_n · 64. Native: [kp][column][e]; float: [kp][e][column].
inline void gemm16_pack_b(const Gemm16Operand& B, i64 k, i64 n, i64 k0, i64 kc, i64 j0, i64 q0, i64 q1,
                          Gemm16Elem* out) {
  const i64 kp_n = (kc + 1) / 2;
  for (i64 q = q0; q < q1; ++q) {
    Gemm16Elem* panel = out + q * kp_n * 64;
    const i64 c0 = j0 + q * kGemm16NR, cn = std::min<i64>(kGemm16NR, n - c0);
    for (i64 kp = 0; kp < kp_n; ++kp)
      for (int e = 0; e < 2; ++e) {
        const i64 kk = k0 + 2 * kp + e;
        Gemm16Elem* dst = panel + kp * 64 + (kNativeBf16 ? e : e * 32);
        const i64 step = kNativeBf16 ? 2 : 1;
        i64 j = 0;
        if (kk < k)
          for (; j < cn; ++j) dst[j * step] = gemm16_elem(B.trans ? B.data[(c0 + j) * B.ld + kk] : B.data[kk * B.ld + c0 + j]);
        for (; j < kGemm16NR; ++j) dst[j * step] = Gemm16Elem(0);
      }
  }
}

// Packs op(A)[i0 : i0 + MR, k0 : k0 + kc] as kp_n × MR pairs (rows past m, pairs past k: 0).
inline void gemm16_pack_a(const Gemm16Operand& A, i64 m, i64 k, i64 i0, i64 k0, i64 kc, Gemm16Elem* out) {
  const i64 kp_n = (kc + 1) / 2, rn = std::min<i64>(kGemm16MR, m - i0);
  for (i64 kp = 0; kp < kp_n; ++kp)
    for (i64 r = 0; r < kGemm16MR; ++r)
      for (int e = 0; e < 2; ++e) {
        const i64 kk = k0 + 2 * kp + e;
        out[(kp * kGemm16MR + r) * 2 + e] = r < rn && kk < k ? gemm16_elem(A.at(i0 + r, kk)) : Gemm16Elem(0);
      }
}

// C (m × n, ldc) = bf16(op(A)) · bf16(op(B)), float sums (above). scratch: the plan's
// region of gemm16_elements(threads) floats, threads ≥ the threads this product uses
// (ctx.threads at most).
inline void gemm_bf16(const Context& ctx, i64 m, i64 n, i64 k, const Gemm16Operand& A, const Gemm16Operand& B,
                      float* C, i64 ldc, float* scratch) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    for (i64 i = 0; i < m; ++i) std::memset(C + i * ldc, 0, sizeof(float) * n);
    return;
  }
  const int nt = std::max(1, std::min(ctx.threads, gemm_threads(ctx, double(m) * double(n) * double(k))));
  auto* bpack = reinterpret_cast<Gemm16Elem*>(scratch);
  const i64 row_panels = (m + kGemm16MR - 1) / kGemm16MR;
  run_on_threads(nt, [&](int tid, int nth) {
    float* mine = scratch + kGemm16Depth * kGemm16Width + tid * gemm16_thread_elements();
    auto* apack = reinterpret_cast<Gemm16Elem*>(mine);
    float* edge = mine + kGemm16Rows * kGemm16Depth;  // MR × 32: tiles past m or n
    for (i64 j0 = 0; j0 < n; j0 += kGemm16Width) {
      const i64 nc = std::min<i64>(kGemm16Width, n - j0), panels = (nc + kGemm16NR - 1) / kGemm16NR;
      for (i64 k0 = 0; k0 < k; k0 += kGemm16Depth) {
        const i64 kc = std::min<i64>(kGemm16Depth, k - k0), kp_n = (kc + 1) / 2;
        const bool resume = k0 > 0;
        gemm16_pack_b(B, k, n, k0, kc, j0, panels * tid / nth, panels * (tid + 1) / nth, bpack);
#ifdef _OPENMP
#pragma omp barrier
#endif
        for (i64 ip = row_panels * tid / nth; ip < row_panels * (tid + 1) / nth; ++ip) {
          const i64 i0 = ip * kGemm16MR, rn = std::min<i64>(kGemm16MR, m - i0);
          gemm16_pack_a(A, m, k, i0, k0, kc, apack);
          for (i64 q = 0; q < panels; ++q) {
            const i64 c0 = j0 + q * kGemm16NR, cn = std::min<i64>(kGemm16NR, n - c0);
            float* c = C + i0 * ldc + c0;
            const bool whole = rn == kGemm16MR && cn == kGemm16NR;
            if (!whole && resume)
              for (i64 r = 0; r < rn; ++r) std::memcpy(edge + r * kGemm16NR, c + r * ldc, sizeof(float) * cn);
            gemm16_kernel<kGemm16MR>(apack, bpack + q * kp_n * 64, kp_n, whole ? c : edge, whole ? ldc : kGemm16NR,
                                     resume);
            if (!whole)
              for (i64 r = 0; r < rn; ++r) std::memcpy(c + r * ldc, edge + r * kGemm16NR, sizeof(float) * cn);
          }
        }
#ifdef _OPENMP
#pragma omp barrier
#endif
      }
    }
  });
}

}  // namespace LSTMCORE_ISA_NS
}  // namespace cpu
LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
