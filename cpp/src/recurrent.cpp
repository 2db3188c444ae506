// Validation and dispatch for every cell: checks the arguments once, then hands
// them to the CPU kernels (cpp/src/cpu/), which assume they are valid.
#include "lstmcore/recurrent.h"

#include <string>
#include <type_traits>

#include "common.h"
#include "cpu/isa.h"

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN

namespace {

void check_common(const CellSpec& spec, const Dims& d, const SequenceOptions& o) {
  detail::check_dims(spec, d);
  detail::check_lengths(d, o);
}

using detail::require;
using detail::require_absent;

}  // namespace

template <typename T>
void forward(const CellSpec& spec, const Dims& d, const SequenceOptions& o, const ForwardArgs<T>& a) {
  check_common(spec, d, o);
  require(a.x, "x");
  require(a.w_x, "w_x");
  require(a.w_h, "w_h");
  require(a.y, "y");
  require(a.h_n, "h_n");
  if (spec.cell == Cell::lstm) {
    require(a.c_n, "c_n");
  } else {
    require_absent(a.c0, "c0", spec.cell);
    require_absent(a.c_n, "c_n", spec.cell);
  }
  const cpu::KernelTable& k = cpu::kernels();
  if constexpr (std::is_same_v<T, float>)
    k.forward_f32(spec, d, o, a);
  else
    k.forward_f64(spec, d, o, a);
}

template <typename T>
void backward(const CellSpec& spec, const Dims& d, const SequenceOptions& o, const BackwardArgs<T>& a) {
  check_common(spec, d, o);
  require(a.x, "x");
  require(a.w_x, "w_x");
  require(a.w_h, "w_h");
  require(a.cache, "cache");
  require(a.dx, "dx");
  require(a.dh0, "dh0");
  require(a.dw_x, "dw_x");
  require(a.dw_h, "dw_h");
  if (spec.cell == Cell::lstm) {
    require(a.dc0, "dc0");
  } else {
    require_absent(a.c0, "c0", spec.cell);
    require_absent(a.dc_n, "dc_n", spec.cell);
    require_absent(a.dc0, "dc0", spec.cell);
  }
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
