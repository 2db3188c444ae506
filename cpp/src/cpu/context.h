// What one call reads from the process-wide settings, read once at its entry.
//
// set_num_threads() and set_isa() may change while other threads' calls run. Every public
// entry point therefore captures the settings once, before anything else, into a Context
// and passes it down: the planner sizes the call's workspace from it, the thread rules and
// the GEMM helper take their thread counts from it, and the kernels of its instruction set
// run the whole call. Nothing below an entry point reads the settings again, so a change
// made while a call runs reaches only later calls. Internal: not installed.
#pragma once

#include <cstddef>
#include <cstdint>

#include "lstmcore/types.h"

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN
namespace cpu {

struct KernelTable;

// The element type of a call's arrays.
enum class Dtype { f32, f64 };

template <typename T>
constexpr Dtype dtype_of() {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8, "float or double");
  return sizeof(T) == 4 ? Dtype::f32 : Dtype::f64;
}

constexpr std::size_t size_of(Dtype t) { return t == Dtype::f32 ? 4 : 8; }

struct Context {
  int threads = 1;                       // get_num_threads() at the call's entry
  const KernelTable* kernels = nullptr;  // the instruction-set variant in use at the call's entry
  // The call's CellSpec::compute is Compute::bfloat16 (set by cpu/call.cpp, not by capture):
  // every product operand is rounded to bfloat16 (cpu/bf16.h).
  bool bf16 = false;
  // The machine model the planner sizes blocks from: L2 bytes per core, read once at load
  // (machine_l2_bytes()).
  std::size_t l2_bytes = 512 * 1024;
};

// L2 bytes per core of this machine: LSTMCORE_L2_BYTES when set to a positive integer, else
// sysconf where the C library tells, else 512 KiB.
std::size_t machine_l2_bytes();

// The settings in force now. Called once per public entry point (cpu/dispatch.cpp).
Context capture();

}  // namespace cpu
LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
