// The walk of a layer stack (stack.h) over its layers and directions, shared by the CPU
// (stack.cpp) and the CUDA backend (cuda/stack.cu): validation, the cache plan, and the
// order of the per-layer calls and of the glue between layers. What runs where comes
// from an Ops object:
//
//   T* prepare(plan, pass, given, n)   before the walk: the glue's scratch (the caller's
//                                      `given`, or n elements owned by ops), and whatever
//                                      else ops' layers need for this plan and pass
//   directions(plan, k, f)             f(0), f(1) (or f(0) alone), maybe concurrently
//   forward(d, cell, variant, dims, options, ForwardArgs, VariantParams)   one layer,
//                                      direction d
//   backward(d, cell, variant, dims, options, BackwardArgs, VariantParams, VariantGrads)
//   sum(a, b, n, out)                  out = a + b
//   concat(a, b, rows, R, out)         out (rows, 2R) = [a | b]
//   split(in, rows, R, a, b)           the halves of in (rows, 2R)
//   add_into(out, in, n)               out += in
//   multiply_into(out, in, n)          out ⊙= in
//   make_mask(MaskSpec, mask)          the dropout mask of one layer (below)
//
// Pointers are in the memory Ops works on (host or device); everything else (sizes,
// seq_lengths, the weights' pointer tables) is host data. Internal: not installed.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>

#include "common.h"
#include "lstmcore/stack.h"

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN
namespace stack_walk {

using i64 = std::int64_t;

// The dropout mask of one layer's output, row-order (T, B, W): element (t, b, j) draws
// u = counter_uniform(key, (t·B + b)·W + j) and is `keep` = 1/(1-p) when u >= p, else 0.
// The index is time-major whatever the row order, so masks do not depend on batch_first.
struct MaskSpec {
  std::uint64_t key = 0;
  double prob = 0.0;
  double keep = 0.0;
  i64 rows = 0, T = 0, B = 0, W = 0;
  bool batch_first = false;
  // The value of the mask at row r, feature j.
  LSTMCORE_HOST_DEVICE double at(i64 r, i64 j) const {
    const i64 t = batch_first ? r % T : r / B;
    const i64 b = batch_first ? r / T : r % B;
    const double u = detail::counter_uniform(key, static_cast<std::uint64_t>((t * B + b) * W + j));
    return u >= prob ? keep : 0.0;
  }
};

inline bool same_activation(const ActivationSpec& a, const ActivationSpec& b) {
  return a.kind == b.kind && a.alpha == b.alpha && a.beta == b.beta;
}

// Whether the options are the cell's own (the packed kernels compute exactly that).
inline bool is_plain(const VariantOptions& o, Cell cell) {
  const VariantOptions d = variant_defaults(cell);
  return same_activation(o.f, d.f) && same_activation(o.g, d.g) && same_activation(o.h, d.h) && o.clip == 0.0 &&
         !o.input_forget && o.forget_gate && !o.peepholes && o.proj == 0 && !o.layer_norm && o.zoneout_h == 0.0 &&
         o.zoneout_c == 0.0;
}

// Which walk a plan is prepared for.
enum class Pass { inference, training, backward };

// Sizes of one stack and the offsets of its cache regions (elements).
struct Plan {
  CellSpec cell;
  i64 L = 0, D = 0, T = 0, B = 0, I = 0, H = 0, G = 0;
  i64 R = 0;           // the width of h: the projection size P, or H
  const VariantOptions* variant = nullptr;  // a non-plain cell variant, or nullptr
  i64 rows = 0;        // T·B
  i64 OW = 0;          // a layer's output width: 2R (two directions, concatenated) or R
  bool sum = false;    // two directions, added
  i64 layer_rows = 0;  // rows·OW: one layer's output
  i64 cell_cache = 0;  // cache_size() of one layer and direction
  bool dropout = false;  // p > 0 and L > 1: masks are kept

  Plan(const StackSpec& s, const Dims& d) {
    if (s.num_layers < 1)
      throw InvalidArgument("num_layers: must be >= 1, got " + std::to_string(s.num_layers));
    if (s.directions != 1 && s.directions != 2)
      throw InvalidArgument("directions: expected 1 or 2, got " + std::to_string(s.directions));
    if (!(s.dropout >= 0.0 && s.dropout <= 1.0))
      throw InvalidArgument("dropout: expected p in [0, 1], got " + std::to_string(s.dropout));
    detail::check_dims(s.cell, d);
    cell = s.cell;
    L = s.num_layers;
    D = s.directions;
    T = d.steps;
    B = d.batch;
    I = d.input;
    H = d.hidden;
    G = gate_count(s.cell.cell);
    if (s.variant && !is_plain(*s.variant, s.cell.cell)) variant = s.variant;
    R = variant && variant->proj > 0 ? variant->proj : H;
    rows = T * B;
    if (s.merge != Merge::concat && s.merge != Merge::sum) throw InvalidArgument("merge: expected concat or sum");
    sum = D == 2 && s.merge == Merge::sum;
    OW = sum ? R : detail::checked_mul(D, R, "directions x hidden");
    if (L > 1) detail::check_dims(s.cell, layer_dims(1));
    layer_rows = detail::checked_mul(rows, OW, "steps x batch x output width");
    cell_cache = static_cast<i64>(variant ? variant_cache_size(s.cell, *variant, d) : cache_size(s.cell, d));
    detail::checked_mul(detail::checked_mul(L, D, "layers x directions"), cell_cache, "cache");
    detail::checked_mul(2 * (L - 1), layer_rows, "cache");
    dropout = s.dropout > 0.0 && L > 1;
  }

  // The options layer k, direction d runs with: nullptr for the plain cell, else the
  // variant with that layer and direction's zoneout seed (in `buf`).
  const VariantOptions* variant_of(const StackSpec& s, i64 k, i64 d, VariantOptions& buf) const;
  MaskSpec mask_spec(const StackSpec& s, bool batch_first, i64 k) const;

  Dims layer_dims(i64 k) const { return Dims{T, B, k == 0 ? I : OW, H}; }
  i64 cells_total() const { return L * D * cell_cache; }
  i64 cell_offset(i64 k, i64 d) const { return (k * D + d) * cell_cache; }
  // The input of layer k (1 <= k < L), after dropout.
  i64 input_offset(i64 k) const { return cells_total() + (k - 1) * layer_rows; }
  // The mask applied to layer k's output (0 <= k < L-1).
  i64 mask_offset(i64 k) const { return cells_total() + (L - 1 + k) * layer_rows; }
  i64 cache_total() const { return cells_total() + (L - 1) * layer_rows * (dropout ? 2 : 1); }

  i64 forward_workspace(bool training) const {
    return (D == 2 ? 2 * rows * R : 0) + (!training && L > 1 ? std::min<i64>(L - 1, 2) * layer_rows : 0);
  }
  i64 backward_workspace() const {
    return (L > 1 ? std::min<i64>(L - 1, 2) * layer_rows : 0) + (D == 2 ? 2 * rows * R + rows * std::max(I, OW) : 0);
  }
  // One layer and direction's slice of a (L·D, B, R) h state array or a (L·D, B, H)
  // c state array.
  template <typename P>
  P* state_h(P* base, i64 k, i64 d) const {
    return base ? base + (k * D + d) * B * R : nullptr;
  }
  template <typename P>
  P* state_c(P* base, i64 k, i64 d) const {
    return base ? base + (k * D + d) * B * H : nullptr;
  }
};

// VariantOptions::seed of layer k, direction d: streams from 2^32 up, far from the
// dropout masks' streams 1..L-1.
inline std::uint64_t variant_seed(const StackSpec& s, i64 k, i64 d) {
  return detail::stream_key(s.seed, (std::uint64_t{1} << 32) + static_cast<std::uint64_t>(k * 2 + d));
}

inline void require(const void* p, const std::string& name) {
  if (!p) throw InvalidArgument(name + ": required, got a null pointer");
}

inline void require_absent(const void* p, const char* name, Cell cell) {
  if (p)
    throw InvalidArgument(std::string(name) + ": the " + cell_name(cell) + " cell has no cell state; expected nullptr");
}

inline std::string layer_name(const char* what, i64 k, i64 d, const Plan& p) {
  return std::string(what) + "[" + std::to_string(k * p.D + d) + "] (layer " + std::to_string(k) +
         (d ? ", reverse" : ", forward") + ")";
}

inline void check_options(const Plan& p, const SequenceOptions& o) {
  if (o.reverse)
    throw InvalidArgument("options.reverse: must be false for a stack; directions = 2 adds the reverse direction");
  if (!o.seq_lengths) return;
  for (i64 b = 0; b < p.B; ++b) {
    const i64 len = o.seq_lengths[b];
    if (len < 1 || len > p.T)
      throw InvalidArgument("seq_lengths: expected every length in 1.." + std::to_string(p.T) + ", got " +
                            std::to_string(len) + " at index " + std::to_string(b));
  }
}

template <typename T>
inline void check_weights(const Plan& p, const LayerWeights<T>* w) {
  require(w, "weights");
  for (i64 k = 0; k < p.L; ++k)
    for (i64 d = 0; d < p.D; ++d) {
      require(w[k * p.D + d].w_x, layer_name("weights", k, d, p) + ".w_x");
      require(w[k * p.D + d].w_h, layer_name("weights", k, d, p) + ".w_h");
    }
}

// The inputs forward and backward share, as spans for the overlap check: x, every
// layer's weights, the initial states, the lengths.
template <typename T>
inline void input_spans(detail::Spans& s, const Plan& p, const SequenceOptions& o, const T* x,
                        const LayerWeights<T>* w, const T* h0, const T* c0) {
  s.input("x", x, p.rows * p.I);
  s.input("h0", h0, p.L * p.D * p.B * p.R);
  s.input("c0", c0, p.L * p.D * p.B * p.H);
  s.input("seq_lengths", o.seq_lengths, p.B);
  const i64 GH = p.G * p.H;
  for (i64 k = 0; k < p.L; ++k)
    for (i64 d = 0; d < p.D; ++d) {
      const LayerWeights<T>& l = w[k * p.D + d];
      const std::string name = layer_name("weights", k, d, p) + ".";
      s.input(name + "w_x", l.w_x, p.layer_dims(k).input * GH);
      s.input(name + "w_h", l.w_h, p.R * GH);
      s.input(name + "b", l.b, GH);
      s.input(name + "b_h", l.b_h, GH);
      if (p.variant) detail::variant_param_spans(s, l.variant, p.H, p.R, GH, name);
    }
}

inline const VariantOptions* Plan::variant_of(const StackSpec& s, i64 k, i64 d, VariantOptions& buf) const {
  if (!variant) return nullptr;
  buf = *variant;
  buf.seed = variant_seed(s, k, d);
  return &buf;
}

inline MaskSpec Plan::mask_spec(const StackSpec& s, bool batch_first, i64 k) const {
  MaskSpec m;
  m.key = detail::stream_key(s.seed, static_cast<std::uint64_t>(k + 1));
  m.prob = s.dropout;
  m.keep = s.dropout < 1.0 ? 1.0 / (1.0 - s.dropout) : 0.0;
  m.rows = rows;
  m.T = T;
  m.B = B;
  m.W = OW;
  m.batch_first = batch_first;
  return m;
}

// Hands out consecutive regions of one scratch block.
template <typename T>
class Bump {
 public:
  explicit Bump(T* base) : next_(base) {}
  T* take(i64 n) {
    T* p = next_;
    next_ += n;
    return p;
  }

 private:
  T* next_;
};

// Every check of a forward call, before anything runs: sizes, options, required pointers,
// no output sharing memory with an input or another output. Returns the plan.
template <typename T>
Plan check_forward(const StackSpec& s, const Dims& dims, const SequenceOptions& options, const StackForwardArgs<T>& a) {
  Plan p(s, dims);
  check_options(p, options);
  require(a.x, "x");
  check_weights(p, a.weights);
  require(a.y, "y");
  require(a.h_n, "h_n");
  const bool lstm = s.cell.cell == Cell::lstm;
  if (lstm) {
    require(a.c_n, "c_n");
  } else {
    require_absent(a.c0, "c0", s.cell.cell);
    require_absent(a.c_n, "c_n", s.cell.cell);
  }
  const bool training = a.cache != nullptr;
  detail::Spans spans;
  input_spans(spans, p, options, a.x, a.weights, a.h0, a.c0);
  spans.output("y", a.y, p.layer_rows);
  spans.output("h_n", a.h_n, p.L * p.D * p.B * p.R);
  spans.output("c_n", a.c_n, p.L * p.D * p.B * p.H);
  spans.output("cache", a.cache, p.cache_total());
  spans.output("workspace", a.workspace, p.forward_workspace(training));
  spans.check();
  return p;
}

template <typename T, class Ops>
void walk_forward(const StackSpec& s, const Dims& dims, const SequenceOptions& options, const StackForwardArgs<T>& a,
                  Ops& ops) {
  const Plan p = check_forward(s, dims, options, a);
  const bool training = a.cache != nullptr;

  Bump<T> ws(
      ops.prepare(p, training ? Pass::training : Pass::inference, a.workspace, p.forward_workspace(training)));
  T* ydir[2] = {nullptr, nullptr};
  if (p.D == 2) {
    ydir[0] = ws.take(p.rows * p.R);
    ydir[1] = ws.take(p.rows * p.R);
  }
  T* between[2] = {nullptr, nullptr};  // inference: the outputs of inner layers
  if (!training)
    for (i64 i = 0; i < std::min<i64>(p.L - 1, 2); ++i) between[i] = ws.take(p.layer_rows);

  const T* in = a.x;
  for (i64 k = 0; k < p.L; ++k) {
    const Dims dk = p.layer_dims(k);
    T* out = k == p.L - 1 ? a.y : training ? a.cache + p.input_offset(k + 1) : between[k % 2];
    ops.directions(p, k, [&](i64 d) {
      const LayerWeights<T>& w = a.weights[k * p.D + d];
      SequenceOptions o = options;
      o.reverse = d == 1;
      VariantOptions vbuf;
      ForwardArgs<T> f;
      f.x = in;
      f.w_x = w.w_x;
      f.w_h = w.w_h;
      f.b = w.b;
      f.b_h = w.b_h;
      f.h0 = p.state_h(a.h0, k, d);
      f.c0 = p.state_c(a.c0, k, d);
      f.y = p.D == 1 ? out : ydir[d];
      f.h_n = p.state_h(a.h_n, k, d);
      f.c_n = p.state_c(a.c_n, k, d);
      f.cache = training ? a.cache + p.cell_offset(k, d) : nullptr;
      f.weight_layout = a.weight_layout;
      ops.forward(d, s.cell, p.variant_of(s, k, d, vbuf), dk, o, f, w.variant);
    });
    if (p.D == 2) {
      if (p.sum)
        ops.sum(ydir[0], ydir[1], p.rows * p.R, out);
      else
        ops.concat(ydir[0], ydir[1], p.rows, p.R, out);
    }
    if (training && p.dropout && k < p.L - 1) {
      T* mask = a.cache + p.mask_offset(k);
      ops.make_mask(p.mask_spec(s, options.batch_first, k), mask);
      ops.multiply_into(out, static_cast<const T*>(mask), p.layer_rows);
    }
    in = out;
  }
}

// Every check of a backward call, as check_forward.
template <typename T>
Plan check_backward(const StackSpec& s, const Dims& dims, const SequenceOptions& options,
                    const StackBackwardArgs<T>& a) {
  Plan p(s, dims);
  check_options(p, options);
  require(a.x, "x");
  check_weights(p, a.weights);
  require(a.cache, "cache");
  require(a.dx, "dx");
  require(a.dh0, "dh0");
  require(a.grads, "grads");
  for (i64 k = 0; k < p.L; ++k)
    for (i64 d = 0; d < p.D; ++d) {
      require(a.grads[k * p.D + d].dw_x, layer_name("grads", k, d, p) + ".dw_x");
      require(a.grads[k * p.D + d].dw_h, layer_name("grads", k, d, p) + ".dw_h");
    }
  if (s.cell.cell == Cell::lstm) {
    require(a.dc0, "dc0");
  } else {
    require_absent(a.c0, "c0", s.cell.cell);
    require_absent(a.dc_n, "dc_n", s.cell.cell);
    require_absent(a.dc0, "dc0", s.cell.cell);
  }
  {
    detail::Spans spans;
    input_spans(spans, p, options, a.x, a.weights, a.h0, a.c0);
    spans.input("dy", a.dy, p.layer_rows);
    spans.input("dh_n", a.dh_n, p.L * p.D * p.B * p.R);
    spans.input("dc_n", a.dc_n, p.L * p.D * p.B * p.H);
    spans.inout("cache", a.cache, p.cache_total());
    spans.output("dx", a.dx, p.rows * p.I);
    spans.output("dh0", a.dh0, p.L * p.D * p.B * p.R);
    spans.output("dc0", a.dc0, p.L * p.D * p.B * p.H);
    const i64 GH = p.G * p.H;
    for (i64 k = 0; k < p.L; ++k)
      for (i64 d = 0; d < p.D; ++d) {
        const LayerGradients<T>& g = a.grads[k * p.D + d];
        const std::string name = layer_name("grads", k, d, p) + ".";
        spans.output(name + "dw_x", g.dw_x, p.layer_dims(k).input * GH);
        spans.output(name + "dw_h", g.dw_h, p.R * GH);
        spans.output(name + "db", g.db, GH);
        spans.output(name + "db_h", g.db_h, GH);
        if (p.variant) detail::variant_grad_spans(spans, g.variant, p.H, p.R, GH, name);
      }
    spans.output("workspace", a.workspace, p.backward_workspace());
    spans.check();
  }
  return p;
}

template <typename T, class Ops>
void walk_backward(const StackSpec& s, const Dims& dims, const SequenceOptions& options,
                   const StackBackwardArgs<T>& a, Ops& ops) {
  const Plan p = check_backward(s, dims, options, a);

  Bump<T> ws(ops.prepare(p, Pass::backward, a.workspace, p.backward_workspace()));
  T* between[2] = {nullptr, nullptr};  // dL/d(input of layer k), k >= 1
  for (i64 i = 0; i < std::min<i64>(p.L - 1, 2); ++i) between[i] = ws.take(p.layer_rows);
  T* dydir[2] = {nullptr, nullptr};
  T* dx_reverse = nullptr;
  if (p.D == 2) {
    dydir[0] = ws.take(p.rows * p.R);
    dydir[1] = ws.take(p.rows * p.R);
    dx_reverse = ws.take(p.rows * std::max(p.I, p.OW));
  }

  const T* dy = a.dy;  // dL/d(output of layer k), row-order (T, B, O), or nullptr
  for (i64 k = p.L - 1; k >= 0; --k) {
    const Dims dk = p.layer_dims(k);
    const T* in = k == 0 ? a.x : a.cache + p.input_offset(k);
    T* dx = k == 0 ? a.dx : between[(k - 1) % 2];
    // concat: each direction gets its half of dy; sum: both get all of it.
    if (p.D == 2 && dy && !p.sum) ops.split(dy, p.rows, p.R, dydir[0], dydir[1]);
    ops.directions(p, k, [&](i64 d) {
      const LayerWeights<T>& w = a.weights[k * p.D + d];
      const LayerGradients<T>& g = a.grads[k * p.D + d];
      SequenceOptions o = options;
      o.reverse = d == 1;
      VariantOptions vbuf;
      BackwardArgs<T> b;
      b.x = in;
      b.w_x = w.w_x;
      b.w_h = w.w_h;
      b.h0 = p.state_h(a.h0, k, d);
      b.c0 = p.state_c(a.c0, k, d);
      b.cache = a.cache + p.cell_offset(k, d);
      b.dy = p.D == 1 || p.sum ? dy : (dy ? dydir[d] : nullptr);
      b.dh_n = p.state_h(a.dh_n, k, d);
      b.dc_n = p.state_c(a.dc_n, k, d);
      b.dx = d == 0 ? dx : dx_reverse;
      b.dh0 = p.state_h(a.dh0, k, d);
      b.dc0 = p.state_c(a.dc0, k, d);
      b.dw_x = g.dw_x;
      b.dw_h = g.dw_h;
      b.db = g.db;
      b.db_h = g.db_h;
      b.weight_layout = a.weight_layout;
      ops.backward(d, s.cell, p.variant_of(s, k, d, vbuf), dk, o, b, w.variant, g.variant);
    });
    // Both directions read the same input: their gradients add.
    if (p.D == 2) ops.add_into(dx, static_cast<const T*>(dx_reverse), p.rows * dk.input);
    if (k > 0 && p.dropout) ops.multiply_into(dx, static_cast<const T*>(a.cache + p.mask_offset(k - 1)), p.layer_rows);
    dy = dx;
  }
}

}  // namespace stack_walk
LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
