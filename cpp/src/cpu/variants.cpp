// The cell variants of variants.h on one general path: validation, the cache plan and
// the forward and backward walks of LSTM, GRU and RNN with every option. Compiled once
// per instruction set like the cells' kernels (the GEMMs, which carry the flops, and the
// elementwise passes both gain from AVX2 / AVX-512); lstmcore::variant_forward and
// variant_backward (variants.cpp one level up) dispatch to the variant in use.
//
// Cache layout (elements; N = T·B rows in the order of x; R = P or H):
//   pre   (N, G·H)  gate pre-activations before clip (LSTM: peepholes included);
//                   backward overwrites them with dL/da
//   hs    (N, R)    h_t (after zoneout)
//   lstm: cs (N, H) c_t (after zoneout); cand (N, H) c̃_t, only with zoneout on c
//         (else cand is cs); mt (N, H) m = o ⊙ σ_h(·) before the projection, only with one;
//         layer norm: nx (N, 4H) + rx (N), nh (N, 4H) + rh (N), nc (N, H) + rc (N):
//         normalised values and 1/σ of x·w_x, h·w_h and c̃;
//         zoneout masks in training: mh (N, R), mc (N, H), 1 = keep the previous value
//   gru:  aux (N, H) reset_after: h_{t−1}·w_h[:, n] + b_h[n]; otherwise r ⊙ h_{t−1}
#include "lstmcore/variants.h"

#include <cmath>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>

#include "common.h"
#include "cpu/kernel_common.h"
#include "cpu/kernels.h"
#include "cpu/packed.h"

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN
namespace cpu {
namespace LSTMCORE_ISA_NS {
namespace {

// ---- the activations ---------------------------------------------------------------
// One loop per kind (the switch outside), so each loop vectorises on its own: hard
// sigmoid is a multiply-add and two selects, far cheaper than sigmoid's exp.

template <typename T>
T clamp(T v, T clip) {
  return clip > T(0) ? (v < -clip ? -clip : (v > clip ? clip : v)) : v;
}

// y = σ(clip(x)) over n values (y may be x).
template <typename T>
void activate(const ActivationSpec& s, T clip, const T* x, T* y, i64 n) {
  const T al = static_cast<T>(s.alpha), be = static_cast<T>(s.beta);
  switch (s.kind) {
    case Nonlinearity::sigmoid: LSTMCORE_SIMD for (i64 i = 0; i < n; ++i) y[i] = sigmoid(clamp(x[i], clip)); break;
    case Nonlinearity::tanh: LSTMCORE_SIMD for (i64 i = 0; i < n; ++i) y[i] = fast_tanh(clamp(x[i], clip)); break;
    case Nonlinearity::relu:  // keeps NaN
      LSTMCORE_SIMD for (i64 i = 0; i < n; ++i) { const T v = clamp(x[i], clip); y[i] = v < T(0) ? T(0) : v; }
      break;
    case Nonlinearity::hard_sigmoid:
      LSTMCORE_SIMD for (i64 i = 0; i < n; ++i) {
        const T t = al * clamp(x[i], clip) + be;
        y[i] = t < T(0) ? T(0) : (t > T(1) ? T(1) : t);
      }
      break;
    case Nonlinearity::softsign:
      LSTMCORE_SIMD for (i64 i = 0; i < n; ++i) { const T v = clamp(x[i], clip); y[i] = v / (T(1) + std::abs(v)); }
      break;
    case Nonlinearity::scaled_tanh:
      LSTMCORE_SIMD for (i64 i = 0; i < n; ++i) y[i] = al * fast_tanh(be * clamp(x[i], clip));
      break;
    case Nonlinearity::affine: LSTMCORE_SIMD for (i64 i = 0; i < n; ++i) y[i] = al * clamp(x[i], clip) + be; break;
    case Nonlinearity::leaky_relu:
      LSTMCORE_SIMD for (i64 i = 0; i < n; ++i) { const T v = clamp(x[i], clip); y[i] = v < T(0) ? al * v : v; }
      break;
    case Nonlinearity::elu:
      LSTMCORE_SIMD for (i64 i = 0; i < n; ++i) {
        const T v = clamp(x[i], clip);
        y[i] = v < T(0) ? al * fast_expm1(v) : v;
      }
      break;
    case Nonlinearity::softplus:  // max(v, 0) + log1p(e^−|v|): no overflow
      for (i64 i = 0; i < n; ++i) {
        const T v = clamp(x[i], clip);
        y[i] = (v > T(0) ? v : T(0)) + std::log1p(fast_exp(-std::abs(v)));
      }
      break;
    case Nonlinearity::thresholded_relu:
      LSTMCORE_SIMD for (i64 i = 0; i < n; ++i) { const T v = clamp(x[i], clip); y[i] = v > al ? v : T(0); }
      break;
  }
}

// dx = dy ⊙ σ'(clip(x)) ⊙ [x inside the clip range], given y = σ(clip(x)); dx may be dy.
template <typename T>
void activate_grad(const ActivationSpec& s, T clip, const T* x, const T* y, const T* dy, T* dx, i64 n) {
  const T al = static_cast<T>(s.alpha), be = static_cast<T>(s.beta);
  auto inside = [clip](T v) { return clip > T(0) ? (v >= -clip && v <= clip) : true; };
  switch (s.kind) {
    case Nonlinearity::sigmoid:
      LSTMCORE_SIMD for (i64 i = 0; i < n; ++i) dx[i] = inside(x[i]) ? dy[i] * y[i] * (T(1) - y[i]) : T(0);
      break;
    case Nonlinearity::tanh:
      LSTMCORE_SIMD for (i64 i = 0; i < n; ++i) dx[i] = inside(x[i]) ? dy[i] * (T(1) - y[i] * y[i]) : T(0);
      break;
    case Nonlinearity::relu:
      LSTMCORE_SIMD for (i64 i = 0; i < n; ++i) dx[i] = inside(x[i]) && x[i] > T(0) ? dy[i] : T(0);
      break;
    case Nonlinearity::hard_sigmoid:
      LSTMCORE_SIMD for (i64 i = 0; i < n; ++i) {
        const T t = al * clamp(x[i], clip) + be;
        dx[i] = inside(x[i]) && t > T(0) && t < T(1) ? dy[i] * al : T(0);
      }
      break;
    case Nonlinearity::softsign:
      LSTMCORE_SIMD for (i64 i = 0; i < n; ++i) {
        const T q = T(1) + std::abs(x[i]);
        dx[i] = inside(x[i]) ? dy[i] / (q * q) : T(0);
      }
      break;
    case Nonlinearity::scaled_tanh:
      LSTMCORE_SIMD for (i64 i = 0; i < n; ++i) {
        const T t = fast_tanh(be * clamp(x[i], clip));
        dx[i] = inside(x[i]) ? dy[i] * al * be * (T(1) - t * t) : T(0);
      }
      break;
    case Nonlinearity::affine: LSTMCORE_SIMD for (i64 i = 0; i < n; ++i) dx[i] = inside(x[i]) ? dy[i] * al : T(0); break;
    case Nonlinearity::leaky_relu:
      LSTMCORE_SIMD for (i64 i = 0; i < n; ++i) dx[i] = inside(x[i]) ? (x[i] < T(0) ? dy[i] * al : dy[i]) : T(0);
      break;
    case Nonlinearity::elu:  // α(e^x − 1)' = α e^x = y + α
      LSTMCORE_SIMD for (i64 i = 0; i < n; ++i) dx[i] = inside(x[i]) ? (x[i] < T(0) ? dy[i] * (y[i] + al) : dy[i]) : T(0);
      break;
    case Nonlinearity::softplus:
      LSTMCORE_SIMD for (i64 i = 0; i < n; ++i) dx[i] = inside(x[i]) ? dy[i] * sigmoid(x[i]) : T(0);
      break;
    case Nonlinearity::thresholded_relu:
      LSTMCORE_SIMD for (i64 i = 0; i < n; ++i) dx[i] = inside(x[i]) && x[i] > al ? dy[i] : T(0);
      break;
  }
}

// ---- the products of the time loop ---------------------------------------------------
// C (m × n, ldc) [+]= A (m × k, lda) · op(B), row-major; op(B) = B stored k × n (ldb), or
// with TransB Bᵀ where B is stored n × k. The first call packs op(B) into the panels of
// the recurrent kernels (packed.h: blocks of W columns, each k × W), once per walk, since
// B (a weight) is the same at every step; each call then runs the micro-kernel over the
// blocks, split over the threads when the product is large enough to pay for waking them.

template <typename T, bool TransB>
class StepProduct {
 public:
  StepProduct(i64 m, i64 n, i64 k)
      : m_(m), n_(n), k_(k), layout_(packed_layout<T>(k, n, 1, static_cast<T*>(nullptr))) {
    threads_ = product_threads(2 * m * n * k, layout_.blocks);
    tile_ = Workspace<T>::round_up(m * layout_.W);
    buffer_.reset(new T[static_cast<std::size_t>(packed_size<T>(k, n, 1) + threads_ * tile_ + 16)]);
  }
  void operator()(const T* A, i64 lda, const T* B, i64 ldb, T* C, i64 ldc, bool accumulate) {
    if (B != packed_from_) pack(B, ldb);
    T* tiles = buffer_.get() + packed_size<T>(k_, n_, 1);
    const PackedWeights<T>& p = layout_;
    run_on_threads(threads_, [&](int tid, int nth) {
      T* tile = tiles + tid * tile_;
      for (i64 blk = p.blocks * tid / nth; blk < p.blocks * (tid + 1) / nth; ++blk) {
        panel_product<T, 4>(A, lda, m_, p.data + blk * p.panel, k_, tile);
        const i64 u0 = blk * p.W, n = std::min<i64>(p.W, n_ - u0);
        for (i64 r = 0; r < m_; ++r) {
          T* c = C + r * ldc + u0;
          const T* t = tile + r * p.W;
          if (accumulate) {
            for (i64 j = 0; j < n; ++j) c[j] += t[j];
          } else {
            copy_units(c, t, n, p);
          }
        }
      }
    });
  }

 private:
  void pack(const T* B, i64 ldb) {
    layout_ = pack_columns(B, ldb, k_, n_, TransB, buffer_.get());
    packed_from_ = B;
  }

  i64 m_, n_, k_;
  PackedWeights<T> layout_;
  int threads_ = 1;
  i64 tile_ = 0;
  std::unique_ptr<T[]> buffer_;
  const T* packed_from_ = nullptr;
};

// ---- layer norm over one row ---------------------------------------------------------
// Statistics over the columns outside [s0, s1) (the unused f block, or none).

template <typename T>
void ln_forward(const T* v, i64 n, i64 s0, i64 s1, T eps, T* nhat, T* rstd) {
  const i64 used = n - (s1 - s0);
  T mean = 0, var = 0;
  for (i64 j = 0; j < n; ++j)
    if (j < s0 || j >= s1) mean += v[j];
  mean /= T(used);
  for (i64 j = 0; j < n; ++j)
    if (j < s0 || j >= s1) var += (v[j] - mean) * (v[j] - mean);
  const T r = T(1) / std::sqrt(var / T(used) + eps);
  for (i64 j = 0; j < n; ++j) nhat[j] = (j < s0 || j >= s1) ? (v[j] - mean) * r : T(0);
  *rstd = r;
}

// dv = (1/σ)·(dn − mean(dn) − n̂ ⊙ mean(dn ⊙ n̂)), dn = dout ⊙ gain, over the used columns;
// 0 on the others. dv may be dout.
template <typename T>
void ln_backward(const T* dout, const T* gain, const T* nhat, T rstd, i64 n, i64 s0, i64 s1, T* dv) {
  const i64 used = n - (s1 - s0);
  T m1 = 0, m2 = 0;
  for (i64 j = 0; j < n; ++j)
    if (j < s0 || j >= s1) {
      const T dn = dout[j] * gain[j];
      m1 += dn;
      m2 += dn * nhat[j];
    }
  m1 /= T(used);
  m2 /= T(used);
  for (i64 j = 0; j < n; ++j) dv[j] = (j < s0 || j >= s1) ? rstd * (dout[j] * gain[j] - m1 - nhat[j] * m2) : T(0);
}

// ---- sizes and cache regions -------------------------------------------------------

struct Plan {
  Cell cell;
  bool reset_after, lstm, gru, ln, proj, peep, zone_h, zone_c;
  i64 T, B, I, H, G, GH, R, N;
  i64 skip0 = 0, skip1 = 0;  // the unused f block of the layer-normed rows
  // offsets into the cache; -1 when absent
  i64 pre = 0, hs = 0, cs = -1, cand = -1, mt = -1, aux = -1, nx = -1, rx = -1, nh = -1, rh = -1, nc = -1,
      rc = -1, mh = -1, mc = -1, total = 0;

  Plan(const CellSpec& s, const VariantOptions& o, const Dims& d) {
    cell = s.cell;
    reset_after = s.reset_after;
    lstm = cell == Cell::lstm;
    gru = cell == Cell::gru;
    ln = o.layer_norm;
    proj = o.proj > 0;
    peep = o.peepholes;
    zone_h = o.zoneout_h > 0;
    zone_c = o.zoneout_c > 0;
    T = d.steps, B = d.batch, I = d.input, H = d.hidden;
    G = gate_count(cell);
    GH = G * H;
    R = proj ? o.proj : H;
    N = T * B;
    if (lstm && (o.input_forget || !o.forget_gate)) skip0 = H, skip1 = 2 * H;
    auto take = [this](i64 count) {
      const i64 at = total;
      total += count;
      return at;
    };
    pre = take(N * GH);
    hs = take(N * R);
    if (lstm) {
      cs = take(N * H);
      cand = zone_c ? take(N * H) : cs;
      if (proj) mt = take(N * H);
      if (ln) {
        nx = take(N * GH), rx = take(N), nh = take(N * GH), rh = take(N), nc = take(N * H), rc = take(N);
      }
      if (zone_h) mh = take(N * R);
      if (zone_c) mc = take(N * H);
    }
    if (gru) aux = take(N * H);
  }
  bool own_forget() const { return skip1 == 0; }
};

void lstm_only(bool used, const char* option, Cell cell) {
  if (used && cell != Cell::lstm)
    throw InvalidArgument(std::string(option) + ": the " + cell_name(cell) +
                          " cell has no such option (it is an LSTM option)");
}

void check_options(const CellSpec& s, const VariantOptions& o, const Dims& d) {
  detail::check_dims(s, d);
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
  detail::checked_mul(d.steps * d.batch, 4 * gate_count(s.cell) * d.hidden + 4 * d.hidden + 3 * R + 8,
                      "cache: steps (T) x batch (B) x features");
}

// The six layer-norm pointers (gains and biases, or their gradients with prefix "d").
void require_layer_norm(const void* gx, const void* bx, const void* gh, const void* bh, const void* gc,
                        const void* bc, const std::string& prefix) {
  const std::pair<const void*, const char*> all[] = {{gx, "ln_gain_x"}, {bx, "ln_bias_x"}, {gh, "ln_gain_h"},
                                                     {bh, "ln_bias_h"}, {gc, "ln_gain_c"}, {bc, "ln_bias_c"}};
  for (const auto& [ptr, name] : all) detail::require(ptr, (prefix + name).c_str());
}

template <typename T>
void check_params(const Plan& p, const VariantParams<T>& v) {
  if (p.peep) detail::require(v.peepholes, "peepholes");
  if (p.proj) detail::require(v.w_proj, "w_proj");
  if (p.ln) require_layer_norm(v.ln_gain_x, v.ln_bias_x, v.ln_gain_h, v.ln_bias_h, v.ln_gain_c, v.ln_bias_c, "");
}

// The zoneout masks of one stream, row-order (T, B, W): element (t, b, j) is 1 (keep the
// previous value) when counter_uniform(stream key, (t·B + b)·W + j) < z. Time-major
// counters: the masks do not depend on batch_first.
template <typename T>
void make_zoneout_mask(const Plan& p, const Walk& walk, std::uint64_t seed, std::uint64_t stream, double z, i64 W,
                       T* mask) {
  const std::uint64_t key = detail::stream_key(seed, stream);
  for_batch(p.N, p.N * W * 8, [&](i64 r) {
    const i64 t = walk.batch_first ? r % p.T : r / p.B;
    const i64 b = walk.batch_first ? r / p.T : r % p.B;
    const std::uint64_t base = static_cast<std::uint64_t>((t * p.B + b) * W);
    for (i64 j = 0; j < W; ++j)
      mask[r * W + j] = detail::counter_uniform(key, base + static_cast<std::uint64_t>(j)) < z ? T(1) : T(0);
  });
}

// prev ← k ⊙ prev + (1 − k) ⊙ next, k the mask row, or z everywhere (inference), or none.
template <typename T>
void zoneout_update(T* prev, const T* next, const T* mask, T z, i64 n) {
  if (mask) {
    for (i64 j = 0; j < n; ++j) prev[j] = mask[j] != T(0) ? prev[j] : next[j];
  } else if (z > T(0)) {
    for (i64 j = 0; j < n; ++j) prev[j] = z * prev[j] + (T(1) - z) * next[j];
  } else {
    std::memcpy(prev, next, sizeof(T) * n);
  }
}

// ---- forward -----------------------------------------------------------------------

template <typename T>
void run_forward(const Plan& p, const VariantOptions& o, const Walk& walk, const ForwardArgs<T>& a,
                 const VariantParams<T>& v) {
  const i64 B = p.B, H = p.H, GH = p.GH, R = p.R, N = p.N;
  const bool training = a.cache != nullptr;
  const T clip = static_cast<T>(o.clip), eps = static_cast<T>(o.layer_norm_epsilon);
  const T zh = static_cast<T>(o.zoneout_h), zc = static_cast<T>(o.zoneout_c);
  using W = Workspace<T>;
  W ws((training ? 0 : W::round_up(p.total)) + W::round_up(N * GH) + 2 * W::round_up(B * GH) +
       3 * W::round_up(B * std::max(H, R)) + 2 * W::round_up(GH));
  T* C = training ? a.cache : ws.take(p.total);
  std::memset(C, 0, sizeof(T) * p.total);  // rows past a length stay defined (zero)
  T* xp = ws.take(N * GH);   // x·w_x of every row
  T* rec = ws.take(B * GH);  // h_{t−1}·w_h of the step
  T* act = ws.take(B * GH);  // the gates of the step, after their activations
  T* mbuf = ws.take(B * std::max(H, R));  // LSTM m, GRU r ⊙ h_{t−1}
  T* hbuf = ws.take(B * std::max(H, R));  // the projected h̃
  T* cbuf = ws.take(B * std::max(H, R));  // LSTM LN(c̃)
  T* bx = ws.take(GH);
  T* bh = ws.take(GH);
  copy_or_zero(bx, a.b, GH);
  copy_or_zero(bh, a.b_h, GH);

  gemm<T>(false, false, N, GH, p.I, a.x, p.I, a.w_x, GH, false, xp, GH);
  T* h = a.h_n;
  T* c = a.c_n;
  copy_or_zero(h, a.h0, B * R);
  if (p.lstm) copy_or_zero(c, a.c0, B * H);
  walk.zero_padding(a.y, R);
  const T* mask_h = training && p.zone_h ? C + p.mh : nullptr;
  const T* mask_c = training && p.zone_c ? C + p.mc : nullptr;
  if (mask_h) make_zoneout_mask(p, walk, o.seed, 1, o.zoneout_h, R, C + p.mh);
  if (mask_c) make_zoneout_mask(p, walk, o.seed, 2, o.zoneout_c, H, C + p.mc);
  const i64 work = B * GH * 8;
  const bool reset_before = p.gru && !p.reset_after;
  StepProduct<T, false> recurrent(B, reset_before ? 2 * H : GH, R);
  std::optional<StepProduct<T, false>> second;  // GRU: (r ⊙ h)·w_h[:, n]; LSTM: the projection
  if (reset_before) second.emplace(B, H, H);
  if (p.proj) second.emplace(B, R, H);

  for (i64 s = 0; s < p.T; ++s) {
    auto row_of = [&](i64 b) { return walk.row(walk.time(s, b), b); };
    // h_{t−1}·w_h (GRU with the reset before the product: the r and z blocks only)
    recurrent(h, R, a.w_h, GH, rec, GH, false);

    if (p.lstm) {
      for_batch(B, work, [&](i64 b) {
        if (!walk.active(s, b)) return;
        const i64 row = row_of(b);
        T* pr = C + p.pre + row * GH;
        const T* xr = xp + row * GH;
        const T* rr = rec + b * GH;
        if (p.ln) {
          T* nx = C + p.nx + row * GH;
          T* nh = C + p.nh + row * GH;
          ln_forward(xr, GH, p.skip0, p.skip1, eps, nx, C + p.rx + row);
          ln_forward(rr, GH, p.skip0, p.skip1, eps, nh, C + p.rh + row);
          for (i64 j = 0; j < GH; ++j)
            pr[j] = v.ln_gain_x[j] * nx[j] + v.ln_bias_x[j] + v.ln_gain_h[j] * nh[j] + v.ln_bias_h[j] + bx[j] + bh[j];
        } else {
          for (i64 j = 0; j < GH; ++j) pr[j] = xr[j] + bx[j] + rr[j] + bh[j];
        }
        T* cb = c + b * H;  // c_{t−1}, becomes c_t
        if (p.peep)
          for (i64 j = 0; j < H; ++j) {
            pr[j] += v.peepholes[j] * cb[j];
            pr[H + j] += v.peepholes[H + j] * cb[j];
          }
        T* ac = act + b * GH;
        activate(o.f, clip, pr, ac, H);
        if (p.own_forget()) activate(o.f, clip, pr + H, ac + H, H);
        activate(o.g, clip, pr + 2 * H, ac + 2 * H, H);
        T* cc = C + p.cand + row * H;
        for (i64 j = 0; j < H; ++j) {
          const T f = !o.forget_gate ? T(1) : (o.input_forget ? T(1) - ac[j] : ac[H + j]);
          cc[j] = f * cb[j] + ac[j] * ac[2 * H + j];
        }
        if (p.peep)
          for (i64 j = 0; j < H; ++j) pr[3 * H + j] += v.peepholes[2 * H + j] * cc[j];
        activate(o.f, clip, pr + 3 * H, ac + 3 * H, H);
        const T* chat = cc;
        if (p.ln) {
          T* nc = C + p.nc + row * H;
          T* cn = cbuf + b * H;
          ln_forward(cc, H, 0, 0, eps, nc, C + p.rc + row);
          for (i64 j = 0; j < H; ++j) cn[j] = v.ln_gain_c[j] * nc[j] + v.ln_bias_c[j];
          chat = cn;
        }
        T* m = mbuf + b * H;
        activate(o.h, T(0), chat, m, H);
        for (i64 j = 0; j < H; ++j) m[j] *= ac[3 * H + j];
        if (p.proj) std::memcpy(C + p.mt + row * H, m, sizeof(T) * H);
        zoneout_update(cb, cc, mask_c ? mask_c + row * H : nullptr, zc, H);
        if (p.zone_c) std::memcpy(C + p.cs + row * H, cb, sizeof(T) * H);
      });
      if (p.proj) (*second)(mbuf, H, v.w_proj, R, hbuf, R, false);
    } else if (p.gru) {
      // r and z; with the reset before the product also r ⊙ h_{t−1} and the n block's GEMM
      for_batch(B, work, [&](i64 b) {
        if (!walk.active(s, b)) return;
        const i64 row = row_of(b);
        T* pr = C + p.pre + row * GH;
        const T* xr = xp + row * GH;
        const T* rr = rec + b * GH;
        for (i64 j = 0; j < 2 * H; ++j) pr[j] = xr[j] + bx[j] + rr[j] + bh[j];
        T* ac = act + b * GH;
        activate(o.f, clip, pr, ac, 2 * H);
        if (!p.reset_after)
          for (i64 j = 0; j < H; ++j) mbuf[b * H + j] = ac[j] * h[b * H + j];
      });
      if (reset_before) (*second)(mbuf, H, a.w_h + 2 * H, GH, rec + 2 * H, GH, false);
      for_batch(B, work, [&](i64 b) {
        if (!walk.active(s, b)) return;
        const i64 row = row_of(b);
        T* pr = C + p.pre + row * GH;
        const T* xr = xp + row * GH;
        const T* rr = rec + b * GH;
        T* ac = act + b * GH;
        T* ax = C + p.aux + row * H;
        for (i64 j = 0; j < H; ++j) {
          const T t = rr[2 * H + j] + bh[2 * H + j];
          pr[2 * H + j] = xr[2 * H + j] + bx[2 * H + j] + (p.reset_after ? ac[j] * t : t);
          ax[j] = p.reset_after ? t : mbuf[b * H + j];
        }
        activate(o.g, clip, pr + 2 * H, ac + 2 * H, H);
        T* hn = hbuf + b * H;
        for (i64 j = 0; j < H; ++j) hn[j] = (T(1) - ac[H + j]) * ac[2 * H + j] + ac[H + j] * h[b * H + j];
      });
    } else {
      for_batch(B, work, [&](i64 b) {
        if (!walk.active(s, b)) return;
        const i64 row = row_of(b);
        T* pr = C + p.pre + row * GH;
        const T* xr = xp + row * GH;
        const T* rr = rec + b * GH;
        for (i64 j = 0; j < H; ++j) pr[j] = xr[j] + bx[j] + rr[j] + bh[j];
        activate(o.f, clip, pr, hbuf + b * H, H);
      });
    }

    // the new h: zoneout, outputs, cache
    const T* hnew = p.lstm && !p.proj ? mbuf : hbuf;
    for_batch(B, B * R * 4, [&](i64 b) {
      if (!walk.active(s, b)) return;
      const i64 row = row_of(b);
      T* hb = h + b * R;
      zoneout_update(hb, hnew + b * R, mask_h ? mask_h + row * R : nullptr, zh, R);
      std::memcpy(a.y + row * R, hb, sizeof(T) * R);
      std::memcpy(C + p.hs + row * R, hb, sizeof(T) * R);
    });
  }
}

// ---- backward ----------------------------------------------------------------------

template <typename T>
void run_backward(const Plan& p, const VariantOptions& o, const Walk& walk, const BackwardArgs<T>& a,
                  const VariantParams<T>& v, const VariantGrads<T>& g) {
  const i64 B = p.B, H = p.H, GH = p.GH, R = p.R, N = p.N, I = p.I;
  const T clip = static_cast<T>(o.clip);
  T* C = a.cache;
  using W = Workspace<T>;
  const bool sep_x = p.ln;            // dL/d(x·w_x) differs from dL/da
  const bool sep_h = p.ln || p.gru;   // dL/d(h·w_h) differs from the input side's
  W ws(W::round_up(N * R) + (sep_x ? W::round_up(N * GH) : 0) + (sep_h ? W::round_up(N * GH) : 0) +
       (p.proj ? W::round_up(N * R) : 0) + 3 * W::round_up(B * GH) + 4 * W::round_up(B * std::max(H, R)) +
       W::round_up(B * 5 * H) + W::round_up(std::max(H, R)));
  T* hprev = ws.take(N * R);                       // h_{t−1} of every row, for dw_h
  T* dax = sep_x ? ws.take(N * GH) : C + p.pre;    // dL/d(x·w_x) of every row
  T* dah = sep_h ? ws.take(N * GH) : dax;          // dL/d(h·w_h + b_h) of every row
  T* dht = p.proj ? ws.take(N * R) : nullptr;      // dL/dh̃ of every row, for dw_proj
  T* dstep = ws.take(B * GH);                      // dL/d(h·w_h) of the step
  T* act = ws.take(B * GH);
  T* dg = ws.take(B * GH);
  T* dm = ws.take(B * std::max(H, R));             // dL/dm (LSTM), dL/d(r ⊙ h) (GRU)
  T* dhb = ws.take(B * std::max(H, R));            // dL/dh̃ of the step
  T* hc = ws.take(B * std::max(H, R));
  T* sh = ws.take(B * std::max(H, R));
  T* acc = ws.take(B * 5 * H);                     // per row of the batch: dp_i, dp_f, dp_o, dγ_c, dβ_c
  T* zeros = ws.take(std::max(H, R));
  std::memset(hprev, 0, sizeof(T) * N * R);
  if (sep_x) std::memset(dax, 0, sizeof(T) * N * GH);
  if (sep_h) std::memset(dah, 0, sizeof(T) * N * GH);
  if (dht) std::memset(dht, 0, sizeof(T) * N * R);
  std::memset(acc, 0, sizeof(T) * B * 5 * H);
  std::memset(zeros, 0, sizeof(T) * std::max(H, R));

  T* dh = a.dh0;  // the carried dL/dh_t, dL/dc_t
  T* dc = a.dc0;
  copy_or_zero(dh, a.dh_n, B * R);
  if (p.lstm) copy_or_zero(dc, a.dc_n, B * H);
  const T* mask_h = p.zone_h ? C + p.mh : nullptr;
  const T* mask_c = p.zone_c ? C + p.mc : nullptr;
  const i64 work = B * GH * 16;
  const bool reset_before = p.gru && !p.reset_after;
  // dL/dh_{t−1} += dL/d(h·w_h)·w_hᵀ (GRU with the reset before the product: r and z blocks)
  StepProduct<T, true> recurrent(B, R, reset_before ? 2 * H : GH);
  std::optional<StepProduct<T, true>> second;  // GRU: dL/da_n·w_h[:, n]ᵀ; LSTM: dL/dh̃·w_projᵀ
  if (reset_before) second.emplace(B, H, H);
  if (p.proj) second.emplace(B, H, R);

  for (i64 s = p.T - 1; s >= 0; --s) {
    auto row_of = [&](i64 b) { return walk.row(walk.time(s, b), b); };
    auto prev_row = [&](i64 b) {
      const i64 tp = walk.prev_time(s, b);
      return tp >= 0 ? walk.row(tp, b) : i64{-1};
    };
    // dL/dh_t = carried + dy_t; zoneout splits it between h̃ and h_{t−1}
    for_batch(B, B * R * 4, [&](i64 b) {
      T* d = dhb + b * R;
      if (!walk.active(s, b)) {
        std::memset(d, 0, sizeof(T) * R);
        return;
      }
      const i64 row = row_of(b), prow = prev_row(b);
      std::memcpy(hprev + row * R, prow >= 0 ? C + p.hs + prow * R : (a.h0 ? a.h0 + b * R : zeros), sizeof(T) * R);
      T* dhr = dh + b * R;
      const T* dy = a.dy ? a.dy + row * R : zeros;
      const T* k = mask_h ? mask_h + row * R : nullptr;
      for (i64 j = 0; j < R; ++j) {
        const T gh = dhr[j] + dy[j];
        const T kj = k ? k[j] : T(0);
        d[j] = (T(1) - kj) * gh;
        dhr[j] = kj * gh;
      }
      if (dht) std::memcpy(dht + row * R, d, sizeof(T) * R);
    });

    if (p.lstm) {
      const T* dmr = dhb;
      if (p.proj) {
        (*second)(dhb, R, v.w_proj, R, dm, H, false);  // dL/dm = dL/dh̃·w_projᵀ
        dmr = dm;
      }
      for_batch(B, work, [&](i64 b) {
        T* ds = dstep + b * GH;
        if (!walk.active(s, b)) {
          std::memset(ds, 0, sizeof(T) * GH);
          return;
        }
        const i64 row = row_of(b), prow = prev_row(b);
        T* pr = C + p.pre + row * GH;
        const T* cp = prow >= 0 ? C + p.cs + prow * H : (a.c0 ? a.c0 + b * H : zeros);
        const T* cc = C + p.cand + row * H;
        T* ac = act + b * GH;
        activate(o.f, clip, pr, ac, H);
        if (p.own_forget()) activate(o.f, clip, pr + H, ac + H, H);
        activate(o.g, clip, pr + 2 * H, ac + 2 * H, H);
        activate(o.f, clip, pr + 3 * H, ac + 3 * H, H);
        // m = o ⊙ σ_h(ĉ), ĉ = c̃ or LN(c̃)
        T* xh = hc + b * H;  // ĉ
        T* yh = sh + b * H;  // σ_h(ĉ)
        const T* nc = p.ln ? C + p.nc + row * H : nullptr;
        if (p.ln)
          for (i64 j = 0; j < H; ++j) xh[j] = v.ln_gain_c[j] * nc[j] + v.ln_bias_c[j];
        else
          std::memcpy(xh, cc, sizeof(T) * H);
        activate(o.h, T(0), xh, yh, H);
        const T* dmb = dmr + b * H;
        T* dch = dg + b * GH;  // dL/dĉ, then dL/dc̃
        for (i64 j = 0; j < H; ++j) {
          ds[3 * H + j] = dmb[j] * yh[j];
          dch[j] = dmb[j] * ac[3 * H + j];
        }
        activate_grad(o.f, clip, pr + 3 * H, ac + 3 * H, ds + 3 * H, ds + 3 * H, H);  // da_o
        activate_grad(o.h, T(0), xh, yh, dch, dch, H);
        if (p.ln) {
          T* accb = acc + b * 5 * H;
          for (i64 j = 0; j < H; ++j) {
            accb[3 * H + j] += dch[j] * nc[j];
            accb[4 * H + j] += dch[j];
          }
          ln_backward(dch, v.ln_gain_c, nc, C[p.rc + row], H, 0, 0, dch);
        }
        T* dcb = dc + b * H;
        const T* k = mask_c ? mask_c + row * H : nullptr;
        T* carry = dch + H;  // k ⊙ dL/dc_t goes straight to c_{t−1}
        for (i64 j = 0; j < H; ++j) {
          const T kj = k ? k[j] : T(0);
          T dcc = (T(1) - kj) * dcb[j] + dch[j];
          if (p.peep) dcc += ds[3 * H + j] * v.peepholes[2 * H + j];
          carry[j] = kj * dcb[j];
          dch[j] = dcc;
        }
        for (i64 j = 0; j < H; ++j) {
          const T dcc = dch[j], i = ac[j], gg = ac[2 * H + j];
          T di = dcc * gg, df = 0, dcp = dcc;
          if (o.forget_gate) {
            const T f = o.input_forget ? T(1) - i : ac[H + j];
            df = dcc * cp[j];
            dcp = dcc * f;
            if (o.input_forget) di -= df;
          }
          ds[j] = di;
          ds[H + j] = p.own_forget() ? df : T(0);
          ds[2 * H + j] = dcc * i;
          dcb[j] = dcp;
        }
        activate_grad(o.f, clip, pr, ac, ds, ds, H);
        if (p.own_forget()) activate_grad(o.f, clip, pr + H, ac + H, ds + H, ds + H, H);
        activate_grad(o.g, clip, pr + 2 * H, ac + 2 * H, ds + 2 * H, ds + 2 * H, H);
        if (p.peep) {
          T* accb = acc + b * 5 * H;
          for (i64 j = 0; j < H; ++j) {
            dcb[j] += ds[j] * v.peepholes[j] + ds[H + j] * v.peepholes[H + j];
            accb[j] += ds[j] * cp[j];
            accb[H + j] += ds[H + j] * cp[j];
            accb[2 * H + j] += ds[3 * H + j] * cc[j];
          }
        }
        for (i64 j = 0; j < H; ++j) dcb[j] += carry[j];
        std::memcpy(pr, ds, sizeof(T) * GH);  // dL/da of the row
        if (p.ln) {
          ln_backward(ds, v.ln_gain_x, C + p.nx + row * GH, C[p.rx + row], GH, p.skip0, p.skip1, dax + row * GH);
          ln_backward(ds, v.ln_gain_h, C + p.nh + row * GH, C[p.rh + row], GH, p.skip0, p.skip1, dah + row * GH);
          std::memcpy(ds, dah + row * GH, sizeof(T) * GH);
        }
      });
      recurrent(dstep, GH, a.w_h, GH, dh, R, true);  // dL/dh_{t−1} += da·w_hᵀ
    } else if (p.gru) {
      for_batch(B, work, [&](i64 b) {
        T* ds = dstep + b * GH;
        if (!walk.active(s, b)) {
          std::memset(ds, 0, sizeof(T) * GH);
          return;
        }
        const i64 row = row_of(b);
        T* pr = C + p.pre + row * GH;
        const T* hp = hprev + row * R;
        const T* ax = C + p.aux + row * H;
        T* ac = act + b * GH;
        activate(o.f, clip, pr, ac, 2 * H);
        activate(o.g, clip, pr + 2 * H, ac + 2 * H, H);
        const T* gh = dhb + b * H;
        T* dhr = dh + b * H;
        for (i64 j = 0; j < H; ++j) {
          const T z = ac[H + j], n = ac[2 * H + j];
          ds[2 * H + j] = gh[j] * (T(1) - z);  // dL/dn
          ds[H + j] = gh[j] * (hp[j] - n);     // dL/dz
          dhr[j] += gh[j] * z;
        }
        activate_grad(o.g, clip, pr + 2 * H, ac + 2 * H, ds + 2 * H, ds + 2 * H, H);  // dL/da_n
        activate_grad(o.f, clip, pr + H, ac + H, ds + H, ds + H, H);                  // dL/da_z
        if (p.reset_after) {  // a_n = ax_n + r ⊙ ah_n
          for (i64 j = 0; j < H; ++j) ds[j] = ds[2 * H + j] * ax[j];
          activate_grad(o.f, clip, pr, ac, ds, ds, H);  // dL/da_r
          T* dx_row = C + p.pre + row * GH;
          T* dh_row = dah + row * GH;
          for (i64 j = 0; j < 2 * H; ++j) dx_row[j] = dh_row[j] = ds[j];
          for (i64 j = 0; j < H; ++j) {
            dx_row[2 * H + j] = ds[2 * H + j];
            dh_row[2 * H + j] = ds[2 * H + j] * ac[j];
          }
          std::memcpy(ds, dh_row, sizeof(T) * GH);
        }
      });
      if (!p.reset_after) {
        // dL/d(r ⊙ h_{t−1}) = dL/da_n·w_h[:, n]ᵀ, then r and the rest of dL/dh_{t−1}
        (*second)(dstep + 2 * H, GH, a.w_h + 2 * H, GH, dm, H, false);
        for_batch(B, work, [&](i64 b) {
          if (!walk.active(s, b)) return;
          const i64 row = row_of(b);
          T* ds = dstep + b * GH;
          T* pr = C + p.pre + row * GH;
          const T* hp = hprev + row * R;
          T* ac = act + b * GH;
          T* dhr = dh + b * H;
          for (i64 j = 0; j < H; ++j) {
            ds[j] = dm[b * H + j] * hp[j];
            dhr[j] += dm[b * H + j] * ac[j];
          }
          activate_grad(o.f, clip, pr, ac, ds, ds, H);  // dL/da_r
          std::memcpy(pr, ds, sizeof(T) * GH);
          std::memcpy(dah + row * GH, ds, sizeof(T) * GH);
        });
      }
      recurrent(dstep, GH, a.w_h, GH, dh, H, true);
    } else {
      for_batch(B, work, [&](i64 b) {
        T* ds = dstep + b * GH;
        if (!walk.active(s, b)) {
          std::memset(ds, 0, sizeof(T) * GH);
          return;
        }
        const i64 row = row_of(b);
        T* pr = C + p.pre + row * GH;
        T* ac = act + b * GH;
        activate(o.f, clip, pr, ac, H);
        activate_grad(o.f, clip, pr, ac, dhb + b * H, ds, H);
        std::memcpy(pr, ds, sizeof(T) * H);
      });
      recurrent(dstep, GH, a.w_h, GH, dh, H, true);
    }
  }

  // the weight gradients: GEMMs over all rows (rows past a length are zero)
  gemm<T>(false, true, N, I, GH, dax, GH, a.w_x, GH, false, a.dx, I);  // dx = dL/d(x·w_x)·w_xᵀ
  gemm<T>(true, false, I, GH, N, a.x, I, dax, GH, false, a.dw_x, GH);
  if (p.gru && !p.reset_after) {
    gemm<T>(true, false, R, 2 * H, N, hprev, R, dah, GH, false, a.dw_h, GH);
    gemm<T>(true, false, H, H, N, C + p.aux, H, dah + 2 * H, GH, false, a.dw_h + 2 * H, GH);  // (r ⊙ h)ᵀ·da_n
  } else {
    gemm<T>(true, false, R, GH, N, hprev, R, dah, GH, false, a.dw_h, GH);
  }
  const T* da = C + p.pre;  // dL/da (LSTM, RNN); the input side's dL/d(ax) (GRU)
  if (a.db) column_sums(da, N, GH, GH, a.db);
  if (a.db_h) column_sums(p.ln ? da : dah, N, GH, GH, a.db_h);
  if (p.proj) gemm<T>(true, false, H, R, N, C + p.mt, H, dht, R, false, g.dw_proj, R);  // mᵀ·dL/dh̃
  if (p.peep) {
    std::memset(g.dpeepholes, 0, sizeof(T) * 3 * H);
    for (i64 b = 0; b < B; ++b)
      for (i64 j = 0; j < 3 * H; ++j) g.dpeepholes[j] += acc[b * 5 * H + j];
  }
  if (p.ln) {
    std::memset(g.dln_gain_x, 0, sizeof(T) * GH);
    std::memset(g.dln_gain_h, 0, sizeof(T) * GH);
    std::memset(g.dln_gain_c, 0, sizeof(T) * H);
    std::memset(g.dln_bias_c, 0, sizeof(T) * H);
    for (i64 r = 0; r < N; ++r) {
      const T* dr = da + r * GH;
      const T* nx = C + p.nx + r * GH;
      const T* nh = C + p.nh + r * GH;
      for (i64 j = 0; j < GH; ++j) {
        g.dln_gain_x[j] += dr[j] * nx[j];
        g.dln_gain_h[j] += dr[j] * nh[j];
      }
    }
    column_sums(da, N, GH, GH, g.dln_bias_x);
    column_sums(da, N, GH, GH, g.dln_bias_h);
    for (i64 b = 0; b < B; ++b)
      for (i64 j = 0; j < H; ++j) {
        g.dln_gain_c[j] += acc[b * 5 * H + 3 * H + j];
        g.dln_bias_c[j] += acc[b * 5 * H + 4 * H + j];
      }
  }
}

}  // namespace

std::size_t variant_cache_size(const CellSpec& spec, const VariantOptions& options, const Dims& dims) {
  check_options(spec, options, dims);
  return static_cast<std::size_t>(Plan(spec, options, dims).total);
}

template <typename T>
void variant_forward(const CellSpec& spec, const VariantOptions& o, const Dims& d, const SequenceOptions& so,
                     const ForwardArgs<T>& a, const VariantParams<T>& v) {
  check_options(spec, o, d);
  detail::check_forward_args(spec, d, so, a);
  const Plan p(spec, o, d);
  check_params(p, v);
  run_forward(p, o, Walk(d, so), a, v);
}

template <typename T>
void variant_backward(const CellSpec& spec, const VariantOptions& o, const Dims& d, const SequenceOptions& so,
                      const BackwardArgs<T>& a, const VariantParams<T>& v, const VariantGrads<T>& g) {
  check_options(spec, o, d);
  detail::check_backward_args(spec, d, so, a);
  const Plan p(spec, o, d);
  check_params(p, v);
  if (p.peep) detail::require(g.dpeepholes, "dpeepholes");
  if (p.proj) detail::require(g.dw_proj, "dw_proj");
  if (p.ln) require_layer_norm(g.dln_gain_x, g.dln_bias_x, g.dln_gain_h, g.dln_bias_h, g.dln_gain_c, g.dln_bias_c, "d");
  run_backward(p, o, Walk(d, so), a, v, g);
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

}  // namespace LSTMCORE_ISA_NS
}  // namespace cpu
LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
