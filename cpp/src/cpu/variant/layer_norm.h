// Layer norm over one row (Ba et al. 2016) for the LSTM variant: the forward statistics
// and the backward through them. Statistics over the columns outside [s0, s1) (the
// unused f block with input_forget or without a forget gate, or none). Compiled per
// instruction set.
#pragma once

#include <cmath>

#include "cpu/kernel_common.h"

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN
namespace cpu {
namespace LSTMCORE_ISA_NS {


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

}  // namespace LSTMCORE_ISA_NS
}  // namespace cpu
LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
