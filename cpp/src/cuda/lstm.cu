// LSTM on CUDA: the equations and cache layout of cpu/lstm.cpp.
//   cache: gates (T·B, 4H) i, f, g, o after their activations (backward overwrites them
//          with the pre-activation gradients da); cells (T·B, H) c_t.
// Each kernel thread owns one (batch row b, hidden unit j): all four gates of that unit.
#include <utility>

#include "cuda/common.cuh"

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN
namespace cuda {
namespace backend {

namespace {

// One (row b, unit j) of forward step s: gates from x·w_x (in `gates`), the bias and
// rec(b, ·) = h_{t-1}·w_h; the new c (in place) and h (into h_next); y; in training
// (cells != nullptr) the cache.
template <typename T, class Rec>
__device__ inline void lstm_unit(const Walk& w, i64 s, i64 idx, i64 H, const T* bias, const Rec& rec, T* gates,
                                 const T* h_prev, T* h_next, T* c, T* y, T* cells) {
  const i64 G = 4 * H;
  const i64 b = idx / H, j = idx - b * H;
  if (!w.active(s, b)) {  // finished sequence: the state stays
    h_next[idx] = h_prev[idx];
    return;
  }
  const i64 row = w.row(w.time(s, b), b);
  T* ga = gates + row * G;
  T pi = ga[j], pf = ga[H + j], pg = ga[2 * H + j], po = ga[3 * H + j];
  if (bias) {  // the CPU adds the bias to the projection first, then the recurrent part
    pi += bias[j];
    pf += bias[H + j];
    pg += bias[2 * H + j];
    po += bias[3 * H + j];
  }
  const T ig = sigmoid(pi + rec(b, j));
  const T fg = sigmoid(pf + rec(b, H + j));
  const T gg = tanh_of(pg + rec(b, 2 * H + j));
  const T og = sigmoid(po + rec(b, 3 * H + j));
  const T cn = fg * c[idx] + ig * gg;
  const T hn = og * tanh_of(cn);
  c[idx] = cn;
  h_next[idx] = hn;
  y[row * H + j] = hn;
  if (cells) {
    ga[j] = ig;
    ga[H + j] = fg;
    ga[2 * H + j] = gg;
    ga[3 * H + j] = og;
    cells[row * H + j] = cn;
  }
}

// One forward step, rec from the step's GEMM.
template <typename T>
__global__ void lstm_step(Walk w, i64 s, i64 H, const T* __restrict__ bias, const T* __restrict__ rec, T* gates,
                          const T* __restrict__ h_prev, T* __restrict__ h_next, T* __restrict__ c, T* y,
                          T* cells) {
  const RecBuffer<T> r{rec, 4 * H};
  LSTMCORE_FOR_EACH(idx, w.B * H) lstm_unit(w, s, idx, H, bias, r, gates, h_prev, h_next, c, y, cells);
}

// The forward step of forward_persistent.
template <typename T>
struct LstmForwardUnit {
  Walk w;
  i64 H;
  const T* bias;
  T *gates, *c, *y, *cells;
  __device__ void operator()(i64 s, i64 idx, const RecProduct<T>& rec, const T* h_prev, T* h_next) const {
    lstm_unit(w, s, idx, H, bias, rec, gates, h_prev, h_next, c, y, cells);
  }
};

// One backward iteration: the gate gradients of the active rows into the cache and into
// da (B, 4H; zero for rows not active), h_{t-1} into h_prev (for dw_h), the carried dc,
// and dh = 0 (all of dL/dh_{t-1} then comes through w_h: the GEMM after this kernel).
template <typename T>
__device__ inline void lstm_grad_unit(const Walk& w, i64 s, i64 idx, i64 H, T* gates, const T* cells, const T* h0,
                                      const T* c0, const T* dy, T* h_prev, T* dh, T* dc, T* da) {
  const i64 G = 4 * H;
  const i64 b = idx / H, j = idx - b * H;
  T* ds = da + b * G;
  if (!w.active(s, b)) {
    ds[j] = ds[H + j] = ds[2 * H + j] = ds[3 * H + j] = T(0);
    return;
  }
  const i64 row = w.row(w.time(s, b), b);
  const i64 tp = w.prev_time(s, b);
  T* ga = gates + row * G;
  T c_p, h_p;
  if (tp >= 0) {  // h_{t-1} = o_{t-1} ⊙ tanh(c_{t-1}), recomputed rather than cached
    const i64 prow = w.row(tp, b);
    c_p = cells[prow * H + j];
    h_p = gates[prow * G + 3 * H + j] * tanh_of(c_p);  // that row is overwritten later
  } else {
    c_p = c0 ? c0[idx] : T(0);
    h_p = h0 ? h0[idx] : T(0);
  }
  h_prev[row * H + j] = h_p;
  const T ig = ga[j], fg = ga[H + j], gg = ga[2 * H + j], og = ga[3 * H + j];
  const T tc = tanh_of(cells[row * H + j]);
  const T dht = dh[idx] + (dy ? dy[row * H + j] : T(0));
  const T dct = dc[idx] + dht * og * (T(1) - tc * tc);
  const T d_i = dct * gg * ig * (T(1) - ig);  // through σ
  const T d_f = dct * c_p * fg * (T(1) - fg);
  const T d_g = dct * ig * (T(1) - gg * gg);  // through tanh
  const T d_o = dht * tc * og * (T(1) - og);
  dc[idx] = dct * fg;
  dh[idx] = T(0);
  ga[j] = ds[j] = d_i;
  ga[H + j] = ds[H + j] = d_f;
  ga[2 * H + j] = ds[2 * H + j] = d_g;
  ga[3 * H + j] = ds[3 * H + j] = d_o;
}

template <typename T>
__global__ void lstm_grad_step(Walk w, i64 s, i64 H, T* gates, const T* __restrict__ cells,
                               const T* __restrict__ h0, const T* __restrict__ c0, const T* __restrict__ dy,
                               T* __restrict__ h_prev, T* __restrict__ dh, T* __restrict__ dc,
                               T* __restrict__ da) {
  LSTMCORE_FOR_EACH(idx, w.B * H) lstm_grad_unit(w, s, idx, H, gates, cells, h0, c0, dy, h_prev, dh, dc, da);
}

// The gradient step of backward_persistent.
template <typename T>
struct LstmGradUnit {
  Walk w;
  i64 H;
  T* gates;
  const T *cells, *h0, *c0, *dy;
  T *h_prev, *dh, *dc;
  __device__ void operator()(i64 s, i64 idx, T* da) const {
    lstm_grad_unit(w, s, idx, H, gates, cells, h0, c0, dy, h_prev, dh, dc, da);
  }
};

}  // namespace

template <typename T>
void lstm_forward(const Context& ctx, const Dims& d, const SequenceOptions& o, const ForwardArgs<T>& a) {
  const i64 B = d.batch, H = d.hidden, I = d.input, G = 4 * H, N = d.steps * d.batch;
  const Weight<T> w_x(a.w_x, I, G, a.weight_layout), w_h(a.w_h, H, G, a.weight_layout);
  const bool training = a.cache != nullptr;

  Workspace ws;
  const Slot<i64> lengths = reserve_lengths(ws, d, o);
  const Slot<T> pre_slot = ws.reserve<T>(training ? 0 : N * G);
  const Slot<T> bias_slot = ws.reserve<T>(G);
  const Slot<T> h_slot = ws.reserve<T>(B * H);
  const Slot<T> rec_slot = ws.reserve<T>(B * G);
  ws.allocate(ctx);
  const Walk walk = make_walk(ctx, d, o, ws, lengths);
  T* gates = training ? a.cache : ws.get(pre_slot);  // x·w_x, then (training) the activations
  T* cells = training ? a.cache + N * G : nullptr;
  T* rec = ws.get(rec_slot);
  const T* bias = combine_bias(ctx, a.b, a.b_h, G, G, ws.get(bias_slot));

  times_weight(ctx, N, a.x, I, w_x, 0, G, T(0), gates, G);  // all steps at once

  copy_or_zero(ctx, a.h_n, a.h0, B * H);
  copy_or_zero(ctx, a.c_n, a.c0, B * H);  // c is updated in place in c_n
  zero_padding(ctx, walk, a.y, H);
  if (training) zero_padding(ctx, walk, cells, H);  // steps past a length: defined, never read

  T* cur = a.h_n;
  T* next = ws.get(h_slot);
  const auto persistent = forward_persistent<T, LstmForwardUnit<T>>;
  if (const unsigned blocks = persistent_blocks(ctx, persistent, B, B * H)) {
    const LstmForwardUnit<T> unit{walk, H, bias, gates, a.c_n, a.y, cells};
    LSTMCORE_PERSISTENT_CALL(persistent, blocks, ctx.stream, walk, H, w_h, cur, next, unit);
    LSTMCORE_CUDA_LAUNCHED("forward_persistent (lstm)");
    if (d.steps % 2) std::swap(cur, next);
  } else {
    for (i64 s = 0; s < d.steps; ++s) {
      times_weight(ctx, B, cur, H, w_h, 0, G, T(0), rec, G);  // h_{t-1}·w_h
      LSTMCORE_RUN(lstm_step<T>, B * H, ctx.stream, walk, s, H, bias, rec, gates, cur, next, a.c_n, a.y, cells);
      std::swap(cur, next);
    }
  }
  if (cur != a.h_n) copy_or_zero(ctx, a.h_n, static_cast<const T*>(cur), B * H);
}

template <typename T>
void lstm_backward(const Context& ctx, const Dims& d, const SequenceOptions& o, const BackwardArgs<T>& a) {
  const i64 B = d.batch, H = d.hidden, I = d.input, G = 4 * H, N = d.steps * d.batch;
  const Weight<T> w_x(a.w_x, I, G, a.weight_layout), w_h(a.w_h, H, G, a.weight_layout);
  T* gates = a.cache;
  const T* cells = a.cache + N * G;

  Workspace ws;
  const Slot<i64> lengths = reserve_lengths(ws, d, o);
  const Slot<T> h_prev_slot = ws.reserve<T>(N * H);  // h_{t-1} of every row, for dw_h
  const Slot<T> da_slot = ws.reserve<T>(B * G);      // this iteration's gate gradients
  const Slot<T> da2_slot = ws.reserve<T>(B * G);     // the persistent kernel's second da
  const Slot<T> ones_slot = ws.reserve<T>(N);
  ws.allocate(ctx);
  const Walk walk = make_walk(ctx, d, o, ws, lengths);
  T* h_prev = ws.get(h_prev_slot);
  T* da = ws.get(da_slot);
  T* ones = ws.get(ones_slot);
  // Rows past a length take no part in the GEMMs over all rows below.
  zero_padding(ctx, walk, gates, G);
  zero_padding(ctx, walk, h_prev, H);

  // The carried gradients dL/dh and dL/dc live in the outputs dh0, dc0.
  copy_or_zero(ctx, a.dh0, a.dh_n, B * H);
  copy_or_zero(ctx, a.dc0, a.dc_n, B * H);

  const auto persistent = backward_persistent<T, LstmGradUnit<T>>;
  if (const unsigned blocks = persistent_blocks(ctx, persistent, B, B * H)) {
    const LstmGradUnit<T> unit{walk, H, gates, cells, a.h0, a.c0, a.dy, h_prev, a.dh0, a.dc0};
    LSTMCORE_PERSISTENT_CALL(persistent, blocks, ctx.stream, walk, H, w_h, a.dh0, da, ws.get(da2_slot), unit);
    LSTMCORE_CUDA_LAUNCHED("backward_persistent (lstm)");
  } else {
    for (i64 s = d.steps - 1; s >= 0; --s) {
      LSTMCORE_RUN(lstm_grad_step<T>, B * H, ctx.stream,
                   walk, s, H, gates, cells, a.h0, a.c0, a.dy, h_prev, a.dh0, a.dc0, da);
      times_weight_t(ctx, B, da, G, w_h, 0, G, T(1), a.dh0, H);  // dh += da·w_hᵀ
    }
  }

  if (a.db || a.db_h) fill(ctx, ones, N, T(1));
  input_gradients<T>(ctx, N, gates, a.x, w_x, a.dx, a.dw_x, a.db, ones);
  weight_gradient(ctx, w_h, a.dw_h, N, h_prev, H, gates, G, 0, G);  // dw_h = h_prevᵀ·da
  if (a.db_h) column_sums<T>(ctx, gates, N, G, G, ones, a.db_h);
}

template void lstm_forward<float>(const Context&, const Dims&, const SequenceOptions&, const ForwardArgs<float>&);
template void lstm_forward<double>(const Context&, const Dims&, const SequenceOptions&, const ForwardArgs<double>&);
template void lstm_backward<float>(const Context&, const Dims&, const SequenceOptions&, const BackwardArgs<float>&);
template void lstm_backward<double>(const Context&, const Dims&, const SequenceOptions&,
                                    const BackwardArgs<double>&);

}  // namespace backend
}  // namespace cuda
LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
