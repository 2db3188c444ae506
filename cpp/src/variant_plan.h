// A cell variant's call, validated: its options, sizes and the layout of its training
// cache. cpp/src/variants.cpp builds it (make_variant_plan) after every check of the
// options and sizes; the kernels (cpu/variant_forward.cpp, cpu/variant_backward.cpp)
// receive it and check nothing. Internal: not installed.
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
#pragma once

#include <cstdint>

#include "lstmcore/variants.h"

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN
namespace detail {

struct VariantPlan {
  using i64 = std::int64_t;
  VariantOptions options;  // validated; proj is P
  Cell cell = Cell::lstm;
  bool reset_after = true, lstm = false, gru = false, ln = false, proj = false, peep = false, zone_h = false,
       zone_c = false;
  i64 T = 0, B = 0, I = 0, H = 0, G = 0, GH = 0, R = 0, N = 0;
  i64 skip0 = 0, skip1 = 0;  // the unused f block of the layer-normed rows
  // offsets into the cache; -1 when absent
  i64 pre = 0, hs = 0, cs = -1, cand = -1, mt = -1, aux = -1, nx = -1, rx = -1, nh = -1, rh = -1, nc = -1, rc = -1,
      mh = -1, mc = -1, total = 0;
  bool own_forget() const { return skip1 == 0; }
};

// Checks the options and sizes (InvalidArgument naming the option) and lays out the cache.
VariantPlan make_variant_plan(const CellSpec& spec, const VariantOptions& options, const Dims& dims);

// InvalidArgument naming the first parameter (gradient) the plan's options need but that
// is null. T: float, double.
template <typename T>
void check_variant_params(const VariantPlan& p, const VariantParams<T>& v);
template <typename T>
void check_variant_grads(const VariantPlan& p, const VariantGrads<T>& g);

}  // namespace detail
LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
