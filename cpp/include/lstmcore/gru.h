// lstmcore — the GRU cell (gate order r, z, n, as PyTorch).
//
//   ax = x_t·w_x + b    ah = h_{t-1}·w_h + b_h                 (B, 3H)
//   r = σ(ax_r + ah_r)  z = σ(ax_z + ah_z)
//   reset_after = true  (PyTorch, cuDNN, ONNX linear_before_reset=1, Keras reset_after=True):
//       n = tanh(ax_n + r ⊙ ah_n)
//   reset_after = false (Cho et al. 2014, ONNX linear_before_reset=0, Keras reset_after=False):
//       n = tanh(ax_n + (r ⊙ h_{t-1})·w_h[:, n] + b_h[n])
//   h_t = (1 - z) ⊙ n + z ⊙ h_{t-1}
//
// Shapes: x (T, B, I), w_x (I, 3H), w_h (H, 3H), b and b_h (3H), h0 h_n (B, H),
// y (T, B, H). c0, c_n, dc_n, dc0 must be nullptr. See recurrent.h for the rest.
#pragma once

#include "lstmcore/recurrent.h"

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN

// Cache elements of gru_forward in training: T·B·5H.
inline std::size_t gru_cache_size(const Dims& dims, bool reset_after = true) {
  return cache_size(CellSpec{Cell::gru, reset_after}, dims);
}

template <typename T>
void gru_forward(const Dims& dims, const SequenceOptions& options, const ForwardArgs<T>& args,
                 bool reset_after = true) {
  forward<T>(CellSpec{Cell::gru, reset_after}, dims, options, args);
}

template <typename T>
void gru_backward(const Dims& dims, const SequenceOptions& options, const BackwardArgs<T>& args,
                  bool reset_after = true) {
  backward<T>(CellSpec{Cell::gru, reset_after}, dims, options, args);
}

LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
