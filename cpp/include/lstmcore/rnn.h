// lstmcore — the plain (Elman) RNN cell.
//
//   h_t = act(x_t·w_x + b + h_{t-1}·w_h + b_h),   act = tanh or relu
//
// Shapes: x (T, B, I), w_x (I, H), w_h (H, H), b and b_h (H), h0 h_n (B, H),
// y (T, B, H). c0, c_n, dc_n, dc0 must be nullptr. See recurrent.h for the rest.
#pragma once

#include "lstmcore/recurrent.h"

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN

enum class RnnActivation { tanh, relu };

inline Cell rnn_cell(RnnActivation act) { return act == RnnActivation::tanh ? Cell::rnn_tanh : Cell::rnn_relu; }

// Cache elements of rnn_forward in training: T·B·H.
inline std::size_t rnn_cache_size(const Dims& dims) { return cache_size(CellSpec{Cell::rnn_tanh, true}, dims); }

template <typename T>
void rnn_forward(RnnActivation act, const Dims& dims, const SequenceOptions& options,
                 const ForwardArgs<T>& args) {
  forward<T>(CellSpec{rnn_cell(act), true}, dims, options, args);
}

template <typename T>
void rnn_backward(RnnActivation act, const Dims& dims, const SequenceOptions& options,
                  const BackwardArgs<T>& args) {
  backward<T>(CellSpec{rnn_cell(act), true}, dims, options, args);
}

LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
