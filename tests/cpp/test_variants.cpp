// The cell variants' C++ API (variants.h): with the plain options the general path
// gives the packed kernels' results (forward and every gradient), and argument errors.
// The options themselves are tested from Python against ONNX Runtime, PyTorch, the
// NumPy reference and finite differences (tests/python/test_variants.py).
#include <lstmcore/variants.h>

#include <string>
#include <vector>

#include "harness.h"
#include "support.h"

using namespace ts;

namespace {

// variant_forward + variant_backward with the cell's own options (a general-path run of
// the plain cell), in lstmcore::forward's layout.
Grads variant_run(const Problem& p, const LossWeights& l, State& s) {
  const Inputs<double> in(p);
  const lstmcore::VariantOptions o = lstmcore::variant_defaults(p.spec.cell);
  const i64 BH = p.B() * p.H(), G = p.G();
  const bool lstm = is_lstm(p.spec);
  std::vector<double> y(p.T() * BH), h_n(BH), c_n(lstm ? BH : 0), cache(lstmcore::variant_cache_size(p.spec, o, p.d));
  lstmcore::ForwardArgs<double> fa;
  fa.x = in.x.data();
  fa.w_x = in.w_x.data();
  fa.w_h = in.w_h.data();
  fa.b = ptr(in.b);
  fa.b_h = ptr(in.b_h);
  fa.h0 = ptr(in.h0);
  fa.c0 = ptr(in.c0);
  fa.y = y.data();
  fa.h_n = h_n.data();
  fa.c_n = ptr(c_n) ? c_n.data() : nullptr;
  fa.cache = cache.data();
  lstmcore::variant_forward<double>(p.spec, o, p.d, p.options(), fa, {});
  s = State{y, h_n, c_n};
  Grads g;
  g.dx.resize(p.T() * p.B() * p.I());
  g.dh0.resize(BH);
  g.dc0.resize(lstm ? BH : 0);
  g.dw_x.resize(p.I() * G);
  g.dw_h.resize(p.H() * G);
  g.db.resize(G);
  g.db_h.resize(G);
  lstmcore::BackwardArgs<double> ba;
  ba.x = in.x.data();
  ba.w_x = in.w_x.data();
  ba.w_h = in.w_h.data();
  ba.h0 = ptr(in.h0);
  ba.c0 = ptr(in.c0);
  ba.cache = cache.data();
  ba.dy = l.wy.data();
  ba.dh_n = l.wh.data();
  ba.dc_n = ptr(l.wc);
  ba.dx = g.dx.data();
  ba.dh0 = g.dh0.data();
  ba.dc0 = lstm ? g.dc0.data() : nullptr;
  ba.dw_x = g.dw_x.data();
  ba.dw_h = g.dw_h.data();
  ba.db = g.db.data();
  ba.db_h = g.db_h.data();
  lstmcore::variant_backward<double>(p.spec, o, p.d, p.options(), ba, {}, {});
  return g;
}

}  // namespace

TEST(forward_backward_variants_plain_options_match_packed_kernels) {
  for (const CellSpec& spec : all_specs()) {
    for (int k = 0; k < 2; ++k) {
      const Problem p = make_problem(spec, Dims{6, 3, 5, 7}, k == 1, k == 1, k == 1, kAll, 71 + k);
      const LossWeights l = make_loss(p, 72 + k);
      State s;
      const Grads g = variant_run(p, l, s);
      const FwdResult<double> f = lib_forward<double>(p, false);
      const Grads want = lib_backward<double>(p, l);
      const std::pair<const char*, std::pair<const Vec*, const Vec*>> pairs[] = {
          {"y", {&s.y, &f.y}},         {"h_n", {&s.h_n, &f.h_n}},     {"c_n", {&s.c_n, &f.c_n}},
          {"dx", {&g.dx, &want.dx}},   {"dh0", {&g.dh0, &want.dh0}},  {"dc0", {&g.dc0, &want.dc0}},
          {"dw_x", {&g.dw_x, &want.dw_x}}, {"dw_h", {&g.dw_h, &want.dw_h}}, {"db", {&g.db, &want.db}},
          {"db_h", {&g.db_h, &want.db_h}}};
      for (const auto& [name, v] : pairs) {
        if (v.second->empty()) continue;
        const double err = rel_err(*v.first, *v.second);
        th::note("variants plain vs packed f64", err);
        CHECK_MSG(err <= 1e-12, p.describe() << " " << name << " rel err " << err);
      }
    }
  }
}

TEST(errors_variants_options) {
  using lstmcore::InvalidArgument;
  const Dims d{3, 2, 2, 4};
  lstmcore::VariantOptions o = lstmcore::variant_defaults(Cell::gru);
  o.peepholes = true;
  CHECK_THROWS(lstmcore::variant_cache_size({Cell::gru, true}, o, d), InvalidArgument,
               "peepholes: the gru cell has no such option");
  o = lstmcore::variant_defaults(Cell::rnn_tanh);
  o.zoneout_h = 0.1;
  CHECK_THROWS(lstmcore::variant_cache_size({Cell::rnn_tanh, true}, o, d), InvalidArgument,
               "zoneout: the rnn_tanh cell has no such option");
  o = lstmcore::variant_defaults(Cell::lstm);
  o.clip = -1;
  CHECK_THROWS(lstmcore::variant_cache_size({Cell::lstm, true}, o, d), InvalidArgument, "clip:");
  o = lstmcore::variant_defaults(Cell::lstm);
  o.input_forget = true;
  o.forget_gate = false;
  CHECK_THROWS(lstmcore::variant_cache_size({Cell::lstm, true}, o, d), InvalidArgument, "input_forget:");
  CHECK_THROWS(lstmcore::parse_nonlinearity("swish"), InvalidArgument, "activations: unknown activation 'swish'");
  CHECK(lstmcore::default_activation(lstmcore::parse_nonlinearity("hard_sigmoid")).alpha == 0.2);
  CHECK(std::string(lstmcore::nonlinearity_name(lstmcore::Nonlinearity::thresholded_relu)) == "thresholded_relu");

  // an option whose parameter is missing: named, nothing written
  o = lstmcore::variant_defaults(Cell::lstm);
  o.proj = 2;
  std::vector<double> x(3 * 2 * 2, 0.1), w_x(2 * 16, 0.1), w_h(2 * 16, 0.1), y(3 * 2 * 2, 7.0), h_n(4, 7.0),
      c_n(8, 7.0);
  lstmcore::ForwardArgs<double> fa;
  fa.x = x.data();
  fa.w_x = w_x.data();
  fa.w_h = w_h.data();
  fa.y = y.data();
  fa.h_n = h_n.data();
  fa.c_n = c_n.data();
  CHECK_THROWS(lstmcore::variant_forward<double>({Cell::lstm, true}, o, d, {}, fa, {}), InvalidArgument,
               "w_proj: required");
  CHECK(y[0] == 7.0 && h_n[0] == 7.0);
}
