// A CPU call below its validation: plan the workspace for the call's Context, take one
// block for it (memory.h; or carve the caller's, at least the plan's bytes), run the
// kernels of the Context's instruction set. Used by the public entry points
// (recurrent.cpp, variants.cpp) and by the stack's layers (stack.cpp), which pass the
// stack's Context and a slot of the stack's own block. Internal: not installed.
#pragma once

#include <cstddef>

#include "cpu/context.h"
#include "lstmcore/recurrent.h"
#include "lstmcore/variants.h"
#include "variant_plan.h"

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN
namespace cpu {

// Workspace bytes of the calls below.
std::size_t forward_bytes(const Context& c, Dtype t, const CellSpec& spec, const Dims& d, bool training);
std::size_t backward_bytes(const Context& c, Dtype t, const CellSpec& spec, const Dims& d);
std::size_t variant_forward_bytes(const Context& c, Dtype t, const detail::VariantPlan& p, bool training);
std::size_t variant_backward_bytes(const Context& c, Dtype t, const detail::VariantPlan& p);

// `scratch`: nullptr (a block from the pool), or 64-byte aligned memory of at least the
// call's bytes above.
template <typename T>
void run_forward(const Context& c, const CellSpec& spec, const Dims& d, const SequenceOptions& o,
                 const ForwardArgs<T>& a, void* scratch = nullptr);
template <typename T>
void run_backward(const Context& c, const CellSpec& spec, const Dims& d, const SequenceOptions& o,
                  const BackwardArgs<T>& a, void* scratch = nullptr);
template <typename T>
void run_variant_forward(const Context& c, const detail::VariantPlan& p, const SequenceOptions& o,
                         const ForwardArgs<T>& a, const VariantParams<T>& v, void* scratch = nullptr);
template <typename T>
void run_variant_backward(const Context& c, const detail::VariantPlan& p, const SequenceOptions& o,
                          const BackwardArgs<T>& a, const VariantParams<T>& v, const VariantGrads<T>& g,
                          void* scratch = nullptr);

}  // namespace cpu
LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
