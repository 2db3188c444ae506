// The forward walk of the cell variants (variants.h) for LSTM, GRU and RNN with every
// option: the input projection of all steps as one GEMM, then per step the recurrent
// product on the packed micro-kernel (step_product.h) and elementwise passes split over
// batch rows. Cache layout: variant_plan.h. Compiled once per instruction set; the plan
// and the workspace come validated and sized (cpp/src/variants.cpp, cpu/plan.cpp).
#include <cstring>

#include "cpu/kernel_common.h"
#include "cpu/kernels.h"
#include "cpu/variant/activations.h"
#include "cpu/variant/layer_norm.h"
#include "cpu/variant/step_product.h"
#include "cpu/variant/zoneout.h"

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN
namespace cpu {
namespace LSTMCORE_ISA_NS {
namespace {

template <typename T>
void run(const Context& ctx, const VariantForwardPlan& plan, const Scratch& ws, const detail::VariantPlan& p,
         const Walk& walk, const ForwardArgs<T>& a, const VariantParams<T>& v) {
  const VariantOptions& o = p.options;
  const i64 B = p.B, H = p.H, GH = p.GH, R = p.R, N = p.N;
  const bool training = a.cache != nullptr;
  const T clip = static_cast<T>(o.clip), eps = static_cast<T>(o.layer_norm_epsilon);
  const T zh = static_cast<T>(o.zoneout_h), zc = static_cast<T>(o.zoneout_c);
  T* C = training ? a.cache : ws.get<T>(plan.cache);
  std::memset(C, 0, sizeof(T) * p.total);  // rows past a length stay defined (zero)
  T* xp = ws.get<T>(plan.xp);  // x·w_x of every row
  const i64 ldx = plan.xp.ld;
  T* rec = ws.get<T>(plan.rec);    // h_{t−1}·w_h of the step
  T* act = ws.get<T>(plan.act);    // the gates of the step, after their activations
  T* mbuf = ws.get<T>(plan.mbuf);  // LSTM m, GRU r ⊙ h_{t−1}
  T* hbuf = ws.get<T>(plan.hbuf);  // the projected h̃
  T* cbuf = ws.get<T>(plan.cbuf);  // LSTM LN(c̃)
  T* bx = ws.get<T>(plan.bx);
  T* bh = ws.get<T>(plan.bh);
  copy_or_zero(bx, a.b, GH);
  copy_or_zero(bh, a.b_h, GH);

  const Weight<T> w_h(a.w_h, R, GH, a.weight_layout), w_proj(v.w_proj, H, R, a.weight_layout);
  times_weight(ctx, N, a.x, p.I, Weight<T>(a.w_x, p.I, GH, a.weight_layout), 0, GH, false, xp, ldx);
  T* h = a.h_n;
  T* c = a.c_n;
  copy_or_zero(h, a.h0, B * R);
  if (p.lstm) copy_or_zero(c, a.c0, B * H);
  walk.zero_padding(a.y, R);
  const T* mask_h = training && p.zone_h ? C + p.mh : nullptr;
  const T* mask_c = training && p.zone_c ? C + p.mc : nullptr;
  if (mask_h) make_zoneout_mask(ctx, p, walk, o.seed, 1, o.zoneout_h, R, C + p.mh);
  if (mask_c) make_zoneout_mask(ctx, p, walk, o.seed, 2, o.zoneout_c, H, C + p.mc);
  const i64 work = B * GH * 8;
  const bool reset_before = p.gru && !p.reset_after;
  StepProduct<T, false> recurrent(plan.recurrent, ws, B);
  StepProduct<T, false> second(plan.second, ws, B);  // GRU: (r ⊙ h)·w_h[:, n]; LSTM: the projection

  // With lengths the step buffers (rec, act, mbuf, hbuf, cbuf) hold the n active
  // sequences in slot order (Walk::slot) and the products run on those n rows only; the
  // state h, c and the row-ordered arrays stay in the batch's order.
  T* hslot = ws.get<T>(plan.hslot);
  i64 n = B;
  // What an elementwise pass over active slot i works on: the sequence b, its row, and that
  // row's pre-activations, input projection, recurrent product and gates.
  struct Slot {
    i64 b, row;
    T* pr;
    const T* xr;
    const T* rr;
    T* ac;
  };
  for (i64 s = 0; s < p.T; ++s) {
    auto row_of = [&](i64 b) { return walk.row(walk.time(s, b), b); };
    auto slot_at = [&](i64 i) {
      const i64 b = walk.slot(i), row = row_of(b);
      return Slot{b, row, C + p.pre + row * GH, xp + row * ldx, rec + i * GH, act + i * GH};
    };
    n = walk.active_count(s, n);
    const T* hs = h;
    if (walk.order) {
      for (i64 i = 0; i < n; ++i) std::memcpy(hslot + i * R, h + walk.order[i] * R, sizeof(T) * R);
      hs = hslot;
    }
    // h_{t−1}·w_h (GRU with the reset before the product: the r and z blocks only)
    recurrent(hs, R, w_h, 0, rec, GH, false, n);

    if (p.lstm) {
      for_batch(ctx, n, work, [&](i64 i) {
        const auto [b, row, pr, xr, rr, ac] = slot_at(i);
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
          T* cn = cbuf + i * H;
          ln_forward(cc, H, 0, 0, eps, nc, C + p.rc + row);
          for (i64 j = 0; j < H; ++j) cn[j] = v.ln_gain_c[j] * nc[j] + v.ln_bias_c[j];
          chat = cn;
        }
        T* m = mbuf + i * H;
        activate(o.h, T(0), chat, m, H);
        for (i64 j = 0; j < H; ++j) m[j] *= ac[3 * H + j];
        if (p.proj) std::memcpy(C + p.mt + row * H, m, sizeof(T) * H);
        zoneout_update(cb, cc, mask_c ? mask_c + row * H : nullptr, zc, H);
        if (p.zone_c) std::memcpy(C + p.cs + row * H, cb, sizeof(T) * H);
      });
      if (p.proj) second(mbuf, H, w_proj, 0, hbuf, R, false, n);
    } else if (p.gru) {
      // r and z; with the reset before the product also r ⊙ h_{t−1} and the n block's GEMM
      for_batch(ctx, n, work, [&](i64 i) {
        const auto [b, row, pr, xr, rr, ac] = slot_at(i);
        for (i64 j = 0; j < 2 * H; ++j) pr[j] = xr[j] + bx[j] + rr[j] + bh[j];
        activate(o.f, clip, pr, ac, 2 * H);
        if (!p.reset_after)
          for (i64 j = 0; j < H; ++j) mbuf[i * H + j] = ac[j] * h[b * H + j];
      });
      if (reset_before) second(mbuf, H, w_h, 2 * H, rec + 2 * H, GH, false, n);
      for_batch(ctx, n, work, [&](i64 i) {
        const auto [b, row, pr, xr, rr, ac] = slot_at(i);
        T* ax = C + p.aux + row * H;
        for (i64 j = 0; j < H; ++j) {
          const T t = rr[2 * H + j] + bh[2 * H + j];
          pr[2 * H + j] = xr[2 * H + j] + bx[2 * H + j] + (p.reset_after ? ac[j] * t : t);
          ax[j] = p.reset_after ? t : mbuf[i * H + j];
        }
        activate(o.g, clip, pr + 2 * H, ac + 2 * H, H);
        T* hn = hbuf + i * H;
        for (i64 j = 0; j < H; ++j) hn[j] = (T(1) - ac[H + j]) * ac[2 * H + j] + ac[H + j] * h[b * H + j];
      });
    } else {
      for_batch(ctx, n, work, [&](i64 i) {
        const auto [b, row, pr, xr, rr, ac] = slot_at(i);
        (void)b;
        (void)ac;
        for (i64 j = 0; j < H; ++j) pr[j] = xr[j] + bx[j] + rr[j] + bh[j];
        activate(o.f, clip, pr, hbuf + i * H, H);
      });
    }

    // the new h: zoneout, outputs, cache
    const T* hnew = p.lstm && !p.proj ? mbuf : hbuf;
    for_batch(ctx, n, B * R * 4, [&](i64 i) {
      const i64 b = walk.slot(i);
      const i64 row = row_of(b);
      T* hb = h + b * R;
      zoneout_update(hb, hnew + i * R, mask_h ? mask_h + row * R : nullptr, zh, R);
      std::memcpy(a.y + row * R, hb, sizeof(T) * R);
      std::memcpy(C + p.hs + row * R, hb, sizeof(T) * R);
    });
  }
}

}  // namespace

template <typename T>
void variant_forward(const Context& c, const VariantForwardPlan& plan, const Scratch& s, const detail::VariantPlan& p,
                     const SequenceOptions& o, const ForwardArgs<T>& a, const VariantParams<T>& params) {
  Walk walk(Dims{p.T, p.B, p.I, p.H}, o);
  walk.sort_by_length(s.get<i64>(plan.order));
  run(c, plan, s, p, walk, a, params);
}

template void variant_forward<float>(const Context&, const VariantForwardPlan&, const Scratch&,
                                     const detail::VariantPlan&, const SequenceOptions&, const ForwardArgs<float>&,
                                     const VariantParams<float>&);
template void variant_forward<double>(const Context&, const VariantForwardPlan&, const Scratch&,
                                      const detail::VariantPlan&, const SequenceOptions&,
                                      const ForwardArgs<double>&, const VariantParams<double>&);

}  // namespace LSTMCORE_ISA_NS
}  // namespace cpu
LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
