// The test hooks of lstmcore/testing.h.
#include "lstmcore/testing.h"

#include "cpu/context.h"
#include "cpu/isa.h"
#include "cpu/plan.h"

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN
namespace testing {
namespace {

cpu::Activation parse(const std::string& name) {
  if (name == "exp") return cpu::Activation::exp;
  if (name == "expm1") return cpu::Activation::expm1;
  if (name == "sigmoid") return cpu::Activation::sigmoid;
  if (name == "tanh") return cpu::Activation::tanh;
  throw InvalidArgument("name: expected exp, expm1, sigmoid or tanh, got '" + name + "'");
}

template <typename T>
void run(const std::string& name, const T* x, T* y, std::int64_t n) {
  const cpu::Activation f = parse(name);
  cpu::capture().kernels->entries<T>().activation(f, x, y, n);
}

}  // namespace

bool forward_fused(const CellSpec& spec, const Dims& dims, bool double_precision) {
  cpu::Context c = cpu::capture();
  c.bf16 = spec.compute == Compute::bfloat16;
  return cpu::fuse_inputs(c, double_precision ? cpu::Dtype::f64 : cpu::Dtype::f32, spec, dims);
}

std::size_t machine_l2_bytes() { return cpu::machine_l2_bytes(); }

void kernel_activation(const std::string& name, const float* x, float* y, std::int64_t n) { run(name, x, y, n); }
void kernel_activation(const std::string& name, const double* x, double* y, std::int64_t n) { run(name, x, y, n); }

}  // namespace testing
LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
