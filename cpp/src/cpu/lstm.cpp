// LSTM on the CPU. Cache layout (rows in the order of x):
//   gates (T·B, 4H): i, f, g, o after their activations; backward overwrites them
//                    with the pre-activation gradients da.
//   cells (T·B, H):  c_t.
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
void lstm_forward(const Context& ctx, const ForwardPlan& plan, const Scratch& ws, const Dims& d,
                  const SequenceOptions& o, const ForwardArgs<T>& a) {
  const i64 B = d.batch, H = d.hidden, G = 4 * H, N = d.steps * d.batch;
  Walk walk(d, o);
  walk.sort_by_length(ws.get<i64>(plan.order));
  const bool training = a.cache != nullptr;

  // x·w_x + biases, then (training) the activations; fused: no x·w_x, the steps' products
  // hold it and the cells add the biases.
  T* gates = training ? a.cache : ws.get<T>(plan.gates);
  const i64 ldg = training ? G : plan.gates.ld;
  T* cells = training ? a.cache + N * G : nullptr;
  T* bias = ws.get<T>(plan.bias);
  for (i64 j = 0; j < G; ++j) bias[j] = (a.b ? a.b[j] : T(0)) + (a.b_h ? a.b_h[j] : T(0));
  const StepInput<T> input = input_side(ctx, plan, ws, a.x, Weight<T>(a.w_x, d.input, G, a.weight_layout),
                                        (a.b || a.b_h) ? bias : nullptr, N, H, 4, gates, ldg, walk, training);

  // The states: h in h_n (and a second buffer inside the recurrence), c in c_n.
  T* c = a.c_n;
  copy_or_zero(a.h_n, a.h0, B * H);
  copy_or_zero(c, a.c0, B * H);
  walk.zero_padding(a.y, H);
  if (training) walk.zero_padding(cells, H);  // steps past a length: defined, never read

  run_recurrence<T>(plan, ws, walk, a.w_h, a.weight_layout, H, a.h_n, input,
                    [&](i64 s, i64 n, i64 u0, i64 u1, const T*, T* h_next, const T* rec) {
    for (i64 i = 0; i < n; ++i) {  // the active sequences (finished ones keep their state)
      const i64 b = walk.slot(i);
      const i64 row = walk.row(walk.time(s, b), b);
      T* ga = gates ? gates + row * ldg : nullptr;
      const T* pa = plan.fused ? bias : ga;  // what the product's sums lack
      const T* ra = rec + i * G;
      T* hb = h_next + i * H;
      T* cb = c + b * H;
      T* yb = a.y + row * H;
      T* cs = training ? cells + row * H : nullptr;
      LSTMCORE_SIMD
      for (i64 j = u0; j < u1; ++j) {
        const T ig = sigmoid(pa[j] + ra[j]);
        const T fg = sigmoid(pa[H + j] + ra[H + j]);
        const T gg = fast_tanh(pa[2 * H + j] + ra[2 * H + j]);
        const T og = sigmoid(pa[3 * H + j] + ra[3 * H + j]);
        const T cn = fg * cb[j] + ig * gg;
        const T hn = og * fast_tanh(cn);
        cb[j] = cn;
        hb[j] = hn;
        yb[j] = hn;
        if (training) {
          ga[j] = ig;
          ga[H + j] = fg;
          ga[2 * H + j] = gg;
          ga[3 * H + j] = og;
          cs[j] = cn;
        }
      }
    }
  });
}

template <typename T>
void lstm_backward(const Context& ctx, const BackwardPlan& plan, const Scratch& ws, const Dims& d,
                   const SequenceOptions& o, const BackwardArgs<T>& a) {
  const i64 B = d.batch, H = d.hidden, G = 4 * H, N = d.steps * d.batch;
  Walk walk(d, o);
  walk.sort_by_length(ws.get<i64>(plan.order));
  T* gates = a.cache;
  const T* cells = a.cache + N * G;

  T* h_prev = ws.get<T>(plan.h_prev);  // h_{t-1} of every row, for dw_h
  const i64 ldh = plan.h_prev.ld;
  T* zeros = ws.get<T>(plan.zeros);  // stands in for absent optional inputs
  std::memset(zeros, 0, sizeof(T) * H);
  walk.zero_padding(gates, G);
  walk.zero_padding(h_prev, H, ldh);

  // The carried gradients dL/dh and dL/dc live in the outputs dh0, dc0.
  T* dh = a.dh0;
  T* dc = a.dc0;
  copy_or_zero(dh, a.dh_n, B * H);
  copy_or_zero(dc, a.dc_n, B * H);

  run_backward_recurrence<T>(plan, ws, walk, a.w_h, a.weight_layout, H, dh, [&](i64 s, i64 n, i64 u0, i64 u1, T* da) {
    for (i64 i = 0; i < n; ++i) {
      const i64 b = walk.slot(i);
      T* ds = da + i * G;
      const i64 row = walk.row(walk.time(s, b), b);
      const i64 tp = walk.prev_time(s, b);
      const i64 prow = tp >= 0 ? walk.row(tp, b) : -1;
      T* ga = gates + row * G;
      const T* c_t = cells + row * H;
      T* hp = h_prev + row * ldh;
      const T* c_p;
      if (prow >= 0) {  // h_{t-1} = o_{t-1} ⊙ tanh(c_{t-1}), recomputed rather than cached
        const T* o_p = gates + prow * G + 3 * H;
        c_p = cells + prow * H;
        LSTMCORE_SIMD
        for (i64 j = u0; j < u1; ++j) hp[j] = o_p[j] * fast_tanh(c_p[j]);
      } else {
        c_p = a.c0 ? a.c0 + b * H : zeros;
        copy_or_zero(hp + u0, a.h0 ? a.h0 + b * H + u0 : nullptr, u1 - u0);
      }
      const T* dyb = a.dy ? a.dy + row * H : zeros;
      T* dhb = dh + b * H;
      T* dcb = dc + b * H;
      LSTMCORE_SIMD
      for (i64 j = u0; j < u1; ++j) {
        const T ig = ga[j], fg = ga[H + j], gg = ga[2 * H + j], og = ga[3 * H + j];
        const T tc = fast_tanh(c_t[j]);
        const T dht = dhb[j] + dyb[j];
        const T dct = dcb[j] + dht * og * (T(1) - tc * tc);
        const T d_i = dct * gg * ig * (T(1) - ig);  // dL/da_i through σ
        const T d_f = dct * c_p[j] * fg * (T(1) - fg);
        const T d_g = dct * ig * (T(1) - gg * gg);  // through tanh
        const T d_o = dht * tc * og * (T(1) - og);
        dcb[j] = dct * fg;
        dhb[j] = T(0);  // all of dL/dh_{t-1} comes through w_h
        ga[j] = ds[j] = d_i;
        ga[H + j] = ds[H + j] = d_f;
        ga[2 * H + j] = ds[2 * H + j] = d_g;
        ga[3 * H + j] = ds[3 * H + j] = d_o;
      }
    }
  });

  WeightGradients<T> wg(N, d.input, G);  // da is both sides' gradient
  wg.only_active(walk, gates, G, h_prev, H, ldh, a.x);
  wg.input_side(gates, G);
  wg.recurrent(H, h_prev, ldh, gates, G, 0, G);
  wg.recurrent_bias(gates, G, 0, G);
  wg.bf16(ws.get<T>(plan.gemm16));  // bfloat16 products only
  wg.run(ctx, a);
}

#define LSTMCORE_INSTANTIATE(T)                                                                            \
  template void lstm_forward<T>(const Context&, const ForwardPlan&, const Scratch&, const Dims&,              \
                                const SequenceOptions&, const ForwardArgs<T>&);                              \
  template void lstm_backward<T>(const Context&, const BackwardPlan&, const Scratch&, const Dims&,            \
                                 const SequenceOptions&, const BackwardArgs<T>&);
LSTMCORE_INSTANTIATE(float)
LSTMCORE_INSTANTIATE(double)
#undef LSTMCORE_INSTANTIATE

}  // namespace LSTMCORE_ISA_NS
}  // namespace cpu
LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
