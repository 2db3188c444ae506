// The instruction-set variants of the CPU kernels and how one is chosen at run time.
#pragma once

#include <cstdint>

#include "cpu/context.h"
#include "cpu/plan.h"
#include "lstmcore/recurrent.h"
#include "lstmcore/variants.h"
#include "variant_plan.h"

// Each kernel source is compiled once per variant with LSTMCORE_ISA_NS set to the
// variant's name; a plain build (no CMake define) is the generic variant.
#ifndef LSTMCORE_ISA_NS
#define LSTMCORE_ISA_NS generic
#endif

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN
namespace cpu {

enum class Activation { exp, expm1, sigmoid, tanh };

// The kernels of one variant for one element type. Each gets the call's Context, the
// plan of its workspace and the block the plan carves; the arguments are validated.
template <typename T>
struct Entries {
  void (*forward)(const Context&, const ForwardPlan&, const Scratch&, const CellSpec&, const Dims&,
                  const SequenceOptions&, const ForwardArgs<T>&);
  void (*backward)(const Context&, const BackwardPlan&, const Scratch&, const CellSpec&, const Dims&,
                   const SequenceOptions&, const BackwardArgs<T>&);
  // The cell variants' general path (variants.h), on a validated plan.
  void (*variant_forward)(const Context&, const VariantForwardPlan&, const Scratch&, const detail::VariantPlan&,
                          const SequenceOptions&, const ForwardArgs<T>&, const VariantParams<T>&);
  void (*variant_backward)(const Context&, const VariantBackwardPlan&, const Scratch&, const detail::VariantPlan&,
                           const SequenceOptions&, const BackwardArgs<T>&, const VariantParams<T>&,
                           const VariantGrads<T>&);
  // The kernels' own exp / expm1 / sigmoid / tanh over n values (lstmcore/testing.h).
  void (*activation)(Activation, const T*, T*, std::int64_t);
};

// The entry points of one variant.
struct KernelTable {
  const char* name;
  // How this variant packs a K × (G·H) operand (its vector width decides the blocks).
  PackGeometry (*pack_geometry)(Dtype, std::int64_t K, std::int64_t H, std::int64_t G);
  Entries<float> f32;
  Entries<double> f64;

  template <typename T>
  const Entries<T>& entries() const {
    if constexpr (sizeof(T) == 4)
      return f32;
    else
      return f64;
  }
};

// The variant in use now (chosen once from CPUID, or LSTMCORE_ISA, or set_isa()). Read
// only by capture(): a call keeps the table of its Context.
const KernelTable& current_kernels();

}  // namespace cpu
LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
