// The workspace planner: what scratch memory one call needs, computed up front from the
// call's sizes and its Context (thread count, instruction set), as named regions of ONE
// 64-byte aligned block (the way oneDNN plans its RNN workspace). The entry points
// (cpu/call.cpp, stack.cpp) plan, take one block for the plan's size (memory.h) and hand
// the plan and the block to the kernels, which only carve it: no kernel allocates.
//
// Every region starts on a 64-byte boundary. A matrix region of many rows (the rows of
// all T·B steps) gets a padded leading dimension: whole 64-byte lines, and never a
// multiple of 4 KiB, since rows that far apart share the cache sets of a set-associative
// L1/L2 and the recurrence reads B of them per step. Internal: not installed.
#pragma once

#include <cstddef>
#include <cstdint>

#include "cpu/context.h"
#include "lstmcore/recurrent.h"
#include "variant_plan.h"

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN
namespace cpu {

// One region of a call's workspace.
struct Region {
  std::size_t offset = 0;  // bytes from the block's start, a multiple of 64
  std::int64_t count = 0;  // elements (0: the region is absent)
  std::int64_t ld = 0;     // elements from one row to the next (matrix regions; 0 otherwise)
};

// The block of one call, carved by the plan's regions.
class Scratch {
 public:
  explicit Scratch(void* base = nullptr) : base_(static_cast<unsigned char*>(base)) {}
  template <typename T>
  T* get(const Region& r) const {
    return r.count > 0 ? reinterpret_cast<T*>(base_ + r.offset) : nullptr;
  }
  void* base() const { return base_; }

 private:
  unsigned char* base_;
};

// How a K × (G·H) right operand is packed for the micro-kernels (packed.h): blocks of W
// units, each panel holding K rows of the G gate columns of its units. Each instruction
// set's kernels define it (KernelTable::pack_geometry), from their vector width.
struct PackGeometry {
  std::int64_t K = 0, H = 0, G = 0;
  std::int64_t W = 0;         // units per block
  std::int64_t blocks = 0;    // ceil(H / W)
  std::int64_t panel = 0;     // elements per panel, K · G · W
  std::int64_t elements = 0;  // blocks · panel
};

// A packed product run over `threads` threads, each owning whole blocks and a tile.
struct ProductPlan {
  PackGeometry pack;
  int threads = 1;
  Region packed;                  // the packed operand, pack.elements
  Region tiles;                   // threads × tile_stride
  std::int64_t tile_stride = 0;   // elements per thread's tile, a multiple of 64 bytes
  bool bf16 = false;              // Context::bf16: the packed operand and the rows are rounded (cpu/bf16.h)
};

// Rows per tile of the bfloat16 input projection (cpu/bf16_projection.h).
constexpr std::int64_t kProjectionRows = 96;

// The fewest rows (batch) at which a recurrence computes x_t·w_x with h_{t-1}·w_h at each
// step (ForwardPlan::fused) rather than all of x·w_x first, with bfloat16 products and in
// float / double. Each step then streams w_x too, its panels used by B rows instead of a
// GEMM's hundreds: with fewer rows that stream, not the arithmetic, would bound the step.
// float32 on AVX2 (LSTM, H = 128, 2 threads): fused 7 % slower at B = 8, even at 16,
// 3–16 % faster from 32 rows.
constexpr std::int64_t kFusedRows = 8, kFusedRowsNative = 32;

// The blocking of the bfloat16 GEMM of the backward (cpu/bf16_gemm.h): k in blocks of
// kGemm16Depth, n in blocks of kGemm16Width, micro-tiles of at most kGemm16Rows rows ×
// kGemm16Cols columns. Its scratch, per thread: a packed block of op(B), a packed slice of
// op(A) and an edge tile.
constexpr std::int64_t kGemm16Depth = 256, kGemm16Width = 512, kGemm16Rows = 12, kGemm16Cols = 32;
constexpr std::int64_t gemm16_thread_elements() {
  return (kGemm16Depth * (kGemm16Width + kGemm16Rows) + kGemm16Rows * kGemm16Cols + 15) / 16 * 16;
}
constexpr std::int64_t gemm16_elements(int threads) { return threads * gemm16_thread_elements(); }

// A plain cell's forward (lstm.cpp, gru.cpp, rnn.cpp).
struct ForwardPlan {
  std::size_t bytes = 0;
  // The input projection folded into the recurrence's products (packed.h StepInput; see
  // fuse_inputs). Then no x·w_x is written: `gates` is absent, x_round holds x's rows in
  // walk order (bfloat16: rounded) and `projection` packs w_x without tiles.
  bool fused = false;
  Region gates;    // inference only, not fused: (T·B, G·H) pre-activations (training: the cache holds them)
  Region bias;     // (G·H) b + b_h: folded into the input projection (fused: added by the cells)
  Region zeros;    // (H) zeros, for absent optional inputs
  Region rec;      // (B, G·H) the step's products h·w_h (fused: x_t·w_x + h·w_h)
  Region rh;       // GRU with the reset before the product: (B, H) r ⊙ h_{t−1}
  // The packed recurrence (packed.h run_recurrence; absent for GRU with the reset before
  // the product, which runs two dependent GEMMs per step):
  ProductPlan product;  // w_h packed, K = H (fused: a tile per block, holding x_t·w_x)
  Region h_other;       // (B, H) the second state buffer
  Region order;         // (B) int64: the batch sorted by length (Walk::sort_by_length)
  // bfloat16 products only (Context::bf16; cpu/bf16.h), else absent:
  // (fused in float or double: x_round and projection too)
  Region x_round;             // (T·B·I) x rounded (or as bfloat16 pairs); fused: in walk order
  ProductPlan projection;     // w_x packed, K = I, tiles of kProjectionRows rows (cpu/bf16_projection.h)
  Region h_round;             // packed recurrence: 2 × (B, H), h_{t-1} rounded by step parity;
                              // GRU with the reset before: (B, H)
  Region w_h_round;           // GRU with the reset before the product: (H·G·H) w_h rounded
};

// A plain cell's backward.
struct BackwardPlan {
  std::size_t bytes = 0;
  Region h_prev;        // (T·B, H) h_{t−1} of every row, padded rows
  Region zeros;         // (H)
  Region da_step, drh;  // GRU with the reset before the product: (B, G·H), (B, H)
  // The backward recurrence (packed.h run_backward_recurrence; absent for GRU with the
  // reset before the product):
  ProductPlan product;  // w_hᵀ packed, K = G·H
  Region da[2];         // (B, G·H) each: the step's gate gradients, alternating
  Region prod;          // (B, H) da·w_hᵀ
  Region order;         // (B) int64: the batch sorted by length (Walk::sort_by_length)
  // bfloat16 products only (Context::bf16; cpu/bf16.h), else absent:
  Region gemm16;              // (gemm16_elements(threads), floats) the weight-gradient GEMMs (cpu/bf16_gemm.h)
  Region w_h_round;           // GRU with the reset before the product: (H·G·H) w_h rounded
  Region da16;                // backward recurrence, by parity: 2 × (B, G·H) da rounded (float kernels,
                              // pairs swapped: cpu/bf16.h) or 2 × (B, G·H + 1) bfloat16 (bf16_kernel.h)
};

// A cell variant's forward (cpu/variant_forward.cpp).
struct VariantForwardPlan {
  std::size_t bytes = 0;
  Region cache;                        // inference only: the cache's layout, as scratch
  Region xp;                           // (T·B, G·H) x·w_x, padded rows
  Region rec, act;                     // (B, G·H) the step's h·w_h, its activated gates
  Region mbuf, hbuf, cbuf;             // (B, max(H, R)) each
  Region bx, bh;                       // (G·H) the biases
  Region order;                        // (B) int64: the batch sorted by length (Walk::sort_by_length)
  Region hslot;                        // (B, R) with lengths: the active rows of h, in slot order
  std::int64_t rows = 0;               // B: the rows of the step products
  ProductPlan recurrent;               // h·w_h (GRU with the reset before: the r, z columns)
  ProductPlan second;                  // GRU: (r ⊙ h)·w_h[:, n]; LSTM: the projection (pack.K == 0: none)
};

// A cell variant's backward (cpu/variant_backward.cpp).
struct VariantBackwardPlan {
  std::size_t bytes = 0;
  Region hprev;                        // (T·B, R) h_{t−1} of every row, padded rows
  Region dax, dah;                     // (T·B, G·H) when they differ from the cache's dL/da, padded rows
  Region dht;                          // (T·B, R) with a projection, padded rows
  Region dstep, act, dg;               // (B, G·H)
  Region dm, dhb, hc, sh;              // (B, max(H, R))
  Region acc;                          // (B, 5H)
  Region zeros;                        // (max(H, R))
  Region order;                        // (B) int64: the batch sorted by length (Walk::sort_by_length)
  Region dslot;                        // (B, R) with lengths: the step's dL/dh_{t−1} product, in slot order
  std::int64_t rows = 0;               // B
  ProductPlan recurrent;               // dL/d(h·w_h)·w_hᵀ
  ProductPlan second;                  // GRU: da_n·w_h[:, n]ᵀ; LSTM: dh̃·w_projᵀ (pack.K == 0: none)
};

// Whether a plain cell's forward is fused (ForwardPlan::fused): LSTM and RNN, with bfloat16
// products from kFusedRows rows whatever the size; in float and double from
// kFusedRowsNative rows when the threads' shares of w_x and w_h fit their cores' L2
// (Context::l2_bytes) — then the step streams both from L2 and the T·B × G·H buffer of
// x·w_x, written and read back once, is what the fusion saves; from L3 the separate GEMM's
// blocking wins.
bool fuse_inputs(const Context& c, Dtype t, const CellSpec& spec, const Dims& d);

ForwardPlan plan_forward(const Context& c, Dtype t, const CellSpec& spec, const Dims& d, bool training);
BackwardPlan plan_backward(const Context& c, Dtype t, const CellSpec& spec, const Dims& d);
VariantForwardPlan plan_variant_forward(const Context& c, Dtype t, const detail::VariantPlan& p, bool training);
VariantBackwardPlan plan_variant_backward(const Context& c, Dtype t, const detail::VariantPlan& p);

}  // namespace cpu
LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
