// The big products of bfloat16 calls' backward (cpu/weight_gradients.h): a packed GEMM
//
//   C (m × n, row stride ldc) = op(A) (m × k) · op(B) (k × n)
//
// with both operands rounded to bfloat16 while they are packed and the products summed in
// float. Where the variant has AVX512-BF16 the micro-kernel is VDPBF16PS on bfloat16 pairs
// along k; elsewhere the same kernel shape runs on floats, adding each pair's two exact
// products in VDPBF16PS's order (k + 1 first, then k: cpu/bf16.h), so every variant gives
// the same bits as the native one from the same operands (subnormals apart; tested for the
// avx512 variant, test_bf16.py). The order of the sums for C[i, j] is
// k = 1, 0, 3, 2, 5, 4, … whatever the blocking: blocks of k start on even k and a block's
// partial sums wait in C between blocks (floats stored and reloaded are exact).
//
// Blocking (Goto-style, sized for a 48 KiB L1 and a ≥ 512 KiB L2 per core): k in blocks of
// kGemm16Depth, n in blocks of kGemm16Width. For each (n block, k block) a thread packs
// op(B)'s block into panels of 32 columns (256 KiB as bfloat16: L2), then for each panel
// of MR rows of op(A) packs its MR × kGemm16Depth slice (6 KiB: L1) and runs it against
// every panel of the block (16 KiB each as bfloat16).
// Internal: not installed.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

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

// dst[j] = bf16(p0[j·s]) | bf16(p1[j·s]) << 16 for j < count (p1 null: the high half 0),
// zeros up to `width`: a run of bfloat16 pairs as VDPBF16PS reads them.
inline void pair_run(const float* p0, const float* p1, i64 s, i64 count, i64 width, std::uint32_t* dst) {
  if (p1) {
    LSTMCORE_SIMD
    for (i64 j = 0; j < count; ++j)
      dst[j] = std::uint32_t(bf16_bits(p0[j * s])) | std::uint32_t(bf16_bits(p1[j * s])) << 16;
  } else {
    LSTMCORE_SIMD
    for (i64 j = 0; j < count; ++j) dst[j] = bf16_bits(p0[j * s]);
  }
  for (i64 j = count; j < width; ++j) dst[j] = 0;
}

// Where op(M)[r, kk] is, and how far apart its r are.
inline const float* op_at(const Gemm16Operand& M, i64 r, i64 kk) {
  return M.trans ? M.data + kk * M.ld + r : M.data + r * M.ld + kk;
}
inline i64 op_row_step(const Gemm16Operand& M) { return M.trans ? 1 : M.ld; }

// The same pairs taken along a row of M whose k are adjacent in memory (src: M's row from
// pair 0 on; `full` pairs lie wholly inside k, a last one of `count` may have its k + 1
// past k: high half 0), pair kp to dst[kp · step]. Reading the row once beats gathering
// each pair's two values a row stride apart, one run of rows at a time.
inline void pair_row(const float* src, i64 full, i64 count, std::uint32_t* dst, i64 step) {
  LSTMCORE_SIMD
  for (i64 kp = 0; kp < full; ++kp)
    dst[kp * step] = std::uint32_t(bf16_bits(src[2 * kp])) | std::uint32_t(bf16_bits(src[2 * kp + 1])) << 16;
  for (i64 kp = full; kp < count; ++kp) dst[kp * step] = bf16_bits(src[2 * kp]);
}

// Rows [r0, r0 + count) of op(M), whose k run along M's rows (M not transposed), from k0
// on: the kp_n pairs of row r0 + j to dst[kp · width + j] (j < width; rows past count: 0).
inline void pair_rows(const Gemm16Operand& M, i64 r0, i64 count, i64 width, i64 k, i64 k0, i64 kp_n,
                      std::uint32_t* dst) {
  const i64 full = std::min(kp_n, (k - k0) / 2);
  for (i64 j = 0; j < width; ++j) {
    if (j < count)
      pair_row(op_at(M, r0 + j, k0), full, kp_n, dst + j, width);
    else
      for (i64 kp = 0; kp < kp_n; ++kp) dst[kp * width + j] = 0;
  }
}


// Packs op(B)[k0 : k0 + kc, j0 + 32·q : …] for panels q in [0, panels) (kc even, or the
// block ending at an odd k; pairs past k and columns past n are zero). op(B) is read with
// its columns as the operand's rows (op(B)ᵀ[j, k]). Panel q starts at out + q · kp_n · 64.
// Native: [kp][column][e]; float: [kp][e][column].
inline void gemm16_pack_b(const Gemm16Operand& Bt, i64 k, i64 n, i64 k0, i64 kc, i64 j0, i64 panels,
                          Gemm16Elem* out) {
  const i64 kp_n = (kc + 1) / 2, s = op_row_step(Bt);
  for (i64 q = 0; q < panels; ++q) {
    Gemm16Elem* panel = out + q * kp_n * 64;
    const i64 c0 = j0 + q * kGemm16NR, cn = std::min<i64>(kGemm16NR, n - c0);
    if constexpr (kNativeBf16)
      if (!Bt.trans) {  // k along Bt's rows: a row at a time
        pair_rows(Bt, c0, cn, kGemm16NR, k, k0, kp_n, reinterpret_cast<std::uint32_t*>(panel));
        continue;
      }
    for (i64 kp = 0; kp < kp_n; ++kp) {
      const i64 kk = k0 + 2 * kp;
      const float* p0 = op_at(Bt, c0, kk);
      const float* p1 = kk + 1 < k ? op_at(Bt, c0, kk + 1) : nullptr;
      if constexpr (kNativeBf16) {
        pair_run(p0, p1, s, cn, kGemm16NR, reinterpret_cast<std::uint32_t*>(panel + kp * 64));
      } else {
        for (i64 j = 0; j < kGemm16NR; ++j) {
          panel[kp * 64 + j] = j < cn ? round_bf16(p0[j * s]) : 0.0f;
          panel[kp * 64 + 32 + j] = j < cn && p1 ? round_bf16(p1[j * s]) : 0.0f;
        }
      }
    }
  }
}

// Packs op(A)[i0 : i0 + MR, k0 : k0 + kc] as kp_n × MR pairs (rows past m, pairs past k: 0).
inline void gemm16_pack_a(const Gemm16Operand& A, i64 m, i64 k, i64 i0, i64 k0, i64 kc, Gemm16Elem* out) {
  const i64 kp_n = (kc + 1) / 2, rn = std::min<i64>(kGemm16MR, m - i0), s = op_row_step(A);
  if constexpr (kNativeBf16)
    if (!A.trans) {  // k along A's rows: a row at a time
      pair_rows(A, i0, rn, kGemm16MR, k, k0, kp_n, reinterpret_cast<std::uint32_t*>(out));
      return;
    }
  for (i64 kp = 0; kp < kp_n; ++kp) {
    const i64 kk = k0 + 2 * kp;
    const float* p0 = op_at(A, i0, kk);
    const float* p1 = kk + 1 < k ? op_at(A, i0, kk + 1) : nullptr;
    Gemm16Elem* dst = out + kp * kGemm16MR * 2;
    if constexpr (kNativeBf16) {
      pair_run(p0, p1, s, rn, kGemm16MR, reinterpret_cast<std::uint32_t*>(dst));
    } else {
      for (i64 r = 0; r < kGemm16MR; ++r) {
        dst[2 * r] = r < rn ? round_bf16(p0[r * s]) : 0.0f;
        dst[2 * r + 1] = r < rn && p1 ? round_bf16(p1[r * s]) : 0.0f;
      }
    }
  }
}

// C (m × n, ldc) = bf16(op(A)) · bf16(op(B)), float sums (above). scratch: the plan's
// region of gemm16_elements(threads) floats, threads ≥ the threads this product uses
// (ctx.threads at most). The threads split the columns or the rows by panels and each packs
// its own blocks: no barrier inside the product (an OpenMP barrier spins for milliseconds
// when the partner thread waits for a core).
inline void gemm_bf16(const Context& ctx, i64 m, i64 n, i64 k, const Gemm16Operand& A, const Gemm16Operand& B,
                      float* C, i64 ldc, float* scratch) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    for (i64 i = 0; i < m; ++i) std::memset(C + i * ldc, 0, sizeof(float) * n);
    return;
  }
  const i64 row_panels = (m + kGemm16MR - 1) / kGemm16MR, col_panels = (n + kGemm16NR - 1) / kGemm16NR;
  const i64 want = std::min<i64>(ctx.threads, gemm_threads(ctx, double(m) * double(n) * double(k)));
  const int nt = static_cast<int>(std::max<i64>(1, std::min(want, std::max(row_panels, col_panels))));
  // Each thread packs all of the operand along the dimension it does not split: split the
  // larger dimension, so the smaller operand is the one packed twice.
  const bool by_columns = row_panels < nt || (col_panels >= nt && n >= m);
  const Gemm16Operand Bt{B.data, B.ld, !B.trans};  // op(B)ᵀ: its rows are op(B)'s columns
  run_on_threads(nt, [&](int tid, int nth) {
    float* mine = scratch + tid * gemm16_thread_elements();
    auto* bpack = reinterpret_cast<Gemm16Elem*>(mine);
    auto* apack = reinterpret_cast<Gemm16Elem*>(mine + kGemm16Depth * kGemm16Width);
    float* edge = mine + kGemm16Depth * (kGemm16Width + kGemm16Rows);  // MR × 32: tiles past m or n
    const i64 p0 = by_columns ? col_panels * tid / nth : 0, p1 = by_columns ? col_panels * (tid + 1) / nth : col_panels;
    const i64 r0 = by_columns ? 0 : row_panels * tid / nth, r1 = by_columns ? row_panels : row_panels * (tid + 1) / nth;
    for (i64 q0 = p0; q0 < p1; q0 += kGemm16Width / kGemm16NR) {
      const i64 j0 = q0 * kGemm16NR, panels = std::min<i64>(kGemm16Width / kGemm16NR, p1 - q0);
      for (i64 k0 = 0; k0 < k; k0 += kGemm16Depth) {
        const i64 kc = std::min<i64>(kGemm16Depth, k - k0), kp_n = (kc + 1) / 2;
        const bool resume = k0 > 0;
        gemm16_pack_b(Bt, k, n, k0, kc, j0, panels, bpack);
        for (i64 ip = r0; ip < r1; ++ip) {
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
      }
    }
  });
}

}  // namespace LSTMCORE_ISA_NS
}  // namespace cpu
LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
