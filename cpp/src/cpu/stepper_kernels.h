// The kernel of lstmcore::Stepper (stepper.h), compiled once per instruction set: one
// time step of a plain cell from weights packed at construction. Internal: not installed.
#pragma once

#include <cstdint>

#include "cpu/isa.h"

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN
namespace cpu {

// Everything one step reads and writes; the front (cpp/src/stepper.cpp) owns the memory.
template <typename T>
struct StepperRun {
  CellSpec spec;
  std::int64_t B = 0, I = 0, H = 0, G = 0;
  int threads = 1;
  PackGeometry gx, gh;           // the packings of w_x (K = I) and w_h (K = H)
  const T* px = nullptr;         // w_x packed
  const T* ph = nullptr;         // w_h packed
  const T* bias = nullptr;       // (G·H): b + b_h, but b only for GRU's n block
  const T* bhn = nullptr;        // (H) GRU: b_h of the n block
  T* hcopy = nullptr;            // (B, H) h before the step, the product's operand
  T* recx = nullptr;             // (B, G·H) x_t·w_x
  T* rech = nullptr;             // (B, G·H) h·w_h
  T* tiles = nullptr;            // threads × tile_stride
  std::int64_t tile_stride = 0;  // B·G·W rounded to lines
};

// One step of one layer read from the caller's weights where they lie (lstmcore::step_layer,
// stepper.h): a matrix-vector product per row, no packing. The front checks and owns nothing.
template <typename T>
struct DirectStep {
  CellSpec spec;
  std::int64_t B = 0, I = 0, H = 0, G = 0;
  bool gate_major = false;       // w_x (G·H, I), w_h (G·H, H); else (I, G·H), (H, G·H)
  int threads = 1;
  const T* w_x = nullptr;
  const T* w_h = nullptr;
  const T* b = nullptr;          // (G·H) or nullptr
  const T* b_h = nullptr;        // (G·H) or nullptr
  const T* x = nullptr;          // (B, I)
  const T* h_in = nullptr;       // (B, H); a copy in hcopy when it is h_out
  const T* c_in = nullptr;       // (B, H) LSTM
  T* h_out = nullptr;            // (B, H)
  T* c_out = nullptr;            // (B, H) LSTM; may be c_in
  std::int64_t ld = 0;           // Hp: H rounded up to 16, the row stride of the scratch
  T* acc = nullptr;              // (B, G, Hp) pre-activations, 64-byte aligned
  T* hn = nullptr;               // (B, Hp) GRU: the recurrent part of n
  T* rh = nullptr;               // (B, Hp) GRU reset_after=false: r ⊙ h
  T* hcopy = nullptr;            // (B, Hp)
  T* parts = nullptr;            // threads × part_stride: the row split's partials, or nullptr (unit split)
  std::int64_t part_stride = 0;  // B·(G + 1)·Hp rounded to 16
};

#define LSTMCORE_DECLARE_STEPPER(ns)                                                          \
  namespace ns {                                                                              \
  template <typename T>                                                                       \
  void stepper_pack(const PackGeometry& g, const T* w, T* out);                               \
  template <typename T>                                                                       \
  void stepper_step(const StepperRun<T>& r, const T* x_t, T* h, T* c, T* y_t);                \
  template <typename T>                                                                       \
  void direct_step(const DirectStep<T>& r);                                                   \
  }

LSTMCORE_DECLARE_STEPPER(generic)
LSTMCORE_DECLARE_STEPPER(avx2)
LSTMCORE_DECLARE_STEPPER(avx512)
LSTMCORE_DECLARE_STEPPER(avx512_bf16)

}  // namespace cpu
LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
