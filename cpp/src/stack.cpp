// Stacks of layers: validation, the cache plan, and the grid walk (layers × directions)
// that calls lstmcore::forward / backward (or variant_forward / variant_backward for a
// cell variant) once per layer and direction. The only
// arithmetic here is the glue between layers: the concatenation of directions, the
// dropout masks and the sum of the gradients of both directions' shared input.
#include "lstmcore/stack.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <memory>
#include <string>

#include "common.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN

namespace {

using i64 = std::int64_t;

bool same_activation(const ActivationSpec& a, const ActivationSpec& b) {
  return a.kind == b.kind && a.alpha == b.alpha && a.beta == b.beta;
}

// Whether the options are the cell's own (the packed kernels compute exactly that).
bool is_plain(const VariantOptions& o, Cell cell) {
  const VariantOptions d = variant_defaults(cell);
  return same_activation(o.f, d.f) && same_activation(o.g, d.g) && same_activation(o.h, d.h) && o.clip == 0.0 &&
         !o.input_forget && o.forget_gate && !o.peepholes && o.proj == 0 && !o.layer_norm && o.zoneout_h == 0.0 &&
         o.zoneout_c == 0.0;
}

// Sizes of one stack and the offsets of its cache regions (elements).
struct Plan {
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
std::uint64_t variant_seed(const StackSpec& s, i64 k, i64 d) {
  return detail::stream_key(s.seed, (std::uint64_t{1} << 32) + static_cast<std::uint64_t>(k * 2 + d));
}

void require(const void* p, const std::string& name) {
  if (!p) throw InvalidArgument(name + ": required, got a null pointer");
}

void require_absent(const void* p, const char* name, Cell cell) {
  if (p)
    throw InvalidArgument(std::string(name) + ": the " + cell_name(cell) + " cell has no cell state; expected nullptr");
}

std::string layer_name(const char* what, i64 k, i64 d, const Plan& p) {
  return std::string(what) + "[" + std::to_string(k * p.D + d) + "] (layer " + std::to_string(k) +
         (d ? ", reverse" : ", forward") + ")";
}

void check_options(const Plan& p, const SequenceOptions& o) {
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
void check_weights(const Plan& p, const LayerWeights<T>* w) {
  require(w, "weights");
  for (i64 k = 0; k < p.L; ++k)
    for (i64 d = 0; d < p.D; ++d) {
      require(w[k * p.D + d].w_x, layer_name("weights", k, d, p) + ".w_x");
      require(w[k * p.D + d].w_h, layer_name("weights", k, d, p) + ".w_h");
    }
}

// Scratch memory: the caller's, or one allocation for the whole call.
template <typename T>
class Scratch {
 public:
  Scratch(T* given, i64 elements) : next_(given) {
    if (!given && elements > 0) {
      owned_.reset(new T[static_cast<std::size_t>(elements)]);
      next_ = owned_.get();
    }
  }
  T* take(i64 n) {
    T* p = next_;
    next_ += n;
    return p;
  }

 private:
  std::unique_ptr<T[]> owned_;
  T* next_;
};

// Whether the two directions of layer k run at the same time, each on one thread.
// Worth it when one direction's step is too small to share the threads (the kernels
// run such steps on about one thread anyway) but the whole layer is large enough to
// pay for waking a second thread (~2·T·B·G·H·(I_k + H) flops ≥ 2^19, some 50 µs);
// otherwise each direction in turn gets all the threads.
bool concurrent_directions(const Plan& p, i64 k) {
#ifdef _OPENMP
  if (p.D != 2 || get_num_threads() < 2) return false;
  const double step = static_cast<double>(p.B) * p.G * p.H;
  const double flops = 2.0 * p.T * step * static_cast<double>(p.layer_dims(k).input + p.H);
  return step <= 16384 && flops >= 524288;
#else
  (void)p;
  (void)k;
  return false;
#endif
}

template <class F>
void for_directions(const Plan& p, i64 k, F&& f) {
  if (!concurrent_directions(p, k)) {
    for (i64 d = 0; d < p.D; ++d) f(d);
    return;
  }
  std::exception_ptr error[2];
#ifdef _OPENMP
#pragma omp parallel sections num_threads(2)
  {
#pragma omp section
    {
      try {
        f(0);
      } catch (...) {
        error[0] = std::current_exception();
      }
    }
#pragma omp section
    {
      try {
        f(1);
      } catch (...) {
        error[1] = std::current_exception();
      }
    }
  }
#endif
  for (auto& e : error)
    if (e) std::rethrow_exception(e);
}

// Threads for an elementwise pass over n values.
int threads_for_glue(i64 n) {
  if (n < (i64{1} << 16)) return 1;
  return std::max(1, std::min<int>(get_num_threads(), static_cast<int>(n >> 15)));
}

// out (n) = a + b.
template <typename T>
void sum_directions(const T* a, const T* b, i64 n, T* out) {
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads_for_glue(n)) schedule(static)
#endif
  for (i64 i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

// out (rows, 2H) = [a | b] per row.
template <typename T>
void concat_directions(const T* a, const T* b, i64 rows, i64 H, T* out) {
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads_for_glue(rows * 2 * H)) schedule(static)
#endif
  for (i64 r = 0; r < rows; ++r) {
    std::memcpy(out + r * 2 * H, a + r * H, sizeof(T) * H);
    std::memcpy(out + r * 2 * H + H, b + r * H, sizeof(T) * H);
  }
}

// a (rows, H), b (rows, H) = the halves of in (rows, 2H).
template <typename T>
void split_directions(const T* in, i64 rows, i64 H, T* a, T* b) {
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads_for_glue(rows * 2 * H)) schedule(static)
#endif
  for (i64 r = 0; r < rows; ++r) {
    std::memcpy(a + r * H, in + r * 2 * H, sizeof(T) * H);
    std::memcpy(b + r * H, in + r * 2 * H + H, sizeof(T) * H);
  }
}

// out[i] (op)= in[i] over n values.
template <typename T>
void add_into(T* out, const T* in, i64 n) {
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads_for_glue(n)) schedule(static)
#endif
  for (i64 i = 0; i < n; ++i) out[i] += in[i];
}

template <typename T>
void multiply_into(T* out, const T* in, i64 n) {
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads_for_glue(n)) schedule(static)
#endif
  for (i64 i = 0; i < n; ++i) out[i] *= in[i];
}

// The dropout mask of layer k's output, row-order (T, B, O): element (t, b, j)
// draws u = the top 53 bits of mix64(key_k + golden·(n + 1)), n = (t·B + b)·O + j,
// a uniform double in [0, 1), and is kept (scaled by 1/(1-p)) when u >= p. The index
// n is time-major whatever the row order, so masks do not depend on batch_first.
template <typename T>
void make_mask(const Plan& p, const StackSpec& s, bool batch_first, i64 k, T* mask) {
  const std::uint64_t key = detail::stream_key(s.seed, static_cast<std::uint64_t>(k + 1));
  const double prob = s.dropout;
  const T keep = prob < 1.0 ? static_cast<T>(1.0 / (1.0 - prob)) : T(0);
  const i64 W = p.OW;
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads_for_glue(p.layer_rows)) schedule(static)
#endif
  for (i64 r = 0; r < p.rows; ++r) {
    const i64 t = batch_first ? r % p.T : r / p.B;
    const i64 b = batch_first ? r / p.T : r % p.B;
    const std::uint64_t base = static_cast<std::uint64_t>((t * p.B + b) * W);
    T* m = mask + r * W;
    for (i64 j = 0; j < W; ++j) {
      const double u = detail::counter_uniform(key, base + static_cast<std::uint64_t>(j));
      m[j] = u >= prob ? keep : T(0);
    }
  }
}

}  // namespace

std::size_t stack_cache_size(const StackSpec& spec, const Dims& dims) {
  return static_cast<std::size_t>(Plan(spec, dims).cache_total());
}

std::uint64_t stack_variant_seed(const StackSpec& spec, std::int64_t layer, int direction) {
  return variant_seed(spec, layer, direction);
}

std::size_t stack_dropout_mask_offset(const StackSpec& spec, const Dims& dims, std::int64_t layer) {
  const Plan p(spec, dims);
  if (!p.dropout) throw InvalidArgument("dropout: the stack keeps no masks (p = 0 or one layer)");
  if (layer < 0 || layer >= p.L - 1)
    throw InvalidArgument("layer: expected 0.." + std::to_string(p.L - 2) + ", got " + std::to_string(layer));
  return static_cast<std::size_t>(p.mask_offset(layer));
}

std::size_t stack_forward_workspace_size(const StackSpec& spec, const Dims& dims, bool training) {
  return static_cast<std::size_t>(Plan(spec, dims).forward_workspace(training));
}

std::size_t stack_backward_workspace_size(const StackSpec& spec, const Dims& dims) {
  return static_cast<std::size_t>(Plan(spec, dims).backward_workspace());
}

template <typename T>
void stack_forward(const StackSpec& s, const Dims& dims, const SequenceOptions& options,
                   const StackForwardArgs<T>& a) {
  const Plan p(s, dims);
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

  Scratch<T> ws(a.workspace, p.forward_workspace(training));
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
    for_directions(p, k, [&](i64 d) {
      const LayerWeights<T>& w = a.weights[k * p.D + d];
      SequenceOptions o = options;
      o.reverse = d == 1;
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
      if (p.variant) {
        VariantOptions vo = *p.variant;
        vo.seed = variant_seed(s, k, d);
        variant_forward<T>(s.cell, vo, dk, o, f, w.variant);
      } else {
        forward<T>(s.cell, dk, o, f);
      }
    });
    if (p.D == 2) {
      if (p.sum)
        sum_directions(ydir[0], ydir[1], p.rows * p.R, out);
      else
        concat_directions(ydir[0], ydir[1], p.rows, p.R, out);
    }
    if (training && p.dropout && k < p.L - 1) {
      T* mask = a.cache + p.mask_offset(k);
      make_mask(p, s, options.batch_first, k, mask);
      multiply_into(out, mask, p.layer_rows);
    }
    in = out;
  }
}

template <typename T>
void stack_backward(const StackSpec& s, const Dims& dims, const SequenceOptions& options,
                    const StackBackwardArgs<T>& a) {
  const Plan p(s, dims);
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

  Scratch<T> ws(a.workspace, p.backward_workspace());
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
    if (p.D == 2 && dy && !p.sum) split_directions(dy, p.rows, p.R, dydir[0], dydir[1]);
    for_directions(p, k, [&](i64 d) {
      const LayerWeights<T>& w = a.weights[k * p.D + d];
      const LayerGradients<T>& g = a.grads[k * p.D + d];
      SequenceOptions o = options;
      o.reverse = d == 1;
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
      if (p.variant) {
        VariantOptions vo = *p.variant;
        vo.seed = variant_seed(s, k, d);
        variant_backward<T>(s.cell, vo, dk, o, b, w.variant, g.variant);
      } else {
        backward<T>(s.cell, dk, o, b);
      }
    });
    // Both directions read the same input: their gradients add.
    if (p.D == 2) add_into(dx, dx_reverse, p.rows * dk.input);
    if (k > 0 && p.dropout) multiply_into(dx, static_cast<const T*>(a.cache + p.mask_offset(k - 1)), p.layer_rows);
    dy = dx;
  }
}

template void stack_forward<float>(const StackSpec&, const Dims&, const SequenceOptions&,
                                   const StackForwardArgs<float>&);
template void stack_forward<double>(const StackSpec&, const Dims&, const SequenceOptions&,
                                    const StackForwardArgs<double>&);
template void stack_backward<float>(const StackSpec&, const Dims&, const SequenceOptions&,
                                    const StackBackwardArgs<float>&);
template void stack_backward<double>(const StackSpec&, const Dims&, const SequenceOptions&,
                                     const StackBackwardArgs<double>&);

LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
