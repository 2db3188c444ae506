// The activations of the cell variants (variants.h Nonlinearity) and their derivatives,
// with ONNX's clip folded in, over runs of values. One loop per kind (the switch
// outside), so each loop vectorises on its own: hard sigmoid is a multiply-add and two
// selects, far cheaper than sigmoid's exp. Compiled per instruction set.
#pragma once

#include <cmath>

#include "cpu/kernel_common.h"
#include "lstmcore/variants.h"

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN
namespace cpu {
namespace LSTMCORE_ISA_NS {

template <typename T>
T clamp(T v, T clip) {
  return clip > T(0) ? (v < -clip ? -clip : (v > clip ? clip : v)) : v;
}

// y = σ(clip(x)) over n values (y may be x).
template <typename T>
void activate(const ActivationSpec& s, T clip, const T* x, T* y, i64 n) {
  const T al = static_cast<T>(s.alpha), be = static_cast<T>(s.beta);
  switch (s.kind) {
    case Nonlinearity::sigmoid: LSTMCORE_SIMD for (i64 i = 0; i < n; ++i) y[i] = sigmoid(clamp(x[i], clip)); break;
    case Nonlinearity::tanh: LSTMCORE_SIMD for (i64 i = 0; i < n; ++i) y[i] = fast_tanh(clamp(x[i], clip)); break;
    case Nonlinearity::relu:  // keeps NaN
      LSTMCORE_SIMD for (i64 i = 0; i < n; ++i) { const T v = clamp(x[i], clip); y[i] = v < T(0) ? T(0) : v; }
      break;
    case Nonlinearity::hard_sigmoid:
      LSTMCORE_SIMD for (i64 i = 0; i < n; ++i) {
        const T t = al * clamp(x[i], clip) + be;
        y[i] = t < T(0) ? T(0) : (t > T(1) ? T(1) : t);
      }
      break;
    case Nonlinearity::softsign:
      LSTMCORE_SIMD for (i64 i = 0; i < n; ++i) { const T v = clamp(x[i], clip); y[i] = v / (T(1) + std::abs(v)); }
      break;
    case Nonlinearity::scaled_tanh:
      LSTMCORE_SIMD for (i64 i = 0; i < n; ++i) y[i] = al * fast_tanh(be * clamp(x[i], clip));
      break;
    case Nonlinearity::affine: LSTMCORE_SIMD for (i64 i = 0; i < n; ++i) y[i] = al * clamp(x[i], clip) + be; break;
    case Nonlinearity::leaky_relu:
      LSTMCORE_SIMD for (i64 i = 0; i < n; ++i) { const T v = clamp(x[i], clip); y[i] = v < T(0) ? al * v : v; }
      break;
    case Nonlinearity::elu:
      LSTMCORE_SIMD for (i64 i = 0; i < n; ++i) {
        const T v = clamp(x[i], clip);
        y[i] = v < T(0) ? al * fast_expm1(v) : v;
      }
      break;
    case Nonlinearity::softplus:  // max(v, 0) + log1p(e^−|v|): no overflow
      for (i64 i = 0; i < n; ++i) {
        const T v = clamp(x[i], clip);
        y[i] = (v > T(0) ? v : T(0)) + std::log1p(fast_exp(-std::abs(v)));
      }
      break;
    case Nonlinearity::thresholded_relu:
      LSTMCORE_SIMD for (i64 i = 0; i < n; ++i) { const T v = clamp(x[i], clip); y[i] = v > al ? v : T(0); }
      break;
  }
}

// dx = dy ⊙ σ'(clip(x)) ⊙ [x inside the clip range], given y = σ(clip(x)); dx may be dy.
template <typename T>
void activate_grad(const ActivationSpec& s, T clip, const T* x, const T* y, const T* dy, T* dx, i64 n) {
  const T al = static_cast<T>(s.alpha), be = static_cast<T>(s.beta);
  auto inside = [clip](T v) { return clip > T(0) ? (v >= -clip && v <= clip) : true; };
  switch (s.kind) {
    case Nonlinearity::sigmoid:
      LSTMCORE_SIMD for (i64 i = 0; i < n; ++i) dx[i] = inside(x[i]) ? dy[i] * y[i] * (T(1) - y[i]) : T(0);
      break;
    case Nonlinearity::tanh:
      LSTMCORE_SIMD for (i64 i = 0; i < n; ++i) dx[i] = inside(x[i]) ? dy[i] * (T(1) - y[i] * y[i]) : T(0);
      break;
    case Nonlinearity::relu:
      LSTMCORE_SIMD for (i64 i = 0; i < n; ++i) dx[i] = inside(x[i]) && x[i] > T(0) ? dy[i] : T(0);
      break;
    case Nonlinearity::hard_sigmoid:
      LSTMCORE_SIMD for (i64 i = 0; i < n; ++i) {
        const T t = al * clamp(x[i], clip) + be;
        dx[i] = inside(x[i]) && t > T(0) && t < T(1) ? dy[i] * al : T(0);
      }
      break;
    case Nonlinearity::softsign:
      LSTMCORE_SIMD for (i64 i = 0; i < n; ++i) {
        const T q = T(1) + std::abs(x[i]);
        dx[i] = inside(x[i]) ? dy[i] / (q * q) : T(0);
      }
      break;
    case Nonlinearity::scaled_tanh:
      LSTMCORE_SIMD for (i64 i = 0; i < n; ++i) {
        const T t = fast_tanh(be * clamp(x[i], clip));
        dx[i] = inside(x[i]) ? dy[i] * al * be * (T(1) - t * t) : T(0);
      }
      break;
    case Nonlinearity::affine: LSTMCORE_SIMD for (i64 i = 0; i < n; ++i) dx[i] = inside(x[i]) ? dy[i] * al : T(0); break;
    case Nonlinearity::leaky_relu:
      LSTMCORE_SIMD for (i64 i = 0; i < n; ++i) dx[i] = inside(x[i]) ? (x[i] < T(0) ? dy[i] * al : dy[i]) : T(0);
      break;
    case Nonlinearity::elu:  // α(e^x − 1)' = α e^x = y + α
      LSTMCORE_SIMD for (i64 i = 0; i < n; ++i) dx[i] = inside(x[i]) ? (x[i] < T(0) ? dy[i] * (y[i] + al) : dy[i]) : T(0);
      break;
    case Nonlinearity::softplus:
      LSTMCORE_SIMD for (i64 i = 0; i < n; ++i) dx[i] = inside(x[i]) ? dy[i] * sigmoid(x[i]) : T(0);
      break;
    case Nonlinearity::thresholded_relu:
      LSTMCORE_SIMD for (i64 i = 0; i < n; ++i) dx[i] = inside(x[i]) && x[i] > al ? dy[i] : T(0);
      break;
  }
}

}  // namespace LSTMCORE_ISA_NS
}  // namespace cpu
LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
