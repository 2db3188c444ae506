// The cell variants' public entry points (variants.h): the activation names and
// defaults; the validation of options, sizes and parameters and the cache plan
// (variant_plan.h), done here once for every instruction set; and variant_forward /
// variant_backward, which hand the validated plan to the general path of the call's
// instruction set (cpu/variant/, compiled once per variant).
#include "lstmcore/variants.h"

#include <string>
#include <utility>

#include "common.h"
#include "cpu/call.h"
#include "variant_plan.h"

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

namespace detail {
namespace {

using i64 = std::int64_t;

void lstm_only(bool used, const char* option, Cell cell) {
  if (used && cell != Cell::lstm)
    throw InvalidArgument(std::string(option) + ": the " + cell_name(cell) +
                          " cell has no such option (it is an LSTM option)");
}

void check_options(const CellSpec& s, const VariantOptions& o, const Dims& d) {
  check_dims(s, d);
  lstm_only(o.input_forget, "input_forget", s.cell);
  lstm_only(!o.forget_gate, "forget_gate", s.cell);
  lstm_only(o.peepholes, "peepholes", s.cell);
  lstm_only(o.proj != 0, "proj_size", s.cell);
  lstm_only(o.layer_norm, "layer_norm", s.cell);
  lstm_only(o.zoneout_h != 0 || o.zoneout_c != 0, "zoneout", s.cell);
  if (o.input_forget && !o.forget_gate)
    throw InvalidArgument("input_forget: couples the forget gate to the input gate, but forget_gate=false drops it");
  if (!(o.clip >= 0)) throw InvalidArgument("clip: expected a threshold > 0 (or 0 for none), got " + std::to_string(o.clip));
  if (o.proj < 0) throw InvalidArgument("proj_size: expected >= 0, got " + std::to_string(o.proj));
  for (double z : {o.zoneout_h, o.zoneout_c})
    if (!(z >= 0 && z < 1)) throw InvalidArgument("zoneout: expected probabilities in [0, 1), got " + std::to_string(z));
  if (o.layer_norm && !(o.layer_norm_epsilon > 0))
    throw InvalidArgument("layer_norm_epsilon: expected > 0, got " + std::to_string(o.layer_norm_epsilon));
  const i64 R = o.proj > 0 ? o.proj : d.hidden;
  checked_mul(d.steps * d.batch, 4 * gate_count(s.cell) * d.hidden + 4 * d.hidden + 3 * R + 8,
              "cache: steps (T) x batch (B) x features");
}

// The six layer-norm pointers (gains and biases, or their gradients with prefix "d").
void require_layer_norm(const void* gx, const void* bx, const void* gh, const void* bh, const void* gc,
                        const void* bc, const std::string& prefix) {
  const std::pair<const void*, const char*> all[] = {{gx, "ln_gain_x"}, {bx, "ln_bias_x"}, {gh, "ln_gain_h"},
                                                     {bh, "ln_bias_h"}, {gc, "ln_gain_c"}, {bc, "ln_bias_c"}};
  for (const auto& [ptr, name] : all) require(ptr, (prefix + name).c_str());
}

}  // namespace

VariantPlan make_variant_plan(const CellSpec& s, const VariantOptions& o, const Dims& d) {
  check_options(s, o, d);
  VariantPlan p;
  p.options = o;
  p.cell = s.cell;
  p.reset_after = s.reset_after;
  p.lstm = p.cell == Cell::lstm;
  p.gru = p.cell == Cell::gru;
  p.ln = o.layer_norm;
  p.proj = o.proj > 0;
  p.peep = o.peepholes;
  p.zone_h = o.zoneout_h > 0;
  p.zone_c = o.zoneout_c > 0;
  p.T = d.steps, p.B = d.batch, p.I = d.input, p.H = d.hidden;
  p.G = gate_count(p.cell);
  p.GH = p.G * p.H;
  p.R = p.proj ? o.proj : p.H;
  p.N = p.T * p.B;
  if (p.lstm && (o.input_forget || !o.forget_gate)) p.skip0 = p.H, p.skip1 = 2 * p.H;
  auto take = [&p](i64 count) {
    const i64 at = p.total;
    p.total += count;
    return at;
  };
  const i64 N = p.N, H = p.H;
  p.pre = take(N * p.GH);
  p.hs = take(N * p.R);
  if (p.lstm) {
    p.cs = take(N * H);
    p.cand = p.zone_c ? take(N * H) : p.cs;
    if (p.proj) p.mt = take(N * H);
    if (p.ln) {
      p.nx = take(N * p.GH), p.rx = take(N), p.nh = take(N * p.GH), p.rh = take(N), p.nc = take(N * H),
      p.rc = take(N);
    }
    if (p.zone_h) p.mh = take(N * p.R);
    if (p.zone_c) p.mc = take(N * H);
  }
  if (p.gru) p.aux = take(N * H);
  return p;
}

template <typename T>
void check_variant_params(const VariantPlan& p, const VariantParams<T>& v) {
  if (p.peep) require(v.peepholes, "peepholes");
  if (p.proj) require(v.w_proj, "w_proj");
  if (p.ln) require_layer_norm(v.ln_gain_x, v.ln_bias_x, v.ln_gain_h, v.ln_bias_h, v.ln_gain_c, v.ln_bias_c, "");
}

template <typename T>
void check_variant_grads(const VariantPlan& p, const VariantGrads<T>& g) {
  if (p.peep) require(g.dpeepholes, "dpeepholes");
  if (p.proj) require(g.dw_proj, "dw_proj");
  if (p.ln) require_layer_norm(g.dln_gain_x, g.dln_bias_x, g.dln_gain_h, g.dln_bias_h, g.dln_gain_c, g.dln_bias_c, "d");
}

template void check_variant_params<float>(const VariantPlan&, const VariantParams<float>&);
template void check_variant_params<double>(const VariantPlan&, const VariantParams<double>&);
template void check_variant_grads<float>(const VariantPlan&, const VariantGrads<float>&);
template void check_variant_grads<double>(const VariantPlan&, const VariantGrads<double>&);

}  // namespace detail

std::size_t variant_cache_size(const CellSpec& spec, const VariantOptions& options, const Dims& dims) {
  return static_cast<std::size_t>(detail::make_variant_plan(spec, options, dims).total);
}

template <typename T>
void variant_forward(const CellSpec& spec, const VariantOptions& o, const Dims& d, const SequenceOptions& so,
                     const ForwardArgs<T>& a, const VariantParams<T>& v) {
  const cpu::Context ctx = cpu::capture();
  const detail::VariantPlan p = detail::make_variant_plan(spec, o, d);
  detail::check_compute(spec, false, "the plain cells (the cell variants compute natively)");
  detail::check_forward_args(spec, d, so, a);
  detail::check_variant_params(p, v);
  detail::Spans spans;
  detail::forward_spans(spans, spec, d, so, a, p.R, p.total);
  detail::variant_param_spans(spans, v, p.H, p.R, p.GH);
  spans.check();
  cpu::run_variant_forward(ctx, p, so, a, v);
}

template <typename T>
void variant_backward(const CellSpec& spec, const VariantOptions& o, const Dims& d, const SequenceOptions& so,
                      const BackwardArgs<T>& a, const VariantParams<T>& v, const VariantGrads<T>& g) {
  const cpu::Context ctx = cpu::capture();
  const detail::VariantPlan p = detail::make_variant_plan(spec, o, d);
  detail::check_compute(spec, false, "the plain cells (the cell variants compute natively)");
  detail::check_backward_args(spec, d, so, a);
  detail::check_variant_params(p, v);
  detail::check_variant_grads(p, g);
  detail::Spans spans;
  detail::backward_spans(spans, spec, d, so, a, p.R, p.total);
  detail::variant_param_spans(spans, v, p.H, p.R, p.GH);
  detail::variant_grad_spans(spans, g, p.H, p.R, p.GH);
  spans.check();
  cpu::run_variant_backward(ctx, p, so, a, v, g);
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
