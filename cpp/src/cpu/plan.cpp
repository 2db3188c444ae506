// The workspace planner of cpu/plan.h: every kernel's scratch, laid out once per call.
#include "cpu/plan.h"

#include <algorithm>

#include "cpu/isa.h"
#include "cpu/threads.h"

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN
namespace cpu {
namespace {

using i64 = std::int64_t;
constexpr std::size_t kLine = 64;
constexpr std::size_t kPage = 4096;

// Hands out the regions of one block in order.
class Layout {
 public:
  explicit Layout(Dtype t) : elem_(size_of(t)) {}

  // `count` elements, on a line of their own.
  Region flat(i64 count) {
    Region r;
    r.offset = end_;
    r.count = count;
    end_ += lines(count);
    return r;
  }

  // A matrix of `rows` rows of `cols` elements with a padded leading dimension: whole
  // lines, and not a multiple of 4 KiB.
  Region matrix(i64 rows, i64 cols) {
    const i64 per_line = static_cast<i64>(kLine / elem_);
    i64 ld = (cols + per_line - 1) / per_line * per_line;
    if (rows > 1 && (static_cast<std::size_t>(ld) * elem_) % kPage == 0) ld += per_line;
    Region r = flat(rows * ld);
    r.ld = ld;
    return r;
  }

  // `count` 64-bit integers, on a line of their own.
  Region indices(i64 count) { return flat((count * 8 + static_cast<i64>(elem_) - 1) / static_cast<i64>(elem_)); }

  // Elements of a tile or slot of `count` elements rounded up to whole lines.
  i64 rounded(i64 count) const { return static_cast<i64>(lines(count) / elem_); }

  std::size_t bytes() const { return std::max(end_, kLine); }

 private:
  std::size_t lines(i64 count) const {
    return (static_cast<std::size_t>(count) * elem_ + kLine - 1) / kLine * kLine;
  }
  std::size_t elem_;
  std::size_t end_ = 0;
};

// A packed product: the K × (G·n) operand's panels and `rows` rows of tiles per thread;
// threads from the product's flops per step.
// `per_block`: a tile for each block (the fused recurrence's), as threads' tiles of
// ceil(blocks / threads) blocks.
ProductPlan product(const Context& c, Dtype t, Layout& l, i64 K, i64 n, i64 G, i64 rows, i64 flops,
                    bool per_block = false) {
  ProductPlan p;
  p.pack = c.kernels->pack_geometry(t, K, n, G);
  p.threads = product_threads(c, flops, p.pack.blocks);
  const i64 tiles = per_block ? (p.pack.blocks + p.threads - 1) / p.threads : 1;
  p.tile_stride = l.rounded(tiles * rows * G * p.pack.W);
  p.packed = l.flat(p.pack.elements);
  p.tiles = l.flat(p.threads * p.tile_stride);
  p.bf16 = c.bf16;
  return p;
}

}  // namespace

bool fuse_inputs(const Context& c, Dtype t, const CellSpec& spec, const Dims& d) {
  if (spec.cell == Cell::gru) return false;
  if (c.bf16) return d.batch >= kFusedRows;
  if (d.batch < kFusedRowsNative) return false;
  // float: when each thread's share of the panels of w_x and w_h stays in its core's L2
  const double bytes = static_cast<double>(d.input + d.hidden) * gate_count(spec.cell) * d.hidden *
                       static_cast<double>(size_of(t));
  return bytes <= static_cast<double>(c.l2_bytes) * std::max(1, c.threads);
}

ForwardPlan plan_forward(const Context& c, Dtype t, const CellSpec& spec, const Dims& d, bool training) {
  const i64 B = d.batch, H = d.hidden, G = gate_count(spec.cell), GH = G * H, N = d.steps * d.batch;
  Layout l(t);
  ForwardPlan p;
  p.fused = fuse_inputs(c, t, spec, d);
  if (!training && !p.fused) p.gates = l.matrix(N, GH);
  p.bias = l.flat(GH);
  p.zeros = l.flat(H);
  p.rec = l.flat(B * GH);
  if (spec.cell == Cell::gru && !spec.reset_after) {
    p.rh = l.flat(B * H);
  } else {
    const i64 K = p.fused ? H + d.input : H;  // the step product's depth
    p.product = product(c, t, l, H, H, G, B, 2 * B * K * GH, p.fused);
    p.h_other = l.flat(B * H);
    p.order = l.indices(B);
  }
  if (p.fused && !c.bf16) {  // x's rows in walk order, w_x packed
    p.x_round = l.flat(N * d.input);
    p.projection = product(c, t, l, d.input, H, G, 0, 2 * N * d.input * GH);
  }
  if (c.bf16) {
    const bool reset_before = spec.cell == Cell::gru && !spec.reset_after;
    p.x_round = l.flat(N * d.input);
    p.projection = product(c, t, l, d.input, H, G, p.fused ? 0 : kProjectionRows, 2 * N * d.input * GH);
    p.h_round = l.flat((reset_before ? 1 : 2) * B * H);
    if (reset_before) p.w_h_round = l.flat(H * GH);
  }
  p.bytes = l.bytes();
  return p;
}

BackwardPlan plan_backward(const Context& c, Dtype t, const CellSpec& spec, const Dims& d) {
  const i64 B = d.batch, H = d.hidden, GH = gate_count(spec.cell) * H, N = d.steps * d.batch;
  Layout l(t);
  BackwardPlan p;
  p.h_prev = l.matrix(N, H);
  p.zeros = l.flat(H);
  if (spec.cell == Cell::gru && !spec.reset_after) {
    p.da_step = l.flat(B * GH);
    p.drh = l.flat(B * H);
  } else {
    p.product = product(c, t, l, GH, H, 1, B, 2 * B * H * GH);  // w_hᵀ: one block of H columns
    p.da[0] = l.flat(B * GH);
    p.da[1] = l.flat(B * GH);
    p.prod = l.flat(B * H);
    p.order = l.indices(B);
  }
  if (c.bf16) {
    p.gemm16 = l.flat(gemm16_elements(c.threads));
    if (spec.cell == Cell::gru && !spec.reset_after)
      p.w_h_round = l.flat(H * GH);
    else
      p.da16 = l.flat(2 * B * (GH + 1));  // 2 × (B, GH) floats, or 2 × (B, GH + 1) bfloat16 values
  }
  p.bytes = l.bytes();
  return p;
}

VariantForwardPlan plan_variant_forward(const Context& c, Dtype t, const detail::VariantPlan& v, bool training) {
  const i64 B = v.B, H = v.H, GH = v.GH, R = v.R, W = std::max(H, R);
  Layout l(t);
  VariantForwardPlan p;
  if (!training) p.cache = l.flat(v.total);
  p.xp = l.matrix(v.N, GH);
  p.rec = l.flat(B * GH);
  p.act = l.flat(B * GH);
  p.mbuf = l.flat(B * W);
  p.hbuf = l.flat(B * W);
  p.cbuf = l.flat(B * W);
  p.bx = l.flat(GH);
  p.bh = l.flat(GH);
  p.order = l.indices(B);
  p.hslot = l.flat(B * R);
  p.rows = B;
  const bool reset_before = v.gru && !v.reset_after;
  const i64 n = reset_before ? 2 * H : GH;  // h·w_h: B × n, K = R
  p.recurrent = product(c, t, l, R, n, 1, B, 2 * B * n * R);
  if (reset_before) p.second = product(c, t, l, H, H, 1, B, 2 * B * H * H);  // (r ⊙ h)·w_h[:, n]
  if (v.proj) p.second = product(c, t, l, H, R, 1, B, 2 * B * R * H);        // m·w_proj
  p.bytes = l.bytes();
  return p;
}

VariantBackwardPlan plan_variant_backward(const Context& c, Dtype t, const detail::VariantPlan& v) {
  const i64 B = v.B, H = v.H, GH = v.GH, R = v.R, N = v.N, W = std::max(H, R);
  Layout l(t);
  VariantBackwardPlan p;
  p.hprev = l.matrix(N, R);
  if (v.ln) p.dax = l.matrix(N, GH);          // dL/d(x·w_x) differs from dL/da
  if (v.ln || v.gru) p.dah = l.matrix(N, GH);  // dL/d(h·w_h) differs from the input side's
  if (v.proj) p.dht = l.matrix(N, R);
  p.dstep = l.flat(B * GH);
  p.act = l.flat(B * GH);
  p.dg = l.flat(B * GH);
  p.dm = l.flat(B * W);
  p.dhb = l.flat(B * W);
  p.hc = l.flat(B * W);
  p.sh = l.flat(B * W);
  p.acc = l.flat(B * 5 * H);
  p.zeros = l.flat(W);
  p.order = l.indices(B);
  p.dslot = l.flat(B * R);
  p.rows = B;
  const bool reset_before = v.gru && !v.reset_after;
  const i64 k = reset_before ? 2 * H : GH;  // dL/d(h·w_h)·w_hᵀ: B × R, K = k
  p.recurrent = product(c, t, l, k, R, 1, B, 2 * B * R * k);
  if (reset_before) p.second = product(c, t, l, H, H, 1, B, 2 * B * H * H);  // da_n·w_h[:, n]ᵀ
  if (v.proj) p.second = product(c, t, l, R, H, 1, B, 2 * B * H * R);        // dh̃·w_projᵀ
  p.bytes = l.bytes();
  return p;
}

}  // namespace cpu
LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
