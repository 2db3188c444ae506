// lstmcore — a stack of recurrent layers: L layers × D directions of one cell, with
// dropout between layers (the model of torch.nn.LSTM / GRU / RNN).
//
//   layer 0 reads x (T, B, I); layer k > 0 reads the output of layer k-1, (T, B, O),
//   after dropout when training. A bidirectional layer's output concatenates its
//   directions along features, [forward H | reverse H] per row (merge = concat, O = 2H,
//   PyTorch's layout), or adds them, forward + reverse (merge = sum, O = H). With one
//   direction O = H. The reverse direction walks each
//   sequence from its own last valid step (SequenceOptions::reverse semantics), so
//   with seq_lengths the stack equals PyTorch on packed sequences.
//   States are (L·D, B, H) (h: (L·D, B, R) with a projection, see below): index
//   k·D + d for layer k, direction d (0 forward, 1 reverse), the order of PyTorch's h_n.
//
// Weights: one LayerWeights per layer and direction, in the same k·D + d order:
//   w_x (I_k, G·H) with I_0 = I and I_k = O for k > 0; w_h (R, G·H); b, b_h (G·H).
//   With WeightLayout::gate_major (the args' weight_layout, types.h) every layer's w_x,
//   w_h, w_proj and their gradients are the transposes: (G·H, I_k), (G·H, R), (P, H).
//
// Dropout (training only, i.e. when a cache is given; never after the last layer):
//   x_{k+1} = y_k ⊙ m_k,  m_k = 1/(1-p) where kept (probability 1-p), else 0.
//   The mask comes from a counter-based generator (splitmix64) keyed by the seed,
//   the layer and the element's (t, b, feature) index: the same seed gives the same
//   masks on any number of threads and with either row order. The masks are kept in
//   the cache, so backward applies exactly the forward's masks.
//
// Cell variants (variants.h): StackSpec::variant points to the options of every layer
// and direction, or is nullptr for the plain cell. Options equal to variant_defaults()
// run the plain cell's packed kernels; any other runs variant_forward / variant_backward.
// With a projection (proj = P > 0) the width of h is R = P, else R = H: each direction's
// output is R wide (O = 2R concatenated, R summed or with one direction), h0 / h_n / dh
// are (L·D, B, R), c0 / c_n stay (L·D, B, H), w_h is (R, G·H). Zoneout masks (training)
// come from stack_variant_seed(spec, k, d), one stream per layer and direction, distinct
// from the dropout streams; the options' own seed is ignored.
//
// Ownership, threads, scratch and errors as in recurrent.h (the overlap check covers every
// layer's weights and gradients and the workspace). The two directions of a layer may
// run concurrently (two OpenMP sections) for problems too small to share the
// threads otherwise; results do not depend on it beyond floating-point summation.
#pragma once

#include <cstddef>
#include <cstdint>

#include "lstmcore/recurrent.h"
#include "lstmcore/types.h"
#include "lstmcore/variants.h"

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN

// How a bidirectional layer combines its two directions' outputs.
enum class Merge { concat, sum };

// The shape of the stack. Dims::input is I (the input of layer 0), Dims::hidden is H.
struct StackSpec {
  CellSpec cell;
  std::int64_t num_layers = 1;  // L >= 1
  int directions = 1;           // D: 1, or 2 for bidirectional
  double dropout = 0.0;         // p in [0, 1]: between layers, in training only
  std::uint64_t seed = 0;       // key of the dropout masks
  Merge merge = Merge::concat;  // D = 2: [forward | reverse] (O = 2H) or forward + reverse (O = H)
  // The cell variant of every layer and direction, or nullptr (the plain cell). Not
  // owned; must outlive the call. Its seed is ignored (see stack_variant_seed).
  const VariantOptions* variant = nullptr;
};

// The weights of one layer and direction. b and b_h may be nullptr (zeros). The
// variant's parameters (peepholes, w_proj, layer norm) are given when its options use them.
template <typename T>
struct LayerWeights {
  const T* w_x = nullptr;  // (I_k, G·H)   I_0 = I, I_k = O for k > 0
  const T* w_h = nullptr;  // (R, G·H)     R = H without a projection
  const T* b = nullptr;    // (G·H) or nullptr
  const T* b_h = nullptr;  // (G·H) or nullptr
  VariantParams<T> variant;  // shapes in variants.h; all nullptr for the plain cell
};

// Where backward writes the gradients of one layer and direction. db / db_h are
// skipped when nullptr.
template <typename T>
struct LayerGradients {
  T* dw_x = nullptr;  // out: (I_k, G·H)
  T* dw_h = nullptr;  // out: (R, G·H)
  T* db = nullptr;    // out: (G·H) or nullptr
  T* db_h = nullptr;  // out: (G·H) or nullptr
  VariantGrads<T> variant;  // out: required for the parameters the variant's options use
};

template <typename T>
struct StackForwardArgs {
  const T* x = nullptr;                      // row-order (T, B, I)
  const LayerWeights<T>* weights = nullptr;  // L·D entries, index k·D + d
  const T* h0 = nullptr;                     // (L·D, B, R) or nullptr (zeros)
  const T* c0 = nullptr;                     // (L·D, B, H) or nullptr (LSTM only)
  T* y = nullptr;                            // out: row-order (T, B, O)   the last layer's output
  T* h_n = nullptr;                          // out: (L·D, B, R)
  T* c_n = nullptr;                          // out: (L·D, B, H) (LSTM: required; others: nullptr)
  // out: stack_cache_size() elements for training (dropout applies), nullptr for
  // inference. Pass it as-is to stack_backward with the same inputs.
  T* cache = nullptr;
  // scratch for the glue between layers: stack_forward_workspace_size() elements, or
  // nullptr (then it is part of the call's planned workspace; the layers' own scratch
  // always is).
  T* workspace = nullptr;
  // How every layer's weights are stored (types.h).
  WeightLayout weight_layout = WeightLayout::input_major;
};

template <typename T>
struct StackBackwardArgs {
  const T* x = nullptr;                      // row-order (T, B, I), as in forward
  const LayerWeights<T>* weights = nullptr;  // L·D entries, as in forward
  const T* h0 = nullptr;                     // (L·D, B, R) or nullptr, as in forward
  const T* c0 = nullptr;                     // (L·D, B, H) or nullptr, as in forward
  T* cache = nullptr;                        // in: forward's cache; consumed (overwritten)
  const T* dy = nullptr;                     // row-order (T, B, O) or nullptr
  const T* dh_n = nullptr;                   // (L·D, B, R) or nullptr
  const T* dc_n = nullptr;                   // (L·D, B, H) or nullptr (LSTM only)
  T* dx = nullptr;                           // out: row-order (T, B, I)
  T* dh0 = nullptr;                          // out: (L·D, B, R)
  T* dc0 = nullptr;                          // out: (L·D, B, H) (LSTM: required; others: nullptr)
  const LayerGradients<T>* grads = nullptr;  // L·D entries, index k·D + d
  // scratch for the glue: stack_backward_workspace_size() elements, or nullptr (as in forward).
  T* workspace = nullptr;
  // As in forward; every layer's weight gradients are written in this layout.
  WeightLayout weight_layout = WeightLayout::input_major;
};

// Elements of T in the training cache, laid out as
//   for each layer k and direction d: the cell's cache (cache_size() of one call, or
//     variant_cache_size() with a non-plain variant)
//   for each k < L-1: the input of layer k+1, row-order (T, B, O), after dropout
//   for each k < L-1, only when p > 0: the dropout mask m_k, row-order (T, B, O)
// Throws InvalidArgument on bad sizes or overflow.
std::size_t stack_cache_size(const StackSpec& spec, const Dims& dims);

// Offset (elements) in the cache of the dropout mask applied to layer k's output,
// 0 <= k < L-1, when p > 0. Throws InvalidArgument otherwise.
std::size_t stack_dropout_mask_offset(const StackSpec& spec, const Dims& dims, std::int64_t layer);

// The zoneout seed (VariantOptions::seed) of layer k, direction d: the stack's seed
// mixed with a stream number of its own (detail::stream_key), so each layer and
// direction draws independent masks and none shares the dropout masks' streams.
std::uint64_t stack_variant_seed(const StackSpec& spec, std::int64_t layer, int direction);

// Scratch elements of T that stack_forward (training or inference) and
// stack_backward need when the caller provides the workspace.
std::size_t stack_forward_workspace_size(const StackSpec& spec, const Dims& dims, bool training);
std::size_t stack_backward_workspace_size(const StackSpec& spec, const Dims& dims);

// Runs the stack over all steps. options.reverse must be false (directions say
// which way each layer runs); batch_first and seq_lengths apply to every layer.
// Supported T: float, double.
template <typename T>
void stack_forward(const StackSpec& spec, const Dims& dims, const SequenceOptions& options,
                   const StackForwardArgs<T>& args);

// Backpropagation through the stack: every gradient, the gradient reaching a
// layer's input summed over the directions that read it.
template <typename T>
void stack_backward(const StackSpec& spec, const Dims& dims, const SequenceOptions& options,
                    const StackBackwardArgs<T>& args);

extern template void stack_forward<float>(const StackSpec&, const Dims&, const SequenceOptions&,
                                          const StackForwardArgs<float>&);
extern template void stack_forward<double>(const StackSpec&, const Dims&, const SequenceOptions&,
                                           const StackForwardArgs<double>&);
extern template void stack_backward<float>(const StackSpec&, const Dims&, const SequenceOptions&,
                                           const StackBackwardArgs<float>&);
extern template void stack_backward<double>(const StackSpec&, const Dims&, const SequenceOptions&,
                                            const StackBackwardArgs<double>&);

LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
