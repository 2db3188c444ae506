// The CPU implementations behind lstmcore::forward / backward. Arguments are
// already validated by cpp/src/recurrent.cpp: no checks here.
#pragma once

#include "lstmcore/recurrent.h"

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN
namespace cpu {

template <typename T>
void lstm_forward(const Dims& d, const SequenceOptions& o, const ForwardArgs<T>& a);
template <typename T>
void lstm_backward(const Dims& d, const SequenceOptions& o, const BackwardArgs<T>& a);

template <typename T>
void gru_forward(bool reset_after, const Dims& d, const SequenceOptions& o, const ForwardArgs<T>& a);
template <typename T>
void gru_backward(bool reset_after, const Dims& d, const SequenceOptions& o, const BackwardArgs<T>& a);

template <typename T>
void rnn_forward(bool relu, const Dims& d, const SequenceOptions& o, const ForwardArgs<T>& a);
template <typename T>
void rnn_backward(bool relu, const Dims& d, const SequenceOptions& o, const BackwardArgs<T>& a);

}  // namespace cpu
LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
