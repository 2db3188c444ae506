// Backpropagation through time for the cell variants (variants.h): per step, from the
// last to the first, the gate gradients of every option (zoneout, projection, layer
// norm, peepholes, coupled or absent forget gate, activations with clip) and dL/dh_{t−1}
// through w_h on the packed micro-kernel (step_product.h); then the weight gradients
// as single GEMMs over all rows (weight_gradients.h) and the options' own gradients.
// Cache layout: variant_plan.h. Compiled once per instruction set; the plan and the
// workspace come validated and sized (cpp/src/variants.cpp, cpu/plan.cpp).
#include <algorithm>
#include <cstring>

#include "cpu/kernel_common.h"
#include "cpu/kernels.h"
#include "cpu/variant/activations.h"
#include "cpu/variant/layer_norm.h"
#include "cpu/variant/step_product.h"
#include "cpu/weight_gradients.h"

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN
namespace cpu {
namespace LSTMCORE_ISA_NS {
namespace {

template <typename T>
void run(const Context& ctx, const VariantBackwardPlan& plan, const Scratch& ws, const detail::VariantPlan& p,
         const Walk& walk, const BackwardArgs<T>& a, const VariantParams<T>& v, const VariantGrads<T>& g) {
  const VariantOptions& o = p.options;
  const i64 B = p.B, H = p.H, GH = p.GH, R = p.R, N = p.N;
  const T clip = static_cast<T>(o.clip);
  T* C = a.cache;
  // dL/d(x·w_x) differs from dL/da with layer norm; dL/d(h·w_h) differs from the input
  // side's with layer norm and for GRU: then each has a region of its own (the plan's).
  const bool sep_x = plan.dax.count > 0, sep_h = plan.dah.count > 0;
  T* hprev = ws.get<T>(plan.hprev);                         // h_{t−1} of every row, for dw_h
  const i64 ldh = plan.hprev.ld;
  T* dax = sep_x ? ws.get<T>(plan.dax) : C + p.pre;          // dL/d(x·w_x) of every row
  const i64 ldx = sep_x ? plan.dax.ld : GH;
  T* dah = sep_h ? ws.get<T>(plan.dah) : dax;                // dL/d(h·w_h + b_h) of every row
  const i64 ldah = sep_h ? plan.dah.ld : ldx;
  T* dht = ws.get<T>(plan.dht);                              // dL/dh̃ of every row, for dw_proj
  const i64 ldt = plan.dht.ld;
  T* dstep = ws.get<T>(plan.dstep);                          // dL/d(h·w_h) of the step
  T* act = ws.get<T>(plan.act);
  T* dg = ws.get<T>(plan.dg);
  T* dm = ws.get<T>(plan.dm);                                // dL/dm (LSTM), dL/d(r ⊙ h) (GRU)
  T* dhb = ws.get<T>(plan.dhb);                              // dL/dh̃ of the step
  T* hc = ws.get<T>(plan.hc);
  T* sh = ws.get<T>(plan.sh);
  T* acc = ws.get<T>(plan.acc);                              // per row of the batch: dp_i, dp_f, dp_o, dγ_c, dβ_c
  T* zeros = ws.get<T>(plan.zeros);
  std::memset(hprev, 0, sizeof(T) * plan.hprev.count);
  if (sep_x) std::memset(dax, 0, sizeof(T) * plan.dax.count);
  if (sep_h) std::memset(dah, 0, sizeof(T) * plan.dah.count);
  if (dht) std::memset(dht, 0, sizeof(T) * plan.dht.count);
  std::memset(acc, 0, sizeof(T) * B * 5 * H);
  std::memset(zeros, 0, sizeof(T) * std::max(H, R));

  T* dh = a.dh0;  // the carried dL/dh_t, dL/dc_t
  T* dc = a.dc0;
  copy_or_zero(dh, a.dh_n, B * R);
  if (p.lstm) copy_or_zero(dc, a.dc_n, B * H);
  const T* mask_h = p.zone_h ? C + p.mh : nullptr;
  const T* mask_c = p.zone_c ? C + p.mc : nullptr;
  const i64 work = B * GH * 16;
  // dL/dh_{t−1} += dL/d(h·w_h)·w_hᵀ (GRU with the reset before the product: r and z blocks)
  const Weight<T> w_h(a.w_h, R, GH, a.weight_layout), w_proj(v.w_proj, H, R, a.weight_layout);
  StepProduct<T, true> recurrent(plan.recurrent, ws, B);
  StepProduct<T, true> second(plan.second, ws, B);  // GRU: dL/da_n·w_h[:, n]ᵀ; LSTM: dL/dh̃·w_projᵀ

  for (i64 s = p.T - 1; s >= 0; --s) {
    auto row_of = [&](i64 b) { return walk.row(walk.time(s, b), b); };
    auto prev_row = [&](i64 b) {
      const i64 tp = walk.prev_time(s, b);
      return tp >= 0 ? walk.row(tp, b) : i64{-1};
    };
    // dL/dh_t = carried + dy_t; zoneout splits it between h̃ and h_{t−1}
    for_batch(ctx, B, B * R * 4, [&](i64 b) {
      T* d = dhb + b * R;
      if (!walk.active(s, b)) {
        std::memset(d, 0, sizeof(T) * R);
        return;
      }
      const i64 row = row_of(b), prow = prev_row(b);
      std::memcpy(hprev + row * ldh, prow >= 0 ? C + p.hs + prow * R : (a.h0 ? a.h0 + b * R : zeros), sizeof(T) * R);
      T* dhr = dh + b * R;
      const T* dy = a.dy ? a.dy + row * R : zeros;
      const T* k = mask_h ? mask_h + row * R : nullptr;
      for (i64 j = 0; j < R; ++j) {
        const T gh = dhr[j] + dy[j];
        const T kj = k ? k[j] : T(0);
        d[j] = (T(1) - kj) * gh;
        dhr[j] = kj * gh;
      }
      if (dht) std::memcpy(dht + row * ldt, d, sizeof(T) * R);
    });

    if (p.lstm) {
      const T* dmr = dhb;
      if (p.proj) {
        second(dhb, R, w_proj, 0, dm, H, false);  // dL/dm = dL/dh̃·w_projᵀ
        dmr = dm;
      }
      for_batch(ctx, B, work, [&](i64 b) {
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
          ln_backward(ds, v.ln_gain_x, C + p.nx + row * GH, C[p.rx + row], GH, p.skip0, p.skip1, dax + row * ldx);
          ln_backward(ds, v.ln_gain_h, C + p.nh + row * GH, C[p.rh + row], GH, p.skip0, p.skip1, dah + row * ldah);
          std::memcpy(ds, dah + row * ldah, sizeof(T) * GH);
        }
      });
      recurrent(dstep, GH, w_h, 0, dh, R, true);  // dL/dh_{t−1} += da·w_hᵀ
    } else if (p.gru) {
      for_batch(ctx, B, work, [&](i64 b) {
        T* ds = dstep + b * GH;
        if (!walk.active(s, b)) {
          std::memset(ds, 0, sizeof(T) * GH);
          return;
        }
        const i64 row = row_of(b);
        T* pr = C + p.pre + row * GH;
        const T* hp = hprev + row * ldh;
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
          T* dh_row = dah + row * ldah;
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
        second(dstep + 2 * H, GH, w_h, 2 * H, dm, H, false);
        for_batch(ctx, B, work, [&](i64 b) {
          if (!walk.active(s, b)) return;
          const i64 row = row_of(b);
          T* ds = dstep + b * GH;
          T* pr = C + p.pre + row * GH;
          const T* hp = hprev + row * ldh;
          T* ac = act + b * GH;
          T* dhr = dh + b * H;
          for (i64 j = 0; j < H; ++j) {
            ds[j] = dm[b * H + j] * hp[j];
            dhr[j] += dm[b * H + j] * ac[j];
          }
          activate_grad(o.f, clip, pr, ac, ds, ds, H);  // dL/da_r
          std::memcpy(pr, ds, sizeof(T) * GH);
          std::memcpy(dah + row * ldah, ds, sizeof(T) * GH);
        });
      }
      recurrent(dstep, GH, w_h, 0, dh, H, true);
    } else {
      for_batch(ctx, B, work, [&](i64 b) {
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
      recurrent(dstep, GH, w_h, 0, dh, H, true);
    }
  }

  // the weight gradients: GEMMs over all rows (rows past a length are zero)
  const T* da = C + p.pre;  // dL/da (LSTM, RNN); the input side's dL/d(ax) (GRU)
  WeightGradients<T> wg(N, p.I, GH);
  wg.input_side(dax, ldx);  // dx = dL/d(x·w_x)·w_xᵀ, dw_x
  wg.bias(da, GH);
  if (p.gru && !p.reset_after) {
    wg.recurrent(R, hprev, ldh, dah, ldah, 0, 2 * H);
    wg.recurrent(H, C + p.aux, H, dah + 2 * H, ldah, 2 * H, H);  // (r ⊙ h)ᵀ·da_n
  } else {
    wg.recurrent(R, hprev, ldh, dah, ldah, 0, GH);
  }
  if (p.ln)
    wg.recurrent_bias(da, GH, 0, GH);
  else
    wg.recurrent_bias(dah, ldah, 0, GH);
  wg.run(ctx, a);
  if (p.proj) weight_gradient(ctx, w_proj, g.dw_proj, N, C + p.mt, H, dht, ldt, 0, R);  // mᵀ·dL/dh̃
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

template <typename T>
void variant_backward(const Context& c, const VariantBackwardPlan& plan, const Scratch& s,
                      const detail::VariantPlan& p, const SequenceOptions& o, const BackwardArgs<T>& a,
                      const VariantParams<T>& params, const VariantGrads<T>& grads) {
  run(c, plan, s, p, Walk(Dims{p.T, p.B, p.I, p.H}, o), a, params, grads);
}

template void variant_backward<float>(const Context&, const VariantBackwardPlan&, const Scratch&,
                                      const detail::VariantPlan&, const SequenceOptions&,
                                      const BackwardArgs<float>&, const VariantParams<float>&,
                                      const VariantGrads<float>&);
template void variant_backward<double>(const Context&, const VariantBackwardPlan&, const Scratch&,
                                       const detail::VariantPlan&, const SequenceOptions&,
                                       const BackwardArgs<double>&, const VariantParams<double>&,
                                       const VariantGrads<double>&);

}  // namespace LSTMCORE_ISA_NS
}  // namespace cpu
LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
