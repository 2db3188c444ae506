// One time step of lstmcore::Stepper on the packed micro-kernel (packed.h): x_t·w_x and
// h·w_h for the calling thread's unit blocks, then the cell on those units. The threads
// own disjoint units, and the product reads a copy of h taken before the step, so no
// barrier is needed inside a step.
#include "cpu/stepper_kernels.h"

#include "cpu/kernel_common.h"
#include "cpu/packed.h"

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN
namespace cpu {
namespace LSTMCORE_ISA_NS {

template <typename T>
void stepper_pack(const PackGeometry& g, const T* w, T* out) {
  pack_recurrent(w, false, g, out);  // input-major (K × G·H)
}

template <typename T>
void stepper_step(const StepperRun<T>& r, const T* x_t, T* h, T* c, T* y_t) {
  const i64 B = r.B, H = r.H, G = r.G, GH = G * H;
  const PackedWeights<T> px = packed_layout(r.gx, const_cast<T*>(r.px));
  const PackedWeights<T> ph = packed_layout(r.gh, const_cast<T*>(r.ph));
  std::memcpy(r.hcopy, h, sizeof(T) * B * H);
  const Cell cell = r.spec.cell;
  run_on_threads(r.threads, [&](int tid, int nth) {
    i64 b0, b1, u0, u1;
    thread_units(px.blocks, px.W, H, tid, nth, b0, b1, u0, u1);
    T* tile = r.tiles + tid * r.tile_stride;
    thread_local bool down = false;  // this thread's direction: the other one each step
    down = !down;
    for (i64 i = 0; i < b1 - b0; ++i) {
      const i64 blk = block_in_turn(b0, b1, i, down);
      if (down) recurrent_block(ph, static_cast<const T*>(r.hcopy), B, blk, tile, r.rech);
      recurrent_block(px, x_t, B, blk, tile, r.recx);
      if (!down) recurrent_block(ph, static_cast<const T*>(r.hcopy), B, blk, tile, r.rech);
    }
    const T* bias = r.bias;
    for (i64 b = 0; b < B; ++b) {
      const T* gx = r.recx + b * GH;
      const T* gr = r.rech + b * GH;
      const T* hp = r.hcopy + b * H;
      T* hb = h + b * H;
      if (cell == Cell::lstm) {
        T* cb = c + b * H;
        LSTMCORE_SIMD
        for (i64 j = u0; j < u1; ++j) {
          const T ig = sigmoid(gx[j] + bias[j] + gr[j]);
          const T fg = sigmoid(gx[H + j] + bias[H + j] + gr[H + j]);
          const T gg = fast_tanh(gx[2 * H + j] + bias[2 * H + j] + gr[2 * H + j]);
          const T og = sigmoid(gx[3 * H + j] + bias[3 * H + j] + gr[3 * H + j]);
          const T cn = fg * cb[j] + ig * gg;
          cb[j] = cn;
          hb[j] = og * fast_tanh(cn);
        }
      } else if (cell == Cell::gru) {
        const T* bhn = r.bhn;
        LSTMCORE_SIMD
        for (i64 j = u0; j < u1; ++j) {
          const T rg = sigmoid(gx[j] + bias[j] + gr[j]);
          const T z = sigmoid(gx[H + j] + bias[H + j] + gr[H + j]);
          const T n = fast_tanh(gx[2 * H + j] + bias[2 * H + j] + rg * (gr[2 * H + j] + bhn[j]));
          hb[j] = (T(1) - z) * n + z * hp[j];
        }
      } else {
        const bool relu = cell == Cell::rnn_relu;
        LSTMCORE_SIMD
        for (i64 j = u0; j < u1; ++j) {
          const T v = gx[j] + bias[j] + gr[j];
          hb[j] = relu ? (v < T(0) ? T(0) : v) : fast_tanh(v);  // relu keeps NaN
        }
      }
      if (y_t) std::memcpy(y_t + b * H + u0, hb + u0, sizeof(T) * (u1 - u0));
    }
  });
}

// ---------------------------------------------------------------------------------------
// direct_step: the weights read where the caller keeps them. At small B a step is a
// matrix-vector product: input-major weights stream row by row and vectorise along the
// G·H columns; gate-major weights give one dot product per column. Each thread owns a
// range of units (whole 16-unit blocks) in every gate, so it applies the cell to the
// units it computed, with no barrier (GRU reset_after=false: one, before the n product,
// which reads r ⊙ h of every unit).

#if defined(_OPENMP) || defined(__clang__)
#define LSTMCORE_SIMD_SUM4 _Pragma("omp simd reduction(+ : s0, s1, s2, s3)")
#define LSTMCORE_SIMD_SUM1 _Pragma("omp simd reduction(+ : s0)")
#else
#define LSTMCORE_SIMD_SUM4
#define LSTMCORE_SIMD_SUM1
#endif

namespace {

constexpr i64 kUnitBlock = 16;

// For each segment s < ns: acc[s][b·lda + j] += Σ_k x[b·ldx + k] · W[k·ldw + col[s] + j], j < n;
// W input-major (K rows). Rows 8 at a time (then 4, then 1), every segment and batch row of
// them, so the weights stream through once in address order, and acc is read and written
// once per 8 rows.
template <typename T>
void product_rows(i64 B, i64 K, const T* x, i64 ldx, const T* W, i64 ldw, int ns, const i64* col, T* const* acc,
                  i64 n, i64 lda) {
  i64 k = 0;
  for (; k + 8 <= K; k += 8)
    for (i64 b = 0; b < B; ++b) {
      const T* xb = x + b * ldx + k;
      const T x0 = xb[0], x1 = xb[1], x2 = xb[2], x3 = xb[3], x4 = xb[4], x5 = xb[5], x6 = xb[6], x7 = xb[7];
      for (int s = 0; s < ns; ++s) {
        const T* w0 = W + k * ldw + col[s];
        T* ab = acc[s] + b * lda;
        LSTMCORE_SIMD
        for (i64 j = 0; j < n; ++j)
          ab[j] += (x0 * w0[j] + x1 * w0[ldw + j] + x2 * w0[2 * ldw + j] + x3 * w0[3 * ldw + j]) +
                   (x4 * w0[4 * ldw + j] + x5 * w0[5 * ldw + j] + x6 * w0[6 * ldw + j] + x7 * w0[7 * ldw + j]);
      }
    }
  for (; k + 4 <= K; k += 4)
    for (i64 b = 0; b < B; ++b) {
      const T* xb = x + b * ldx;
      const T x0 = xb[k], x1 = xb[k + 1], x2 = xb[k + 2], x3 = xb[k + 3];
      for (int s = 0; s < ns; ++s) {
        const T* w0 = W + k * ldw + col[s];
        const T* w1 = w0 + ldw;
        const T* w2 = w1 + ldw;
        const T* w3 = w2 + ldw;
        T* ab = acc[s] + b * lda;
        LSTMCORE_SIMD
        for (i64 j = 0; j < n; ++j) ab[j] += x0 * w0[j] + x1 * w1[j] + x2 * w2[j] + x3 * w3[j];
      }
    }
  for (; k < K; ++k)
    for (i64 b = 0; b < B; ++b) {
      const T xk = x[b * ldx + k];
      for (int s = 0; s < ns; ++s) {
        const T* w = W + k * ldw + col[s];
        T* ab = acc[s] + b * lda;
        LSTMCORE_SIMD
        for (i64 j = 0; j < n; ++j) ab[j] += xk * w[j];
      }
    }
}

// a[b·lda + j] += Σ_k W[(c0 + j)·K + k] · x[b·K + k], j < n: W gate-major (rows of K).
template <typename T>
void product_dots(i64 B, i64 K, const T* x, const T* W, i64 c0, i64 n, T* a, i64 lda) {
  i64 j = 0;
  for (; j + 4 <= n; j += 4) {
    const T* w0 = W + (c0 + j) * K;
    const T* w1 = w0 + K;
    const T* w2 = w1 + K;
    const T* w3 = w2 + K;
    for (i64 b = 0; b < B; ++b) {
      const T* xb = x + b * K;
      T s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      LSTMCORE_SIMD_SUM4
      for (i64 k = 0; k < K; ++k) {
        const T xk = xb[k];
        s0 += w0[k] * xk;
        s1 += w1[k] * xk;
        s2 += w2[k] * xk;
        s3 += w3[k] * xk;
      }
      T* ab = a + b * lda + j;
      ab[0] += s0;
      ab[1] += s1;
      ab[2] += s2;
      ab[3] += s3;
    }
  }
  for (; j < n; ++j) {
    const T* w0 = W + (c0 + j) * K;
    for (i64 b = 0; b < B; ++b) {
      const T* xb = x + b * K;
      T s0 = 0;
      LSTMCORE_SIMD_SUM1
      for (i64 k = 0; k < K; ++k) s0 += w0[k] * xb[k];
      a[b * lda + j] += s0;
    }
  }
}

}  // namespace

// The cell on units [u0, u1) of every row, from the pre-activations in acc (and hn).
template <typename T>
void cell_units(const DirectStep<T>& r, const T* hp, i64 u0, i64 u1) {
  const i64 B = r.B, H = r.H, G = r.G, ld = r.ld, lda = G * ld;
  const Cell cell = r.spec.cell;
  const bool gru = cell == Cell::gru, before = gru && !r.spec.reset_after;
  for (i64 b = 0; b < B; ++b) {
    const T* a = r.acc + b * lda;
    const T* hb = hp + b * H;
    T* ho = r.h_out + b * H;
    if (cell == Cell::lstm) {
      const T* ci = r.c_in + b * H;
      T* co = r.c_out + b * H;
      LSTMCORE_SIMD
      for (i64 j = u0; j < u1; ++j) {
        const T ig = sigmoid(a[j]);
        const T fg = sigmoid(a[ld + j]);
        const T gg = fast_tanh(a[2 * ld + j]);
        const T og = sigmoid(a[3 * ld + j]);
        const T cn = fg * ci[j] + ig * gg;
        co[j] = cn;
        ho[j] = og * fast_tanh(cn);
      }
    } else if (gru) {
      const T* hn = r.hn + b * ld;
      LSTMCORE_SIMD
      for (i64 j = u0; j < u1; ++j) {
        const T rg = sigmoid(a[j]);
        const T z = sigmoid(a[ld + j]);
        const T nn = fast_tanh(a[2 * ld + j] + (before ? hn[j] : rg * hn[j]));
        ho[j] = (T(1) - z) * nn + z * hb[j];
      }
    } else {
      const bool relu = cell == Cell::rnn_relu;
      LSTMCORE_SIMD
      for (i64 j = u0; j < u1; ++j) {
        const T v = a[j];
        ho[j] = relu ? (v < T(0) ? T(0) : v) : fast_tanh(v);  // relu keeps NaN
      }
    }
  }
}

// The biases of row b, units [u0, u1), into acc: b + b_h per gate, except GRU's n gate with
// the reset after the product, whose b_h belongs inside the reset and starts hn instead.
template <typename T>
void init_biases(const DirectStep<T>& r, i64 b, i64 u0, i64 u1) {
  const i64 H = r.H, G = r.G, ld = r.ld;
  const bool after = r.spec.cell == Cell::gru && r.spec.reset_after;
  for (i64 g = 0; g < G; ++g) {
    T* a = r.acc + (b * G + g) * ld;
    const T* bx = r.b ? r.b + g * H : nullptr;
    const T* bh = r.b_h && !(after && g == 2) ? r.b_h + g * H : nullptr;
    for (i64 j = u0; j < u1; ++j) a[j] = (bx ? bx[j] : T(0)) + (bh ? bh[j] : T(0));
  }
  if (after)
    for (i64 j = u0; j < u1; ++j) r.hn[b * ld + j] = r.b_h ? r.b_h[2 * H + j] : T(0);
}

// Row split (input-major, every cell but GRU with reset_after=false): thread t sums the
// products over its share of the I + H weight rows, every column, into a partial of its
// own, so each thread streams one contiguous block of the weights, which stays in its
// core's cache from step to step. The calling thread then adds the biases and the
// partials and applies the cell (a few hundred values: cheaper than a second meeting of
// the threads, which costs most when the machine is busy).
template <typename T>
void direct_step_rows(const DirectStep<T>& r, const T* hp) {
  const i64 B = r.B, I = r.I, H = r.H, G = r.G, GH = G * H, ld = r.ld, lp = (G + 1) * ld;
  const bool gru = r.spec.cell == Cell::gru;
  int used = 1;
  run_on_threads(r.threads, [&](int tid, int nth) {
    if (tid == 0) used = nth;
    T* part = r.parts + tid * r.part_stride;  // (B, G + 1, ld): the gates, then GRU's recurrent n
    std::fill(part, part + B * lp, T(0));
    const i64 K = I + H, k0 = K * tid / nth, k1 = K * (tid + 1) / nth;
    i64 col[4];
    T* acc[4];
    for (i64 g = 0; g < G; ++g) {
      col[g] = g * H;
      acc[g] = part + g * ld;
    }
    if (k0 < I)
      product_rows(B, std::min(k1, I) - k0, r.x + k0, I, r.w_x + k0 * GH, GH, static_cast<int>(G), col, acc, H, lp);
    const i64 h0 = std::max(k0, I) - I, h1 = k1 - I;
    if (h1 > h0) {
      if (gru) acc[2] = part + G * ld;
      product_rows(B, h1 - h0, hp + h0, H, r.w_h + h0 * GH, GH, static_cast<int>(G), col, acc, H, lp);
    }
  });
  for (i64 b = 0; b < B; ++b) {
    init_biases(r, b, 0, H);
    for (i64 g = 0; g < G; ++g) {
      T* a = r.acc + (b * G + g) * ld;
      for (int t = 0; t < used; ++t) {
        const T* pt = r.parts + t * r.part_stride + b * lp + g * ld;
        LSTMCORE_SIMD
        for (i64 j = 0; j < H; ++j) a[j] += pt[j];
      }
    }
    if (gru) {  // reset_after here: the row split leaves the reset before the product out
      T* hn = r.hn + b * ld;
      for (int t = 0; t < used; ++t) {
        const T* pt = r.parts + t * r.part_stride + b * lp + G * ld;
        LSTMCORE_SIMD
        for (i64 j = 0; j < H; ++j) hn[j] += pt[j];
      }
    }
  }
  cell_units(r, hp, 0, H);
}

template <typename T>
void direct_step(const DirectStep<T>& r) {
  const i64 B = r.B, H = r.H, G = r.G, GH = G * H, ld = r.ld, lda = G * ld;
  const Cell cell = r.spec.cell;
  const bool gru = cell == Cell::gru;
  const bool before = gru && !r.spec.reset_after;  // GRU: r ⊙ h goes into the n product
  const T* hp = r.h_in;
  if (hp == r.h_out) {  // stepping in place: the product reads h before the step
    std::memcpy(r.hcopy, hp, sizeof(T) * B * H);
    hp = r.hcopy;
  }
  if (r.parts) return direct_step_rows(r, hp);
  // acc[s][b·lda + j] += rows x (B × K) times the columns [col[s], col[s] + n) of w, s < ns
  const auto product = [&](const T* x, i64 K, const T* w, int ns, const i64* col, T* const* acc, i64 n,
                           i64 stride) {
    if (!r.gate_major) return product_rows(B, K, x, K, w, GH, ns, col, acc, n, stride);
    for (int s = 0; s < ns; ++s) product_dots(B, K, x, w, col[s], n, acc[s], stride);
  };
  const i64 blocks = (H + kUnitBlock - 1) / kUnitBlock;
  run_on_threads(r.threads, [&](int tid, int nth) {
    const i64 u0 = std::min(H, blocks * tid / nth * kUnitBlock);
    const i64 u1 = std::min(H, blocks * (tid + 1) / nth * kUnitBlock);
    const i64 n = u1 - u0;
    if (n > 0) {
      for (i64 b = 0; b < B; ++b) init_biases(r, b, u0, u1);
      i64 col[4];
      T* acc[4];
      for (i64 g = 0; g < G; ++g) {
        col[g] = g * H + u0;
        acc[g] = r.acc + g * ld + u0;
      }
      product(r.x, r.I, r.w_x, static_cast<int>(G), col, acc, n, lda);
      product(hp, H, r.w_h, static_cast<int>(gru ? 2 : G), col, acc, n, lda);
      if (gru && !before) {  // hn starts at b_h[n] (init_biases)
        const i64 cn = 2 * H + u0;
        T* an = r.hn + u0;
        product(hp, H, r.w_h, 1, &cn, &an, n, ld);
      }
      if (before)
        for (i64 b = 0; b < B; ++b) {
          const T* a = r.acc + b * lda;
          LSTMCORE_SIMD
          for (i64 j = u0; j < u1; ++j) r.rh[b * H + j] = sigmoid(a[j]) * hp[b * H + j];
        }
    }
    if (before) {
#ifdef _OPENMP
      if (nth > 1) {
#pragma omp barrier
      }
#endif
      if (n > 0) {
        for (i64 b = 0; b < B; ++b) std::fill(r.hn + b * ld + u0, r.hn + b * ld + u1, T(0));
        const i64 cn = 2 * H + u0;
        T* an = r.hn + u0;
        product(static_cast<const T*>(r.rh), H, r.w_h, 1, &cn, &an, n, ld);
      }
    }
    if (n > 0) cell_units(r, hp, u0, u1);
  });
}

template void stepper_pack<float>(const PackGeometry&, const float*, float*);
template void stepper_pack<double>(const PackGeometry&, const double*, double*);
template void stepper_step<float>(const StepperRun<float>&, const float*, float*, float*, float*);
template void stepper_step<double>(const StepperRun<double>&, const double*, double*, double*, double*);
template void direct_step<float>(const DirectStep<float>&);
template void direct_step<double>(const DirectStep<double>&);

}  // namespace LSTMCORE_ISA_NS
}  // namespace cpu
LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
