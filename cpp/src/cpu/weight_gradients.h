// The products that close every backward walk (lstm.cpp, gru.cpp, rnn.cpp,
// variant_backward.cpp): once the gate gradients of all T·B rows are known,
//
//   dx   = da_x·w_xᵀ              dw_x = xᵀ·da_x          db = Σ_rows da  (per column)
//   dw_h = h_prevᵀ·da_h           db_h = Σ_rows da_h
//
// each a single GEMM (or column sum) over all rows. da_x = dL/d(x·w_x) and da_h =
// dL/d(h·w_h + b_h) are the same rows for LSTM and RNN; GRU and the variants give dw_h
// and db_h as column blocks with sources of their own (GRU's n block: r ⊙ h_{t−1} or
// dL/d(ah_n)). Rows past a sequence's length hold zeros, so they add nothing.
#pragma once

#include <cstring>
#include <type_traits>

#include "cpu/bf16_gemm.h"
#include "cpu/kernel_common.h"

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN
namespace cpu {
namespace LSTMCORE_ISA_NS {

template <typename T>
class WeightGradients {
 public:
  // rows: T·B; gh: the G·H columns of w_x and w_h.
  WeightGradients(i64 rows, i64 input, i64 gh) : N_(rows), I_(input), GH_(gh) {}

  // dL/d(x·w_x) of every row (N, G·H), row stride ld: dx, dw_x, and db unless bias() says otherwise.
  void input_side(const T* da_x, i64 ld) {
    da_x_ = da_x;
    ld_x_ = ld;
    if (!db_) db_ = da_x, ld_db_ = ld;
  }
  // The rows whose column sums are db (N, G·H), when they differ from the input side's.
  void bias(const T* rows, i64 ld) { db_ = rows, ld_db_ = ld; }
  // dw_h[:, col : col + cols] = leftᵀ·right: left (N, K) with stride ld_left (K: the rows
  // of w_h), right (N, cols) with stride ld_right.
  void recurrent(i64 K, const T* left, i64 ld_left, const T* right, i64 ld_right, i64 col, i64 cols) {
    w_h_[n_w_h_++] = {left, ld_left, right, ld_right, col, cols, K};
  }
  // db_h[col : col + cols] = Σ_rows rows, rows (N, cols) with stride ld.
  void recurrent_bias(const T* rows, i64 ld, i64 col, i64 cols) { b_h_[n_b_h_++] = {rows, ld, col, cols}; }

  // bfloat16 products (Context::bf16; cpu/bf16.h): the GEMMs round their operands while
  // packing them and sum in float (cpu/bf16_gemm.h), in `scratch` (the plan's gemm16
  // region). nullptr (native compute): the float GEMMs.
  void bf16(T* scratch) { scratch_ = scratch; }

  // With lengths, when every operand is the backward's own buffer but x: the products over
  // the rows within the lengths only. The active rows of da (rows × G·H, stride ld; the input
  // side's operand), of left (width_left, stride ld_left) and of other (GRU's aux, when
  // given) move to the front of their buffers, in row order, and x's are gathered after
  // da's when they fit in da's freed rows (else nothing changes); dx is spread back to the
  // rows of x, padded rows zero. Call before run().
  void only_active(const Walk& walk, T* da, i64 ld, T* left, i64 width_left, i64 ld_left, const T* x,
                   T* other = nullptr, i64 width_other = 0, i64 ld_other = 0) {
    if (!walk.lengths) return;
    const i64 active = walk.active_rows();
    if (active >= N_ || active * I_ > (N_ - active) * ld) return;
    walk.gather_active(da, ld, GH_, da, ld);  // in place
    walk.gather_active(left, ld_left, width_left, left, ld_left);
    if (other) walk.gather_active(other, ld_other, width_other, other, ld_other);
    T* xa = da + active * ld;  // da's rows from `active` on are free now
    walk.gather_active(x, I_, I_, xa, I_);
    spread_ = &walk;
    all_rows_ = N_;
    N_ = active;
    x_ = xa;
  }

  // dw_x, dw_h in the layout of w_x, w_h (a.weight_layout).
  void run(const Context& ctx, const BackwardArgs<T>& a) const {
    products(ctx, a);
    if (!spread_) return;
    // dx row c to its row r(c) >= c, from the last: no move overwrites a row still to move
    i64 c = N_;
    for (i64 r = all_rows_ - 1; r >= 0; --r) {
      T* dst = a.dx + r * I_;
      if (!spread_->row_active(r)) {
        std::memset(dst, 0, sizeof(T) * I_);
      } else if (--c != r) {
        std::memcpy(dst, a.dx + c * I_, sizeof(T) * I_);
      }
    }
  }

 private:
  void products(const Context& ctx, const BackwardArgs<T>& a) const {
    if (a.db) column_sums(db_, N_, GH_, ld_db_, a.db);
    if (a.db_h)
      for (int k = 0; k < n_b_h_; ++k) column_sums(b_h_[k].rows, N_, b_h_[k].cols, b_h_[k].ld, a.db_h + b_h_[k].col);
    if constexpr (std::is_same_v<T, float>)
      if (scratch_) return run_bf16(ctx, a);
    const Weight<T> w_x(a.w_x, I_, GH_, a.weight_layout);
    times_weight_t(ctx, N_, da_x_, ld_x_, w_x, 0, GH_, false, a.dx, I_);                 // dx = da_x·w_xᵀ
    weight_gradient(ctx, w_x, a.dw_x, N_, x_ ? x_ : a.x, I_, da_x_, ld_x_, 0, GH_);      // dw_x = xᵀ·da_x
    for (int k = 0; k < n_w_h_; ++k) {
      const Block& b = w_h_[k];
      const Weight<T> w_h(a.w_h, b.K, GH_, a.weight_layout);
      weight_gradient(ctx, w_h, a.dw_h, N_, b.left, b.ld_left, b.right, b.ld_right, b.col, b.cols);
    }
  }

  struct Block {
    const T* left;
    i64 ld_left;
    const T* right;
    i64 ld_right;
    i64 col, cols, K;
  };
  struct Sum {
    const T* rows;
    i64 ld, col, cols;
  };
  i64 N_, I_, GH_;
  const T* da_x_ = nullptr;
  i64 ld_x_ = 0;
  const T* db_ = nullptr;
  i64 ld_db_ = 0;
  Block w_h_[2] = {};
  Sum b_h_[2] = {};
  int n_w_h_ = 0, n_b_h_ = 0;
  T* scratch_ = nullptr;
  const T* x_ = nullptr;          // only_active: x's active rows
  const Walk* spread_ = nullptr;  // only_active: the walk dx is spread back by
  i64 all_rows_ = 0;              // only_active: T·B

  // The products above on cpu/bf16_gemm.h; dw in the weight's layout as weight_gradient
  // writes it (gate_major: rightᵀ·left, the same sums in the same order).
  void run_bf16(const Context& ctx, const BackwardArgs<float>& a) const {
    float* ws = scratch_;
    const bool gm = a.weight_layout == WeightLayout::gate_major;
    // dx (N × I) = da_x · op(w_x): op(w_x)[c, i] = w_x(i, c)
    gemm_bf16(ctx, N_, I_, GH_, {da_x_, ld_x_, false}, {a.w_x, gm ? I_ : GH_, !gm}, a.dx, I_, ws);
    auto dw = [&](float* out, i64 K, const float* left, i64 ld_left, const float* right, i64 ld_right, i64 col,
                  i64 cols) {
      if (gm)
        gemm_bf16(ctx, cols, K, N_, {right, ld_right, true}, {left, ld_left, false}, out + col * K, K, ws);
      else
        gemm_bf16(ctx, K, cols, N_, {left, ld_left, true}, {right, ld_right, false}, out + col, GH_, ws);
    };
    dw(a.dw_x, I_, x_ ? x_ : a.x, I_, da_x_, ld_x_, 0, GH_);
    for (int k = 0; k < n_w_h_; ++k) {
      const Block& b = w_h_[k];
      dw(a.dw_h, b.K, b.left, b.ld_left, b.right, b.ld_right, b.col, b.cols);
    }
  }
};

}  // namespace LSTMCORE_ISA_NS
}  // namespace cpu
LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
