// Stacks of layers on the CPU: the walk of stack_walk.h (validation, the cache plan, the
// grid of layers × directions) with each layer and direction run by the CPU path of a
// single layer (cpu/call.h; the general path for a cell variant) under the stack call's
// Context and in the stack call's one block of scratch. The only
// arithmetic here is the glue between layers: the concatenation of directions, the
// dropout masks and the sum of the gradients of both directions' shared input.
#include "lstmcore/stack.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <optional>
#include <string>

#include "common.h"
#include "cpu/call.h"
#include "cpu/context.h"
#include "memory.h"
#include "stack_walk.h"
#include "variant_plan.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN

namespace {

using i64 = std::int64_t;
using stack_walk::MaskSpec;
using stack_walk::Pass;
using stack_walk::Plan;

// Whether the two directions of layer k run at the same time, each on one thread.
// Worth it when one direction's step is too small to share the threads (the kernels
// run such steps on about one thread anyway) but the whole layer is large enough to
// pay for waking a second thread (~2·T·B·G·H·(I_k + H) flops ≥ 2^19, some 50 µs);
// otherwise each direction in turn gets all the threads.
bool concurrent_directions(const cpu::Context& c, const Plan& p, i64 k) {
#ifdef _OPENMP
  if (p.D != 2 || c.threads < 2) return false;
  const double step = static_cast<double>(p.B) * p.G * p.H;
  const double flops = 2.0 * p.T * step * static_cast<double>(p.layer_dims(k).input + p.H);
  return step <= 16384 && flops >= 524288;
#else
  (void)c;
  (void)p;
  (void)k;
  return false;
#endif
}

template <class F>
void for_directions(const cpu::Context& c, const Plan& p, i64 k, F&& f) {
  if (!concurrent_directions(c, p, k)) {
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
int threads_for_glue(const cpu::Context& c, i64 n) {
  if (n < (i64{1} << 16)) return 1;
  return std::max(1, std::min<int>(c.threads, static_cast<int>(n >> 15)));
}

// out (n) = a + b.
template <typename T>
void sum_directions([[maybe_unused]] const cpu::Context& c, const T* a, const T* b, i64 n, T* out) {
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads_for_glue(c, n)) schedule(static)
#endif
  for (i64 i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

// out (rows, 2H) = [a | b] per row.
template <typename T>
void concat_directions([[maybe_unused]] const cpu::Context& c, const T* a, const T* b, i64 rows, i64 H, T* out) {
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads_for_glue(c, rows * 2 * H)) schedule(static)
#endif
  for (i64 r = 0; r < rows; ++r) {
    std::memcpy(out + r * 2 * H, a + r * H, sizeof(T) * H);
    std::memcpy(out + r * 2 * H + H, b + r * H, sizeof(T) * H);
  }
}

// a (rows, H), b (rows, H) = the halves of in (rows, 2H).
template <typename T>
void split_directions([[maybe_unused]] const cpu::Context& c, const T* in, i64 rows, i64 H, T* a, T* b) {
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads_for_glue(c, rows * 2 * H)) schedule(static)
#endif
  for (i64 r = 0; r < rows; ++r) {
    std::memcpy(a + r * H, in + r * 2 * H, sizeof(T) * H);
    std::memcpy(b + r * H, in + r * 2 * H + H, sizeof(T) * H);
  }
}

// out[i] (op)= in[i] over n values.
template <typename T>
void add_values([[maybe_unused]] const cpu::Context& c, T* out, const T* in, i64 n) {
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads_for_glue(c, n)) schedule(static)
#endif
  for (i64 i = 0; i < n; ++i) out[i] += in[i];
}

template <typename T>
void multiply_values([[maybe_unused]] const cpu::Context& c, T* out, const T* in, i64 n) {
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads_for_glue(c, n)) schedule(static)
#endif
  for (i64 i = 0; i < n; ++i) out[i] *= in[i];
}

// The stack on the CPU: host memory, the CPU path per layer (cpu/call.h) with the
// stack's Context, OpenMP glue. The whole call's scratch is one block planned up front:
// the glue's regions (unless the caller gave its workspace) and one slot per direction
// that runs at the same time, each the size of the largest layer's workspace.
template <typename T>
class HostOps {
 public:
  explicit HostOps(const cpu::Context& c) : ctx_(c) {}

  T* prepare(const Plan& p, Pass pass, T* given, i64 n) {
    constexpr cpu::Dtype dt = cpu::dtype_of<T>();
    std::size_t layer = 0;
    bool concurrent = false;
    for (i64 k = 0; k < p.L; ++k) {
      const Dims dk = p.layer_dims(k);
      std::size_t bytes;
      if (p.variant) {
        const detail::VariantPlan v = detail::make_variant_plan(p.cell, *p.variant, dk);
        bytes = pass == Pass::backward ? cpu::variant_backward_bytes(ctx_, dt, v)
                                       : cpu::variant_forward_bytes(ctx_, dt, v, pass == Pass::training);
      } else {
        bytes = pass == Pass::backward ? cpu::backward_bytes(ctx_, dt, p.cell, dk)
                                       : cpu::forward_bytes(ctx_, dt, p.cell, dk, pass == Pass::training);
      }
      layer = std::max(layer, bytes);
      concurrent = concurrent || concurrent_directions(ctx_, p, k);
    }
    slot_ = (layer + 63) / 64 * 64;
    const std::size_t glue = given || n <= 0 ? 0 : (static_cast<std::size_t>(n) * sizeof(T) + 63) / 64 * 64;
    block_.emplace(glue + slot_ * (concurrent ? 2 : 1));
    layers_ = static_cast<unsigned char*>(block_->data()) + glue;
    if (given || n <= 0) return given;
    return static_cast<T*>(block_->data());
  }
  template <class F>
  void directions(const Plan& p, i64 k, F&& f) {
    concurrent_ = concurrent_directions(ctx_, p, k);
    for_directions(ctx_, p, k, f);
  }
  void forward(i64 d, const CellSpec& cell, const VariantOptions* variant, const Dims& dims, const SequenceOptions& o,
               const ForwardArgs<T>& f, const VariantParams<T>& params) {
    detail::check_forward_args(cell, dims, o, f);
    if (variant) {
      detail::check_compute(cell, false, "the plain cells (the cell variants compute natively)");
      const detail::VariantPlan v = detail::make_variant_plan(cell, *variant, dims);
      detail::check_variant_params(v, params);
      cpu::run_variant_forward(ctx_, v, o, f, params, slot(d));
    } else {
      cpu::run_forward(ctx_, cell, dims, o, f, slot(d));
    }
  }
  void backward(i64 d, const CellSpec& cell, const VariantOptions* variant, const Dims& dims,
                const SequenceOptions& o, const BackwardArgs<T>& b, const VariantParams<T>& params,
                const VariantGrads<T>& grads) {
    detail::check_backward_args(cell, dims, o, b);
    if (variant) {
      detail::check_compute(cell, false, "the plain cells (the cell variants compute natively)");
      const detail::VariantPlan v = detail::make_variant_plan(cell, *variant, dims);
      detail::check_variant_params(v, params);
      detail::check_variant_grads(v, grads);
      cpu::run_variant_backward(ctx_, v, o, b, params, grads, slot(d));
    } else {
      cpu::run_backward(ctx_, cell, dims, o, b, slot(d));
    }
  }
  void sum(const T* a, const T* b, i64 n, T* out) { sum_directions(ctx_, a, b, n, out); }
  void concat(const T* a, const T* b, i64 rows, i64 R, T* out) { concat_directions(ctx_, a, b, rows, R, out); }
  void split(const T* in, i64 rows, i64 R, T* a, T* b) { split_directions(ctx_, in, rows, R, a, b); }
  void add_into(T* out, const T* in, i64 n) { add_values(ctx_, out, in, n); }
  void multiply_into(T* out, const T* in, i64 n) { multiply_values(ctx_, out, in, n); }
  void make_mask(const MaskSpec& m, T* mask) {
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads_for_glue(ctx_, m.rows * m.W)) schedule(static)
#endif
    for (i64 r = 0; r < m.rows; ++r)
      for (i64 j = 0; j < m.W; ++j) mask[r * m.W + j] = static_cast<T>(m.at(r, j));
  }

 private:
  // Direction d's slot: its own while the directions run at the same time, else the one.
  void* slot(i64 d) const { return layers_ + (concurrent_ ? static_cast<std::size_t>(d) * slot_ : 0); }

  const cpu::Context ctx_;
  std::optional<detail::Block> block_;
  unsigned char* layers_ = nullptr;
  std::size_t slot_ = 0;
  bool concurrent_ = false;
};

}  // namespace

std::size_t stack_cache_size(const StackSpec& spec, const Dims& dims) {
  return static_cast<std::size_t>(Plan(spec, dims).cache_total());
}

std::uint64_t stack_variant_seed(const StackSpec& spec, std::int64_t layer, int direction) {
  return stack_walk::variant_seed(spec, layer, direction);
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
  HostOps<T> ops(cpu::capture());
  stack_walk::walk_forward(s, dims, options, a, ops);
}

template <typename T>
void stack_backward(const StackSpec& s, const Dims& dims, const SequenceOptions& options,
                    const StackBackwardArgs<T>& a) {
  HostOps<T> ops(cpu::capture());
  stack_walk::walk_backward(s, dims, options, a, ops);
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
