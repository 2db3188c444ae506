// Plain RNN (tanh or relu) on the CPU. Cache layout (rows in the order of x):
//   states (T·B, H): h_t; backward overwrites them with the pre-activation gradients.
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
void rnn_forward(const Context& ctx, const ForwardPlan& plan, const Scratch& ws, bool relu, const Dims& d,
                 const SequenceOptions& o, const ForwardArgs<T>& a) {
  const i64 B = d.batch, H = d.hidden, N = d.steps * d.batch;
  Walk walk(d, o);
  walk.sort_by_length(ws.get<i64>(plan.order));
  const bool training = a.cache != nullptr;

  // x·w_x + b + b_h, then (training) h_t; fused: no x·w_x (the steps' products hold it)
  T* pre = training ? a.cache : ws.get<T>(plan.gates);
  const i64 ldp = training ? H : plan.gates.ld;
  T* bias = ws.get<T>(plan.bias);
  for (i64 j = 0; j < H; ++j) bias[j] = (a.b ? a.b[j] : T(0)) + (a.b_h ? a.b_h[j] : T(0));
  const StepInput<T> input = input_side(ctx, plan, ws, a.x, Weight<T>(a.w_x, d.input, H, a.weight_layout),
                                        (a.b || a.b_h) ? bias : nullptr, N, H, 1, pre, ldp, walk, training);

  T* h = a.h_n;
  copy_or_zero(h, a.h0, B * H);
  walk.zero_padding(a.y, H);

  run_recurrence<T>(plan, ws, walk, a.w_h, a.weight_layout, H, h, input,
                    [&](i64 s, i64 n, i64 u0, i64 u1, const T*, T* h_next, const T* rec) {
    for (i64 i = 0; i < n; ++i) {
      const i64 b = walk.slot(i);
      const i64 row = walk.row(walk.time(s, b), b);
      T* pr = pre ? pre + row * ldp : nullptr;
      const T* pa = plan.fused ? bias : pr;  // what the product's sums lack
      const T* ra = rec + i * H;
      T* hb = h_next + i * H;
      T* yb = a.y + row * H;
      LSTMCORE_SIMD
      for (i64 j = u0; j < u1; ++j) {
        const T v = pa[j] + ra[j];
        const T hn = relu ? (v < T(0) ? T(0) : v) : fast_tanh(v);  // relu keeps NaN
        hb[j] = hn;
        yb[j] = hn;
        if (training) pr[j] = hn;
      }
    }
  });
}

template <typename T>
void rnn_backward(const Context& ctx, const BackwardPlan& plan, const Scratch& ws, bool relu, const Dims& d,
                  const SequenceOptions& o, const BackwardArgs<T>& a) {
  const i64 B = d.batch, H = d.hidden, N = d.steps * d.batch;
  Walk walk(d, o);
  walk.sort_by_length(ws.get<i64>(plan.order));
  T* states = a.cache;  // h_t, replaced by da_t as the walk goes back

  T* zeros = ws.get<T>(plan.zeros);
  std::memset(zeros, 0, sizeof(T) * H);
  T* h_prev = ws.get<T>(plan.h_prev);
  const i64 ldh = plan.h_prev.ld;
  walk.zero_padding(h_prev, H, ldh);

  T* dh = a.dh0;
  copy_or_zero(dh, a.dh_n, B * H);

  run_backward_recurrence<T>(plan, ws, walk, a.w_h, a.weight_layout, H, dh, [&](i64 s, i64 n, i64 u0, i64 u1, T* da) {
    for (i64 i = 0; i < n; ++i) {
      const i64 b = walk.slot(i);
      T* ds = da + i * H;
      const i64 row = walk.row(walk.time(s, b), b);
      const i64 tp = walk.prev_time(s, b);
      // The previous step's row still holds h_{t-1}: the walk reaches it later.
      const T* hpsrc = tp >= 0 ? states + walk.row(tp, b) * H : a.h0 ? a.h0 + b * H : zeros;
      const T* dyb = a.dy ? a.dy + row * H : zeros;
      T* st = states + row * H;
      T* hp = h_prev + row * ldh;
      T* dhb = dh + b * H;
      LSTMCORE_SIMD
      for (i64 j = u0; j < u1; ++j) {
        hp[j] = hpsrc[j];
        const T dht = dhb[j] + dyb[j];
        const T ht = st[j];
        const T g = relu ? (ht > T(0) ? dht : T(0)) : dht * (T(1) - ht * ht);
        st[j] = ds[j] = g;
        dhb[j] = T(0);
      }
    }
  });
  walk.zero_padding(states, H);

  WeightGradients<T> wg(N, d.input, H);  // da is both sides' gradient
  wg.only_active(walk, states, H, h_prev, H, ldh, a.x);
  wg.input_side(states, H);
  wg.recurrent(H, h_prev, ldh, states, H, 0, H);
  wg.recurrent_bias(states, H, 0, H);
  wg.bf16(ws.get<T>(plan.gemm16));  // bfloat16 products only
  wg.run(ctx, a);
}

#define LSTMCORE_INSTANTIATE(T)                                                                            \
  template void rnn_forward<T>(const Context&, const ForwardPlan&, const Scratch&, bool, const Dims&,         \
                               const SequenceOptions&, const ForwardArgs<T>&);                               \
  template void rnn_backward<T>(const Context&, const BackwardPlan&, const Scratch&, bool, const Dims&,       \
                                const SequenceOptions&, const BackwardArgs<T>&);
LSTMCORE_INSTANTIATE(float)
LSTMCORE_INSTANTIATE(double)
#undef LSTMCORE_INSTANTIATE

}  // namespace LSTMCORE_ISA_NS
}  // namespace cpu
LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
