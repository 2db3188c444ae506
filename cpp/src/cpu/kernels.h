// The CPU implementations behind lstmcore::forward / backward and the variants, declared
// once per instruction-set variant. Arguments are already validated (cpp/src/) and the
// workspace planned (cpu/plan.h); cpu/dispatch.cpp puts them in the KernelTables.
#pragma once

#include <cstddef>
#include <cstdint>

#include "cpu/isa.h"

#define LSTMCORE_DECLARE_KERNELS(ns)                                                                           \
  namespace ns {                                                                                               \
  PackGeometry pack_geometry(Dtype t, std::int64_t K, std::int64_t H, std::int64_t G);                        \
  template <typename T>                                                                                        \
  void forward(const Context& c, const ForwardPlan& p, const Scratch& s, const CellSpec& spec, const Dims& d,  \
               const SequenceOptions& o, const ForwardArgs<T>& a);                                             \
  template <typename T>                                                                                        \
  void backward(const Context& c, const BackwardPlan& p, const Scratch& s, const CellSpec& spec, const Dims& d, \
                const SequenceOptions& o, const BackwardArgs<T>& a);                                           \
  template <typename T>                                                                                        \
  void variant_forward(const Context& c, const VariantForwardPlan& p, const Scratch& s,                        \
                       const detail::VariantPlan& v, const SequenceOptions& o, const ForwardArgs<T>& a,        \
                       const VariantParams<T>& params);                                                        \
  template <typename T>                                                                                        \
  void variant_backward(const Context& c, const VariantBackwardPlan& p, const Scratch& s,                      \
                        const detail::VariantPlan& v, const SequenceOptions& o, const BackwardArgs<T>& a,      \
                        const VariantParams<T>& params, const VariantGrads<T>& grads);                         \
  template <typename T>                                                                                        \
  void activation(Activation f, const T* x, T* y, std::int64_t n);                                            \
  /* The cells, for forward / backward above. */                                                             \
  template <typename T>                                                                                        \
  void lstm_forward(const Context& c, const ForwardPlan& p, const Scratch& s, const Dims& d,                    \
                    const SequenceOptions& o, const ForwardArgs<T>& a);                                        \
  template <typename T>                                                                                        \
  void lstm_backward(const Context& c, const BackwardPlan& p, const Scratch& s, const Dims& d,                 \
                     const SequenceOptions& o, const BackwardArgs<T>& a);                                      \
  template <typename T>                                                                                        \
  void gru_forward(const Context& c, const ForwardPlan& p, const Scratch& s, bool reset_after, const Dims& d,   \
                   const SequenceOptions& o, const ForwardArgs<T>& a);                                         \
  template <typename T>                                                                                        \
  void gru_backward(const Context& c, const BackwardPlan& p, const Scratch& s, bool reset_after, const Dims& d, \
                    const SequenceOptions& o, const BackwardArgs<T>& a);                                       \
  template <typename T>                                                                                        \
  void rnn_forward(const Context& c, const ForwardPlan& p, const Scratch& s, bool relu, const Dims& d,          \
                   const SequenceOptions& o, const ForwardArgs<T>& a);                                         \
  template <typename T>                                                                                        \
  void rnn_backward(const Context& c, const BackwardPlan& p, const Scratch& s, bool relu, const Dims& d,        \
                    const SequenceOptions& o, const BackwardArgs<T>& a);                                       \
  }

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN
namespace cpu {
LSTMCORE_DECLARE_KERNELS(generic)
LSTMCORE_DECLARE_KERNELS(avx2)
LSTMCORE_DECLARE_KERNELS(avx512)
LSTMCORE_DECLARE_KERNELS(avx512_bf16)
}  // namespace cpu
LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
