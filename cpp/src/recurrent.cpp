// The entry points of recurrent.h: read the settings once (cpu::capture), check the
// arguments (common.h), then run the CPU path (cpu/call.h), which assumes them valid.
#include "lstmcore/recurrent.h"

#include "common.h"
#include "cpu/call.h"

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN

template <typename T>
void forward(const CellSpec& spec, const Dims& d, const SequenceOptions& o, const ForwardArgs<T>& a) {
  const cpu::Context ctx = cpu::capture();
  detail::check_forward_args(spec, d, o, a);
  detail::Spans spans;
  detail::forward_spans(spans, spec, d, o, a, d.hidden, static_cast<std::int64_t>(cache_size(spec, d)));
  spans.check();
  cpu::run_forward(ctx, spec, d, o, a);
}

template <typename T>
void backward(const CellSpec& spec, const Dims& d, const SequenceOptions& o, const BackwardArgs<T>& a) {
  const cpu::Context ctx = cpu::capture();
  detail::check_backward_args(spec, d, o, a);
  detail::Spans spans;
  detail::backward_spans(spans, spec, d, o, a, d.hidden, static_cast<std::int64_t>(cache_size(spec, d)));
  spans.check();
  cpu::run_backward(ctx, spec, d, o, a);
}

template void forward<float>(const CellSpec&, const Dims&, const SequenceOptions&, const ForwardArgs<float>&);
template void forward<double>(const CellSpec&, const Dims&, const SequenceOptions&, const ForwardArgs<double>&);
template void backward<float>(const CellSpec&, const Dims&, const SequenceOptions&, const BackwardArgs<float>&);
template void backward<double>(const CellSpec&, const Dims&, const SequenceOptions&, const BackwardArgs<double>&);

LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
