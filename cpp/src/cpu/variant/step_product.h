// The products of the variants' time loop on the packed micro-kernel of packed.h.
//
// C (m × n, ldc) [+]= A (m × k, lda) · op(B), row-major; op(B) = B, columns of a weight
// (kernel_common.h Weight, either layout), or with TransB Bᵀ. The first call packs op(B) into the panels of
// the recurrent kernels (blocks of W columns, each k × W), once per walk, since B (a
// weight) is the same at every step; each call then runs the micro-kernel over the
// blocks, split over the plan's threads. The packed operand and the threads' tiles are
// regions of the call's workspace (cpu/plan.h ProductPlan). Compiled per instruction set.
#pragma once

#include <algorithm>

#include "cpu/kernel_common.h"
#include "cpu/packed.h"

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN
namespace cpu {
namespace LSTMCORE_ISA_NS {

template <typename T, bool TransB>
class StepProduct {
 public:
  // plan: pack (K = k, H = n, G = 1), threads, tiles of m·W elements each.
  StepProduct(const ProductPlan& plan, const Scratch& ws, i64 m)
      : plan_(plan), m_(m), packed_(ws.get<T>(plan.packed)), tiles_(ws.get<T>(plan.tiles)) {}

  // B: the columns c.. of the weight w (TransB: their transpose); either layout of w.
  void operator()(const T* A, i64 lda, const Weight<T>& w, i64 c, T* C, i64 ldc, bool accumulate) {
    const T* B = w.col(c);
    if (B != packed_from_) {
      layout_ = pack_columns(B, w.ld(), TransB != w.gate_major, plan_.pack, packed_);
      packed_from_ = B;
    }
    const PackedWeights<T>& p = layout_;
    const i64 m = m_, n_all = plan_.pack.H, k = plan_.pack.K, stride = plan_.tile_stride;
    T* tiles = tiles_;
    run_on_threads(plan_.threads, [&](int tid, int nth) {
      T* tile = tiles + tid * stride;
      for (i64 blk = p.blocks * tid / nth; blk < p.blocks * (tid + 1) / nth; ++blk) {
        panel_product<T, 4>(A, lda, m, p.data + blk * p.panel, k, tile);
        const i64 u0 = blk * p.W, n = std::min<i64>(p.W, n_all - u0);
        for (i64 r = 0; r < m; ++r) {
          T* c = C + r * ldc + u0;
          const T* t = tile + r * p.W;
          if (accumulate) {
            for (i64 j = 0; j < n; ++j) c[j] += t[j];
          } else {
            copy_units(c, t, n, p);
          }
        }
      }
    });
  }

 private:
  const ProductPlan& plan_;
  i64 m_;
  T* packed_;
  T* tiles_;
  PackedWeights<T> layout_;
  const T* packed_from_ = nullptr;
};

}  // namespace LSTMCORE_ISA_NS
}  // namespace cpu
LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
