// bfloat16 products (CellSpec::compute = Compute::bfloat16): the rounding against a scalar
// reference, the native kernel against the FMA emulation, and the refusals. The full
// numerics (every cell and gradient, lengths, reverse) are tested from Python
// (tests/python/test_bf16.py).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <lstmcore/lstmcore.h>

#include "harness.h"

using namespace lstmcore;

namespace {

// x rounded to the nearest bfloat16 (ties to even).
float round_bf16(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, 4);
  u = (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;
  float r;
  std::memcpy(&r, &u, 4);
  return r;
}

std::vector<float> random_values(std::size_t n, float scale, unsigned seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> u(-scale, scale);
  std::vector<float> v(n);
  for (auto& e : v) e = u(gen);
  return v;
}

struct Run {
  std::vector<float> y, h_n, dx, dh0, dw_x, dw_h;
};

Run run(Cell cell, Compute compute, std::int64_t T, std::int64_t B, std::int64_t I, std::int64_t H) {
  const CellSpec spec{cell, true, compute};
  const Dims d{T, B, I, H};
  const std::int64_t G = gate_count(cell);
  const auto x = random_values(T * B * I, 1.0f, 1), w_x = random_values(I * G * H, 0.4f, 2),
             w_h = random_values(H * G * H, 0.4f, 3), h0 = random_values(B * H, 0.5f, 4),
             dy = random_values(T * B * H, 1.0f, 5);
  Run r{std::vector<float>(T * B * H), std::vector<float>(B * H), std::vector<float>(T * B * I),
        std::vector<float>(B * H), std::vector<float>(I * G * H), std::vector<float>(H * G * H)};
  std::vector<float> c_n(B * H), dc0(B * H), cache(cache_size(spec, d));
  ForwardArgs<float> f;
  f.x = x.data(), f.w_x = w_x.data(), f.w_h = w_h.data(), f.h0 = h0.data();
  f.y = r.y.data(), f.h_n = r.h_n.data(), f.cache = cache.data();
  if (cell == Cell::lstm) f.c_n = c_n.data();
  forward(spec, d, SequenceOptions{}, f);
  BackwardArgs<float> b;
  b.x = x.data(), b.w_x = w_x.data(), b.w_h = w_h.data(), b.h0 = h0.data(), b.cache = cache.data();
  b.dy = dy.data(), b.dx = r.dx.data(), b.dh0 = r.dh0.data(), b.dw_x = r.dw_x.data(), b.dw_h = r.dw_h.data();
  if (cell == Cell::lstm) b.dc0 = dc0.data();
  backward(spec, d, SequenceOptions{}, b);
  return r;
}

}  // namespace

TEST(api_bf16_one_step_rounds_every_operand) {
  // One tanh-RNN step: y = tanh(bf16(x)·bf16(w_x) + bf16(h0)·bf16(w_h)), sums in double
  // here and in float in the core (K = 13 + 9 terms: ~1e-7 apart); unrounded operands
  // would be ~1e-3 away.
  const std::int64_t B = 3, I = 13, H = 9;
  const auto x = random_values(B * I, 1.0f, 1), w_x = random_values(I * H, 0.4f, 2),
             w_h = random_values(H * H, 0.4f, 3), h0 = random_values(B * H, 0.5f, 4);
  const Run r = run(Cell::rnn_tanh, Compute::bfloat16, 1, B, I, H);
  double err = 0, norm = 0, err_plain = 0;
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t j = 0; j < H; ++j) {
      double a = 0, plain = 0;
      for (std::int64_t k = 0; k < I; ++k) {
        a += double(round_bf16(x[b * I + k])) * round_bf16(w_x[k * H + j]);
        plain += double(x[b * I + k]) * w_x[k * H + j];
      }
      for (std::int64_t k = 0; k < H; ++k) {
        a += double(round_bf16(h0[b * H + k])) * round_bf16(w_h[k * H + j]);
        plain += double(h0[b * H + k]) * w_h[k * H + j];
      }
      const double got = r.y[b * H + j];
      err += (got - std::tanh(a)) * (got - std::tanh(a));
      err_plain += (got - std::tanh(plain)) * (got - std::tanh(plain));
      norm += std::tanh(a) * std::tanh(a);
    }
  CHECK_MSG(std::sqrt(err / norm) < 1e-6, "relative error " << std::sqrt(err / norm));
  CHECK_MSG(std::sqrt(err_plain / norm) > 1e-4, "unrounded reference too close: " << std::sqrt(err_plain / norm));
}

TEST(api_bf16_native_kernel_equals_emulation) {
  // avx512_bf16 (VDPBF16PS) and avx512 (FMA on rounded operands, in VDPBF16PS's order):
  // the same bits, forward and backward, for every cell.
  const auto isas = available_isas();
  const bool native = std::find(isas.begin(), isas.end(), "avx512_bf16") != isas.end();
  if (!native) return;  // nothing to compare on this processor (the Python tests compare the others)
  const std::string saved = get_isa();
  for (Cell cell : {Cell::lstm, Cell::gru, Cell::rnn_tanh, Cell::rnn_relu}) {
    set_isa("avx512_bf16");
    const Run a = run(cell, Compute::bfloat16, 7, 5, 6, 21);
    set_isa("avx512");
    const Run b = run(cell, Compute::bfloat16, 7, 5, 6, 21);
    CHECK(a.y == b.y && a.h_n == b.h_n && a.dx == b.dx && a.dh0 == b.dh0 && a.dw_x == b.dw_x && a.dw_h == b.dw_h);
    const Run f = run(cell, Compute::native, 7, 5, 6, 21);
    CHECK(a.y != f.y);  // the mode changed the products
  }
  set_isa(saved);
}

TEST(errors_bf16_refused_for_double) {
  const Dims d{2, 1, 3, 4};
  const CellSpec spec{Cell::gru, true, Compute::bfloat16};
  std::vector<double> x(6), w_x(3 * 12), w_h(4 * 12), y(8), h_n(4);
  ForwardArgs<double> f;
  f.x = x.data(), f.w_x = w_x.data(), f.w_h = w_h.data(), f.y = y.data(), f.h_n = h_n.data();
  CHECK_THROWS(forward(spec, d, SequenceOptions{}, f), InvalidArgument, "compute: bfloat16 products need float");
}
