// lstmcore — cell variants: the options of ONNX's LSTM/GRU/RNN operators and a few
// well-known LSTM extensions, forward and backward, on one general (non-packed) path.
//
// The plain cells (recurrent.h) run on packed SIMD kernels with the gates fused in. The
// options below go through variant_forward / variant_backward instead: the input
// projection of all steps and the weight gradients as single GEMMs (Eigen), the per-step
// products h·w_h (and the projection) on the same packed micro-kernel as the plain cells
// with the weights packed once per call, elementwise passes split over batch rows with
// OpenMP, one planned workspace per call.
// Reverse, seq_lengths, batch_first, h0/c0 and training work as for the plain cells.
//
// Letters as in types.h, plus P: the projection size (LSTM with proj > 0), and
// R = P with a projection, else H: the width of h (h0, h_n, y and the rows of w_h).
//
// LSTM, all options (σ_f, σ_g, σ_h the three activations, clip(v) = min(max(v, −θ), θ)
// when clip > 0, LN(v; γ, β) = γ ⊙ (v − mean v) / sqrt(var v + ε) + β over a row):
//   ax = x_t·w_x, ah = h_{t−1}·w_h                         (B, 4H)
//   a  = ax + b + ah + b_h,  or with layer_norm  a = LN(ax; γ_x, β_x) + LN(ah; γ_h, β_h) + b + b_h
//   a_i += p_i ⊙ c_{t−1},  a_f += p_f ⊙ c_{t−1}                      (peepholes)
//   i = σ_f(clip(a_i)),  g = σ_g(clip(a_g)),
//   f = σ_f(clip(a_f)), or 1 − i with input_forget, or 1 without a forget gate
//   c̃ = f ⊙ c_{t−1} + i ⊙ g
//   a_o += p_o ⊙ c̃;  o = σ_f(clip(a_o))
//   m = o ⊙ σ_h(c̃), or o ⊙ σ_h(LN(c̃; γ_c, β_c)) with layer_norm       (B, H)
//   h̃ = m·w_proj with a projection (B, P), else m
//   zoneout: c_t = k_c ⊙ c_{t−1} + (1 − k_c) ⊙ c̃,  h_t = k_h ⊙ h_{t−1} + (1 − k_h) ⊙ h̃,
//     k = the 0/1 mask of the step in training (1 with probability z), z in inference.
// The f block of w_x, w_h, b, b_h (and of the layer-norm gains and biases) is unused
// with input_forget or without a forget gate: the layout stays (·, 4H), the block's
// gradients are 0, and layer norm computes its statistics over the 3H used columns.
// GRU (σ_f for r and z, σ_g for n) and RNN (σ_f) take activations and clip, clip applied
// to every gate's whole pre-activation: GRU a_n = ax_n + r ⊙ ah_n (reset_after) or
// ax_n + (r ⊙ h_{t−1})·w_h[:, n] + b_h[n]; RNN h_t = σ_f(clip(a)).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "lstmcore/recurrent.h"

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN

// The activation functions of ONNX's recurrent operators (names as below, lower-case).
enum class Nonlinearity {
  sigmoid,           // 1 / (1 + e^−x)
  hard_sigmoid,      // max(0, min(1, α·x + β))           α 0.2, β 0.5
  tanh,              //
  relu,              // max(0, x)
  softsign,          // x / (1 + |x|)
  scaled_tanh,       // α·tanh(β·x)                        α 1, β 1
  affine,            // α·x + β                            α 1, β 0
  leaky_relu,        // x >= 0 ? x : α·x                   α 0.01
  elu,               // x >= 0 ? x : α·(e^x − 1)           α 1
  softplus,          // log(1 + e^x)
  thresholded_relu,  // x > α ? x : 0                      α 1
};

struct ActivationSpec {
  Nonlinearity kind = Nonlinearity::sigmoid;
  double alpha = 0.0;  // used by the kinds above that name α
  double beta = 0.0;   // used by the kinds that name β
};

// "sigmoid", "hard_sigmoid", ...; InvalidArgument naming `what` for anything else.
Nonlinearity parse_nonlinearity(const std::string& name, const char* what = "activations");
const char* nonlinearity_name(Nonlinearity kind) noexcept;
bool nonlinearity_has_alpha(Nonlinearity kind) noexcept;
bool nonlinearity_has_beta(Nonlinearity kind) noexcept;
// The kind with ONNX's default α and β.
ActivationSpec default_activation(Nonlinearity kind) noexcept;

// The options. Defaults are the plain cell of CellSpec.
struct VariantOptions {
  // f: gates (LSTM i, f, o; GRU r, z; RNN the one block), g: LSTM/GRU candidate,
  // h: LSTM cell output. variant_defaults() sets the cell's own.
  ActivationSpec f{Nonlinearity::sigmoid, 0.0, 0.0};
  ActivationSpec g{Nonlinearity::tanh, 0.0, 0.0};
  ActivationSpec h{Nonlinearity::tanh, 0.0, 0.0};
  double clip = 0.0;            // > 0: gate pre-activations clipped to [−clip, clip]
  bool input_forget = false;    // LSTM: f = 1 − i
  bool forget_gate = true;      // LSTM: false drops f (c̃ = c_{t−1} + i ⊙ g)
  bool peepholes = false;       // LSTM: VariantParams::peepholes is given
  std::int64_t proj = 0;        // LSTM: P > 0 projects h with w_proj (H, P)
  bool layer_norm = false;      // LSTM: VariantParams::ln_* are given
  double layer_norm_epsilon = 1e-5;
  double zoneout_h = 0.0;       // LSTM: probabilities in [0, 1)
  double zoneout_c = 0.0;
  std::uint64_t seed = 0;       // key of the zoneout masks (training)
};

// The cell's plain options: LSTM f sigmoid, g h tanh; GRU f sigmoid, g tanh;
// rnn_tanh f tanh; rnn_relu f relu.
VariantOptions variant_defaults(Cell cell) noexcept;

// Extra parameters; each nullptr unless its option is on.
template <typename T>
struct VariantParams {
  const T* peepholes = nullptr;  // (3, H)  rows p_i, p_f, p_o
  const T* w_proj = nullptr;     // (H, P); gate_major: (P, H) (PyTorch's weight_hr)
  const T* ln_gain_x = nullptr;  // (4H)  γ_x    layer norm of x_t·w_x
  const T* ln_bias_x = nullptr;  // (4H)  β_x
  const T* ln_gain_h = nullptr;  // (4H)  γ_h    layer norm of h_{t−1}·w_h
  const T* ln_bias_h = nullptr;  // (4H)  β_h
  const T* ln_gain_c = nullptr;  // (H)   γ_c    layer norm of c̃ before σ_h
  const T* ln_bias_c = nullptr;  // (H)   β_c
};

// Gradients of the extra parameters (outputs, overwritten); required when the option is on.
template <typename T>
struct VariantGrads {
  T* dpeepholes = nullptr;  // (3, H)
  T* dw_proj = nullptr;     // (H, P); gate_major: (P, H)
  T* dln_gain_x = nullptr;  // (4H)
  T* dln_bias_x = nullptr;  // (4H)
  T* dln_gain_h = nullptr;  // (4H)
  T* dln_bias_h = nullptr;  // (4H)
  T* dln_gain_c = nullptr;  // (H)
  T* dln_bias_c = nullptr;  // (H)
};

// Elements of T in the training cache (gate pre-activations, states, layer-norm
// statistics, zoneout masks). Throws InvalidArgument on bad options or sizes.
std::size_t variant_cache_size(const CellSpec& spec, const VariantOptions& options, const Dims& dims);

// As forward() of recurrent.h, with ForwardArgs' w_h (R, G·H), h0 / h_n (B, R), y row-order
// (T, B, R). An option the cell does not have is InvalidArgument naming it and the cell.
template <typename T>
void variant_forward(const CellSpec& spec, const VariantOptions& options, const Dims& dims,
                     const SequenceOptions& sequence, const ForwardArgs<T>& args, const VariantParams<T>& params);

// As backward() of recurrent.h (same shapes as variant_forward; dh_n, dh0 (B, R)), plus the
// gradients of the extra parameters. Needs the forward's options, inputs and parameters.
template <typename T>
void variant_backward(const CellSpec& spec, const VariantOptions& options, const Dims& dims,
                      const SequenceOptions& sequence, const BackwardArgs<T>& args, const VariantParams<T>& params,
                      const VariantGrads<T>& grads);

extern template void variant_forward<float>(const CellSpec&, const VariantOptions&, const Dims&,
                                            const SequenceOptions&, const ForwardArgs<float>&,
                                            const VariantParams<float>&);
extern template void variant_forward<double>(const CellSpec&, const VariantOptions&, const Dims&,
                                             const SequenceOptions&, const ForwardArgs<double>&,
                                             const VariantParams<double>&);
extern template void variant_backward<float>(const CellSpec&, const VariantOptions&, const Dims&,
                                             const SequenceOptions&, const BackwardArgs<float>&,
                                             const VariantParams<float>&, const VariantGrads<float>&);
extern template void variant_backward<double>(const CellSpec&, const VariantOptions&, const Dims&,
                                              const SequenceOptions&, const BackwardArgs<double>&,
                                              const VariantParams<double>&, const VariantGrads<double>&);

LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
