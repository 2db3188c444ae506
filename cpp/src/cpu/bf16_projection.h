// The input projection of bfloat16 calls (Context::bf16): out (N × G·H, row stride ld) =
// bias + bf16(x)·bf16(w_x) for all T·B rows, on the packed micro-kernels of packed.h with
// w_x packed like w_h (K = I): VDPBF16PS on bfloat16 pairs where the variant has it
// (bf16_kernel.h), else the float kernel on rounded operands with the pairs swapped
// (bf16.h), so every variant with the same vector width gives the same bits. Rows go in
// chunks of kProjectionRows, (block, chunk) jobs split evenly over the plan's threads.
#pragma once

#include <algorithm>
#include <type_traits>

#include "cpu/bf16.h"
#include "cpu/bf16_kernel.h"
#include "cpu/packed.h"

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN
namespace cpu {
namespace LSTMCORE_ISA_NS {

// x·w_x (+ bias) into out: the bfloat16 projection when the plan has one, else the GEMM
// (with lengths: over the rows within the lengths, project_active_rows).
template <typename T>
void project(const Context& ctx, const ForwardPlan& plan, const Scratch& ws, const T* x, const Weight<T>& w_x,
             const T* bias, i64 N, i64 H, i64 G, T* out, i64 ld, const Walk& walk) {
  const ProductPlan& pp = plan.projection;
  if (pp.pack.K == 0) {
    if (!project_active_rows(ctx, walk, x, w_x, bias, N, out, ld)) project_inputs(ctx, x, w_x, bias, N, out, ld);
    return;
  }
  const i64 I = w_x.K;
  const bool native = kNativeBf16 && std::is_same_v<T, float>;
  T* packed = ws.get<T>(pp.packed);
  T* xr = ws.get<T>(plan.x_round);
  auto* packed16 = reinterpret_cast<bf16_t*>(packed);
  auto* x16 = reinterpret_cast<bf16_t*>(xr);
  const PackedWeights<T> p = packed_layout(pp.pack, packed);
  const i64 lda16 = pair_width(I), S = G * p.U;
  pack_weight_blocks(w_x, pp.pack, true, packed, 0, p.blocks);
  if (native) {
    if constexpr (std::is_same_v<T, float>) {
      to_bf16(x, I, x16, lda16, N, 0, I);
      // An odd I's pad column: the panel's pad row is 0, but 0 times a stale NaN or
      // infinity left in the workspace by an earlier call is NaN.
      if (lda16 > I)
        for (i64 r = 0; r < N; ++r) x16[r * lda16 + I] = 0;
    }
  } else {
    round_swapped(x, I, xr, N, 0, I, I);
  }
  const i64 chunks = (N + kProjectionRows - 1) / kProjectionRows, jobs = p.blocks * chunks;
  T* tiles = ws.get<T>(pp.tiles);
  run_on_threads(pp.threads, [&](int tid, int nth) {
    T* tile = tiles + tid * pp.tile_stride;
    for (i64 job = jobs * tid / nth; job < jobs * (tid + 1) / nth; ++job) {
      const i64 blk = job % p.blocks, r0 = job / p.blocks * kProjectionRows;
      const i64 rows = std::min(kProjectionRows, N - r0);
      if (native) {
        panel_product_bf16(x16 + r0 * lda16, lda16, rows, packed16 + blk * lda16 * G * p.W, S, I,
                           reinterpret_cast<float*>(tile));
      } else {
        block_product(p, static_cast<const T*>(xr + r0 * I), I, rows, blk, tile);
      }
      const i64 u0 = blk * p.W, n = std::min<i64>(p.W, H - u0);
      for (i64 r = 0; r < rows; ++r)
        for (i64 g = 0; g < G; ++g) {
          T* o = out + (r0 + r) * ld + g * H + u0;
          const T* t = tile + (r * G + g) * p.W;
          const T* bg = bias ? bias + g * H + u0 : nullptr;
          for (i64 w = 0; w < n; ++w) o[w] = bg ? bg[w] + t[w] : t[w];
        }
    }
  });
}

// The input side of a forward (LSTM, RNN): with plan.fused, the StepInput whose x_t·w_x the
// recurrence sums into each step (the cache's rows past the lengths, which no step
// writes, set to zero when training); else x·w_x (+ bias) projected into out now, and no
// StepInput.
template <typename T>
StepInput<T> input_side(const Context& ctx, const ForwardPlan& plan, const Scratch& ws, const T* x,
                        const Weight<T>& w_x, const T* bias, i64 N, i64 H, i64 G, T* out, i64 ld, const Walk& walk,
                        bool training) {
  if (!plan.fused) {
    project(ctx, plan, ws, x, w_x, bias, N, H, G, out, ld, walk);
    return {};
  }
  if (training) walk.zero_padding(out, G * H, ld);
  return {x, w_x};
}

}  // namespace LSTMCORE_ISA_NS
}  // namespace cpu
LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
