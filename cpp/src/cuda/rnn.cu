// Plain RNN (tanh or relu) on CUDA: the equations and cache layout of cpu/rnn.cpp.
//   cache: states (T·B, H) h_t; backward overwrites them with the pre-activation gradients.
// Each kernel thread owns one (batch row b, hidden unit j).
#include <utility>

#include "cuda/common.cuh"

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN
namespace cuda {
namespace backend {

namespace {

// One (row b, unit j) of forward step s from rec(b, j) = (h_{t-1}·w_h)[b, j].
template <typename T, class Rec>
__device__ inline void rnn_unit(const Walk& w, i64 s, i64 idx, i64 H, bool relu, const T* bias, const Rec& rec,
                                T* pre, const T* h_prev, T* h_next, T* y, bool training) {
  const i64 b = idx / H, j = idx - b * H;
  if (!w.active(s, b)) {
    h_next[idx] = h_prev[idx];
    return;
  }
  const i64 row = w.row(w.time(s, b), b);
  T* pa = pre + row * H;
  const T v = (bias ? pa[j] + bias[j] : pa[j]) + rec(b, j);
  const T hn = relu ? (v < T(0) ? T(0) : v) : tanh_of(v);  // relu keeps NaN
  h_next[idx] = hn;
  y[row * H + j] = hn;
  if (training) pa[j] = hn;
}

template <typename T>
__global__ void rnn_step(Walk w, i64 s, i64 H, bool relu, const T* __restrict__ bias, const T* __restrict__ rec,
                         T* pre, const T* __restrict__ h_prev, T* __restrict__ h_next, T* y, bool training) {
  const RecBuffer<T> r{rec, H};
  LSTMCORE_FOR_EACH(idx, w.B * H) rnn_unit(w, s, idx, H, relu, bias, r, pre, h_prev, h_next, y, training);
}

// The forward step of forward_persistent.
template <typename T>
struct RnnForwardUnit {
  Walk w;
  i64 H;
  bool relu;
  const T* bias;
  T *pre, *y;
  bool training;
  __device__ void operator()(i64 s, i64 idx, const RecProduct<T>& rec, const T* h_prev, T* h_next) const {
    rnn_unit(w, s, idx, H, relu, bias, rec, pre, h_prev, h_next, y, training);
  }
};

// One backward iteration: the pre-activation gradient of the active rows into the cache
// (in place of h_t) and into da (zero for rows not active), h_{t-1} into h_prev, dh = 0.
template <typename T>
__device__ inline void rnn_grad_unit(const Walk& w, i64 s, i64 idx, i64 H, bool relu, T* states, const T* h0,
                                     const T* dy, T* h_prev, T* dh, T* da) {
  const i64 b = idx / H, j = idx - b * H;
  if (!w.active(s, b)) {
    da[idx] = T(0);
    return;
  }
  const i64 row = w.row(w.time(s, b), b);
  const i64 tp = w.prev_time(s, b);
  // The previous step's row still holds h_{t-1}: the walk reaches it later.
  h_prev[row * H + j] = tp >= 0 ? states[w.row(tp, b) * H + j] : (h0 ? h0[idx] : T(0));
  const T dht = dh[idx] + (dy ? dy[row * H + j] : T(0));
  const T ht = states[row * H + j];
  const T g = relu ? (ht > T(0) ? dht : T(0)) : dht * (T(1) - ht * ht);
  states[row * H + j] = g;
  da[idx] = g;
  dh[idx] = T(0);
}

template <typename T>
__global__ void rnn_grad_step(Walk w, i64 s, i64 H, bool relu, T* states, const T* __restrict__ h0,
                              const T* __restrict__ dy, T* __restrict__ h_prev, T* __restrict__ dh,
                              T* __restrict__ da) {
  LSTMCORE_FOR_EACH(idx, w.B * H) rnn_grad_unit(w, s, idx, H, relu, states, h0, dy, h_prev, dh, da);
}

// The gradient step of backward_persistent.
template <typename T>
struct RnnGradUnit {
  Walk w;
  i64 H;
  bool relu;
  T* states;
  const T *h0, *dy;
  T *h_prev, *dh;
  __device__ void operator()(i64 s, i64 idx, T* da) const {
    rnn_grad_unit(w, s, idx, H, relu, states, h0, dy, h_prev, dh, da);
  }
};

}  // namespace

template <typename T>
void rnn_forward(const Context& ctx, bool relu, const Dims& d, const SequenceOptions& o, const ForwardArgs<T>& a) {
  const i64 B = d.batch, H = d.hidden, I = d.input, N = d.steps * d.batch;
  const Weight<T> w_x(a.w_x, I, H, a.weight_layout), w_h(a.w_h, H, H, a.weight_layout);
  const bool training = a.cache != nullptr;

  Workspace ws;
  const Slot<i64> lengths = reserve_lengths(ws, d, o);
  const Slot<T> pre_slot = ws.reserve<T>(training ? 0 : N * H);
  const Slot<T> bias_slot = ws.reserve<T>(H);
  const Slot<T> h_slot = ws.reserve<T>(B * H);
  const Slot<T> rec_slot = ws.reserve<T>(B * H);
  ws.allocate(ctx);
  const Walk walk = make_walk(ctx, d, o, ws, lengths);
  T* pre = training ? a.cache : ws.get(pre_slot);  // x·w_x, then (training) h_t
  T* rec = ws.get(rec_slot);
  const T* bias = combine_bias(ctx, a.b, a.b_h, H, H, ws.get(bias_slot));

  times_weight(ctx, N, a.x, I, w_x, 0, H, T(0), pre, H);

  copy_or_zero(ctx, a.h_n, a.h0, B * H);
  zero_padding(ctx, walk, a.y, H);

  T* cur = a.h_n;
  T* next = ws.get(h_slot);
  const auto persistent = forward_persistent<T, RnnForwardUnit<T>>;
  if (const unsigned blocks = persistent_blocks(ctx, persistent, B, B * H)) {
    const RnnForwardUnit<T> unit{walk, H, relu, bias, pre, a.y, training};
    LSTMCORE_PERSISTENT_CALL(persistent, blocks, ctx.stream, walk, H, w_h, cur, next, unit);
    LSTMCORE_CUDA_LAUNCHED("forward_persistent (rnn)");
    if (d.steps % 2) std::swap(cur, next);
  } else {
    for (i64 s = 0; s < d.steps; ++s) {
      times_weight(ctx, B, cur, H, w_h, 0, H, T(0), rec, H);
      LSTMCORE_RUN(rnn_step<T>, B * H, ctx.stream, walk, s, H, relu, bias, rec, pre, cur, next, a.y, training);
      std::swap(cur, next);
    }
  }
  if (cur != a.h_n) copy_or_zero(ctx, a.h_n, static_cast<const T*>(cur), B * H);
}

template <typename T>
void rnn_backward(const Context& ctx, bool relu, const Dims& d, const SequenceOptions& o, const BackwardArgs<T>& a) {
  const i64 B = d.batch, H = d.hidden, I = d.input, N = d.steps * d.batch;
  const Weight<T> w_x(a.w_x, I, H, a.weight_layout), w_h(a.w_h, H, H, a.weight_layout);
  T* states = a.cache;  // h_t, replaced by da_t as the walk goes back

  Workspace ws;
  const Slot<i64> lengths = reserve_lengths(ws, d, o);
  const Slot<T> h_prev_slot = ws.reserve<T>(N * H);
  const Slot<T> da_slot = ws.reserve<T>(B * H);
  const Slot<T> da2_slot = ws.reserve<T>(B * H);  // the persistent kernel's second da
  const Slot<T> ones_slot = ws.reserve<T>(N);
  ws.allocate(ctx);
  const Walk walk = make_walk(ctx, d, o, ws, lengths);
  T* h_prev = ws.get(h_prev_slot);
  T* da = ws.get(da_slot);
  T* ones = ws.get(ones_slot);
  zero_padding(ctx, walk, h_prev, H);
  // Rows past a length still hold x·w_x from forward; they take no part in the GEMMs.
  zero_padding(ctx, walk, states, H);

  T* dh = a.dh0;
  copy_or_zero(ctx, dh, a.dh_n, B * H);
  const auto persistent = backward_persistent<T, RnnGradUnit<T>>;
  if (const unsigned blocks = persistent_blocks(ctx, persistent, B, B * H)) {
    const RnnGradUnit<T> unit{walk, H, relu, states, a.h0, a.dy, h_prev, dh};
    LSTMCORE_PERSISTENT_CALL(persistent, blocks, ctx.stream, walk, H, w_h, dh, da, ws.get(da2_slot), unit);
    LSTMCORE_CUDA_LAUNCHED("backward_persistent (rnn)");
  } else {
    for (i64 s = d.steps - 1; s >= 0; --s) {
      LSTMCORE_RUN(rnn_grad_step<T>, B * H, ctx.stream, walk, s, H, relu, states, a.h0, a.dy, h_prev, dh, da);
      times_weight_t(ctx, B, da, H, w_h, 0, H, T(1), dh, H);  // dh += da·w_hᵀ
    }
  }

  if (a.db || a.db_h) fill(ctx, ones, N, T(1));
  input_gradients<T>(ctx, N, states, a.x, w_x, a.dx, a.dw_x, a.db, ones);
  weight_gradient(ctx, w_h, a.dw_h, N, h_prev, H, states, H, 0, H);
  if (a.db_h) column_sums<T>(ctx, states, N, H, H, ones, a.db_h);
}

template void rnn_forward<float>(const Context&, bool, const Dims&, const SequenceOptions&, const ForwardArgs<float>&);
template void rnn_forward<double>(const Context&, bool, const Dims&, const SequenceOptions&,
                                  const ForwardArgs<double>&);
template void rnn_backward<float>(const Context&, bool, const Dims&, const SequenceOptions&,
                                  const BackwardArgs<float>&);
template void rnn_backward<double>(const Context&, bool, const Dims&, const SequenceOptions&,
                                   const BackwardArgs<double>&);

}  // namespace backend
}  // namespace cuda
LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
