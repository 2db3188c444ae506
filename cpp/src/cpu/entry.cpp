// One instruction-set variant's whole-call entries: choose the cell's kernel.
#include "cpu/kernel_common.h"
#include "cpu/kernels.h"

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN
namespace cpu {
namespace LSTMCORE_ISA_NS {

template <typename T>
void forward(const CellSpec& spec, const Dims& d, const SequenceOptions& o, const ForwardArgs<T>& a) {
  switch (spec.cell) {
    case Cell::lstm: return lstm_forward<T>(d, o, a);
    case Cell::gru: return gru_forward<T>(spec.reset_after, d, o, a);
    case Cell::rnn_tanh: return rnn_forward<T>(false, d, o, a);
    case Cell::rnn_relu: return rnn_forward<T>(true, d, o, a);
  }
}

template <typename T>
void backward(const CellSpec& spec, const Dims& d, const SequenceOptions& o, const BackwardArgs<T>& a) {
  switch (spec.cell) {
    case Cell::lstm: return lstm_backward<T>(d, o, a);
    case Cell::gru: return gru_backward<T>(spec.reset_after, d, o, a);
    case Cell::rnn_tanh: return rnn_backward<T>(false, d, o, a);
    case Cell::rnn_relu: return rnn_backward<T>(true, d, o, a);
  }
}

template <typename T>
void activation(Activation f, const T* x, T* y, std::int64_t n) {
  switch (f) {
    case Activation::exp: LSTMCORE_SIMD for (std::int64_t i = 0; i < n; ++i) y[i] = fast_exp(x[i]); break;
    case Activation::expm1: LSTMCORE_SIMD for (std::int64_t i = 0; i < n; ++i) y[i] = fast_expm1(x[i]); break;
    case Activation::sigmoid: LSTMCORE_SIMD for (std::int64_t i = 0; i < n; ++i) y[i] = sigmoid(x[i]); break;
    case Activation::tanh: LSTMCORE_SIMD for (std::int64_t i = 0; i < n; ++i) y[i] = fast_tanh(x[i]); break;
  }
}

template void activation<float>(Activation, const float*, float*, std::int64_t);
template void activation<double>(Activation, const double*, double*, std::int64_t);
template void forward<float>(const CellSpec&, const Dims&, const SequenceOptions&, const ForwardArgs<float>&);
template void forward<double>(const CellSpec&, const Dims&, const SequenceOptions&, const ForwardArgs<double>&);
template void backward<float>(const CellSpec&, const Dims&, const SequenceOptions&, const BackwardArgs<float>&);
template void backward<double>(const CellSpec&, const Dims&, const SequenceOptions&, const BackwardArgs<double>&);

}  // namespace LSTMCORE_ISA_NS
}  // namespace cpu
LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
