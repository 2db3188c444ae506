// One instruction-set variant's whole-call entries: choose the cell's kernel; the
// variant's packing geometry (for the planner) and its activations (for tests).
#include "cpu/kernel_common.h"
#include "cpu/kernels.h"
#include "cpu/packed.h"

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN
namespace cpu {
namespace LSTMCORE_ISA_NS {

PackGeometry pack_geometry(Dtype t, i64 K, i64 H, i64 G) {
  return t == Dtype::f32 ? geometry<float>(K, H, G) : geometry<double>(K, H, G);
}

template <typename T>
void forward(const Context& c, const ForwardPlan& p, const Scratch& s, const CellSpec& spec, const Dims& d,
             const SequenceOptions& o, const ForwardArgs<T>& a) {
  switch (spec.cell) {
    case Cell::lstm: return lstm_forward<T>(c, p, s, d, o, a);
    case Cell::gru: return gru_forward<T>(c, p, s, spec.reset_after, d, o, a);
    case Cell::rnn_tanh: return rnn_forward<T>(c, p, s, false, d, o, a);
    case Cell::rnn_relu: return rnn_forward<T>(c, p, s, true, d, o, a);
  }
}

template <typename T>
void backward(const Context& c, const BackwardPlan& p, const Scratch& s, const CellSpec& spec, const Dims& d,
              const SequenceOptions& o, const BackwardArgs<T>& a) {
  switch (spec.cell) {
    case Cell::lstm: return lstm_backward<T>(c, p, s, d, o, a);
    case Cell::gru: return gru_backward<T>(c, p, s, spec.reset_after, d, o, a);
    case Cell::rnn_tanh: return rnn_backward<T>(c, p, s, false, d, o, a);
    case Cell::rnn_relu: return rnn_backward<T>(c, p, s, true, d, o, a);
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

#define LSTMCORE_INSTANTIATE(T)                                                                                \
  template void activation<T>(Activation, const T*, T*, std::int64_t);                                         \
  template void forward<T>(const Context&, const ForwardPlan&, const Scratch&, const CellSpec&, const Dims&,     \
                           const SequenceOptions&, const ForwardArgs<T>&);                                     \
  template void backward<T>(const Context&, const BackwardPlan&, const Scratch&, const CellSpec&, const Dims&,   \
                            const SequenceOptions&, const BackwardArgs<T>&);
LSTMCORE_INSTANTIATE(float)
LSTMCORE_INSTANTIATE(double)
#undef LSTMCORE_INSTANTIATE

}  // namespace LSTMCORE_ISA_NS
}  // namespace cpu
LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
