// Test support: a problem description in double, the naive scalar reference loop,
// and runners that call the library in float or double with guarded buffers.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "harness.h"
#include "lstmcore/lstmcore.h"

namespace ts {

using lstmcore::Cell;
using lstmcore::CellSpec;
using lstmcore::Dims;
using i64 = std::int64_t;
using Vec = std::vector<double>;

inline int gates(const CellSpec& s) { return lstmcore::gate_count(s.cell); }
inline bool is_lstm(const CellSpec& s) { return s.cell == Cell::lstm; }

inline std::string spec_name(const CellSpec& s) {
  std::string n = lstmcore::cell_name(s.cell);
  if (s.cell == Cell::gru) n += s.reset_after ? "(reset_after)" : "(reset_before)";
  return n;
}

// The five cells the library has.
inline std::vector<CellSpec> all_specs() {
  return {{Cell::lstm, true}, {Cell::gru, true}, {Cell::gru, false}, {Cell::rnn_tanh, true}, {Cell::rnn_relu, true}};
}

// Runs f(name) once with each kernel variant this processor can run (set_isa), then
// restores the variant that was in use.
template <class F>
void for_each_isa(F&& f) {
  struct Restore {
    std::string saved = lstmcore::get_isa();
    ~Restore() { lstmcore::set_isa(saved); }
  } restore;
  for (const std::string& isa : lstmcore::available_isas()) {
    lstmcore::set_isa(isa);
    f(isa);
  }
}

// The message of the InvalidArgument thrown by f, or a marker ("<no exception>",
// "<wrong type> ...") when none or another is.
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const lstmcore::InvalidArgument& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("<wrong type> ") + e.what();
  }
  return "<no exception>";
}

// Restores the thread count a test changed.
struct ThreadsGuard {
  int saved = lstmcore::get_num_threads();
  ~ThreadsGuard() { lstmcore::set_num_threads(saved); }
};

struct Rng {
  std::mt19937_64 g;
  explicit Rng(std::uint64_t seed) : g(seed) {}
  double uni(double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(g); }
  Vec vec(std::size_t n, double lo, double hi) {
    Vec v(n);
    for (auto& e : v) e = uni(lo, hi);
    return v;
  }
};

// One layer call. Optional arrays are empty when absent (the library gets nullptr).
struct Problem {
  CellSpec spec;
  Dims d;
  bool reverse = false, batch_first = false;
  std::vector<i64> lengths;  // empty: every sequence has all T steps
  Vec x, w_x, w_h, b, b_h, h0, c0;
  std::string label;  // shown first by describe(), e.g. the kernel variant

  i64 T() const { return d.steps; }
  i64 B() const { return d.batch; }
  i64 I() const { return d.input; }
  i64 H() const { return d.hidden; }
  i64 G() const { return gates(spec) * d.hidden; }
  i64 len(i64 b_) const { return lengths.empty() ? d.steps : lengths[b_]; }
  i64 row(i64 t, i64 b_) const { return batch_first ? b_ * d.steps + t : t * d.batch + b_; }
  lstmcore::SequenceOptions options() const {
    lstmcore::SequenceOptions o;
    o.reverse = reverse;
    o.batch_first = batch_first;
    o.seq_lengths = lengths.empty() ? nullptr : lengths.data();
    return o;
  }
  std::string describe() const {
    std::string s = (label.empty() ? "" : "[" + label + "] ") + spec_name(spec) + " T" + std::to_string(d.steps) + " B" + std::to_string(d.batch) + " I" +
                    std::to_string(d.input) + " H" + std::to_string(d.hidden);
    if (reverse) s += " reverse";
    if (batch_first) s += " batch_first";
    if (!lengths.empty()) s += " seq_lengths";
    s += b.empty() ? " b=null" : " b";
    s += b_h.empty() ? " b_h=null" : " b_h";
    s += h0.empty() ? " h0=null" : " h0";
    if (is_lstm(spec)) s += c0.empty() ? " c0=null" : " c0";
    return s;
  }
};

// Bits of `optionals`: which optional inputs are given.
enum : unsigned { kB = 1, kBh = 2, kH0 = 4, kC0 = 8, kAll = 15 };

inline Problem make_problem(CellSpec spec, Dims d, bool reverse, bool batch_first, bool with_lengths,
                            unsigned optionals, std::uint64_t seed) {
  Rng r(seed);
  Problem p;
  p.spec = spec;
  p.d = d;
  p.reverse = reverse;
  p.batch_first = batch_first;
  const i64 T = d.steps, B = d.batch, I = d.input, H = d.hidden, G = gates(spec) * H;
  if (with_lengths) {
    // A full-length sequence, a length-1 one, the rest in between.
    for (i64 b = 0; b < B; ++b) p.lengths.push_back(b == 0 ? std::max<i64>(1, T / 2) : b == 1 ? T : 1 + (b * 7) % T);
    if (B > 2) p.lengths[2] = 1;
  }
  // Weights scaled so the gates are neither saturated nor linear.
  const double ws = 1.0 / std::sqrt(double(H));
  p.x = r.vec(T * B * I, -1, 1);
  p.w_x = r.vec(I * G, -ws, ws);
  p.w_h = r.vec(H * G, -ws, ws);
  if (optionals & kB) p.b = r.vec(G, -0.5, 0.5);
  if (optionals & kBh) p.b_h = r.vec(G, -0.5, 0.5);
  if (optionals & kH0) p.h0 = r.vec(B * H, -0.8, 0.8);
  if ((optionals & kC0) && is_lstm(spec)) p.c0 = r.vec(B * H, -1, 1);
  return p;
}

struct State {
  Vec y, h_n, c_n;
};

inline double sigm(double v) { return 1.0 / (1.0 + std::exp(-v)); }

// The reference: one sequence at a time, one step at a time, every sum written out.
// Deliberately shares no structure with the library (no GEMMs, no fused biases, no cache).
inline State reference_forward(const Problem& p) {
  const i64 T = p.T(), B = p.B(), I = p.I(), H = p.H(), G = p.G();
  State out;
  out.y.assign(T * B * H, 0.0);
  out.h_n.assign(B * H, 0.0);
  if (is_lstm(p.spec)) out.c_n.assign(B * H, 0.0);
  for (i64 b = 0; b < B; ++b) {
    Vec h(H, 0.0), c(H, 0.0);
    for (i64 j = 0; j < H; ++j) {
      if (!p.h0.empty()) h[j] = p.h0[b * H + j];
      if (!p.c0.empty()) c[j] = p.c0[b * H + j];
    }
    const i64 len = p.len(b);
    for (i64 s = 0; s < len; ++s) {
      const i64 t = p.reverse ? len - 1 - s : s;
      const i64 row = p.row(t, b);
      const double* xt = &p.x[row * I];
      Vec ax(G), ah(G);  // x_t·w_x + b and h_{t-1}·w_h + b_h
      for (i64 k = 0; k < G; ++k) {
        double sx = p.b.empty() ? 0.0 : p.b[k];
        for (i64 i = 0; i < I; ++i) sx += xt[i] * p.w_x[i * G + k];
        double sh = p.b_h.empty() ? 0.0 : p.b_h[k];
        for (i64 j = 0; j < H; ++j) sh += h[j] * p.w_h[j * G + k];
        ax[k] = sx;
        ah[k] = sh;
      }
      Vec hn(H);
      switch (p.spec.cell) {
        case Cell::lstm:
          for (i64 j = 0; j < H; ++j) {
            const double ig = sigm(ax[j] + ah[j]);
            const double fg = sigm(ax[H + j] + ah[H + j]);
            const double gg = std::tanh(ax[2 * H + j] + ah[2 * H + j]);
            const double og = sigm(ax[3 * H + j] + ah[3 * H + j]);
            c[j] = fg * c[j] + ig * gg;
            hn[j] = og * std::tanh(c[j]);
          }
          break;
        case Cell::gru:
          for (i64 j = 0; j < H; ++j) {
            const double rg = sigm(ax[j] + ah[j]);
            const double zg = sigm(ax[H + j] + ah[H + j]);
            double pre_n;
            if (p.spec.reset_after) {
              pre_n = ax[2 * H + j] + rg * ah[2 * H + j];
            } else {
              pre_n = ax[2 * H + j] + (p.b_h.empty() ? 0.0 : p.b_h[2 * H + j]);
              for (i64 m = 0; m < H; ++m) {
                const double rm = sigm(ax[m] + ah[m]);  // r of unit m
                pre_n += rm * h[m] * p.w_h[m * G + 2 * H + j];
              }
            }
            const double ng = std::tanh(pre_n);
            hn[j] = (1.0 - zg) * ng + zg * h[j];
          }
          break;
        case Cell::rnn_tanh:
          for (i64 j = 0; j < H; ++j) hn[j] = std::tanh(ax[j] + ah[j]);
          break;
        case Cell::rnn_relu:
          for (i64 j = 0; j < H; ++j) hn[j] = std::max(0.0, ax[j] + ah[j]);
          break;
      }
      h = hn;
      for (i64 j = 0; j < H; ++j) out.y[row * H + j] = h[j];
    }
    for (i64 j = 0; j < H; ++j) {
      out.h_n[b * H + j] = h[j];
      if (is_lstm(p.spec)) out.c_n[b * H + j] = c[j];
    }
  }
  return out;
}

// ||a - ref|| / ||ref|| (absolute when ref is 0); NaN anywhere gives NaN.
inline double rel_err(const Vec& a, const Vec& ref) {
  if (a.size() != ref.size()) return std::numeric_limits<double>::infinity();
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    num += (a[i] - ref[i]) * (a[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  if (std::isnan(num)) return num;
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

// m (rows × cols, row-major) transposed: a weight in the other WeightLayout.
template <typename T>
std::vector<T> transposed(const std::vector<T>& m, i64 rows, i64 cols) {
  std::vector<T> t(m.size());
  for (i64 r = 0; r < rows; ++r)
    for (i64 c = 0; c < cols; ++c) t[c * rows + r] = m[r * cols + c];
  return t;
}

template <typename T>
std::vector<T> cast(const Vec& v) {
  return std::vector<T>(v.begin(), v.end());
}
template <typename T>
Vec to_double(const std::vector<T>& v) {
  return Vec(v.begin(), v.end());
}
template <typename T>
const T* ptr(const std::vector<T>& v) {
  return v.empty() ? nullptr : v.data();
}

// An output buffer with guard elements on both sides, prefilled with NaN so that an
// output that is accumulated into, or left unwritten, shows up as NaN.
template <typename T>
class Out {
 public:
  static constexpr std::size_t kGuard = 16;
  Out() = default;
  explicit Out(std::size_t n) : n_(n), buf_(n + 2 * kGuard, sentinel()) {
    std::fill(buf_.begin() + kGuard, buf_.begin() + kGuard + n, std::numeric_limits<T>::quiet_NaN());
  }
  T* data() { return n_ ? buf_.data() + kGuard : nullptr; }
  std::size_t size() const { return n_; }
  std::vector<T> values() const { return std::vector<T>(buf_.begin() + kGuard, buf_.begin() + kGuard + n_); }
  bool guards_intact() const {
    for (std::size_t i = 0; i < kGuard; ++i)
      if (buf_[i] != sentinel() || buf_[kGuard + n_ + i] != sentinel()) return false;
    return true;
  }
  static T sentinel() { return T(-12345.5); }

 private:
  std::size_t n_ = 0;
  std::vector<T> buf_;
};

template <typename T>
struct Inputs {  // the problem's arrays in T
  std::vector<T> x, w_x, w_h, b, b_h, h0, c0;
  explicit Inputs(const Problem& p)
      : x(cast<T>(p.x)), w_x(cast<T>(p.w_x)), w_h(cast<T>(p.w_h)), b(cast<T>(p.b)), b_h(cast<T>(p.b_h)),
        h0(cast<T>(p.h0)), c0(cast<T>(p.c0)) {}
};

template <typename T>
struct FwdResult {
  Vec y, h_n, c_n;
  std::vector<T> cache;  // empty in inference
  bool guards_ok = true;
};

template <typename T>
FwdResult<T> lib_forward(const Problem& p, bool training) {
  const Inputs<T> in(p);
  const i64 BH = p.B() * p.H();
  Out<T> y(p.T() * BH), h_n(BH), c_n(is_lstm(p.spec) ? BH : 0);
  Out<T> cache(training ? lstmcore::cache_size(p.spec, p.d) : 0);
  lstmcore::ForwardArgs<T> a;
  a.x = in.x.data();
  a.w_x = in.w_x.data();
  a.w_h = in.w_h.data();
  a.b = ptr(in.b);
  a.b_h = ptr(in.b_h);
  a.h0 = ptr(in.h0);
  a.c0 = ptr(in.c0);
  a.y = y.data();
  a.h_n = h_n.data();
  a.c_n = c_n.data();
  a.cache = cache.data();
  lstmcore::forward<T>(p.spec, p.d, p.options(), a);
  FwdResult<T> r;
  r.y = to_double(y.values());
  r.h_n = to_double(h_n.values());
  r.c_n = to_double(c_n.values());
  r.cache = cache.values();
  r.guards_ok = y.guards_intact() && h_n.guards_intact() && c_n.guards_intact() && cache.guards_intact();
  return r;
}

// The loss L = Σ y⊙Wy + Σ h_n⊙Wh (+ Σ c_n⊙Wc): its gradients wrt y, h_n, c_n are the weights.
struct LossWeights {
  Vec wy, wh, wc;
};

inline LossWeights make_loss(const Problem& p, std::uint64_t seed) {
  Rng r(seed);
  LossWeights l;
  l.wy = r.vec(p.T() * p.B() * p.H(), -1, 1);
  l.wh = r.vec(p.B() * p.H(), -1, 1);
  if (is_lstm(p.spec)) l.wc = r.vec(p.B() * p.H(), -1, 1);
  return l;
}

inline double loss(const State& s, const LossWeights& l) {
  double v = 0;
  for (std::size_t i = 0; i < s.y.size(); ++i) v += s.y[i] * l.wy[i];
  for (std::size_t i = 0; i < s.h_n.size(); ++i) v += s.h_n[i] * l.wh[i];
  for (std::size_t i = 0; i < s.c_n.size(); ++i) v += s.c_n[i] * l.wc[i];
  return v;
}

struct Grads {
  Vec dx, dh0, dc0, dw_x, dw_h, db, db_h;
  bool guards_ok = true;
};

// Backward from a training cache (of lib_forward, or of another backend) with dy = Wy,
// dh_n = Wh, dc_n = Wc. with_bias_grads = false passes db = db_h = nullptr (the gradients
// are then left empty).
template <typename T>
Grads lib_backward_from(const Problem& p, const LossWeights& l, std::vector<T> cache, bool with_bias_grads = true,
                        bool null_dy = false, bool null_dh_n = false) {
  const Inputs<T> in(p);
  const std::vector<T> dy = cast<T>(l.wy), dh_n = cast<T>(l.wh), dc_n = cast<T>(l.wc);
  const i64 BH = p.B() * p.H(), G = p.G();
  Out<T> dx(p.T() * p.B() * p.I()), dh0(BH), dc0(is_lstm(p.spec) ? BH : 0), dw_x(p.I() * G), dw_h(p.H() * G),
      db(with_bias_grads ? G : 0), db_h(with_bias_grads ? G : 0);
  lstmcore::BackwardArgs<T> a;
  a.x = in.x.data();
  a.w_x = in.w_x.data();
  a.w_h = in.w_h.data();
  a.h0 = ptr(in.h0);
  a.c0 = ptr(in.c0);
  a.cache = cache.data();
  a.dy = null_dy ? nullptr : dy.data();
  a.dh_n = null_dh_n ? nullptr : dh_n.data();
  a.dc_n = ptr(dc_n);
  a.dx = dx.data();
  a.dh0 = dh0.data();
  a.dc0 = dc0.data();
  a.dw_x = dw_x.data();
  a.dw_h = dw_h.data();
  a.db = db.data();
  a.db_h = db_h.data();
  lstmcore::backward<T>(p.spec, p.d, p.options(), a);
  Grads g;
  g.dx = to_double(dx.values());
  g.dh0 = to_double(dh0.values());
  g.dc0 = to_double(dc0.values());
  g.dw_x = to_double(dw_x.values());
  g.dw_h = to_double(dw_h.values());
  g.db = to_double(db.values());
  g.db_h = to_double(db_h.values());
  g.guards_ok = dx.guards_intact() && dh0.guards_intact() && dc0.guards_intact() && dw_x.guards_intact() &&
                dw_h.guards_intact() && db.guards_intact() && db_h.guards_intact();
  return g;
}

// Forward with a cache, then backward (lib_backward_from).
template <typename T>
Grads lib_backward(const Problem& p, const LossWeights& l, bool with_bias_grads = true, bool null_dy = false,
                   bool null_dh_n = false) {
  FwdResult<T> f = lib_forward<T>(p, true);
  Grads g = lib_backward_from<T>(p, l, std::move(f.cache), with_bias_grads, null_dy, null_dh_n);
  g.guards_ok = g.guards_ok && f.guards_ok;
  return g;
}

}  // namespace ts
