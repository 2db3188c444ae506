// GRU on the CPU, both placements of the reset gate. Cache layout (rows in the order of x):
//   gates  (T·B, 3H): r, z, n after their activations; backward overwrites them with
//                     the input-side pre-activation gradients (dL/d ax).
//   states (T·B, H):  h_t.
//   aux    (T·B, H):  reset_after: h_{t-1}·w_h[:, n] + b_h[n]  (backward: dL/d ah_n = dn ⊙ r)
//                     otherwise:   r ⊙ h_{t-1}, the operand of the n block's recurrent GEMM.
#include "cpu/bf16_projection.h"
#include "cpu/kernel_common.h"
#include "cpu/kernels.h"
#include "cpu/packed.h"
#include "cpu/weight_gradients.h"

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN
namespace cpu {
namespace LSTMCORE_ISA_NS {

template <typename T>
void gru_forward(const Context& ctx, const ForwardPlan& plan, const Scratch& ws, bool reset_after, const Dims& d,
                 const SequenceOptions& o, const ForwardArgs<T>& a) {
  const i64 B = d.batch, H = d.hidden, G = 3 * H, N = d.steps * d.batch;
  // reset_after=false: per-step GEMMs on blocks of it (bfloat16 products: a rounded copy)
  const Weight<T> w_h(rounded(ws, plan.w_h_round, a.w_h), H, G, a.weight_layout);
  Walk walk(d, o);
  if (reset_after) walk.sort_by_length(ws.get<i64>(plan.order));
  const bool training = a.cache != nullptr;

  T* gates = training ? a.cache : ws.get<T>(plan.gates);
  const i64 ldg = training ? G : plan.gates.ld;
  T* states = training ? a.cache + N * G : nullptr;
  T* aux = training ? a.cache + N * (G + H) : nullptr;
  T* rec = ws.get<T>(plan.rec);  // h_{t-1}·w_h (reset_after=false: r, z blocks, then r and z themselves)
  T* rh = ws.get<T>(plan.rh);    // reset_after=false: r ⊙ h_{t-1}
  T* bias = ws.get<T>(plan.bias);  // b everywhere, plus b_h for r and z (b_h[n] sits inside the reset)
  for (i64 j = 0; j < G; ++j)
    bias[j] = (a.b ? a.b[j] : T(0)) + (a.b_h && j < 2 * H ? a.b_h[j] : T(0));
  T* zeros = ws.get<T>(plan.zeros);
  std::memset(zeros, 0, sizeof(T) * H);
  const T* bhn = a.b_h ? a.b_h + 2 * H : zeros;

  project(ctx, plan, ws, a.x, Weight<T>(a.w_x, d.input, G, a.weight_layout), (a.b || a.b_h) ? bias : nullptr, N, H,
          3, gates, ldg, walk);

  T* h = a.h_n;
  copy_or_zero(h, a.h0, B * H);
  walk.zero_padding(a.y, H);
  if (training) {  // steps past a length: defined, never read
    walk.zero_padding(states, H);
    walk.zero_padding(aux, H);
  }

  // The last part of every step: n, the new state, the outputs and the cache.
  auto finish = [&](i64 row, i64 b, T r, T z, T ahn, T pre_n, i64 j) {
    const T n = fast_tanh(pre_n);
    const T hn = (T(1) - z) * n + z * h[b * H + j];
    h[b * H + j] = hn;
    a.y[row * H + j] = hn;
    if (training) {
      T* gw = gates + row * ldg;
      gw[j] = r;
      gw[H + j] = z;
      gw[2 * H + j] = n;
      states[row * H + j] = hn;
      aux[row * H + j] = ahn;
    }
  };

  if (reset_after) {
    run_recurrence<T>(plan, ws, walk, a.w_h, a.weight_layout, H, h, StepInput<T>{},
                      [&](i64 s, i64 n, i64 u0, i64 u1, const T* h_prev, T* h_next, const T* rec) {
      for (i64 i = 0; i < n; ++i) {
        const i64 b = walk.slot(i);
        const i64 row = walk.row(walk.time(s, b), b);
        T* ga = gates + row * ldg;
        const T* ra = rec + i * G;
        const T* hp = h_prev + i * H;
        T* hb = h_next + i * H;
        T* yb = a.y + row * H;
        T* st = training ? states + row * H : nullptr;
        T* ax = training ? aux + row * H : nullptr;
        LSTMCORE_SIMD
        for (i64 j = u0; j < u1; ++j) {
          const T r = sigmoid(ga[j] + ra[j]);
          const T z = sigmoid(ga[H + j] + ra[H + j]);
          const T ahn = ra[2 * H + j] + bhn[j];
          const T n = fast_tanh(ga[2 * H + j] + r * ahn);
          const T hn = (T(1) - z) * n + z * hp[j];
          hb[j] = hn;
          yb[j] = hn;
          if (training) {
            ga[j] = r;
            ga[H + j] = z;
            ga[2 * H + j] = n;
            st[j] = hn;
            ax[j] = ahn;
          }
        }
      }
    });
    return;
  }
  // reset_after=false: r and z first, then the n block's GEMM on r ⊙ h_{t-1}. bfloat16
  // products: h_{t-1} into h_round each step, r ⊙ h_{t-1} in place.
  T* h_round = ws.get<T>(plan.h_round);
  for (i64 s = 0; s < d.steps; ++s) {
    {
      if (h_round) round_columns(static_cast<const T*>(h), H, h_round, H, B, 0, H);
      times_weight(ctx, B, h_round ? h_round : h, H, w_h, 0, 2 * H, false, rec, G);
      for_batch(ctx, B, B * G, [&](i64 b) {
        T* ra = rec + b * G;
        T* rhb = rh + b * H;
        if (!walk.active(s, b)) {
          std::memset(rhb, 0, sizeof(T) * H);
          return;
        }
        const T* ga = gates + walk.row(walk.time(s, b), b) * ldg;
        LSTMCORE_SIMD
        for (i64 j = 0; j < H; ++j) {
          ra[j] = sigmoid(ga[j] + ra[j]);
          ra[H + j] = sigmoid(ga[H + j] + ra[H + j]);
          rhb[j] = ra[j] * h[b * H + j];
        }
      });
      if (ctx.bf16) round_in_place(rh, B, H, H);
      times_weight(ctx, B, rh, H, w_h, 2 * H, H, false, rec + 2 * H, G);
      for_batch(ctx, B, B * G, [&](i64 b) {
        if (!walk.active(s, b)) return;
        const i64 row = walk.row(walk.time(s, b), b);
        const T* ga = gates + row * ldg;
        const T* ra = rec + b * G;
        LSTMCORE_SIMD
        for (i64 j = 0; j < H; ++j) {
          const T pre_n = ga[2 * H + j] + ra[2 * H + j] + bhn[j];
          finish(row, b, ra[j], ra[H + j], rh[b * H + j], pre_n, j);
        }
      });
    }
  }
}

template <typename T>
void gru_backward(const Context& ctx, const BackwardPlan& plan, const Scratch& ws, bool reset_after, const Dims& d,
                  const SequenceOptions& o, const BackwardArgs<T>& a) {
  const i64 B = d.batch, H = d.hidden, G = 3 * H, N = d.steps * d.batch;
  // reset_after=false: per-step GEMMs on blocks of it (bfloat16 products: a rounded copy)
  const Weight<T> w_h(rounded(ws, plan.w_h_round, a.w_h), H, G, a.weight_layout);
  Walk walk(d, o);
  if (reset_after) walk.sort_by_length(ws.get<i64>(plan.order));
  T* gates = a.cache;
  const T* states = a.cache + N * G;
  T* aux = a.cache + N * (G + H);

  T* zeros = ws.get<T>(plan.zeros);
  std::memset(zeros, 0, sizeof(T) * H);
  T* h_prev = ws.get<T>(plan.h_prev);
  const i64 ldh = plan.h_prev.ld;
  T* da_step = ws.get<T>(plan.da_step);  // reset_after=false: this step's recurrent-side gradient dL/d ah
  T* drh = ws.get<T>(plan.drh);          // reset_after=false: dL/d(r ⊙ h_{t-1})
  walk.zero_padding(gates, G);
  walk.zero_padding(aux, H);
  walk.zero_padding(h_prev, H, ldh);

  T* dh = a.dh0;
  copy_or_zero(dh, a.dh_n, B * H);

  // Units [u0, u1) of row b at iteration s: gradients of z and n (and, with reset_after, of
  // r) into the cache and into ds (the recurrent side, row b of da), and the direct path
  // dh ⊙ z into dh. Rows not active get ds = 0 and keep dh.
  auto row_grad = [&](i64 s, i64 b, i64 u0, i64 u1, T* ds) {
    if (!walk.active(s, b)) {
      for (i64 g = 0; g < 3; ++g) std::memset(ds + g * H + u0, 0, sizeof(T) * (u1 - u0));
      return;
    }
    const i64 row = walk.row(walk.time(s, b), b);
    const i64 tp = walk.prev_time(s, b);
    const T* hpsrc = tp >= 0 ? states + walk.row(tp, b) * H : a.h0 ? a.h0 + b * H : zeros;
    const T* dyb = a.dy ? a.dy + row * H : zeros;
    T* ga = gates + row * G;
    T* ax = aux + row * H;
    T* hp = h_prev + row * ldh;
    T* dhb = dh + b * H;
    LSTMCORE_SIMD
    for (i64 j = u0; j < u1; ++j) {
      const T r = ga[j], z = ga[H + j], n = ga[2 * H + j];
      const T hpj = hpsrc[j];
      hp[j] = hpj;
      const T dht = dhb[j] + dyb[j];
      const T dn = dht * (T(1) - z) * (T(1) - n * n);  // dL/d(pre-activation of n)
      const T dz = dht * (hpj - n) * z * (T(1) - z);
      dhb[j] = dht * z;
      ga[H + j] = ds[H + j] = dz;
      ga[2 * H + j] = dn;
      if (reset_after) {
        const T dr = dn * ax[j] * r * (T(1) - r);  // ax[j] = ah_n
        ga[j] = ds[j] = dr;
        ax[j] = ds[2 * H + j] = dn * r;
      } else {
        ds[2 * H + j] = dn;  // the n block's GEMM input is r ⊙ h_{t-1}; r's gradient follows
      }
    }
  };

  if (reset_after) {
    run_backward_recurrence<T>(plan, ws, walk, a.w_h, a.weight_layout, H, dh, [&](i64 s, i64 n, i64 u0, i64 u1, T* da) {
      for (i64 i = 0; i < n; ++i) row_grad(s, walk.slot(i), u0, u1, da + i * G);
    });
  }
  // reset_after=false. bfloat16 products: da_step rounded before each product.
  for (i64 s = reset_after ? -1 : d.steps - 1; s >= 0; --s) {
    for_batch(ctx, B, B * G, [&](i64 b) { row_grad(s, b, 0, H, da_step + b * G); });
    if (ctx.bf16) round_in_place(da_step, B, G, G);
    // reset_after=false: d(r ⊙ h) = dn·w_h[:, n]ᵀ gives dr and a path to h_{t-1}.
    times_weight_t(ctx, B, da_step + 2 * H, G, w_h, 2 * H, H, false, drh, H);
    for_batch(ctx, B, B * G, [&](i64 b) {
      T* ds = da_step + b * G;
      if (!walk.active(s, b)) return;
      const i64 row = walk.row(walk.time(s, b), b);
      T* ga = gates + row * G;
      const T* hp = h_prev + row * ldh;
      const T* drb = drh + b * H;
      T* dhb = dh + b * H;
      LSTMCORE_SIMD
      for (i64 j = 0; j < H; ++j) {
        const T r = ga[j];
        const T dr = drb[j] * hp[j] * r * (T(1) - r);
        dhb[j] += drb[j] * r;
        ga[j] = ds[j] = dr;
      }
    });
    if (ctx.bf16) round_in_place(da_step, B, H, G);
    times_weight_t(ctx, B, da_step, G, w_h, 0, 2 * H, true, dh, H);
  }

  WeightGradients<T> wg(N, d.input, G);
  wg.only_active(walk, gates, G, h_prev, H, ldh, a.x, aux, H, H);
  wg.input_side(gates, G);
  // r and z: the recurrent side sees the same gradient as the input side.
  wg.recurrent(H, h_prev, ldh, gates, G, 0, 2 * H);
  if (reset_after) {  // n: dL/d ah_n (in aux) against h_{t-1}
    wg.recurrent(H, h_prev, ldh, aux, H, 2 * H, H);
    wg.recurrent_bias(gates, G, 0, 2 * H);
    wg.recurrent_bias(aux, H, 2 * H, H);
  } else {  // n: dL/d a_n against r ⊙ h_{t-1} (in aux)
    wg.recurrent(H, aux, H, gates + 2 * H, G, 2 * H, H);
    wg.recurrent_bias(gates, G, 0, G);
  }
  wg.bf16(ws.get<T>(plan.gemm16));  // bfloat16 products only
  wg.run(ctx, a);
}

#define LSTMCORE_INSTANTIATE(T)                                                                            \
  template void gru_forward<T>(const Context&, const ForwardPlan&, const Scratch&, bool, const Dims&,         \
                               const SequenceOptions&, const ForwardArgs<T>&);                               \
  template void gru_backward<T>(const Context&, const BackwardPlan&, const Scratch&, bool, const Dims&,       \
                                const SequenceOptions&, const BackwardArgs<T>&);
LSTMCORE_INSTANTIATE(float)
LSTMCORE_INSTANTIATE(double)
#undef LSTMCORE_INSTANTIATE

}  // namespace LSTMCORE_ISA_NS
}  // namespace cpu
LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
