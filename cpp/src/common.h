// Internal helpers shared by the validation and dispatch layer.
#pragma once

#include <cstdint>

#include "lstmcore/recurrent.h"

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN
namespace detail {

// a·b, or InvalidArgument naming `what` when it overflows (with headroom for element sizes).
std::int64_t checked_mul(std::int64_t a, std::int64_t b, const char* what);
// Sizes >= 1 and products that fit.
void check_dims(const CellSpec& spec, const Dims& d);

// Every check of one call before any arithmetic: sizes, lengths (read on the host),
// required and forbidden pointers. Shared by the CPU and CUDA entry points, so both
// refuse the same arguments with the same messages.
template <typename T>
void validate_forward(const CellSpec& spec, const Dims& d, const SequenceOptions& o, const ForwardArgs<T>& a);
template <typename T>
void validate_backward(const CellSpec& spec, const Dims& d, const SequenceOptions& o, const BackwardArgs<T>& a);

}  // namespace detail
LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
