// The instruction-set variants of the CPU kernels and how one is chosen at run time.
#pragma once

#include <cstdint>

#include "lstmcore/recurrent.h"
#include "lstmcore/variants.h"

// Each kernel source is compiled once per variant with LSTMCORE_ISA_NS set to the
// variant's name; a plain build (no CMake define) is the generic variant.
#ifndef LSTMCORE_ISA_NS
#define LSTMCORE_ISA_NS generic
#endif

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN
namespace cpu {

// The number of OpenMP threads worth using for an elementwise pass over `work` values
// (defined once, in common.cpp, outside the instruction-set namespaces).
int threads_for(std::int64_t work);

enum class Activation { exp, expm1, sigmoid, tanh };

// The entry points of one variant.
struct KernelTable {
  const char* name;
  void (*forward_f32)(const CellSpec&, const Dims&, const SequenceOptions&, const ForwardArgs<float>&);
  void (*forward_f64)(const CellSpec&, const Dims&, const SequenceOptions&, const ForwardArgs<double>&);
  void (*backward_f32)(const CellSpec&, const Dims&, const SequenceOptions&, const BackwardArgs<float>&);
  void (*backward_f64)(const CellSpec&, const Dims&, const SequenceOptions&, const BackwardArgs<double>&);
  // The kernels' own exp / expm1 / sigmoid / tanh over n values, for tests.
  void (*activation_f32)(Activation, const float*, float*, std::int64_t);
  void (*activation_f64)(Activation, const double*, double*, std::int64_t);
  // The cell variants' general path (variants.h), validation included.
  void (*variant_forward_f32)(const CellSpec&, const VariantOptions&, const Dims&, const SequenceOptions&,
                              const ForwardArgs<float>&, const VariantParams<float>&);
  void (*variant_forward_f64)(const CellSpec&, const VariantOptions&, const Dims&, const SequenceOptions&,
                              const ForwardArgs<double>&, const VariantParams<double>&);
  void (*variant_backward_f32)(const CellSpec&, const VariantOptions&, const Dims&, const SequenceOptions&,
                               const BackwardArgs<float>&, const VariantParams<float>&, const VariantGrads<float>&);
  void (*variant_backward_f64)(const CellSpec&, const VariantOptions&, const Dims&, const SequenceOptions&,
                               const BackwardArgs<double>&, const VariantParams<double>&,
                               const VariantGrads<double>&);
};

// The variant in use (chosen once from CPUID, or LSTMCORE_ISA, or set_isa()).
const KernelTable& kernels();

}  // namespace cpu
LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
