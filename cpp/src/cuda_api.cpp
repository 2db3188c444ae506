// lstmcore::cuda entry points: the CPU path's validation (common.cpp), then the CUDA
// backend (cpp/src/cuda/) when it is built, or cuda::Error when it is not. Compiled in
// every build, so <lstmcore/cuda.h> links everywhere and tells at run time what is there.
#include "lstmcore/cuda.h"

#include "common.h"
#include "stack_walk.h"
#ifdef LSTMCORE_WITH_CUDA
#include "cuda/backend.h"
#endif

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN
namespace cuda {

#ifdef LSTMCORE_WITH_CUDA
bool built() noexcept { return true; }
int device_count() noexcept { return backend::device_count(); }
std::string describe() { return backend::describe(); }
#else
namespace {
[[noreturn]] void not_built() {
  throw Error("lstmcore was built without CUDA: rebuild with -DLSTMCORE_CUDA=ON "
              "(pip install . -C cmake.define.LSTMCORE_CUDA=ON)");
}
}  // namespace
bool built() noexcept { return false; }
int device_count() noexcept { return 0; }
std::string describe() { return "cuda: no"; }
#endif

template <typename T>
void forward(const CellSpec& spec, const Dims& d, const SequenceOptions& o, const ForwardArgs<T>& a,
             const DeviceOptions& dev) {
  detail::check_compute(spec, false, "the CPU path (the CUDA entry points compute natively)");
  detail::check_forward_args(spec, d, o, a);
  detail::Spans spans;
  detail::forward_spans(spans, spec, d, o, a, d.hidden, static_cast<std::int64_t>(cache_size(spec, d)));
  spans.check();
#ifdef LSTMCORE_WITH_CUDA
  backend::forward(spec, d, o, a, dev);
#else
  (void)dev;
  not_built();
#endif
}

template <typename T>
void backward(const CellSpec& spec, const Dims& d, const SequenceOptions& o, const BackwardArgs<T>& a,
              const DeviceOptions& dev) {
  detail::check_compute(spec, false, "the CPU path (the CUDA entry points compute natively)");
  detail::check_backward_args(spec, d, o, a);
  detail::Spans spans;
  detail::backward_spans(spans, spec, d, o, a, d.hidden, static_cast<std::int64_t>(cache_size(spec, d)));
  spans.check();
#ifdef LSTMCORE_WITH_CUDA
  backend::backward(spec, d, o, a, dev);
#else
  (void)dev;
  not_built();
#endif
}

namespace {
// The cell variants run on the CPU only.
void refuse_variant(const stack_walk::Plan& p) {
  if (p.variant)
    throw InvalidArgument("variant: the CUDA backend runs the plain cells only; cell variants run on the CPU");
}
}  // namespace

// Everything is checked before the device is touched (the walk checks again).
template <typename T>
void stack_forward(const StackSpec& spec, const Dims& d, const SequenceOptions& o, const StackForwardArgs<T>& a,
                   const DeviceOptions& dev) {
  refuse_variant(stack_walk::Plan(spec, d));
  stack_walk::check_forward(spec, d, o, a);
#ifdef LSTMCORE_WITH_CUDA
  backend::stack_forward(spec, d, o, a, dev);
#else
  (void)dev;
  not_built();
#endif
}

template <typename T>
void stack_backward(const StackSpec& spec, const Dims& d, const SequenceOptions& o, const StackBackwardArgs<T>& a,
                    const DeviceOptions& dev) {
  refuse_variant(stack_walk::Plan(spec, d));
  stack_walk::check_backward(spec, d, o, a);
#ifdef LSTMCORE_WITH_CUDA
  backend::stack_backward(spec, d, o, a, dev);
#else
  (void)dev;
  not_built();
#endif
}

template void stack_forward<float>(const StackSpec&, const Dims&, const SequenceOptions&,
                                   const StackForwardArgs<float>&, const DeviceOptions&);
template void stack_forward<double>(const StackSpec&, const Dims&, const SequenceOptions&,
                                    const StackForwardArgs<double>&, const DeviceOptions&);
template void stack_backward<float>(const StackSpec&, const Dims&, const SequenceOptions&,
                                    const StackBackwardArgs<float>&, const DeviceOptions&);
template void stack_backward<double>(const StackSpec&, const Dims&, const SequenceOptions&,
                                     const StackBackwardArgs<double>&, const DeviceOptions&);

template void forward<float>(const CellSpec&, const Dims&, const SequenceOptions&, const ForwardArgs<float>&,
                             const DeviceOptions&);
template void forward<double>(const CellSpec&, const Dims&, const SequenceOptions&, const ForwardArgs<double>&,
                              const DeviceOptions&);
template void backward<float>(const CellSpec&, const Dims&, const SequenceOptions&, const BackwardArgs<float>&,
                              const DeviceOptions&);
template void backward<double>(const CellSpec&, const Dims&, const SequenceOptions&, const BackwardArgs<double>&,
                               const DeviceOptions&);

}  // namespace cuda
LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
