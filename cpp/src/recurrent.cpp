// Validation and dispatch for every cell: checks the arguments once (common.cpp), then
// hands them to the CPU kernels (cpp/src/cpu/), which assume they are valid.
#include "lstmcore/recurrent.h"

#include <type_traits>

#include "common.h"
#include "cpu/isa.h"

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN

template <typename T>
void forward(const CellSpec& spec, const Dims& d, const SequenceOptions& o, const ForwardArgs<T>& a) {
  detail::check_forward_args(spec, d, o, a);
  const cpu::KernelTable& k = cpu::kernels();
  if constexpr (std::is_same_v<T, float>)
    k.forward_f32(spec, d, o, a);
  else
    k.forward_f64(spec, d, o, a);
}

template <typename T>
void backward(const CellSpec& spec, const Dims& d, const SequenceOptions& o, const BackwardArgs<T>& a) {
  detail::check_backward_args(spec, d, o, a);
  const cpu::KernelTable& k = cpu::kernels();
  if constexpr (std::is_same_v<T, float>)
    k.backward_f32(spec, d, o, a);
  else
    k.backward_f64(spec, d, o, a);
}

template void forward<float>(const CellSpec&, const Dims&, const SequenceOptions&, const ForwardArgs<float>&);
template void forward<double>(const CellSpec&, const Dims&, const SequenceOptions&, const ForwardArgs<double>&);
template void backward<float>(const CellSpec&, const Dims&, const SequenceOptions&, const BackwardArgs<float>&);
template void backward<double>(const CellSpec&, const Dims&, const SequenceOptions&, const BackwardArgs<double>&);

LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
