// The CPU path below validation (cpu/call.h): plan, one block, the Context's kernels.
#include "cpu/call.h"


#include "cpu/isa.h"
#include "cpu/plan.h"
#include "memory.h"

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN
namespace cpu {
namespace {

// Runs body(scratch) on the caller's memory or on a block of `bytes` from the pool.
template <class Body>
void with_scratch(void* given, std::size_t bytes, Body&& body) {
  if (given) return body(Scratch(given));
  const detail::Block block(bytes);
  body(Scratch(block.data()));
}

// The call's Context with its compute type.
Context with_compute(const Context& c, const CellSpec& spec) {
  Context r = c;
  r.bf16 = spec.compute == Compute::bfloat16;
  return r;
}

}  // namespace

std::size_t forward_bytes(const Context& c, Dtype t, const CellSpec& spec, const Dims& d, bool training) {
  return plan_forward(with_compute(c, spec), t, spec, d, training).bytes;
}

std::size_t backward_bytes(const Context& c, Dtype t, const CellSpec& spec, const Dims& d) {
  return plan_backward(with_compute(c, spec), t, spec, d).bytes;
}

std::size_t variant_forward_bytes(const Context& c, Dtype t, const detail::VariantPlan& p, bool training) {
  return plan_variant_forward(c, t, p, training).bytes;
}

std::size_t variant_backward_bytes(const Context& c, Dtype t, const detail::VariantPlan& p) {
  return plan_variant_backward(c, t, p).bytes;
}

template <typename T>
void run_forward(const Context& call, const CellSpec& spec, const Dims& d, const SequenceOptions& o,
                 const ForwardArgs<T>& a, void* scratch) {
  const Context c = with_compute(call, spec);
  const ForwardPlan plan = plan_forward(c, dtype_of<T>(), spec, d, a.cache != nullptr);
  with_scratch(scratch, plan.bytes,
               [&](const Scratch& s) { c.kernels->entries<T>().forward(c, plan, s, spec, d, o, a); });
}

template <typename T>
void run_backward(const Context& call, const CellSpec& spec, const Dims& d, const SequenceOptions& o,
                  const BackwardArgs<T>& a, void* scratch) {
  const Context c = with_compute(call, spec);
  const BackwardPlan plan = plan_backward(c, dtype_of<T>(), spec, d);
  with_scratch(scratch, plan.bytes,
               [&](const Scratch& s) { c.kernels->entries<T>().backward(c, plan, s, spec, d, o, a); });
}

template <typename T>
void run_variant_forward(const Context& c, const detail::VariantPlan& p, const SequenceOptions& o,
                         const ForwardArgs<T>& a, const VariantParams<T>& v, void* scratch) {
  const VariantForwardPlan plan = plan_variant_forward(c, dtype_of<T>(), p, a.cache != nullptr);
  with_scratch(scratch, plan.bytes,
               [&](const Scratch& s) { c.kernels->entries<T>().variant_forward(c, plan, s, p, o, a, v); });
}

template <typename T>
void run_variant_backward(const Context& c, const detail::VariantPlan& p, const SequenceOptions& o,
                          const BackwardArgs<T>& a, const VariantParams<T>& v, const VariantGrads<T>& g,
                          void* scratch) {
  const VariantBackwardPlan plan = plan_variant_backward(c, dtype_of<T>(), p);
  with_scratch(scratch, plan.bytes,
               [&](const Scratch& s) { c.kernels->entries<T>().variant_backward(c, plan, s, p, o, a, v, g); });
}

#define LSTMCORE_INSTANTIATE(T)                                                                               \
  template void run_forward<T>(const Context&, const CellSpec&, const Dims&, const SequenceOptions&,          \
                               const ForwardArgs<T>&, void*);                                                 \
  template void run_backward<T>(const Context&, const CellSpec&, const Dims&, const SequenceOptions&,         \
                                const BackwardArgs<T>&, void*);                                               \
  template void run_variant_forward<T>(const Context&, const detail::VariantPlan&, const SequenceOptions&,     \
                                       const ForwardArgs<T>&, const VariantParams<T>&, void*);                \
  template void run_variant_backward<T>(const Context&, const detail::VariantPlan&, const SequenceOptions&,    \
                                        const BackwardArgs<T>&, const VariantParams<T>&,                      \
                                        const VariantGrads<T>&, void*);
LSTMCORE_INSTANTIATE(float)
LSTMCORE_INSTANTIATE(double)
#undef LSTMCORE_INSTANTIATE

}  // namespace cpu
LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
