// Internal helpers shared by the validation and dispatch layer.
#pragma once

#include <cstdint>

#include "lstmcore/recurrent.h"

// Functions the CUDA kernels share with the host code (a no-op outside nvcc).
#if defined(__CUDACC__)
#define LSTMCORE_HOST_DEVICE __host__ __device__
#else
#define LSTMCORE_HOST_DEVICE
#endif

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN
namespace detail {

// a·b, or InvalidArgument naming `what` when it overflows (with headroom for element sizes).
std::int64_t checked_mul(std::int64_t a, std::int64_t b, const char* what);
// Sizes >= 1 and products that fit.
void check_dims(const CellSpec& spec, const Dims& d);
// Every sequence length (when given) in 1..T.
void check_lengths(const Dims& d, const SequenceOptions& o);
// InvalidArgument naming `name` for a null required pointer.
void require(const void* p, const char* name);
// InvalidArgument naming `name` for a cell-state pointer given to a cell without one.
void require_absent(const void* p, const char* name, Cell cell);

// The checks every forward / backward entry makes before any arithmetic: sizes, lengths,
// required pointers, and no cell-state pointers for a cell without a cell state.
template <typename T>
void check_forward_args(const CellSpec& spec, const Dims& d, const SequenceOptions& o, const ForwardArgs<T>& a) {
  check_dims(spec, d);
  check_lengths(d, o);
  require(a.x, "x");
  require(a.w_x, "w_x");
  require(a.w_h, "w_h");
  require(a.y, "y");
  require(a.h_n, "h_n");
  if (spec.cell == Cell::lstm) {
    require(a.c_n, "c_n");
  } else {
    require_absent(a.c0, "c0", spec.cell);
    require_absent(a.c_n, "c_n", spec.cell);
  }
}

template <typename T>
void check_backward_args(const CellSpec& spec, const Dims& d, const SequenceOptions& o, const BackwardArgs<T>& a) {
  check_dims(spec, d);
  check_lengths(d, o);
  require(a.x, "x");
  require(a.w_x, "w_x");
  require(a.w_h, "w_h");
  require(a.cache, "cache");
  require(a.dx, "dx");
  require(a.dh0, "dh0");
  require(a.dw_x, "dw_x");
  require(a.dw_h, "dw_h");
  if (spec.cell == Cell::lstm) {
    require(a.dc0, "dc0");
  } else {
    require_absent(a.c0, "c0", spec.cell);
    require_absent(a.dc_n, "dc_n", spec.cell);
    require_absent(a.dc0, "dc0", spec.cell);
  }
}

// A counter-based random generator (splitmix64's output function): the same key and
// index give the same number on any thread, in any order.
LSTMCORE_HOST_DEVICE inline std::uint64_t mix64(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}
constexpr std::uint64_t kGolden = 0x9E3779B97F4A7C15ULL;
// The key of stream `stream` (>= 1) under `seed`.
inline std::uint64_t stream_key(std::uint64_t seed, std::uint64_t stream) { return mix64(seed + kGolden * stream); }
// Element n of a stream: the top 53 bits of mix64(key + golden·(n + 1)), uniform in [0, 1).
LSTMCORE_HOST_DEVICE inline double counter_uniform(std::uint64_t key, std::uint64_t n) {
  return static_cast<double>(mix64(key + kGolden * (n + 1)) >> 11) * 0x1.0p-53;
}

}  // namespace detail
LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
