// Layer stacks on the device: the walk of stack_walk.h (the same validation, cache plan
// and order of calls as the CPU's stack_forward / stack_backward) with the layers run by
// this backend's cells and the glue between layers (direction concatenation and sums,
// dropout masks, the sum of both directions' input gradients) as elementwise kernels.
// Masks come from the same counter-based generator as on the CPU, element for element,
// so a stack gives the CPU's masks on the GPU and a cache moves between the two.
#include "cuda/common.cuh"
#include "stack_walk.h"

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN
namespace cuda {
namespace backend {

namespace {

using stack_walk::MaskSpec;
using stack_walk::Plan;

template <typename T>
__global__ void sum_kernel(const T* a, const T* b, i64 n, T* out) {
  LSTMCORE_FOR_EACH(i, n) out[i] = a[i] + b[i];
}

// out (rows, 2R) = [a | b]
template <typename T>
__global__ void concat_kernel(const T* a, const T* b, i64 rows, i64 R, T* out) {
  LSTMCORE_FOR_EACH(i, rows * 2 * R) {
    const i64 r = i / (2 * R), j = i % (2 * R);
    out[i] = j < R ? a[r * R + j] : b[r * R + j - R];
  }
}

// a, b (rows, R) = the halves of in (rows, 2R)
template <typename T>
__global__ void split_kernel(const T* in, i64 rows, i64 R, T* a, T* b) {
  LSTMCORE_FOR_EACH(i, rows * 2 * R) {
    const i64 r = i / (2 * R), j = i % (2 * R);
    if (j < R)
      a[r * R + j] = in[i];
    else
      b[r * R + j - R] = in[i];
  }
}

template <typename T>
__global__ void add_kernel(T* out, const T* in, i64 n) {
  LSTMCORE_FOR_EACH(i, n) out[i] += in[i];
}

template <typename T>
__global__ void multiply_kernel(T* out, const T* in, i64 n) {
  LSTMCORE_FOR_EACH(i, n) out[i] *= in[i];
}

template <typename T>
__global__ void mask_kernel(MaskSpec m, T* mask) {
  LSTMCORE_FOR_EACH(i, m.rows * m.W) mask[i] = static_cast<T>(m.at(i / m.W, i % m.W));
}

// The Ops of stack_walk.h on device memory: every layer and kernel queued on the call's
// stream, the directions one after the other, scratch in one stream-ordered allocation.
template <typename T>
class DeviceOps {
 public:
  explicit DeviceOps(const Context& ctx) : ctx_(ctx) {}

  T* prepare(const Plan&, stack_walk::Pass, T* given, i64 n) {
    if (given || n <= 0) return given;
    const Slot<T> slot = ws_.reserve<T>(n);
    ws_.allocate(ctx_);
    return ws_.get(slot);
  }
  template <class F>
  void directions(const Plan& p, i64, F&& f) {
    for (i64 d = 0; d < p.D; ++d) f(d);
  }
  void forward(i64, const CellSpec& cell, const VariantOptions* variant, const Dims& d, const SequenceOptions& o,
               const ForwardArgs<T>& f, const VariantParams<T>&) {
    refuse(variant);
    run_forward(ctx_, cell, d, o, f);
  }
  void backward(i64, const CellSpec& cell, const VariantOptions* variant, const Dims& d, const SequenceOptions& o,
                const BackwardArgs<T>& b, const VariantParams<T>&, const VariantGrads<T>&) {
    refuse(variant);
    run_backward(ctx_, cell, d, o, b);
  }
  void sum(const T* a, const T* b, i64 n, T* out) { LSTMCORE_RUN(sum_kernel<T>, n, ctx_.stream, a, b, n, out); }
  void concat(const T* a, const T* b, i64 rows, i64 R, T* out) {
    LSTMCORE_RUN(concat_kernel<T>, rows * 2 * R, ctx_.stream, a, b, rows, R, out);
  }
  void split(const T* in, i64 rows, i64 R, T* a, T* b) {
    LSTMCORE_RUN(split_kernel<T>, rows * 2 * R, ctx_.stream, in, rows, R, a, b);
  }
  void add_into(T* out, const T* in, i64 n) { LSTMCORE_RUN(add_kernel<T>, n, ctx_.stream, out, in, n); }
  void multiply_into(T* out, const T* in, i64 n) { LSTMCORE_RUN(multiply_kernel<T>, n, ctx_.stream, out, in, n); }
  void make_mask(const MaskSpec& m, T* mask) { LSTMCORE_RUN(mask_kernel<T>, m.rows * m.W, ctx_.stream, m, mask); }

 private:
  static void refuse(const VariantOptions* variant) {
    if (variant) throw InvalidArgument("variant: the CUDA backend runs the plain cells only (cell variants: CPU)");
  }
  const Context& ctx_;
  Workspace ws_;
};

}  // namespace

template <typename T>
void stack_forward_on(const Context& ctx, const StackSpec& s, const Dims& d, const SequenceOptions& o,
                      const StackForwardArgs<T>& a) {
  DeviceOps<T> ops(ctx);
  stack_walk::walk_forward(s, d, o, a, ops);
}

template <typename T>
void stack_backward_on(const Context& ctx, const StackSpec& s, const Dims& d, const SequenceOptions& o,
                       const StackBackwardArgs<T>& a) {
  DeviceOps<T> ops(ctx);
  stack_walk::walk_backward(s, d, o, a, ops);
}

template void stack_forward_on<float>(const Context&, const StackSpec&, const Dims&, const SequenceOptions&,
                                      const StackForwardArgs<float>&);
template void stack_forward_on<double>(const Context&, const StackSpec&, const Dims&, const SequenceOptions&,
                                       const StackForwardArgs<double>&);
template void stack_backward_on<float>(const Context&, const StackSpec&, const Dims&, const SequenceOptions&,
                                       const StackBackwardArgs<float>&);
template void stack_backward_on<double>(const Context&, const StackSpec&, const Dims&, const SequenceOptions&,
                                        const StackBackwardArgs<double>&);

}  // namespace backend
}  // namespace cuda
LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
