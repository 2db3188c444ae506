// lstmcore — streaming inference: one recurrent layer (one direction) advanced one time
// step per call, with its weights prepared once.
//
// A Stepper packs w_x and w_h into the layout of the CPU kernels when it is built and
// keeps its own copy: later changes to the caller's weight arrays do not reach it (build
// a new Stepper after changing them). step() allocates nothing; it runs on the thread
// count and instruction set in force when the Stepper was built.
//
//   Stepper<float> s(spec, B, I, H, w_x, w_h, b, b_h);   // w_x (I, G·H), w_h (H, G·H), b, b_h (G·H) or nullptr
//   s.step(x_t, h, c);                                   // x_t (B, I); h (B, H) and, LSTM only, c (B, H): in and out
//
// The products sum in the kernels' own order, so
// a step agrees with forward() over the same step to rounding (float32 ~1e-6 relative).
// Cells: LSTM, GRU with the reset after the product (PyTorch's), RNN tanh / relu; a GRU
// with the reset before the product is refused (InvalidArgument). Not thread-safe: one
// Stepper serves one caller at a time (it owns the step's scratch).
#pragma once

#include <cstdint>
#include <memory>

#include "lstmcore/types.h"

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN

template <typename T>
class Stepper {
 public:
  // Sizes >= 1; w_x and w_h required, b and b_h may be nullptr (zeros). The arrays are
  // read here and not kept. InvalidArgument for bad sizes, null weights or an unsupported cell.
  Stepper(const CellSpec& spec, std::int64_t batch, std::int64_t input, std::int64_t hidden, const T* w_x,
          const T* w_h, const T* b, const T* b_h);
  ~Stepper();
  Stepper(Stepper&&) noexcept;
  Stepper& operator=(Stepper&&) noexcept;
  Stepper(const Stepper&) = delete;
  Stepper& operator=(const Stepper&) = delete;

  // One step: h (and c) hold the state before the step on entry and after it on return;
  // y_t, when given (B, H), gets a copy of the new h. c must be nullptr for GRU and RNN
  // and given for LSTM (InvalidArgument otherwise). x_t may not overlap h or c.
  void step(const T* x_t, T* h, T* c = nullptr, T* y_t = nullptr);

  std::int64_t batch() const;
  std::int64_t input() const;
  std::int64_t hidden() const;
  CellSpec spec() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// One step of one layer read from the caller's weights where they lie: nothing is packed
// or copied, so a change to the weights (in place or not) reaches the next step. At small
// B a step is a matrix-vector product that streams the weights once; a Stepper (packed
// once) is the faster choice for long streams at larger B. Every cell: LSTM, GRU with
// the reset after or before the product, RNN tanh / relu; native compute only.
//
//   LayerStep<float> a;  a.spec = ...; a.batch = B; a.input = I; a.hidden = H;
//   a.w_x = ...; ...; step_layer(a, ws.data(), ws.size());   // ws: step_workspace_size(spec, B, H) values
template <typename T>
struct LayerStep {
  CellSpec spec;                                     // compute must be native
  WeightLayout layout = WeightLayout::input_major;   // gate_major: w_x (G·H, I), w_h (G·H, H)
  std::int64_t batch = 0, input = 0, hidden = 0;     // B, I, H >= 1
  const T* w_x = nullptr;   // (I, G·H) input-major
  const T* w_h = nullptr;   // (H, G·H) input-major
  const T* b = nullptr;     // (G·H) or nullptr (zeros)
  const T* b_h = nullptr;   // (G·H) or nullptr (zeros)
  const T* x_t = nullptr;   // (B, I)
  const T* h_in = nullptr;  // (B, H) the state before the step
  const T* c_in = nullptr;  // (B, H) LSTM only (nullptr otherwise)
  T* h_out = nullptr;       // (B, H) the state after the step; may be h_in itself (in place)
  T* c_out = nullptr;       // (B, H) LSTM only; may be c_in itself
};

// The values of T the workspace of step_layer needs for this cell, batch and hidden size
// on the thread count in force (a smaller workspace runs on fewer threads).
std::int64_t step_workspace_size(const CellSpec& spec, std::int64_t batch, std::int64_t hidden);

// Runs the step; allocates nothing. InvalidArgument for bad sizes, a missing or superfluous
// pointer, bfloat16 compute, outputs (h_out, c_out) or the workspace overlapping anything
// the step reads (weights, biases, x_t, h_in, c_in; h and c may be the same array in and
// out, but not partly), a workspace smaller than step_workspace_size's one-thread figure;
// checked before anything is written. Runs on the thread count (at most what the workspace
// holds) and instruction set in force; the products sum in another order than forward()'s
// (agreement to rounding). `workspace` holds workspace_size values of T.
template <typename T>
void step_layer(const LayerStep<T>& args, T* workspace, std::int64_t workspace_size);

LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
