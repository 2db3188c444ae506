// lstmcore — hooks for tests of the library itself; not part of the stable API.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "lstmcore/types.h"
#include "lstmcore/version.h"

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN
namespace testing {

// y[i] = f(x[i]) for i < n with the CPU kernels' own vectorised exp, expm1, sigmoid or
// tanh (name) of the instruction set in use; InvalidArgument for another name.
void kernel_activation(const std::string& name, const float* x, float* y, std::int64_t n);
void kernel_activation(const std::string& name, const double* x, double* y, std::int64_t n);

// Whether a plain cell's forward of these sizes, under the settings in force now, sums
// x_t·w_x into each step's product (the fused recurrence) rather than projecting all of x
// first; `double_precision`: float64 arrays, else float32.
bool forward_fused(const CellSpec& spec, const Dims& dims, bool double_precision);

// L2 bytes per core as the planner sees this machine.
std::size_t machine_l2_bytes();

// While on, every scratch block a CPU call takes (fresh or kept from an earlier call) is
// first filled with 0xFF bytes: NaN as float, double and bfloat16 (so are the arrays the
// Python bindings allocate for results). A kernel that reads
// scratch it did not write then gives NaN instead of depending on what ran before.
// Off by default; affects calls that start after it is set.
void poison_scratch(bool on);
bool scratch_poisoned();

}  // namespace testing
LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
