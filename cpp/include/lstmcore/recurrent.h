// lstmcore — one recurrent layer, one direction: forward and backward for every cell.
//
// The per-cell headers (lstm.h, gru.h, rnn.h) document each cell's equations and
// wrap these entry points; this header holds the argument structs they share.
// Shapes use the letters of types.h. "Row-order" shapes are (T, B, ·), or (B, T, ·)
// when SequenceOptions::batch_first is set.
//
// Ownership: the caller owns every buffer; no pointer of the caller's is kept after a
// call returns. Outputs are overwritten, never accumulated (their old contents are never
// read). Inputs are never written, except the training cache, which backward consumes
// (overwrites with gate gradients). No output may share memory with an input or another
// output (seq_lengths and the cache included: the cache is an output of forward and both
// input and output of backward); this is checked from the sizes, partial overlaps too.
// Scratch: each call plans one workspace up front and takes it from a pool of blocks that
// later calls reuse (at most 256 MiB kept in all; release_memory() in types.h).
// Thread safety: calls on distinct output buffers may run concurrently from many
// threads; each call runs on up to get_num_threads() OpenMP threads of its own, with the
// thread count and instruction set in force when it started (a set_num_threads() or
// set_isa() made meanwhile applies to later calls).
// Errors: InvalidArgument (before any output is written) for null required pointers,
// sizes < 1, lengths out of range, c0 / c_n / dc_n / dc0 given for a cell without a
// cell state, sizes whose products overflow and overlapping buffers; what() starts with
// the argument's name (an overlap names both). std::bad_alloc if the workspace cannot be
// allocated. NaN and Inf in the data are not errors: they propagate.
#pragma once

#include <cstddef>

#include "lstmcore/types.h"

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN

// Forward pass arguments. Optional inputs may be nullptr (meaning zeros).
template <typename T>
struct ForwardArgs {
  const T* x = nullptr;    // row-order (T, B, I)
  const T* w_x = nullptr;  // (I, G·H)   input weights, gate blocks of H columns; gate_major: (G·H, I)
  const T* w_h = nullptr;  // (H, G·H)   recurrent weights, same gate order; gate_major: (G·H, H)
  const T* b = nullptr;    // (G·H) or nullptr   input-side bias
  const T* b_h = nullptr;  // (G·H) or nullptr   recurrent-side bias
  const T* h0 = nullptr;   // (B, H) or nullptr  initial hidden state
  const T* c0 = nullptr;   // (B, H) or nullptr  initial cell state (LSTM only; must be nullptr otherwise)
  T* y = nullptr;          // out: row-order (T, B, H)   every step's h (0 past a sequence's length)
  T* h_n = nullptr;        // out: (B, H)   final hidden state of each sequence
  T* c_n = nullptr;        // out: (B, H)   final cell state (LSTM: required; others: must be nullptr)
  // out: cache_size() elements, or nullptr for inference. When given, forward
  // fills it with what backward needs (gate activations, states); pass it as-is
  // to backward together with the same inputs.
  T* cache = nullptr;
  // How w_x, w_h (and a variant's w_proj) are stored (types.h).
  WeightLayout weight_layout = WeightLayout::input_major;
};

// Backward pass arguments. The call must use the spec, dims and options (reverse,
// batch_first, seq_lengths) of the forward that filled the cache, and the inputs that
// forward saw (x, weights, h0, c0), unchanged; the cache is used at most once. The
// biases are not needed. Gradient inputs may be nullptr (meaning zero). Gradient
// outputs marked "or nullptr" are skipped when nullptr (e.g. a bias that forward did
// not have). dh0 / dc0 (and db / db_h) are the gradients with respect to the initial
// state (the biases) even when forward had nullptr there, i.e. zeros. dx is 0 at
// steps past a sequence's length.
template <typename T>
struct BackwardArgs {
  const T* x = nullptr;     // row-order (T, B, I)
  const T* w_x = nullptr;   // (I, G·H); gate_major: (G·H, I)
  const T* w_h = nullptr;   // (H, G·H); gate_major: (G·H, H)
  const T* h0 = nullptr;    // (B, H) or nullptr
  const T* c0 = nullptr;    // (B, H) or nullptr (LSTM only)
  T* cache = nullptr;       // in: forward's cache; consumed (overwritten)
  const T* dy = nullptr;    // row-order (T, B, H) or nullptr   dL/dy
  const T* dh_n = nullptr;  // (B, H) or nullptr   dL/dh_n
  const T* dc_n = nullptr;  // (B, H) or nullptr   dL/dc_n (LSTM only)
  T* dx = nullptr;          // out: row-order (T, B, I)
  T* dh0 = nullptr;         // out: (B, H)
  T* dc0 = nullptr;         // out: (B, H) (LSTM: required; others: must be nullptr)
  T* dw_x = nullptr;        // out: (I, G·H); gate_major: (G·H, I)
  T* dw_h = nullptr;        // out: (H, G·H); gate_major: (G·H, H)
  T* db = nullptr;          // out: (G·H) or nullptr
  T* db_h = nullptr;        // out: (G·H) or nullptr
  // How w_x, w_h (w_proj) are stored, as in forward; dw_x, dw_h (dw_proj) are written so too.
  WeightLayout weight_layout = WeightLayout::input_major;
};

// Elements of T in the training cache of one call:
//   lstm: T·B·5H (gates i, f, g, o and the cell state)
//   gru:  T·B·5H (gates r, z, n, the hidden state and h·w_h[:, n] + b_h[n] or r ⊙ h_{t-1})
//   rnn:  T·B·H  (the hidden state)
// Throws InvalidArgument on bad sizes or overflow.
std::size_t cache_size(const CellSpec& spec, const Dims& dims);

// Runs the layer over all steps. Supported T: float, double.
template <typename T>
void forward(const CellSpec& spec, const Dims& dims, const SequenceOptions& options,
             const ForwardArgs<T>& args);

// Backpropagation through time over forward's steps; writes every gradient.
template <typename T>
void backward(const CellSpec& spec, const Dims& dims, const SequenceOptions& options,
              const BackwardArgs<T>& args);

extern template void forward<float>(const CellSpec&, const Dims&, const SequenceOptions&,
                                    const ForwardArgs<float>&);
extern template void forward<double>(const CellSpec&, const Dims&, const SequenceOptions&,
                                     const ForwardArgs<double>&);
extern template void backward<float>(const CellSpec&, const Dims&, const SequenceOptions&,
                                     const BackwardArgs<float>&);
extern template void backward<double>(const CellSpec&, const Dims&, const SequenceOptions&,
                                      const BackwardArgs<double>&);

LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
