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

#define LSTMCORE_DECLARE_STEPPER(ns)                                                          \
  namespace ns {                                                                              \
  template <typename T>                                                                       \
  void stepper_pack(const PackGeometry& g, const T* w, T* out);                               \
  template <typename T>                                                                       \
  void stepper_step(const StepperRun<T>& r, const T* x_t, T* h, T* c, T* y_t);                \
  }

LSTMCORE_DECLARE_STEPPER(generic)
LSTMCORE_DECLARE_STEPPER(avx2)
LSTMCORE_DECLARE_STEPPER(avx512)
LSTMCORE_DECLARE_STEPPER(avx512_bf16)

}  // namespace cpu
LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
