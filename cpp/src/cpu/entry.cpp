// One instruction-set variant's whole-call entries: choose the cell's kernel.
#include "cpu/kernel_common.h"
#include "cpu/kernels.h"

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN
namespace cpu {
namespace LSTMCORE_ISA_NS {

template <typename T>
void forward(const CellSpec& spec, const Dims& d, const SequenceOptions& o, const ForwardArgs<T>& a) {
  Eigen::setNbThreads(get_num_threads());  // this variant's copy of Eigen keeps its own count
  switch (spec.cell) {
    case Cell::lstm: return lstm_forward<T>(d, o, a);
    case Cell::gru: return gru_forward<T>(spec.reset_after, d, o, a);
    case Cell::rnn_tanh: return rnn_forward<T>(false, d, o, a);
    case Cell::rnn_relu: return rnn_forward<T>(true, d, o, a);
  }
}

template <typename T>
void backward(const CellSpec& spec, const Dims& d, const SequenceOptions& o, const BackwardArgs<T>& a) {
  Eigen::setNbThreads(get_num_threads());
  switch (spec.cell) {
    case Cell::lstm: return lstm_backward<T>(d, o, a);
    case Cell::gru: return gru_backward<T>(spec.reset_after, d, o, a);
    case Cell::rnn_tanh: return rnn_backward<T>(false, d, o, a);
    case Cell::rnn_relu: return rnn_backward<T>(true, d, o, a);
  }
}

template void forward<float>(const CellSpec&, const Dims&, const SequenceOptions&, const ForwardArgs<float>&);
template void forward<double>(const CellSpec&, const Dims&, const SequenceOptions&, const ForwardArgs<double>&);
template void backward<float>(const CellSpec&, const Dims&, const SequenceOptions&, const BackwardArgs<float>&);
template void backward<double>(const CellSpec&, const Dims&, const SequenceOptions&, const BackwardArgs<double>&);

}  // namespace LSTMCORE_ISA_NS
}  // namespace cpu
LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
