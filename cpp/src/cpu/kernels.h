// The CPU implementations behind lstmcore::forward / backward, declared once per
// instruction-set variant. Arguments are already validated by cpp/src/recurrent.cpp.
#pragma once

#include <cstddef>
#include <cstdint>

#include "cpu/isa.h"
#include "lstmcore/recurrent.h"

#define LSTMCORE_DECLARE_KERNELS(ns)                                                                       \
  namespace ns {                                                                                           \
  template <typename T>                                                                                    \
  void lstm_forward(const Dims& d, const SequenceOptions& o, const ForwardArgs<T>& a);                     \
  template <typename T>                                                                                    \
  void lstm_backward(const Dims& d, const SequenceOptions& o, const BackwardArgs<T>& a);                   \
  template <typename T>                                                                                    \
  void gru_forward(bool reset_after, const Dims& d, const SequenceOptions& o, const ForwardArgs<T>& a);    \
  template <typename T>                                                                                    \
  void gru_backward(bool reset_after, const Dims& d, const SequenceOptions& o, const BackwardArgs<T>& a);  \
  template <typename T>                                                                                    \
  void rnn_forward(bool relu, const Dims& d, const SequenceOptions& o, const ForwardArgs<T>& a);           \
  template <typename T>                                                                                    \
  void rnn_backward(bool relu, const Dims& d, const SequenceOptions& o, const BackwardArgs<T>& a);         \
  /* Whole-call entries: pick the cell, set the variant's GEMM threads. */                                \
  template <typename T>                                                                                    \
  void forward(const CellSpec& s, const Dims& d, const SequenceOptions& o, const ForwardArgs<T>& a);       \
  template <typename T>                                                                                    \
  void backward(const CellSpec& s, const Dims& d, const SequenceOptions& o, const BackwardArgs<T>& a);     \
  template <typename T>                                                                                    \
  void activation(Activation f, const T* x, T* y, std::int64_t n);                                        \
  /* The cell variants (cpu/variants.cpp), validation included. */                                        \
  std::size_t variant_cache_size(const CellSpec& spec, const VariantOptions& o, const Dims& d);            \
  template <typename T>                                                                                    \
  void variant_forward(const CellSpec& s, const VariantOptions& vo, const Dims& d, const SequenceOptions& o, \
                       const ForwardArgs<T>& a, const VariantParams<T>& v);                                \
  template <typename T>                                                                                    \
  void variant_backward(const CellSpec& s, const VariantOptions& vo, const Dims& d,                        \
                        const SequenceOptions& o, const BackwardArgs<T>& a, const VariantParams<T>& v,     \
                        const VariantGrads<T>& g);                                                         \
  }

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN
namespace cpu {
LSTMCORE_DECLARE_KERNELS(generic)
LSTMCORE_DECLARE_KERNELS(avx2)
LSTMCORE_DECLARE_KERNELS(avx512)
}  // namespace cpu
LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
