// The cell variants' public entry points (variants.h): the activation names and
// defaults, and variant_forward / variant_backward, which run the general path of the
// instruction-set variant in use (cpu/variants.cpp, compiled once per variant).
#include "lstmcore/variants.h"

#include <string>
#include <type_traits>

#include "cpu/isa.h"
#include "cpu/kernels.h"

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN

namespace {

struct NonlinearityInfo {
  Nonlinearity kind;
  const char* name;
  bool alpha, beta;
  double default_alpha, default_beta;
};

constexpr NonlinearityInfo kNonlinearities[] = {
    {Nonlinearity::sigmoid, "sigmoid", false, false, 0.0, 0.0},
    {Nonlinearity::hard_sigmoid, "hard_sigmoid", true, true, 0.2, 0.5},
    {Nonlinearity::tanh, "tanh", false, false, 0.0, 0.0},
    {Nonlinearity::relu, "relu", false, false, 0.0, 0.0},
    {Nonlinearity::softsign, "softsign", false, false, 0.0, 0.0},
    {Nonlinearity::scaled_tanh, "scaled_tanh", true, true, 1.0, 1.0},
    {Nonlinearity::affine, "affine", true, true, 1.0, 0.0},
    {Nonlinearity::leaky_relu, "leaky_relu", true, false, 0.01, 0.0},
    {Nonlinearity::elu, "elu", true, false, 1.0, 0.0},
    {Nonlinearity::softplus, "softplus", false, false, 0.0, 0.0},
    {Nonlinearity::thresholded_relu, "thresholded_relu", true, false, 1.0, 0.0},
};

const NonlinearityInfo& info(Nonlinearity kind) {
  for (const auto& e : kNonlinearities)
    if (e.kind == kind) return e;
  return kNonlinearities[0];
}

}  // namespace

Nonlinearity parse_nonlinearity(const std::string& name, const char* what) {
  std::string names;
  for (const auto& e : kNonlinearities) {
    if (name == e.name) return e.kind;
    names += std::string(names.empty() ? "" : ", ") + e.name;
  }
  throw InvalidArgument(std::string(what) + ": unknown activation '" + name + "', expected one of " + names);
}

const char* nonlinearity_name(Nonlinearity kind) noexcept { return info(kind).name; }
bool nonlinearity_has_alpha(Nonlinearity kind) noexcept { return info(kind).alpha; }
bool nonlinearity_has_beta(Nonlinearity kind) noexcept { return info(kind).beta; }

ActivationSpec default_activation(Nonlinearity kind) noexcept {
  const auto& e = info(kind);
  return {kind, e.default_alpha, e.default_beta};
}

VariantOptions variant_defaults(Cell cell) noexcept {
  VariantOptions o;
  if (cell == Cell::rnn_tanh) o.f = default_activation(Nonlinearity::tanh);
  if (cell == Cell::rnn_relu) o.f = default_activation(Nonlinearity::relu);
  return o;
}

std::size_t variant_cache_size(const CellSpec& spec, const VariantOptions& options, const Dims& dims) {
  return cpu::generic::variant_cache_size(spec, options, dims);  // the same plan in every variant
}

template <typename T>
void variant_forward(const CellSpec& spec, const VariantOptions& o, const Dims& d, const SequenceOptions& so,
                     const ForwardArgs<T>& a, const VariantParams<T>& v) {
  const cpu::KernelTable& k = cpu::kernels();
  if constexpr (std::is_same_v<T, float>)
    k.variant_forward_f32(spec, o, d, so, a, v);
  else
    k.variant_forward_f64(spec, o, d, so, a, v);
}

template <typename T>
void variant_backward(const CellSpec& spec, const VariantOptions& o, const Dims& d, const SequenceOptions& so,
                      const BackwardArgs<T>& a, const VariantParams<T>& v, const VariantGrads<T>& g) {
  const cpu::KernelTable& k = cpu::kernels();
  if constexpr (std::is_same_v<T, float>)
    k.variant_backward_f32(spec, o, d, so, a, v, g);
  else
    k.variant_backward_f64(spec, o, d, so, a, v, g);
}

template void variant_forward<float>(const CellSpec&, const VariantOptions&, const Dims&, const SequenceOptions&,
                                     const ForwardArgs<float>&, const VariantParams<float>&);
template void variant_forward<double>(const CellSpec&, const VariantOptions&, const Dims&, const SequenceOptions&,
                                      const ForwardArgs<double>&, const VariantParams<double>&);
template void variant_backward<float>(const CellSpec&, const VariantOptions&, const Dims&, const SequenceOptions&,
                                      const BackwardArgs<float>&, const VariantParams<float>&,
                                      const VariantGrads<float>&);
template void variant_backward<double>(const CellSpec&, const VariantOptions&, const Dims&, const SequenceOptions&,
                                       const BackwardArgs<double>&, const VariantParams<double>&,
                                       const VariantGrads<double>&);

LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
