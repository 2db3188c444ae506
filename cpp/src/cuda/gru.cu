// GRU on CUDA, both placements of the reset gate: the equations and cache layout of
// cpu/gru.cpp.
//   cache: gates  (T·B, 3H) r, z, n after their activations (backward: the input-side
//                 pre-activation gradients dL/d ax);
//          states (T·B, H)  h_t;
//          aux    (T·B, H)  reset_after: h_{t-1}·w_h[:, n] + b_h[n] (backward: dn ⊙ r);
//                           otherwise:   r ⊙ h_{t-1}, the operand of the n block's GEMM.
// The bias added to x·w_x is b plus b_h for r and z (b_h[n] sits inside the reset).
// Each kernel thread owns one (batch row b, hidden unit j).
#include <utility>

#include "cuda/common.cuh"

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN
namespace cuda {
namespace backend {

namespace {

template <typename T>
__device__ inline T with_bias(T v, const T* bias, i64 k) {
  return bias ? v + bias[k] : v;
}

// The end of a forward step, both placements: h_t from n, z and h_{t-1}, into y and
// (training, states != nullptr) the cache row: r, z, n, h_t and the aux value. Returns h_t.
template <typename T>
__device__ inline T gru_finish(T r, T z, T n, T h_old, T aux_value, i64 row, i64 H, i64 j, T* ga, T* y, T* states,
                               T* aux) {
  const T hn = (T(1) - z) * n + z * h_old;
  y[row * H + j] = hn;
  if (states) {
    ga[j] = r;
    ga[H + j] = z;
    ga[2 * H + j] = n;
    states[row * H + j] = hn;
    aux[row * H + j] = aux_value;
  }
  return hn;
}

// reset_after: one (row b, unit j) of step s from rec(b, ·) = h_{t-1}·w_h (all three blocks).
template <typename T, class Rec>
__device__ inline void gru_after_unit(const Walk& w, i64 s, i64 idx, i64 H, const T* bias, const T* b_hn,
                                      const Rec& rec, T* gates, const T* h_prev, T* h_next, T* y, T* states,
                                      T* aux) {
  const i64 G = 3 * H;
  const i64 b = idx / H, j = idx - b * H;
  if (!w.active(s, b)) {
    h_next[idx] = h_prev[idx];
    return;
  }
  const i64 row = w.row(w.time(s, b), b);
  T* ga = gates + row * G;
  const T r = sigmoid(with_bias(ga[j], bias, j) + rec(b, j));
  const T z = sigmoid(with_bias(ga[H + j], bias, H + j) + rec(b, H + j));
  const T ahn = with_bias(rec(b, 2 * H + j), b_hn, j);
  const T n = tanh_of(with_bias(ga[2 * H + j], bias, 2 * H + j) + r * ahn);
  h_next[idx] = gru_finish(r, z, n, h_prev[idx], ahn, row, H, j, ga, y, states, aux);
}

template <typename T>
__global__ void gru_step_after(Walk w, i64 s, i64 H, const T* __restrict__ bias, const T* __restrict__ b_hn,
                               const T* __restrict__ rec, T* gates, const T* __restrict__ h_prev,
                               T* __restrict__ h_next, T* y, T* states, T* aux) {
  const RecBuffer<T> r{rec, 3 * H};
  LSTMCORE_FOR_EACH(idx, w.B * H) gru_after_unit(w, s, idx, H, bias, b_hn, r, gates, h_prev, h_next, y, states, aux);
}

// reset_after: the forward step of forward_persistent.
template <typename T>
struct GruAfterForwardUnit {
  Walk w;
  i64 H;
  const T *bias, *b_hn;
  T *gates, *y, *states, *aux;
  __device__ void operator()(i64 s, i64 idx, const RecProduct<T>& rec, const T* h_prev, T* h_next) const {
    gru_after_unit(w, s, idx, H, bias, b_hn, rec, gates, h_prev, h_next, y, states, aux);
  }
};

// reset_after = false, first half of a step: r and z from rec[:, r|z] = h_{t-1}·w_h[:, r|z],
// kept in rec's r and z blocks, and rh = r ⊙ h_{t-1} for the n block's GEMM (0 for rows
// not active).
template <typename T>
__global__ void gru_gates_before(Walk w, i64 s, i64 H, const T* __restrict__ bias, T* __restrict__ rec,
                                 const T* __restrict__ gates, const T* __restrict__ h, T* __restrict__ rh) {
  const i64 G = 3 * H;
  LSTMCORE_FOR_EACH(idx, w.B * H) {
    const i64 b = idx / H, j = idx - b * H;
    if (!w.active(s, b)) {
      rh[idx] = T(0);
      continue;
    }
    const T* ga = gates + w.row(w.time(s, b), b) * G;
    T* ra = rec + b * G;
    const T r = sigmoid(with_bias(ga[j], bias, j) + ra[j]);
    const T z = sigmoid(with_bias(ga[H + j], bias, H + j) + ra[H + j]);
    ra[j] = r;
    ra[H + j] = z;
    rh[idx] = r * h[idx];
  }
}

// reset_after = false, second half: n from rec[:, n] = rh·w_h[:, n], the state update (h in
// place), y and the cache.
template <typename T>
__global__ void gru_finish_before(Walk w, i64 s, i64 H, const T* __restrict__ bias, const T* __restrict__ b_hn,
                                  const T* __restrict__ rec, T* gates, T* __restrict__ h,
                                  const T* __restrict__ rh, T* y, T* states, T* aux) {
  const i64 G = 3 * H;
  LSTMCORE_FOR_EACH(idx, w.B * H) {
    const i64 b = idx / H, j = idx - b * H;
    if (!w.active(s, b)) continue;
    const i64 row = w.row(w.time(s, b), b);
    T* ga = gates + row * G;
    const T* ra = rec + b * G;
    const T r = ra[j], z = ra[H + j];
    const T n = tanh_of(with_bias(with_bias(ga[2 * H + j], bias, 2 * H + j) + ra[2 * H + j], b_hn, j));
    h[idx] = gru_finish(r, z, n, h[idx], rh[idx], row, H, j, ga, y, states, aux);
  }
}

// One backward iteration, both placements: the gradients of z and n (and, with
// reset_after, of r) into the cache and into da (the recurrent side, (B, 3H), zero for
// rows not active), h_{t-1} into h_prev, and dh = dh_t ⊙ z (the path that bypasses w_h).
template <typename T>
__device__ inline void gru_grad_unit(const Walk& w, i64 s, i64 idx, i64 H, bool reset_after, T* gates,
                                     const T* states, T* aux, const T* h0, const T* dy, T* h_prev, T* dh, T* da) {
  const i64 G = 3 * H;
  const i64 b = idx / H, j = idx - b * H;
  T* ds = da + b * G;
  if (!w.active(s, b)) {
    ds[j] = ds[H + j] = ds[2 * H + j] = T(0);
    return;
  }
  const i64 row = w.row(w.time(s, b), b);
  const i64 tp = w.prev_time(s, b);
  const T hp = tp >= 0 ? states[w.row(tp, b) * H + j] : (h0 ? h0[idx] : T(0));
  h_prev[row * H + j] = hp;
  T* ga = gates + row * G;
  const T r = ga[j], z = ga[H + j], n = ga[2 * H + j];
  const T dht = dh[idx] + (dy ? dy[row * H + j] : T(0));
  const T dn = dht * (T(1) - z) * (T(1) - n * n);  // dL/d(pre-activation of n)
  const T dz = dht * (hp - n) * z * (T(1) - z);
  dh[idx] = dht * z;
  ga[H + j] = ds[H + j] = dz;
  ga[2 * H + j] = dn;
  if (reset_after) {
    T* ax = aux + row * H + j;  // ah_n
    const T dr = dn * (*ax) * r * (T(1) - r);
    ga[j] = ds[j] = dr;
    *ax = ds[2 * H + j] = dn * r;
  } else {
    ds[2 * H + j] = dn;  // the n block's GEMM input is r ⊙ h_{t-1}: r's gradient follows
  }
}

template <typename T>
__global__ void gru_grad_step(Walk w, i64 s, i64 H, bool reset_after, T* gates, const T* __restrict__ states,
                              T* __restrict__ aux, const T* __restrict__ h0, const T* __restrict__ dy,
                              T* __restrict__ h_prev, T* __restrict__ dh, T* __restrict__ da) {
  LSTMCORE_FOR_EACH(idx, w.B * H) gru_grad_unit(w, s, idx, H, reset_after, gates, states, aux, h0, dy, h_prev, dh, da);
}

// reset_after: the gradient step of backward_persistent.
template <typename T>
struct GruAfterGradUnit {
  Walk w;
  i64 H;
  T* gates;
  const T* states;
  T* aux;
  const T *h0, *dy;
  T *h_prev, *dh;
  __device__ void operator()(i64 s, i64 idx, T* da) const {
    gru_grad_unit(w, s, idx, H, true, gates, states, aux, h0, dy, h_prev, dh, da);
  }
};

// reset_after = false, second half of an iteration: from drh = dL/d(r ⊙ h_{t-1}) =
// dn·w_h[:, n]ᵀ, the gradient of r (cache and da) and the path to h_{t-1} through r ⊙ h.
template <typename T>
__global__ void gru_reset_grad_before(Walk w, i64 s, i64 H, T* gates, const T* __restrict__ h_prev,
                                      const T* __restrict__ drh, T* __restrict__ dh, T* __restrict__ da) {
  const i64 G = 3 * H;
  LSTMCORE_FOR_EACH(idx, w.B * H) {
    const i64 b = idx / H, j = idx - b * H;
    if (!w.active(s, b)) continue;
    const i64 row = w.row(w.time(s, b), b);
    T* ga = gates + row * G;
    const T r = ga[j];
    const T dr = drh[idx] * h_prev[row * H + j] * r * (T(1) - r);
    dh[idx] += drh[idx] * r;
    ga[j] = da[b * G + j] = dr;
  }
}

}  // namespace

template <typename T>
void gru_forward(const Context& ctx, bool reset_after, const Dims& d, const SequenceOptions& o,
                 const ForwardArgs<T>& a) {
  const i64 B = d.batch, H = d.hidden, I = d.input, G = 3 * H, N = d.steps * d.batch;
  const Weight<T> w_x(a.w_x, I, G, a.weight_layout), w_h(a.w_h, H, G, a.weight_layout);
  const bool training = a.cache != nullptr;

  Workspace ws;
  const Slot<i64> lengths = reserve_lengths(ws, d, o);
  const Slot<T> pre_slot = ws.reserve<T>(training ? 0 : N * G);
  const Slot<T> bias_slot = ws.reserve<T>(G);
  const Slot<T> h_slot = ws.reserve<T>(B * H);  // reset_after: the second state buffer; else r ⊙ h
  const Slot<T> rec_slot = ws.reserve<T>(B * G);
  ws.allocate(ctx);
  const Walk walk = make_walk(ctx, d, o, ws, lengths);
  T* gates = training ? a.cache : ws.get(pre_slot);
  T* states = training ? a.cache + N * G : nullptr;
  T* aux = training ? a.cache + N * (G + H) : nullptr;
  T* rec = ws.get(rec_slot);
  const T* bias = combine_bias(ctx, a.b, a.b_h, G, 2 * H, ws.get(bias_slot));
  const T* b_hn = a.b_h ? a.b_h + 2 * H : nullptr;

  times_weight(ctx, N, a.x, I, w_x, 0, G, T(0), gates, G);

  copy_or_zero(ctx, a.h_n, a.h0, B * H);
  zero_padding(ctx, walk, a.y, H);
  if (training) {  // steps past a length: defined, never read
    zero_padding(ctx, walk, states, H);
    zero_padding(ctx, walk, aux, H);
  }

  if (reset_after) {
    T* cur = a.h_n;
    T* next = ws.get(h_slot);
    const auto persistent = forward_persistent<T, GruAfterForwardUnit<T>>;
    if (const unsigned blocks = persistent_blocks(ctx, persistent, B, B * H)) {
      const GruAfterForwardUnit<T> unit{walk, H, bias, b_hn, gates, a.y, states, aux};
      LSTMCORE_PERSISTENT_CALL(persistent, blocks, ctx.stream, walk, H, w_h, cur, next, unit);
      LSTMCORE_CUDA_LAUNCHED("forward_persistent (gru)");
      if (d.steps % 2) std::swap(cur, next);
    } else {
      for (i64 s = 0; s < d.steps; ++s) {
        times_weight(ctx, B, cur, H, w_h, 0, G, T(0), rec, G);
        LSTMCORE_RUN(gru_step_after<T>, B * H, ctx.stream,
                     walk, s, H, bias, b_hn, rec, gates, cur, next, a.y, states, aux);
        std::swap(cur, next);
      }
    }
    if (cur != a.h_n) copy_or_zero(ctx, a.h_n, static_cast<const T*>(cur), B * H);
    return;
  }
  // reset_after = false: r and z first, then the n block's GEMM on r ⊙ h_{t-1}; h is
  // updated in place in h_n (each thread reads and writes only its own element).
  T* h = a.h_n;
  T* rh = ws.get(h_slot);
  for (i64 s = 0; s < d.steps; ++s) {
    times_weight(ctx, B, h, H, w_h, 0, 2 * H, T(0), rec, G);
    LSTMCORE_RUN(gru_gates_before<T>, B * H, ctx.stream, walk, s, H, bias, rec, gates, h, rh);
    times_weight(ctx, B, rh, H, w_h, 2 * H, H, T(0), rec + 2 * H, G);
    LSTMCORE_RUN(gru_finish_before<T>, B * H, ctx.stream,
                 walk, s, H, bias, b_hn, rec, gates, h, rh, a.y, states, aux);
  }
}

template <typename T>
void gru_backward(const Context& ctx, bool reset_after, const Dims& d, const SequenceOptions& o,
                  const BackwardArgs<T>& a) {
  const i64 B = d.batch, H = d.hidden, I = d.input, G = 3 * H, N = d.steps * d.batch;
  const Weight<T> w_x(a.w_x, I, G, a.weight_layout), w_h(a.w_h, H, G, a.weight_layout);
  T* gates = a.cache;
  const T* states = a.cache + N * G;
  T* aux = a.cache + N * (G + H);

  Workspace ws;
  const Slot<i64> lengths = reserve_lengths(ws, d, o);
  const Slot<T> h_prev_slot = ws.reserve<T>(N * H);
  const Slot<T> da_slot = ws.reserve<T>(B * G);                      // this iteration's recurrent-side gradient
  const Slot<T> da2_slot = ws.reserve<T>(reset_after ? B * G : 0);  // the persistent kernel's second da
  const Slot<T> drh_slot = ws.reserve<T>(reset_after ? 0 : B * H);  // dL/d(r ⊙ h_{t-1})
  const Slot<T> ones_slot = ws.reserve<T>(N);
  ws.allocate(ctx);
  const Walk walk = make_walk(ctx, d, o, ws, lengths);
  T* h_prev = ws.get(h_prev_slot);
  T* da = ws.get(da_slot);
  T* drh = ws.get(drh_slot);
  T* ones = ws.get(ones_slot);
  zero_padding(ctx, walk, gates, G);
  zero_padding(ctx, walk, aux, H);
  zero_padding(ctx, walk, h_prev, H);

  T* dh = a.dh0;
  copy_or_zero(ctx, dh, a.dh_n, B * H);

  const auto persistent = backward_persistent<T, GruAfterGradUnit<T>>;
  const unsigned blocks = reset_after ? persistent_blocks(ctx, persistent, B, B * H) : 0;
  if (blocks) {
    const GruAfterGradUnit<T> unit{walk, H, gates, states, aux, a.h0, a.dy, h_prev, dh};
    LSTMCORE_PERSISTENT_CALL(persistent, blocks, ctx.stream, walk, H, w_h, dh, da, ws.get(da2_slot), unit);
    LSTMCORE_CUDA_LAUNCHED("backward_persistent (gru)");
  }
  for (i64 s = d.steps - 1; s >= 0 && !blocks; --s) {  // the per-step path
    LSTMCORE_RUN(gru_grad_step<T>, B * H, ctx.stream,
                 walk, s, H, reset_after, gates, states, aux, a.h0, a.dy, h_prev, dh, da);
    if (reset_after) {
      times_weight_t(ctx, B, da, G, w_h, 0, G, T(1), dh, H);  // dh += da·w_hᵀ
      continue;
    }
    // d(r ⊙ h) = dn·w_h[:, n]ᵀ gives dr and a path to h_{t-1}; then the r and z blocks.
    times_weight_t(ctx, B, da + 2 * H, G, w_h, 2 * H, H, T(0), drh, H);
    LSTMCORE_RUN(gru_reset_grad_before<T>, B * H, ctx.stream, walk, s, H, gates, h_prev, drh, dh, da);
    times_weight_t(ctx, B, da, G, w_h, 0, 2 * H, T(1), dh, H);
  }

  if (a.db || a.db_h) fill(ctx, ones, N, T(1));
  input_gradients<T>(ctx, N, gates, a.x, w_x, a.dx, a.dw_x, a.db, ones);
  // r and z: the recurrent side sees the same gradient as the input side.
  weight_gradient(ctx, w_h, a.dw_h, N, h_prev, H, gates, G, 0, 2 * H);
  if (reset_after) {
    weight_gradient(ctx, w_h, a.dw_h, N, h_prev, H, aux, H, 2 * H, H);
    if (a.db_h) {
      column_sums<T>(ctx, gates, N, 2 * H, G, ones, a.db_h);
      column_sums<T>(ctx, aux, N, H, H, ones, a.db_h + 2 * H);
    }
  } else {
    weight_gradient(ctx, w_h, a.dw_h, N, aux, H, gates + 2 * H, G, 2 * H, H);
    if (a.db_h) column_sums<T>(ctx, gates, N, G, G, ones, a.db_h);
  }
}

template void gru_forward<float>(const Context&, bool, const Dims&, const SequenceOptions&, const ForwardArgs<float>&);
template void gru_forward<double>(const Context&, bool, const Dims&, const SequenceOptions&,
                                  const ForwardArgs<double>&);
template void gru_backward<float>(const Context&, bool, const Dims&, const SequenceOptions&,
                                  const BackwardArgs<float>&);
template void gru_backward<double>(const Context&, bool, const Dims&, const SequenceOptions&,
                                   const BackwardArgs<double>&);

}  // namespace backend
}  // namespace cuda
LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
