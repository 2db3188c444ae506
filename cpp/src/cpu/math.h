// exp, sigmoid and tanh written so that a loop over them vectorises (no calls, no
// branches: selects only), for float and double, accurate to a few ulp everywhere,
// never NaN or Inf for finite input (NaN in, NaN out).
//
// exp: x = n·ln2 + r with |r| <= ln2/2 (Cody–Waite split of ln2), e^r from its Taylor
// polynomial (degree 7 for float, 13 for double: the first omitted term is below half
// an ulp), then 2^n assembled in the exponent bits. expm1 uses the same reduction but
// returns 2^n·p(r) + (2^n − 1), which is exact-ish for n = 0 where expm1 is small.
// sigmoid = 1 / (1 + e^−x), or e^x / (1 + e^x) for x < 0: no cancellation, no overflow.
// tanh(x) = sign(x) · (−m / (2 + m)), m = expm1(−2|x|) ∈ (−1, 0]: no cancellation
// anywhere, including tiny |x| where m ≈ −2|x|.
#pragma once

#include <cstdint>

#include "cpu/isa.h"

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN
namespace cpu {
namespace LSTMCORE_ISA_NS {

template <typename T>
struct ExpConst;

template <>
struct ExpConst<float> {
  using Int = std::int32_t;
  static constexpr int mantissa = 23, bias = 127, degree = 7;
  static constexpr float hi = 88.72283935f;         // ln(largest float): above, e^x = inf
  static constexpr float lo = -103.972084f;         // ln(smallest subnormal / 2): below, e^x = 0
  static constexpr float big = 20.0f;               // above, e^x − 1 rounds to e^x
  static constexpr float shifter = 12582912.0f;    // 1.5·2^23: x + shifter rounds x to an integer
  static constexpr float log2e = 1.44269504088896341f;
  static constexpr float ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;
};

template <>
struct ExpConst<double> {
  using Int = std::int64_t;
  static constexpr int mantissa = 52, bias = 1023, degree = 13;
  static constexpr double hi = 709.782712893384, lo = -745.1332191019412, big = 40.0;
  static constexpr double shifter = 6755399441055744.0;  // 1.5·2^52
  static constexpr double log2e = 1.4426950408889634074;
  static constexpr double ln2_hi = 6.93145751953125e-1, ln2_lo = 1.42860682030941723212e-6;
};

// 1/k! for k = 0..13, rounded once to T.
template <typename T>
inline T inv_factorial(int k) {
  constexpr double table[] = {1.0, 1.0, 1.0 / 2, 1.0 / 6, 1.0 / 24, 1.0 / 120, 1.0 / 720, 1.0 / 5040,
                              1.0 / 40320, 1.0 / 362880, 1.0 / 3628800, 1.0 / 39916800, 1.0 / 479001600,
                              1.0 / 6227020800.0};
  return static_cast<T>(table[k]);
}

// r + r²/2! + … + r^d/d! by Horner, i.e. e^r − 1 on the reduced range.
template <typename T>
inline T expm1_poly(T r) {
  constexpr int d = ExpConst<T>::degree;
  T p = inv_factorial<T>(d);
#pragma GCC unroll 16
  for (int k = d - 1; k >= 1; --k) p = p * r + inv_factorial<T>(k);
  return p * r;
}

// Splits x (already clamped to [lo, hi]) into 2^n · e^r; returns r and 2^n as the product
// s1 · s2 of two normal powers of two (2^n alone may be out of range at either end).
template <typename T>
inline T reduce(T x, T& s1, T& s2) {
  using C = ExpConst<T>;
  using Int = typename C::Int;
  const T t = x * C::log2e + C::shifter;
  const T n = t - C::shifter;
  const Int ni = __builtin_bit_cast(Int, t) - __builtin_bit_cast(Int, C::shifter);
  const Int n1 = ni >> 1, n2 = ni - n1;
  s1 = __builtin_bit_cast(T, (n1 + Int(C::bias)) << C::mantissa);
  s2 = __builtin_bit_cast(T, (n2 + Int(C::bias)) << C::mantissa);
  return (x - n * C::ln2_hi) - n * C::ln2_lo;
}

template <typename T>
inline T clamp_exp_arg(T x) {
  using C = ExpConst<T>;
  return x < C::lo ? C::lo : (x > C::hi ? C::hi : x);
}

// e^x and e^x − 1 of an argument already clamped to [lo, hi]: the reduction and the
// polynomial that every entry point below shares; the entries add their selects.
template <typename T>
inline T exp_clamped(T xc) {
  T s1, s2;
  const T r = reduce(xc, s1, s2);
  return (s1 * (T(1) + expm1_poly(r))) * s2;
}

template <typename T>
inline T expm1_clamped(T xc) {
  T s1, s2;
  const T r = reduce(xc, s1, s2);
  const T scale = s1 * s2;
  return scale * expm1_poly(r) + (scale - T(1));
}

template <typename T>
inline T fast_exp(T x) {
  using C = ExpConst<T>;
  T e = exp_clamped(clamp_exp_arg(x));
  e = x > C::hi ? T(__builtin_inf()) : e;
  e = x < C::lo ? T(0) : e;
  return x != x ? x : e;
}

template <typename T>
inline T fast_expm1(T x) {
  using C = ExpConst<T>;
  T e = expm1_clamped(clamp_exp_arg(x));
  e = x > C::big ? fast_exp(x) : e;
  e = x < C::lo ? T(-1) : e;
  return x != x ? x : e;
}

// e^x and e^x − 1 for x <= 0 (or NaN), as the gates need them: no overflow side to
// guard, so a vector loop evaluates one reduction and one polynomial per call (fast_expm1
// must also evaluate fast_exp for its large positive side, since selects run both).
template <typename T>
inline T exp_nonpositive(T x) {
  using C = ExpConst<T>;
  return x < C::lo ? T(0) : exp_clamped(x < C::lo ? C::lo : x);
}

template <typename T>
inline T expm1_nonpositive(T x) {
  using C = ExpConst<T>;
  return x < C::lo ? T(-1) : expm1_clamped(x < C::lo ? C::lo : x);
}

// σ(x) = 1 / (1 + e^−x) for x >= 0 and e^x / (1 + e^x) below: e^−|x| never overflows, so
// σ keeps its tiny (even subnormal) values far left instead of flushing them to 0.
template <typename T>
inline T sigmoid(T x) {
  const T e = exp_nonpositive(x < T(0) ? x : -x);
  return (x < T(0) ? e : T(1)) / (T(1) + e);  // NaN: e is NaN
}

template <typename T>
inline T fast_tanh(T x) {
  const T ax = x < T(0) ? -x : x;
  const T m = expm1_nonpositive(T(-2) * ax);
  const T t = -m / (T(2) + m);
  const T r = x < T(0) ? -t : t;
  return x != x ? x : r;
}

}  // namespace LSTMCORE_ISA_NS
}  // namespace cpu
LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
