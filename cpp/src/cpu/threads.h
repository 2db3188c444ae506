// How many threads each part of a call uses: the rules, all taken from the call's
// Context (never from the live setting). Defined once (threads.cpp), outside the
// instruction-set namespaces, and shared by the planner, which sizes the per-thread
// regions of the workspace, and the kernels, which then run exactly that many threads.
#pragma once

#include <cstdint>

#include "cpu/context.h"

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN
namespace cpu {

// A GEMM below this many multiply-adds (some 30 µs on one core) runs on one thread:
// Eigen would split anything above ~50k, and waking a second thread costs about as much
// as such a product, far more when the machine is busy and that thread must wait for a
// core.
constexpr double kParallelGemmWork = 2097152.0;

// Threads for an elementwise pass over `work` values.
int threads_for(const Context& c, std::int64_t work);
// Threads for a GEMM of `work` multiply-adds.
int gemm_threads(const Context& c, double work);
// Threads for a packed product of `flops` per step over `blocks` column blocks: each
// needs a useful share.
int product_threads(const Context& c, std::int64_t flops, std::int64_t blocks);
// Threads for a recurrence over B rows and G·H columns (K = H).
int recurrence_threads(const Context& c, std::int64_t B, std::int64_t H, std::int64_t G, std::int64_t blocks);

}  // namespace cpu
LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
