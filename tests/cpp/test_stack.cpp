// The layer stack (stack.h) against its definition: one lstmcore::forward / backward
// per layer and direction, glued by hand (concatenation or sum of the directions).
#include <cstdint>
#include <vector>

#include "harness.h"
#include "support.h"

using namespace ts;

namespace {

struct StackCase {
  CellSpec spec;
  lstmcore::Merge merge;
  i64 L = 2, T = 5, B = 3, I = 4, H = 6;
};

struct Weights {
  std::vector<Vec> w_x, w_h, b, b_h;
};

i64 out_width(const StackCase& c) { return c.merge == lstmcore::Merge::sum ? c.H : 2 * c.H; }

Weights make_weights(const StackCase& c, Rng& r) {
  Weights w;
  const i64 G = gates(c.spec) * c.H;
  for (i64 k = 0; k < c.L; ++k)
    for (int d = 0; d < 2; ++d) {
      const i64 in = k == 0 ? c.I : out_width(c);
      w.w_x.push_back(r.vec(in * G, -0.4, 0.4));
      w.w_h.push_back(r.vec(c.H * G, -0.4, 0.4));
      w.b.push_back(r.vec(G, -0.3, 0.3));
      w.b_h.push_back(r.vec(G, -0.3, 0.3));
    }
  return w;
}

// Forward and backward by hand; returns y, h_n, dx, dh0, and every dw_x concatenated.
struct Result {
  Vec y, h_n, dx, dh0, dw;
};

Result by_hand(const StackCase& c, const Weights& w, const Vec& x, const Vec& h0, const Vec& dy,
               const std::vector<std::int64_t>& lengths) {
  const bool lstm = is_lstm(c.spec);
  const i64 rows = c.T * c.B, H = c.H, W = out_width(c);
  std::vector<Vec> inputs{x}, caches(2 * c.L), cells(2 * c.L);
  Result r;
  r.h_n.assign(2 * c.L * c.B * H, 0);
  for (i64 k = 0; k < c.L; ++k) {
    const Dims d{c.T, c.B, k == 0 ? c.I : W, H};
    Vec out(rows * W, 0);
    for (int dir = 0; dir < 2; ++dir) {
      const i64 j = 2 * k + dir;
      Vec y(rows * H), c_n(c.B * H), c0(c.B * H, 0);
      caches[j].assign(lstmcore::cache_size(c.spec, d), 0);
      lstmcore::SequenceOptions o;
      o.reverse = dir == 1;
      o.seq_lengths = lengths.data();
      lstmcore::ForwardArgs<double> f{inputs[k].data(), w.w_x[j].data(), w.w_h[j].data(), w.b[j].data(),
                                      w.b_h[j].data(), h0.data() + j * c.B * H, lstm ? c0.data() : nullptr,
                                      y.data(), r.h_n.data() + j * c.B * H, lstm ? c_n.data() : nullptr,
                                      caches[j].data()};
      lstmcore::forward<double>(c.spec, d, o, f);
      for (i64 row = 0; row < rows; ++row)
        for (i64 u = 0; u < H; ++u) {
          if (c.merge == lstmcore::Merge::sum)
            out[row * W + u] += y[row * H + u];
          else
            out[row * W + dir * H + u] = y[row * H + u];
        }
    }
    inputs.push_back(out);
  }
  r.y = inputs.back();
  // Backward, last layer first.
  Vec g = dy;
  r.dh0.assign(2 * c.L * c.B * H, 0);
  std::vector<Vec> dws(2 * c.L);
  for (i64 k = c.L - 1; k >= 0; --k) {
    const Dims d{c.T, c.B, k == 0 ? c.I : W, H};
    Vec gin(rows * d.input, 0);
    for (int dir = 0; dir < 2; ++dir) {
      const i64 j = 2 * k + dir, G = gates(c.spec) * H;
      Vec gdir(rows * H), dx(rows * d.input), dc0(c.B * H), c0(c.B * H, 0);
      for (i64 row = 0; row < rows; ++row)
        for (i64 u = 0; u < H; ++u)
          gdir[row * H + u] = c.merge == lstmcore::Merge::sum ? g[row * W + u] : g[row * W + dir * H + u];
      dws[j].assign(d.input * G, 0);
      Vec dw_h(H * G), db(G), db_h(G);
      lstmcore::SequenceOptions o;
      o.reverse = dir == 1;
      o.seq_lengths = lengths.data();
      lstmcore::BackwardArgs<double> b;
      b.x = inputs[k].data();
      b.w_x = w.w_x[j].data();
      b.w_h = w.w_h[j].data();
      b.h0 = h0.data() + j * c.B * H;
      b.c0 = lstm ? c0.data() : nullptr;
      b.cache = caches[j].data();
      b.dy = gdir.data();
      b.dx = dx.data();
      b.dh0 = r.dh0.data() + j * c.B * H;
      b.dc0 = lstm ? dc0.data() : nullptr;
      b.dw_x = dws[j].data();
      b.dw_h = dw_h.data();
      b.db = db.data();
      b.db_h = db_h.data();
      lstmcore::backward<double>(c.spec, d, o, b);
      for (std::size_t i = 0; i < gin.size(); ++i) gin[i] += dx[i];
    }
    g = gin;
  }
  r.dx = g;
  for (const Vec& v : dws) r.dw.insert(r.dw.end(), v.begin(), v.end());
  return r;
}

Result by_stack(const StackCase& c, const Weights& w, const Vec& x, const Vec& h0, const Vec& dy,
                const std::vector<std::int64_t>& lengths) {
  const bool lstm = is_lstm(c.spec);
  lstmcore::StackSpec s;
  s.cell = c.spec;
  s.num_layers = c.L;
  s.directions = 2;
  s.merge = c.merge;
  const Dims d{c.T, c.B, c.I, c.H};
  const i64 LD = 2 * c.L, states = LD * c.B * c.H, W = out_width(c);
  std::vector<lstmcore::LayerWeights<double>> lw;
  for (i64 j = 0; j < LD; ++j) lw.push_back({w.w_x[j].data(), w.w_h[j].data(), w.b[j].data(), w.b_h[j].data(), {}});
  Result r;
  r.y.assign(c.T * c.B * W, 0);
  r.h_n.assign(states, 0);
  Vec c_n(states), cache(lstmcore::stack_cache_size(s, d));
  lstmcore::SequenceOptions o;
  o.seq_lengths = lengths.data();
  lstmcore::StackForwardArgs<double> f;
  f.x = x.data();
  f.weights = lw.data();
  f.h0 = h0.data();
  f.y = r.y.data();
  f.h_n = r.h_n.data();
  f.c_n = lstm ? c_n.data() : nullptr;
  f.cache = cache.data();
  lstmcore::stack_forward<double>(s, d, o, f);

  std::vector<Vec> dws(LD), rest(LD * 3);
  std::vector<lstmcore::LayerGradients<double>> lg;
  const i64 G = gates(c.spec) * c.H;
  for (i64 j = 0; j < LD; ++j) {
    const i64 in = j < 2 ? c.I : W;
    dws[j].assign(in * G, 0);
    rest[3 * j].assign(c.H * G, 0);
    rest[3 * j + 1].assign(G, 0);
    rest[3 * j + 2].assign(G, 0);
    lg.push_back({dws[j].data(), rest[3 * j].data(), rest[3 * j + 1].data(), rest[3 * j + 2].data(), {}});
  }
  r.dx.assign(c.T * c.B * c.I, 0);
  r.dh0.assign(states, 0);
  Vec dc0(states);
  lstmcore::StackBackwardArgs<double> b;
  b.x = x.data();
  b.weights = lw.data();
  b.h0 = h0.data();
  b.cache = cache.data();
  b.dy = dy.data();
  b.dx = r.dx.data();
  b.dh0 = r.dh0.data();
  b.dc0 = lstm ? dc0.data() : nullptr;
  b.grads = lg.data();
  lstmcore::stack_backward<double>(s, d, o, b);
  for (const Vec& v : dws) r.dw.insert(r.dw.end(), v.begin(), v.end());
  return r;
}

void check_stack(lstmcore::Merge merge) {
  for (const CellSpec& spec : all_specs()) {
    StackCase c{spec, merge};
    Rng r(11);
    const Weights w = make_weights(c, r);
    const Vec x = r.vec(c.T * c.B * c.I, -1, 1);
    const Vec h0 = r.vec(2 * c.L * c.B * c.H, -0.5, 0.5);
    const Vec dy = r.vec(c.T * c.B * out_width(c), -1, 1);
    const std::vector<std::int64_t> lengths{c.T, 2, 4};
    const Result want = by_hand(c, w, x, h0, dy, lengths);
    const Result got = by_stack(c, w, x, h0, dy, lengths);
    const std::string tag = spec_name(spec) + (merge == lstmcore::Merge::sum ? " sum" : " concat");
    const double tol = 1e-14;
    const std::pair<const char*, std::pair<const Vec*, const Vec*>> parts[] = {
        {"y", {&got.y, &want.y}},   {"h_n", {&got.h_n, &want.h_n}}, {"dx", {&got.dx, &want.dx}},
        {"dh0", {&got.dh0, &want.dh0}}, {"dw_x", {&got.dw, &want.dw}}};
    for (const auto& [name, v] : parts) {
      const double e = rel_err(*v.first, *v.second);
      th::note(std::string("stack vs composition ") + name, e);
      CHECK_MSG(e <= tol, tag << " " << name << ": relative error " << e);
    }
  }
}

}  // namespace

TEST(forward_backward_stack_bidirectional_concat) { check_stack(lstmcore::Merge::concat); }
TEST(forward_backward_stack_bidirectional_sum) { check_stack(lstmcore::Merge::sum); }

// A stack of cell variants against variant_forward / variant_backward per layer: a
// 2-layer LSTM with peepholes and a projection (h is P wide, the second layer reads P).
TEST(stack_of_variants_matches_composition) {
  const i64 L = 2, T = 5, B = 3, I = 4, H = 5, P = 3, G = 4 * H;
  lstmcore::VariantOptions vo = lstmcore::variant_defaults(Cell::lstm);
  vo.peepholes = true;
  vo.proj = P;
  vo.clip = 1.5;
  Rng r(5);
  std::vector<Vec> w_x, w_h, b, peep, proj;
  for (i64 k = 0; k < L; ++k) {
    w_x.push_back(r.vec((k == 0 ? I : P) * G, -0.4, 0.4));
    w_h.push_back(r.vec(P * G, -0.4, 0.4));
    b.push_back(r.vec(G, -0.3, 0.3));
    peep.push_back(r.vec(3 * H, -0.5, 0.5));
    proj.push_back(r.vec(H * P, -0.5, 0.5));
  }
  const Vec x = r.vec(T * B * I, -1, 1), dy = r.vec(T * B * P, -1, 1);
  const CellSpec spec{Cell::lstm, true};

  // by hand
  std::vector<Vec> inputs{x}, caches(L);
  Vec h_n(L * B * P), c_n(L * B * H);
  for (i64 k = 0; k < L; ++k) {
    const Dims d{T, B, k == 0 ? I : P, H};
    Vec y(T * B * P);
    caches[k].assign(lstmcore::variant_cache_size(spec, vo, d), 0);
    lstmcore::ForwardArgs<double> f;
    f.x = inputs[k].data(), f.w_x = w_x[k].data(), f.w_h = w_h[k].data(), f.b = b[k].data();
    f.y = y.data(), f.h_n = h_n.data() + k * B * P, f.c_n = c_n.data() + k * B * H, f.cache = caches[k].data();
    lstmcore::VariantParams<double> v;
    v.peepholes = peep[k].data(), v.w_proj = proj[k].data();
    lstmcore::variant_forward<double>(spec, vo, d, {}, f, v);
    inputs.push_back(y);
  }
  Vec g = dy, dh0(L * B * P), dc0(L * B * H);
  std::vector<Vec> dproj(L, Vec(H * P)), dpeep(L, Vec(3 * H));
  for (i64 k = L - 1; k >= 0; --k) {
    const Dims d{T, B, k == 0 ? I : P, H};
    Vec dx(T * B * d.input), dw_x(d.input * G), dw_h(P * G), db(G);
    lstmcore::BackwardArgs<double> a;
    a.x = inputs[k].data(), a.w_x = w_x[k].data(), a.w_h = w_h[k].data(), a.cache = caches[k].data();
    a.dy = g.data(), a.dx = dx.data(), a.dh0 = dh0.data() + k * B * P, a.dc0 = dc0.data() + k * B * H;
    a.dw_x = dw_x.data(), a.dw_h = dw_h.data(), a.db = db.data();
    lstmcore::VariantParams<double> v;
    v.peepholes = peep[k].data(), v.w_proj = proj[k].data();
    lstmcore::VariantGrads<double> vg;
    vg.dpeepholes = dpeep[k].data(), vg.dw_proj = dproj[k].data();
    lstmcore::variant_backward<double>(spec, vo, d, {}, a, v, vg);
    g = dx;
  }

  // by the stack
  lstmcore::StackSpec s;
  s.cell = spec;
  s.num_layers = L;
  s.variant = &vo;
  const Dims d{T, B, I, H};
  std::vector<lstmcore::LayerWeights<double>> lw(L);
  for (i64 k = 0; k < L; ++k) {
    lw[k].w_x = w_x[k].data(), lw[k].w_h = w_h[k].data(), lw[k].b = b[k].data();
    lw[k].variant.peepholes = peep[k].data(), lw[k].variant.w_proj = proj[k].data();
  }
  Vec cache(lstmcore::stack_cache_size(s, d)), y(T * B * P), sh_n(L * B * P), sc_n(L * B * H);
  lstmcore::StackForwardArgs<double> f;
  f.x = x.data(), f.weights = lw.data(), f.y = y.data(), f.h_n = sh_n.data(), f.c_n = sc_n.data();
  f.cache = cache.data();
  lstmcore::stack_forward<double>(s, d, {}, f);
  Vec sdx(T * B * I), sdh0(L * B * P), sdc0(L * B * H);
  std::vector<Vec> sdw_x(L), sdw_h(L, Vec(P * G)), sdb(L, Vec(G)), sdproj(L, Vec(H * P)), sdpeep(L, Vec(3 * H));
  std::vector<lstmcore::LayerGradients<double>> lg(L);
  for (i64 k = 0; k < L; ++k) {
    sdw_x[k].assign((k == 0 ? I : P) * G, 0);
    lg[k].dw_x = sdw_x[k].data(), lg[k].dw_h = sdw_h[k].data(), lg[k].db = sdb[k].data();
    lg[k].variant.dpeepholes = sdpeep[k].data(), lg[k].variant.dw_proj = sdproj[k].data();
  }
  lstmcore::StackBackwardArgs<double> a;
  a.x = x.data(), a.weights = lw.data(), a.cache = cache.data(), a.dy = dy.data(), a.dx = sdx.data();
  a.dh0 = sdh0.data(), a.dc0 = sdc0.data(), a.grads = lg.data();
  lstmcore::stack_backward<double>(s, d, {}, a);

  const std::pair<const char*, std::pair<const Vec*, const Vec*>> parts[] = {
      {"y", {&y, &inputs.back()}}, {"h_n", {&sh_n, &h_n}},     {"c_n", {&sc_n, &c_n}},
      {"dx", {&sdx, &g}},          {"dh0", {&sdh0, &dh0}},     {"dc0", {&sdc0, &dc0}},
      {"dw_proj[0]", {&sdproj[0], &dproj[0]}}, {"dw_proj[1]", {&sdproj[1], &dproj[1]}},
      {"dpeepholes[0]", {&sdpeep[0], &dpeep[0]}}};
  for (const auto& [name, v] : parts) {
    const double e = rel_err(*v.first, *v.second);
    th::note(std::string("variant stack vs composition ") + name, e);
    CHECK_MSG(e <= 1e-14, name << ": relative error " << e);
  }

  // The plain cell's options run the plain path; an LSTM option on a GRU stack is refused.
  lstmcore::VariantOptions plain = lstmcore::variant_defaults(Cell::gru);
  s.cell = {Cell::gru, true};
  s.variant = &plain;
  CHECK(lstmcore::stack_cache_size(s, d) == [&] {
    lstmcore::StackSpec none = s;
    none.variant = nullptr;
    return lstmcore::stack_cache_size(none, d);
  }());
  plain.proj = 2;
  CHECK_THROWS(lstmcore::stack_cache_size(s, d), lstmcore::InvalidArgument, "proj_size");
}
