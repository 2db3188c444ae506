// lstmcore — the LSTM cell (gate order i, f, g, o, as PyTorch).
//
//   a   = x_t·w_x + b + h_{t-1}·w_h + b_h                     (B, 4H)
//   i = σ(a_i)  f = σ(a_f)  g = tanh(a_g)  o = σ(a_o)
//   c_t = f ⊙ c_{t-1} + i ⊙ g          h_t = o ⊙ tanh(c_t)
//
// Shapes: x (T, B, I), w_x (I, 4H), w_h (H, 4H), b and b_h (4H), h0 c0 h_n c_n (B, H),
// y (T, B, H). From PyTorch: w_x = weight_ih_l0ᵀ, w_h = weight_hh_l0ᵀ, b = bias_ih_l0,
// b_h = bias_hh_l0. See recurrent.h for ownership, threads and errors.
#pragma once

#include "lstmcore/recurrent.h"

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN

// Cache elements of lstm_forward in training: T·B·5H.
inline std::size_t lstm_cache_size(const Dims& dims) { return cache_size(CellSpec{Cell::lstm, true}, dims); }

// c0 may be nullptr (zeros); c_n is required.
template <typename T>
void lstm_forward(const Dims& dims, const SequenceOptions& options, const ForwardArgs<T>& args) {
  forward<T>(CellSpec{Cell::lstm, true}, dims, options, args);
}

// dc_n may be nullptr (zero); dc0 is required.
template <typename T>
void lstm_backward(const Dims& dims, const SequenceOptions& options, const BackwardArgs<T>& args) {
  backward<T>(CellSpec{Cell::lstm, true}, dims, options, args);
}

LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
