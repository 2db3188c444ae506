// bfloat16 products (CellSpec::compute == Compute::bfloat16) on the float kernels.
//
// The numerics: every operand of every matrix product is rounded to bfloat16 (round to
// nearest even, the rounding of VCVTNEPS2BF16 except that subnormals are kept rather than
// flushed) and the products accumulate in float. A bfloat16 value is kept here as the
// float it stands for (the low 16 bits zero): the product of two such values has at most
// 16 significant bits, so it is exact in float, and a float GEMM (or FMA) over rounded
// operands computes exactly "bf16 × bf16, accumulated in float" — only the order of the
// sums is its own. Rounding happens once per operand and call (x, w_x, w_h), once per
// step (h_{t-1}, the step's gate gradients) or once before the weight-gradient GEMMs (the
// gradient rows, h_{t-1} of every row), in the regions the planner adds for it.
// Double arrays never take this path (checked at the boundary); for them the helpers
// below are plain copies. Internal: not installed.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "cpu/kernel_common.h"
#include "cpu/plan.h"

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN
namespace cpu {
namespace LSTMCORE_ISA_NS {

// v rounded to the nearest bfloat16 (ties to even), as a float. ±Inf stays; a NaN stays
// a (quiet) NaN of the same sign; values past the largest bfloat16 round to ±Inf.
inline float round_bf16(float v) {
  const std::uint32_t u = __builtin_bit_cast(std::uint32_t, v);
  const std::uint32_t nearest = (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;
  const std::uint32_t nan = (u | 0x00400000u) & 0xFFFF0000u;
  return __builtin_bit_cast(float, (u & 0x7FFFFFFFu) > 0x7F800000u ? nan : nearest);
}
inline double round_bf16(double v) { return v; }  // never reached (double: native only)

// dst[r·ldd + j] = f(src[r·lds + j]) for r < rows, j in [j0, j1). dst may be src.
template <typename S, typename D, class F>
void map_columns(const S* src, i64 lds, D* dst, i64 ldd, i64 rows, i64 j0, i64 j1, F&& f) {
  for (i64 r = 0; r < rows; ++r) {
    const S* s = src + r * lds;
    D* d = dst + r * ldd;
    LSTMCORE_SIMD
    for (i64 j = j0; j < j1; ++j) d[j] = f(s[j]);
  }
}

// dst[r·ldd + j] = round(src[r·lds + j]) for r < rows, j in [j0, j1). dst may be src.
template <typename T>
void round_columns(const T* src, i64 lds, T* dst, i64 ldd, i64 rows, i64 j0, i64 j1) {
  map_columns(src, lds, dst, ldd, rows, j0, j1, [](T v) { return round_bf16(v); });
}

// Rows × cols values with row stride ld, rounded in place.
template <typename T>
void round_in_place(T* data, i64 rows, i64 cols, i64 ld) {
  round_columns(data, ld, data, ld, rows, 0, cols);
}

// The order of the sums. VDPBF16PS adds a pair's two products to the accumulator one
// after the other, the odd k first: acc = (acc + a[2i+1]·b[2i+1]) + a[2i]·b[2i], each sum
// rounded to nearest even (measured bit for bit on Zen 5, 3.2 million random normal pairs;
// Intel documents the same order). The float kernels sum k in index order, so on them a
// bfloat16 call stores both operands of the recurrent products with the two k of every
// pair swapped (k ↔ k ^ 1; an odd K's last k stays): they then add the very terms in the
// very order of the native kernel (cpu/bf16_kernel.h), each product exact, and give the
// same bits, subnormals apart (VDPBF16PS treats them as zero).
inline i64 pair_swapped(i64 k, i64 K) {
  const i64 s = k ^ 1;
  return s < K ? s : k;
}

// dst[r·ld + pair_swapped(c, K)] = round(src[r·ld + c]) for r < rows, c in [c0, c1).
template <typename T>
void round_swapped(const T* src, i64 ld, T* dst, i64 rows, i64 c0, i64 c1, i64 K) {
  for (i64 r = 0; r < rows; ++r)
    for (i64 c = c0; c < c1; ++c) dst[r * ld + pair_swapped(c, K)] = round_bf16(src[r * ld + c]);
}

// Rounds a packed operand (blocks panels of K rows of `width` values) and swaps its rows
// pairwise as above.
template <typename T>
void round_packed_swapped(T* packed, i64 blocks, i64 panel, i64 K, i64 width) {
  round_in_place(packed, 1, blocks * panel, 0);
  for (i64 blk = 0; blk < blocks; ++blk)
    for (i64 k = 0; k + 1 < K; k += 2) {
      T* a = packed + blk * panel + k * width;
      std::swap_ranges(a, a + width, a + width);
    }
}

// The operand a product reads: src itself when the region is absent (native compute), or
// its `region.count` values rounded into the region.
template <typename T>
const T* rounded(const Scratch& ws, const Region& region, const T* src) {
  T* dst = ws.get<T>(region);
  if (!dst) return src;
  round_columns(src, region.count, dst, region.count, 1, 0, region.count);
  return dst;
}

}  // namespace LSTMCORE_ISA_NS
}  // namespace cpu
LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
