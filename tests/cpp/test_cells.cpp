// Numerics of every cell: forward against the naive reference loop (float and double),
// backward against central finite differences (double), over every option.
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "harness.h"
#include "support.h"

using namespace ts;

namespace {

const Dims kSmall{5, 3, 3, 4};  // T, B, I, H
// Optional inputs: none, all, and two complementary halves (each one null and given).
const unsigned kOptionalSets[] = {0u, unsigned(kAll), unsigned(kB | kH0), unsigned(kBh | kC0)};

// Every combination of reverse, batch_first, seq_lengths and optional inputs for one cell.
template <class F>
void for_each_config(const CellSpec& spec, const Dims& d, F&& f) {
  std::uint64_t seed = 1000 * (unsigned(spec.cell) + 1) + (spec.reset_after ? 0 : 500);
  for (bool reverse : {false, true})
    for (bool batch_first : {false, true})
      for (bool lengths : {false, true})
        for (unsigned opt : kOptionalSets) f(make_problem(spec, d, reverse, batch_first, lengths, opt, ++seed));
}

// Rows of y (width H) past each sequence's length must be exactly zero.
bool padding_is_zero(const Problem& p, const Vec& rows, i64 width) {
  for (i64 b = 0; b < p.B(); ++b)
    for (i64 t = p.len(b); t < p.T(); ++t)
      for (i64 j = 0; j < width; ++j)
        if (rows[p.row(t, b) * width + j] != 0.0) return false;
  return true;
}

void check_forward(const CellSpec& spec, const std::string& isa);
void check_forward(const CellSpec& spec) {
  for_each_isa([&](const std::string& isa) { check_forward(spec, isa); });
}

void check_forward(const CellSpec& spec, const std::string& isa) {
  int configs = 0;
  for_each_config(spec, kSmall, [&](const Problem& p0) {
    ++configs;
    Problem p = p0;
    p.label = isa;
    const State ref = reference_forward(p);
    // double, inference and training (the cache must not change the outputs)
    for (bool training : {false, true}) {
      const auto r = lib_forward<double>(p, training);
      const double e = std::max({rel_err(r.y, ref.y), rel_err(r.h_n, ref.h_n), rel_err(r.c_n, ref.c_n)});
      th::note("forward double rel err", e);
      CHECK_MSG(e <= 1e-12, p.describe() << (training ? " training" : "") << ": rel err " << e);
      CHECK_MSG(r.guards_ok, p.describe() << ": wrote outside an output buffer");
      CHECK_MSG(padding_is_zero(p, r.y, p.H()), p.describe() << ": y not zero past a sequence's length");
    }
    const auto inf = lib_forward<double>(p, false), tr = lib_forward<double>(p, true);
    CHECK_MSG(inf.y == tr.y && inf.h_n == tr.h_n && inf.c_n == tr.c_n,
              p.describe() << ": training forward differs from inference forward");

    // float: against the reference run on the float-rounded inputs
    Problem pf = p;
    for (Vec* v : {&pf.x, &pf.w_x, &pf.w_h, &pf.b, &pf.b_h, &pf.h0, &pf.c0}) *v = to_double(cast<float>(*v));
    const State reff = reference_forward(pf);
    for (bool training : {false, true}) {
      const auto r = lib_forward<float>(p, training);
      const double e = std::max({rel_err(r.y, reff.y), rel_err(r.h_n, reff.h_n), rel_err(r.c_n, reff.c_n)});
      th::note("forward float rel err", e);
      CHECK_MSG(e <= 1e-5, p.describe() << " float" << (training ? " training" : "") << ": rel err " << e);
      CHECK_MSG(r.guards_ok, p.describe() << " float: wrote outside an output buffer");
    }
  });
  CHECK(configs == 32);
}

// dL/dv by central differences of the reference forward, for the problem's array v
// (an absent optional array is differentiated at zero, as the library does).
Vec finite_diff(const Problem& p, const LossWeights& l, Vec Problem::*member, std::size_t n, double eps) {
  Problem q = p;
  if ((q.*member).empty()) (q.*member).assign(n, 0.0);
  Vec g(n);
  for (std::size_t i = 0; i < n; ++i) {
    const double v = (q.*member)[i];
    (q.*member)[i] = v + eps;
    const double lp = loss(reference_forward(q), l);
    (q.*member)[i] = v - eps;
    const double lm = loss(reference_forward(q), l);
    (q.*member)[i] = v;
    g[i] = (lp - lm) / (2 * eps);
  }
  return g;
}

struct Named {
  const char* name;
  Vec Problem::*input;
  Vec Grads::*grad;
  std::size_t n;
};

std::vector<Named> gradient_list(const Problem& p) {
  const std::size_t BH = p.B() * p.H(), G = p.G();
  std::vector<Named> v = {{"dx", &Problem::x, &Grads::dx, std::size_t(p.T() * p.B() * p.I())},
                          {"dh0", &Problem::h0, &Grads::dh0, BH},
                          {"dw_x", &Problem::w_x, &Grads::dw_x, std::size_t(p.I()) * G},
                          {"dw_h", &Problem::w_h, &Grads::dw_h, std::size_t(p.H()) * G},
                          {"db", &Problem::b, &Grads::db, G},
                          {"db_h", &Problem::b_h, &Grads::db_h, G}};
  if (is_lstm(p.spec)) v.push_back({"dc0", &Problem::c0, &Grads::dc0, BH});
  return v;
}

void check_backward(const CellSpec& spec, const std::string& isa) {
  int configs = 0;
  for_each_config(spec, kSmall, [&](const Problem& p0) {
    ++configs;
    Problem p = p0;
    p.label = isa;
    const LossWeights l = make_loss(p, 77 + configs);
    const Grads g = lib_backward<double>(p, l);
    CHECK_MSG(g.guards_ok, p.describe() << ": wrote outside a buffer");
    for (const Named& n : gradient_list(p)) {
      const Vec fd = finite_diff(p, l, n.input, n.n, 1e-6);
      const double e = rel_err(g.*n.grad, fd);
      th::note("backward vs FD rel err", e);
      CHECK_MSG(e <= 1e-7, p.describe() << ": " << n.name << " rel err " << e);
    }
    CHECK_MSG(padding_is_zero(p, g.dx, p.I()), p.describe() << ": dx not zero past a sequence's length");

    // float backward against double backward
    const Grads gf = lib_backward<float>(p, l);
    CHECK_MSG(gf.guards_ok, p.describe() << " float: wrote outside a buffer");
    for (const Named& n : gradient_list(p)) {
      const double e = rel_err(gf.*n.grad, g.*n.grad);
      th::note("backward float vs double rel err", e);
      CHECK_MSG(e <= 1e-4, p.describe() << " float: " << n.name << " rel err " << e);
    }
  });
  CHECK(configs == 32);
}

// Sizes large enough for the OpenMP paths (B·G >= 4096) and the parallel GEMMs; the
// forward against the reference and the backward against finite differences at a
// sample of elements (the library's own double forward gives the loss here).
void check_large(const CellSpec& spec, const std::string& isa) {
  // The smallest batch that makes B·G·H reach the 4096 values where the OpenMP loops start.
  const std::int64_t H = 32, B = 4096 / (gates(spec) * H) + 3;
  const Dims d{5, B, 16, H};
  for (int variant = 0; variant < 2; ++variant) {
    Problem p = make_problem(spec, d, variant == 1, variant == 1, variant == 1, kAll, 4242 + variant);
    p.label = isa;
    const State ref = reference_forward(p);
    const auto r = lib_forward<double>(p, false);
    const double ef = std::max({rel_err(r.y, ref.y), rel_err(r.h_n, ref.h_n), rel_err(r.c_n, ref.c_n)});
    th::note("forward double rel err (large)", ef);
    CHECK_MSG(ef <= 1e-12, p.describe() << ": rel err " << ef);

    const LossWeights l = make_loss(p, 99);
    const Grads g = lib_backward<double>(p, l);
    // The many forwards of the finite differences run on one thread: the threaded paths
    // were exercised above, and OpenMP on a busy machine makes them slow.
    ThreadsGuard one_thread;
    lstmcore::set_num_threads(1);
    Rng pick(7 + variant);
    for (const Named& n : gradient_list(p)) {
      Vec got, fd;
      Problem q = p;
      for (int k = 0; k < 6; ++k) {
        const std::size_t i = std::size_t(pick.uni(0, double(n.n))) % n.n;
        const double v = (q.*n.input)[i], eps = 1e-6;
        (q.*n.input)[i] = v + eps;
        const auto fp = lib_forward<double>(q, false);
        (q.*n.input)[i] = v - eps;
        const auto fm = lib_forward<double>(q, false);
        (q.*n.input)[i] = v;
        fd.push_back((loss({fp.y, fp.h_n, fp.c_n}, l) - loss({fm.y, fm.h_n, fm.c_n}, l)) / (2 * eps));
        got.push_back((g.*n.grad)[i]);
      }
      const double e = rel_err(got, fd);
      th::note("backward vs FD rel err (large, sampled)", e);
      // The loss sums ~25k terms here, so its rounding error over 2·eps is ~1e-8 relative.
      CHECK_MSG(e <= 1e-6, p.describe() << ": " << n.name << " rel err " << e);
    }
  }
}

void check_backward(const CellSpec& spec) {
  for_each_isa([&](const std::string& isa) { check_backward(spec, isa); });
}
void check_large(const CellSpec& spec) {
  for_each_isa([&](const std::string& isa) { check_large(spec, isa); });
}

}  // namespace

TEST(forward_lstm) { check_forward({Cell::lstm, true}); }
TEST(forward_gru_reset_after) { check_forward({Cell::gru, true}); }
TEST(forward_gru_reset_before) { check_forward({Cell::gru, false}); }
TEST(forward_rnn_tanh) { check_forward({Cell::rnn_tanh, true}); }
TEST(forward_rnn_relu) { check_forward({Cell::rnn_relu, true}); }

TEST(backward_lstm) { check_backward({Cell::lstm, true}); }
TEST(backward_gru_reset_after) { check_backward({Cell::gru, true}); }
TEST(backward_gru_reset_before) { check_backward({Cell::gru, false}); }
TEST(backward_rnn_tanh) { check_backward({Cell::rnn_tanh, true}); }
TEST(backward_rnn_relu) { check_backward({Cell::rnn_relu, true}); }

TEST(large_lstm) { check_large({Cell::lstm, true}); }
TEST(large_gru_reset_after) { check_large({Cell::gru, true}); }
TEST(large_gru_reset_before) { check_large({Cell::gru, false}); }
TEST(large_rnn_tanh) { check_large({Cell::rnn_tanh, true}); }
TEST(large_rnn_relu) { check_large({Cell::rnn_relu, true}); }

// Null gradient inputs mean zeros; null db / db_h are skipped and change nothing else.
TEST(backward_optional_gradients) {
  for (const CellSpec& spec : all_specs()) {
    const Problem p = make_problem(spec, kSmall, true, false, true, kAll, 31);
    const LossWeights l = make_loss(p, 32);
    const Grads full = lib_backward<double>(p, l);
    const Grads no_bias = lib_backward<double>(p, l, false);
    CHECK_MSG(no_bias.guards_ok, p.describe());
    CHECK_MSG(no_bias.dx == full.dx && no_bias.dw_x == full.dw_x && no_bias.dw_h == full.dw_h &&
                  no_bias.dh0 == full.dh0 && no_bias.dc0 == full.dc0,
              p.describe() << ": db = db_h = nullptr changed another gradient");

    LossWeights zero_y = l, zero_h = l;
    std::fill(zero_y.wy.begin(), zero_y.wy.end(), 0.0);
    std::fill(zero_h.wh.begin(), zero_h.wh.end(), 0.0);
    const Grads a = lib_backward<double>(p, l, true, true), b = lib_backward<double>(p, zero_y);
    CHECK_MSG(rel_err(a.dw_h, b.dw_h) == 0 && rel_err(a.dx, b.dx) == 0 && rel_err(a.dh0, b.dh0) == 0,
              p.describe() << ": dy = nullptr differs from dy = 0");
    const Grads c = lib_backward<double>(p, l, true, false, true), e = lib_backward<double>(p, zero_h);
    CHECK_MSG(rel_err(c.dw_h, e.dw_h) == 0 && rel_err(c.dx, e.dx) == 0 && rel_err(c.db, e.db) == 0,
              p.describe() << ": dh_n = nullptr differs from dh_n = 0");
    if (is_lstm(spec)) {  // dc_n = nullptr: zero
      LossWeights zero_c = l;
      std::fill(zero_c.wc.begin(), zero_c.wc.end(), 0.0);
      Problem q = p;
      const Grads zc = lib_backward<double>(q, zero_c);
      LossWeights no_c = l;
      no_c.wc.clear();  // lib_backward passes nullptr for an empty dc_n
      const Grads nc = lib_backward<double>(q, no_c);
      CHECK_MSG(rel_err(zc.dc0, nc.dc0) == 0 && rel_err(zc.dw_x, nc.dw_x) == 0, "lstm: dc_n = nullptr differs from 0");
    }
  }
}

// The per-cell wrappers of lstm.h, gru.h, rnn.h are the generic entry points.
TEST(api_cell_wrappers) {
  using namespace lstmcore;
  for (const CellSpec& spec : all_specs()) {
    const Problem p = make_problem(spec, kSmall, false, true, true, kAll, 55);
    const auto ref = lib_forward<double>(p, true);
    const Inputs<double> in(p);
    const i64 BH = p.B() * p.H();
    std::vector<double> y(p.T() * BH), h_n(BH), c_n(BH), cache(cache_size(spec, p.d));
    ForwardArgs<double> a;
    a.x = in.x.data();
    a.w_x = in.w_x.data();
    a.w_h = in.w_h.data();
    a.b = in.b.data();
    a.b_h = in.b_h.data();
    a.h0 = in.h0.data();
    a.y = y.data();
    a.h_n = h_n.data();
    a.cache = cache.data();
    switch (spec.cell) {
      case Cell::lstm:
        a.c0 = in.c0.data();
        a.c_n = c_n.data();
        CHECK(cache.size() == lstm_cache_size(p.d));
        lstm_forward<double>(p.d, p.options(), a);
        break;
      case Cell::gru:
        CHECK(cache.size() == gru_cache_size(p.d, spec.reset_after));
        gru_forward<double>(p.d, p.options(), a, spec.reset_after);
        break;
      default: {
        const RnnActivation act = spec.cell == Cell::rnn_tanh ? RnnActivation::tanh : RnnActivation::relu;
        CHECK(rnn_cell(act) == spec.cell);
        CHECK(cache.size() == rnn_cache_size(p.d));
        rnn_forward<double>(act, p.d, p.options(), a);
      }
    }
    CHECK_MSG(to_double(y) == ref.y && to_double(h_n) == ref.h_n, spec_name(spec));
    // Cache entries of padded steps may be left unwritten (NaN in ref's prefilled buffer).
    bool same_cache = cache.size() == ref.cache.size();
    for (std::size_t i = 0; same_cache && i < cache.size(); ++i)
      same_cache = std::isnan(ref.cache[i]) || cache[i] == ref.cache[i];
    CHECK_MSG(same_cache, spec_name(spec) << ": cache differs");

    // backward through the wrapper
    const LossWeights l = make_loss(p, 56);
    const Grads g = lib_backward<double>(p, l);
    const std::vector<double> dy = l.wy, dh_n = l.wh, dc_n = l.wc;
    std::vector<double> dx(p.T() * p.B() * p.I()), dh0(BH), dc0(BH), dw_x(p.I() * p.G()), dw_h(p.H() * p.G()),
        db(p.G()), db_h(p.G());
    BackwardArgs<double> ba;
    ba.x = in.x.data();
    ba.w_x = in.w_x.data();
    ba.w_h = in.w_h.data();
    ba.h0 = in.h0.data();
    ba.cache = cache.data();
    ba.dy = dy.data();
    ba.dh_n = dh_n.data();
    ba.dx = dx.data();
    ba.dh0 = dh0.data();
    ba.dw_x = dw_x.data();
    ba.dw_h = dw_h.data();
    ba.db = db.data();
    ba.db_h = db_h.data();
    switch (spec.cell) {
      case Cell::lstm:
        ba.c0 = in.c0.data();
        ba.dc_n = dc_n.data();
        ba.dc0 = dc0.data();
        lstm_backward<double>(p.d, p.options(), ba);
        break;
      case Cell::gru:
        gru_backward<double>(p.d, p.options(), ba, spec.reset_after);
        break;
      default:
        rnn_backward<double>(spec.cell == Cell::rnn_tanh ? RnnActivation::tanh : RnnActivation::relu, p.d,
                             p.options(), ba);
    }
    CHECK_MSG(dx == g.dx && dw_x == g.dw_x && dw_h == g.dw_h && db == g.db && db_h == g.db_h && dh0 == g.dh0,
              spec_name(spec) << ": wrapper backward differs");
    if (is_lstm(spec)) CHECK(dc0 == g.dc0);
  }
}
