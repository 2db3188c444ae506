// WeightLayout::gate_major against input_major on the transposed weights: every cell,
// the variants (peepholes, projection, layer norm, zoneout, clip, input_forget, GRU's reset
// before the product), the stack (2 layers × 2 directions), both dtypes, every instruction
// set, forward outputs and every gradient (gate_major gradients transposed back). The
// input-major path is checked against finite differences and PyTorch elsewhere, so equality
// to it is the whole contract here.
#include <functional>
#include <map>
#include <optional>
#include <sstream>

#include "support.h"

namespace {

using namespace ts;
using lstmcore::WeightLayout;

// A stack problem with input-major weights in double.
struct LayoutProblem {
  CellSpec spec;
  std::optional<lstmcore::VariantOptions> variant;
  i64 L = 2, D = 2, T = 5, B = 3, I = 7, H = 5;
  bool batch_first = false;
  std::vector<i64> lengths;  // empty: all T
  // per layer and direction, input-major
  std::vector<Vec> w_x, w_h, b, b_h, peep, proj, ln[6];
  Vec x, dy, dh_n, dc_n;

  i64 G() const { return gates(spec) * H; }
  i64 P() const { return variant ? variant->proj : 0; }
  i64 R() const { return P() > 0 ? P() : H; }
  i64 O() const { return D * R(); }
  i64 in(i64 k) const { return k == 0 ? I : O(); }
  bool peepholes() const { return variant && variant->peepholes; }
  bool layer_norm() const { return variant && variant->layer_norm; }

  void fill(std::uint64_t seed) {
    Rng r(seed);
    const i64 G_ = G();
    for (i64 k = 0; k < L * D; ++k) {
      w_x.push_back(r.vec(in(k / D) * G_, -0.5, 0.5));
      w_h.push_back(r.vec(R() * G_, -0.5, 0.5));
      b.push_back(r.vec(G_, -0.3, 0.3));
      b_h.push_back(r.vec(G_, -0.3, 0.3));
      peep.push_back(r.vec(3 * H, -0.5, 0.5));
      proj.push_back(r.vec(H * std::max<i64>(P(), 1), -0.5, 0.5));
      const i64 sizes[6] = {G_, G_, G_, G_, H, H};
      for (int j = 0; j < 6; ++j) ln[j].push_back(r.vec(sizes[j], j % 2 ? -0.2 : 0.6, j % 2 ? 0.2 : 1.4));
    }
    x = r.vec(T * B * I, -1, 1);
    dy = r.vec(T * B * O(), -1, 1);
    dh_n = r.vec(L * D * B * R(), -1, 1);
    dc_n = r.vec(L * D * B * H, -1, 1);
  }
};

// Forward (training) and backward of the stack with the weights in `layout`; the named
// results, gradients in input-major order.
template <typename Tp>
std::map<std::string, Vec> run_stack(const LayoutProblem& p, WeightLayout layout) {
  const bool gm = layout == WeightLayout::gate_major;
  const i64 G = p.G(), R = p.R(), H = p.H, P = p.P(), LD = p.L * p.D;
  lstmcore::StackSpec s;
  s.cell = p.spec;
  s.num_layers = p.L;
  s.directions = static_cast<int>(p.D);
  s.seed = 11;
  if (p.variant) s.variant = &*p.variant;
  const Dims d{p.T, p.B, p.I, p.H};
  lstmcore::SequenceOptions so;
  so.batch_first = p.batch_first;
  if (!p.lengths.empty()) so.seq_lengths = p.lengths.data();

  std::vector<std::vector<Tp>> w_x(LD), w_h(LD), b(LD), b_h(LD), peep(LD), proj(LD), ln[6];
  std::vector<std::vector<Tp>> dw_x(LD), dw_h(LD), db(LD), db_h(LD), dpeep(LD), dproj(LD), dln[6];
  std::vector<lstmcore::LayerWeights<Tp>> lw(LD);
  std::vector<lstmcore::LayerGradients<Tp>> lg(LD);
  for (i64 k = 0; k < LD; ++k) {
    const i64 I_k = p.in(k / p.D);
    w_x[k] = cast<Tp>(gm ? transposed(p.w_x[k], I_k, G) : p.w_x[k]);
    w_h[k] = cast<Tp>(gm ? transposed(p.w_h[k], R, G) : p.w_h[k]);
    b[k] = cast<Tp>(p.b[k]);
    b_h[k] = cast<Tp>(p.b_h[k]);
    dw_x[k].assign(I_k * G, Tp(7));
    dw_h[k].assign(R * G, Tp(7));
    db[k].assign(G, Tp(7));
    db_h[k].assign(G, Tp(7));
    lw[k].w_x = w_x[k].data(), lw[k].w_h = w_h[k].data(), lw[k].b = b[k].data(), lw[k].b_h = b_h[k].data();
    lg[k].dw_x = dw_x[k].data(), lg[k].dw_h = dw_h[k].data(), lg[k].db = db[k].data(), lg[k].db_h = db_h[k].data();
    if (p.peepholes()) {
      peep[k] = cast<Tp>(p.peep[k]);
      dpeep[k].assign(3 * H, Tp(7));
      lw[k].variant.peepholes = peep[k].data();
      lg[k].variant.dpeepholes = dpeep[k].data();
    }
    if (P > 0) {
      proj[k] = cast<Tp>(gm ? transposed(p.proj[k], H, P) : p.proj[k]);
      dproj[k].assign(H * P, Tp(7));
      lw[k].variant.w_proj = proj[k].data();
      lg[k].variant.dw_proj = dproj[k].data();
    }
    if (p.layer_norm()) {
      for (int j = 0; j < 6; ++j) {
        ln[j].push_back(cast<Tp>(p.ln[j][k]));
        dln[j].push_back(std::vector<Tp>(p.ln[j][k].size(), Tp(7)));
      }
      auto& v = lw[k].variant;
      v.ln_gain_x = ln[0][k].data(), v.ln_bias_x = ln[1][k].data(), v.ln_gain_h = ln[2][k].data();
      v.ln_bias_h = ln[3][k].data(), v.ln_gain_c = ln[4][k].data(), v.ln_bias_c = ln[5][k].data();
      auto& g = lg[k].variant;
      g.dln_gain_x = dln[0][k].data(), g.dln_bias_x = dln[1][k].data(), g.dln_gain_h = dln[2][k].data();
      g.dln_bias_h = dln[3][k].data(), g.dln_gain_c = dln[4][k].data(), g.dln_bias_c = dln[5][k].data();
    }
  }
  const bool lstm = is_lstm(p.spec);
  const auto x = cast<Tp>(p.x), dy = cast<Tp>(p.dy), dh_n = cast<Tp>(p.dh_n), dc_n = cast<Tp>(p.dc_n);
  std::vector<Tp> cache(lstmcore::stack_cache_size(s, d)), y(p.T * p.B * p.O()), h_n(LD * p.B * R),
      c_n(lstm ? LD * p.B * H : 0);
  lstmcore::StackForwardArgs<Tp> f;
  f.x = x.data(), f.weights = lw.data(), f.y = y.data(), f.h_n = h_n.data(), f.cache = cache.data();
  f.c_n = lstm ? c_n.data() : nullptr;
  f.weight_layout = layout;
  lstmcore::stack_forward<Tp>(s, d, so, f);
  std::vector<Tp> dx(p.T * p.B * p.I), dh0(LD * p.B * R), dc0(lstm ? LD * p.B * H : 0);
  lstmcore::StackBackwardArgs<Tp> a;
  a.x = x.data(), a.weights = lw.data(), a.cache = cache.data(), a.dy = dy.data(), a.dh_n = dh_n.data();
  a.dc_n = lstm ? dc_n.data() : nullptr;
  a.dx = dx.data(), a.dh0 = dh0.data(), a.dc0 = lstm ? dc0.data() : nullptr, a.grads = lg.data();
  a.weight_layout = layout;
  lstmcore::stack_backward<Tp>(s, d, so, a);

  std::map<std::string, Vec> out{{"y", to_double(y)}, {"h_n", to_double(h_n)}, {"c_n", to_double(c_n)},
                                 {"dx", to_double(dx)}, {"dh0", to_double(dh0)}, {"dc0", to_double(dc0)}};
  for (i64 k = 0; k < LD; ++k) {
    const std::string n = "[" + std::to_string(k) + "]";
    const i64 I_k = p.in(k / p.D);
    out["dw_x" + n] = gm ? transposed(to_double(dw_x[k]), G, I_k) : to_double(dw_x[k]);
    out["dw_h" + n] = gm ? transposed(to_double(dw_h[k]), G, R) : to_double(dw_h[k]);
    out["db" + n] = to_double(db[k]);
    out["db_h" + n] = to_double(db_h[k]);
    if (p.peepholes()) out["dpeepholes" + n] = to_double(dpeep[k]);
    if (P > 0) out["dw_proj" + n] = gm ? transposed(to_double(dproj[k]), P, H) : to_double(dproj[k]);
    if (p.layer_norm())
      for (int j = 0; j < 6; ++j) out["dln" + std::to_string(j) + n] = to_double(dln[j][k]);
  }
  return out;
}

// Largest relative difference (‖gm − im‖ / ‖im‖) over the results; checks it against `tol`
// (0: bit for bit) and notes it under `label`.
template <typename Tp>
void compare(const LayoutProblem& p, const std::string& label, double tol_fwd, double tol_bwd) {
  for_each_isa([&](const std::string& isa) {
    const auto im = run_stack<Tp>(p, WeightLayout::input_major);
    const auto gm = run_stack<Tp>(p, WeightLayout::gate_major);
    for (const auto& [name, ref] : im) {
      const double e = rel_err(gm.at(name), ref);
      const bool forward = name == "y" || name == "h_n" || name == "c_n";
      const std::string what = label + (sizeof(Tp) == 4 ? " f32 " : " f64 ") + (forward ? "forward" : "gradients");
      th::note("gate_major vs input_major " + what, e);
      CHECK_MSG(e <= (forward ? tol_fwd : tol_bwd), what << " " << isa << " " << name << ": relative difference " << e);
    }
  });
}

std::vector<std::pair<std::string, LayoutProblem>> problems() {
  std::vector<std::pair<std::string, LayoutProblem>> out;
  for (const CellSpec& spec : all_specs()) {
    LayoutProblem p;
    p.spec = spec;
    out.push_back({spec_name(spec), p});
  }
  {  // row order and lengths on a plain LSTM
    LayoutProblem p;
    p.spec = {Cell::lstm, true};
    p.batch_first = true;
    p.lengths = {5, 2, 4};
    out.push_back({"lstm batch_first lengths", p});
  }
  {
    LayoutProblem p;
    p.spec = {Cell::lstm, true};
    auto v = lstmcore::variant_defaults(Cell::lstm);
    v.peepholes = true, v.proj = 3, v.layer_norm = true, v.zoneout_h = 0.3, v.zoneout_c = 0.2, v.clip = 2.0;
    p.variant = v;
    p.lengths = {4, 5, 2};
    out.push_back({"lstm peepholes proj layer_norm zoneout clip", p});
  }
  {
    LayoutProblem p;
    p.spec = {Cell::lstm, true};
    auto v = lstmcore::variant_defaults(Cell::lstm);
    v.input_forget = true, v.proj = 4;
    p.variant = v;
    out.push_back({"lstm input_forget proj", p});
  }
  for (bool reset_after : {true, false}) {
    LayoutProblem p;
    p.spec = {Cell::gru, reset_after};
    auto v = lstmcore::variant_defaults(Cell::gru);
    v.clip = 1.5;
    p.variant = v;
    p.batch_first = true;
    out.push_back({spec_name(p.spec) + " clip", p});
  }
  {
    LayoutProblem p;
    p.spec = {Cell::rnn_tanh, true};
    auto v = lstmcore::variant_defaults(Cell::rnn_tanh);
    v.f = lstmcore::default_activation(lstmcore::Nonlinearity::softsign);
    p.variant = v;
    out.push_back({"rnn softsign", p});
  }
  return out;
}

}  // namespace

// The tolerances: the input projection and the weight-gradient GEMMs read the stored
// operand with a transpose flag; Eigen may then sum in another order (rounding only).
TEST(stack_weight_layout_gate_major_equals_input_major) {
  std::uint64_t seed = 100;
  for (auto& [label, p] : problems()) {
    p.fill(seed++);
    compare<double>(p, label, 1e-14, 1e-14);
    compare<float>(p, label, 1e-6, 1e-6);
  }
}

// The single-layer entry points (recurrent.h) of every plain cell take the layout too.
TEST(backward_weight_layout_single_layer) {
  for (const CellSpec& spec : all_specs()) {
    LayoutProblem p;
    p.spec = spec;
    p.L = 1, p.D = 1;
    p.fill(7);
    const i64 G = p.G(), H = p.H, N = p.T * p.B;
    const bool lstm = is_lstm(spec);
    std::map<std::string, Vec> res[2];
    for (int l = 0; l < 2; ++l) {
      const bool gm = l == 1;
      const Vec w_x = gm ? transposed(p.w_x[0], p.I, G) : p.w_x[0];
      const Vec w_h = gm ? transposed(p.w_h[0], H, G) : p.w_h[0];
      Vec cache(lstmcore::cache_size(spec, {p.T, p.B, p.I, H})), y(N * H), h_n(p.B * H), c_n(lstm ? p.B * H : 0);
      lstmcore::ForwardArgs<double> f;
      f.x = p.x.data(), f.w_x = w_x.data(), f.w_h = w_h.data(), f.b = p.b[0].data(), f.b_h = p.b_h[0].data();
      f.y = y.data(), f.h_n = h_n.data(), f.c_n = lstm ? c_n.data() : nullptr, f.cache = cache.data();
      f.weight_layout = gm ? WeightLayout::gate_major : WeightLayout::input_major;
      lstmcore::forward<double>(spec, {p.T, p.B, p.I, H}, {}, f);
      Vec dx(N * p.I), dh0(p.B * H), dc0(lstm ? p.B * H : 0), dw_x(p.I * G), dw_h(H * G), db(G), db_h(G);
      lstmcore::BackwardArgs<double> a;
      a.x = p.x.data(), a.w_x = w_x.data(), a.w_h = w_h.data(), a.cache = cache.data(), a.dy = p.dy.data();
      a.dx = dx.data(), a.dh0 = dh0.data(), a.dc0 = lstm ? dc0.data() : nullptr, a.dw_x = dw_x.data();
      a.dw_h = dw_h.data(), a.db = db.data(), a.db_h = db_h.data();
      a.weight_layout = f.weight_layout;
      lstmcore::backward<double>(spec, {p.T, p.B, p.I, H}, {}, a);
      res[l] = {{"y", y}, {"h_n", h_n}, {"c_n", c_n}, {"dx", dx}, {"dh0", dh0}, {"dc0", dc0},
                {"dw_x", gm ? transposed(dw_x, G, p.I) : dw_x}, {"dw_h", gm ? transposed(dw_h, G, H) : dw_h},
                {"db", db}, {"db_h", db_h}};
    }
    for (const auto& [name, ref] : res[0]) {
      const double e = rel_err(res[1][name], ref);
      th::note("gate_major vs input_major single layer f64 " + name, e);
      CHECK_MSG(e <= 1e-14, spec_name(spec) << " " << name << ": relative difference " << e);
    }
  }
}
