// The recurrent product h_{t-1}·w_h with w_h packed once per call.
//
// w_h (H × G·H) is cut into unit blocks of W = U·V hidden units (V = SIMD lanes). The
// panel of block p holds, for each k < H, the W columns of every gate of its units:
//   panel[p][k][g·W + w] = w_h[k, g·H + p·W + w]        (0 past H)
// so one pass over a panel yields all gates of W units: a thread that owns a set of
// blocks can apply the cell's nonlinearities to its units without waiting for others.
// The micro-kernel keeps MR rows × G·U vectors of accumulators in registers.
#pragma once


#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "cpu/bf16.h"
#include "cpu/bf16_kernel.h"
#include "cpu/kernel_common.h"

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN
namespace cpu {
namespace LSTMCORE_ISA_NS {

// SIMD width and register count of this variant.
#if defined(__AVX512F__)
constexpr int kVectorBytes = 64, kRegisters = 32;
#elif defined(__AVX2__)
constexpr int kVectorBytes = 32, kRegisters = 16;
#else
constexpr int kVectorBytes = 16, kRegisters = 16;
#endif

template <typename T>
struct Simd {
  typedef T vec __attribute__((vector_size(kVectorBytes)));
  // The same vector at element alignment: loads and stores through it need no alignment.
  typedef T uvec __attribute__((vector_size(kVectorBytes), aligned(sizeof(T)), may_alias));
  static constexpr int lanes = kVectorBytes / static_cast<int>(sizeof(T));
  static inline vec load(const T* p) { return *reinterpret_cast<const uvec*>(p); }
  static inline void store(T* p, vec v) { *reinterpret_cast<uvec*>(p) = v; }
  // A shuffle with an all-zero mask is a single broadcast instruction (`vec{} + x` would
  // cost an add first: 0 + x is not x for x = −0; filling lanes one by one, inserts).
  typedef std::conditional_t<sizeof(T) == 4, std::int32_t, std::int64_t> Int;
  typedef Int ivec __attribute__((vector_size(kVectorBytes)));
  static inline vec broadcast(T x) {
    const vec v = {x};
    return __builtin_shuffle(v, ivec{});
  }
};

template <typename T>
struct PackedWeights {
  const T* data = nullptr;
  i64 K = 0;         // rows of the product's right operand (length of the dot products)
  i64 H = 0, G = 0;  // output: G gate blocks of H units
  int U = 1;         // vectors per gate in a block
  i64 W = 0;         // units per block (U · lanes)
  i64 blocks = 0;    // ceil(H / W)
  i64 panel = 0;     // elements per panel (K · G · W)
};

// Units per block for G gates: enough accumulators to hide FMA latency. G·U is 3 or 4,
// the widths recurrent_block's micro-kernels are instantiated for.
inline int vectors_per_gate(i64 G) { return G >= 3 ? 1 : (G == 2 ? 2 : 4); }

// The packing of a K × (G·H) operand on this variant (KernelTable::pack_geometry): what
// the planner sizes the packed region and the tiles by.
template <typename T>
PackGeometry geometry(i64 K, i64 H, i64 G) {
  PackGeometry g;
  g.K = K;
  g.H = H;
  g.G = G;
  g.W = vectors_per_gate(G) * Simd<T>::lanes;
  g.blocks = (H + g.W - 1) / g.W;
  g.panel = K * G * g.W;
  g.elements = g.blocks * g.panel;
  return g;
}

// The packed operand in `out`, laid out as the planner's geometry says.
template <typename T>
PackedWeights<T> packed_layout(const PackGeometry& g, T* out) {
  PackedWeights<T> p;
  p.K = g.K;
  p.H = g.H;
  p.G = g.G;
  p.W = g.W;
  p.U = static_cast<int>(g.W / Simd<T>::lanes);
  p.blocks = g.blocks;
  p.panel = g.panel;
  p.data = out;
  return p;
}

// Copies the n <= W units of one gate of a block. A whole block (n = W, i.e. U vectors)
// moves as vectors: a memcpy call per gate and row costs as much as the arithmetic on
// it when B is small. The rest of a short block (the last one) is left alone.
template <typename T>
inline void copy_units(T* dst, const T* src, i64 n, const PackedWeights<T>& p) {
  using SV = Simd<T>;
  if (n == p.W) {
    for (int v = 0; v < p.U; ++v) SV::store(dst + v * SV::lanes, SV::load(src + v * SV::lanes));
  } else {
    std::memcpy(dst, src, sizeof(T) * n);
  }
}

// Packs w_h (H × G·H; gate_major: stored G·H × H) for the forward product h·w_h: K = H,
// G gate blocks. Both layouts give the same panels. Any K × G·H operand of the same gate
// layout packs alike (such as w_x: K = I; gate_major stored G·H × K). Only the blocks
// [blk0, blk1) are written (default: all), so the threads of a recurrence can each pack
// the blocks they read. Input-major rows are taken a few at a time for all the blocks:
// going block by block instead would stride over every row of w_h once per block, a
// TLB miss per row when a row spans pages.
template <typename T>
PackedWeights<T> pack_recurrent(const T* w_h, bool gate_major, const PackGeometry& geo, T* out, i64 blk0 = 0,
                                i64 blk1 = -1) {
  const PackedWeights<T> p = packed_layout(geo, out);
  const i64 H = geo.H, G = geo.G, K = geo.K;
  if (blk1 < 0) blk1 = p.blocks;
  if (gate_major) {
    for (i64 blk = blk0; blk < blk1; ++blk) {
      T* dst = out + blk * p.panel;
      const i64 u0 = blk * p.W, n = std::min<i64>(p.W, H - u0);
      // row g·H + u of the stored matrix is column u of gate g: transposed in tiles
      constexpr i64 kTile = 16;  // a tile's reads (W rows × 16) and writes (16 panel rows) stay in L1
      if (n < p.W) std::memset(dst, 0, sizeof(T) * p.panel);
      for (i64 g = 0; g < G; ++g)
        for (i64 k0 = 0; k0 < K; k0 += kTile) {
          const i64 kn = std::min(kTile, K - k0);
          for (i64 w = 0; w < n; ++w) {
            const T* src = w_h + (g * H + u0 + w) * K + k0;
            T* d = dst + (k0 * G + g) * p.W + w;
            for (i64 k = 0; k < kn; ++k) d[k * G * p.W] = src[k];
          }
        }
    }
    return p;
  }
  constexpr i64 kRows = 8;  // rows of w_h per pass over the blocks
  for (i64 k0 = 0; k0 < K; k0 += kRows) {
    const i64 k1 = std::min(K, k0 + kRows);
    for (i64 blk = blk0; blk < blk1; ++blk) {
      T* dst = out + blk * p.panel;
      const i64 u0 = blk * p.W, n = std::min<i64>(p.W, H - u0);
      for (i64 k = k0; k < k1; ++k)
        for (i64 g = 0; g < G; ++g) {
          T* d = dst + (k * G + g) * p.W;
          copy_units(d, w_h + k * G * H + g * H + u0, n, p);
          if (n < p.W) std::memset(d + n, 0, sizeof(T) * (p.W - n));
        }
    }
  }
  return p;
}

// Packs op(M) for products A·op(M) as one gate block (G = 1) of n columns: M stored K × n
// (row stride ld), or with `transposed` M stored n × K, so that op(M) = Mᵀ. g: the
// geometry of (K, n, 1).
template <typename T>
PackedWeights<T> pack_columns(const T* m, i64 ld, bool transposed, const PackGeometry& geo, T* out, i64 blk0 = 0,
                              i64 blk1 = -1) {
  const PackedWeights<T> p = packed_layout(geo, out);
  const i64 K = geo.K, n = geo.H;
  if (blk1 < 0) blk1 = p.blocks;
  for (i64 blk = blk0; blk < blk1; ++blk) {
    T* dst = out + blk * p.panel;
    const i64 u0 = blk * p.W;
    for (i64 k = 0; k < K; ++k)
      for (i64 w = 0; w < p.W; ++w)
        dst[k * p.W + w] = u0 + w >= n ? T(0) : (transposed ? m[(u0 + w) * ld + k] : m[k * ld + u0 + w]);
  }
  return p;
}

// Packs w_hᵀ (G·H × H) for the backward product da·w_hᵀ: K = G·H, one output block of H.
// gate_major w_h is stored as w_hᵀ already. Blocks [blk0, blk1) as in pack_recurrent.
template <typename T>
PackedWeights<T> pack_recurrent_transposed(const T* w_h, bool gate_major, const PackGeometry& geo, T* out,
                                           i64 blk0 = 0, i64 blk1 = -1) {
  return gate_major ? pack_columns(w_h, geo.H, false, geo, out, blk0, blk1)
                    : pack_columns(w_h, geo.K, true, geo, out, blk0, blk1);
}

// Packs the blocks [blk0, blk1) of a K × (G·H) weight (K = geo.K) for the forward products:
// as pack_recurrent, or with `bf16` rounded for them (VDPBF16PS's pairs on AVX512-BF16,
// bf16_kernel.h; else rounded with the pairs swapped, bf16.h).
template <typename T>
void pack_weight_blocks(const Weight<T>& w, const PackGeometry& geo, bool bf16, T* out, i64 blk0, i64 blk1) {
  if constexpr (std::is_same_v<T, float>)
    if (bf16 && kNativeBf16) {
      pack_pairs(geo.K, geo.H, geo.G, geo.W, blk0, blk1, [&](i64 k, i64 c) { return w.at(k, c); },
                 reinterpret_cast<bf16_t*>(out), w.gate_major ? nullptr : w.data, w.n);
      return;
    }
  pack_recurrent(w.data, w.gate_major, geo, out, blk0, blk1);
  if (bf16) round_packed_swapped(out + blk0 * geo.panel, blk1 - blk0, geo.panel, geo.K, geo.G * geo.W);
}

// out (MR × SW vectors) = A rows (MR × K, leading dimension lda) · panel columns (K × SW
// vectors; `stride` elements from one k to the next, which is also the row stride of out).
// The MR·SW accumulators live in registers (the loops over r and s are unrolled). With
// `resume`, the sums continue from the values in `out` (a later slice of K).
template <typename T, int SW, int MR>
inline void micro_kernel(const T* A, i64 lda, const T* panel, i64 stride, i64 K, T* out, bool resume) {
  using SV = Simd<T>;
  using V = typename SV::vec;
  constexpr int L = SV::lanes;
  V acc[MR][SW];
#pragma GCC unroll 32
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 32
    for (int s = 0; s < SW; ++s) acc[r][s] = resume ? SV::load(out + r * stride + s * L) : V{};
  for (i64 k = 0; k < K; ++k) {
    const T* wk = panel + k * stride;
    V w[SW];
#pragma GCC unroll 32
    for (int s = 0; s < SW; ++s) w[s] = SV::load(wk + s * L);
#pragma GCC unroll 32
    for (int r = 0; r < MR; ++r) {
      const V a = SV::broadcast(A[r * lda + k]);
#pragma GCC unroll 32
      for (int s = 0; s < SW; ++s) acc[r][s] += a * w[s];
    }
  }
#pragma GCC unroll 32
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 32
    for (int s = 0; s < SW; ++s) SV::store(out + r * stride + s * L, acc[r][s]);
}

// Rows per micro-kernel call when it spans all S vectors of a panel row (few rows left).
template <typename T, int S>
constexpr int rows_per_kernel() {
  constexpr int r = (kRegisters - S - 1) / S;
  return r < 1 ? 1 : (r > 8 ? 8 : r);
}

// The tall kernel for the bulk of the rows: 2 vectors wide, MR_TALL rows (12 accumulators
// of 16 registers, 24 of 32), so each broadcast of A feeds two FMAs and each panel load
// MR_TALL of them.
constexpr int kTallRows = kRegisters >= 32 ? 12 : 6;

template <typename T, int S, int MR>
void rows_kernel(const T* A, i64 lda, i64 rows, const T* panel, i64 K, T* tile, bool resume) {
  constexpr i64 stride = S * Simd<T>::lanes;
  i64 r = 0;
  for (; r + MR <= rows; r += MR) micro_kernel<T, S, MR>(A + r * lda, lda, panel, stride, K, tile + r * stride, resume);
  const i64 left = rows - r;
  if constexpr (MR > 1) {
    if (left > 0) {
      // The remaining rows, one kernel of the next smaller height at a time.
      rows_kernel<T, S, (MR > 1 ? MR - 1 : 1)>(A + r * lda, lda, left, panel, K, tile + r * stride, resume);
    }
  } else {
    (void)left;
  }
}

// All rows times one panel (S vectors wide). K is cut into slices that stay in L1 while
// every group of rows passes over them: the panel is read from L2 (or L3) once per
// product, not once per row group. The sums run over k in order, so the result does not
// depend on the slicing (nor on the kernel shapes).
// With `resume`, the sums continue from the tile's values (a product over more K).
template <typename T, int S>
void panel_product(const T* A, i64 lda, i64 rows, const T* panel, i64 K, T* tile, bool resume_all = false) {
  constexpr int L = Simd<T>::lanes;
  constexpr i64 stride = S * L;
  constexpr i64 slice = 16384 / (S * kVectorBytes);  // 16 KiB of panel per slice
  const i64 tall = rows / kTallRows * kTallRows;
  for (i64 k0 = 0; k0 < K; k0 += slice) {
    const i64 kn = std::min(slice, K - k0);
    const bool resume = resume_all || k0 > 0;
    const T* pk = panel + k0 * stride;
    for (i64 r = 0; r < tall; r += kTallRows) {
      int s = 0;
      for (; s + 2 <= S; s += 2)
        micro_kernel<T, 2, kTallRows>(A + r * lda + k0, lda, pk + s * L, stride, kn, tile + r * stride + s * L, resume);
      if (s < S)
        micro_kernel<T, 1, kTallRows>(A + r * lda + k0, lda, pk + s * L, stride, kn, tile + r * stride + s * L, resume);
    }
    if (tall < rows)
      rows_kernel<T, S, rows_per_kernel<T, S>()>(A + tall * lda + k0, lda, rows - tall, pk, kn, tile + tall * stride,
                                                 resume);
  }
}

template <typename T>
void scatter_tile(const PackedWeights<T>& p, i64 B, i64 blk, const T* tile, T* rec);

// tile (B × G·W) (+)= A (B × K, row stride lda) · the panel of block `blk` of the packed
// operand: with `resume`, the sums continue from the tile's values.
template <typename T>
void block_product(const PackedWeights<T>& p, const T* A, i64 lda, i64 B, i64 blk, T* tile, bool resume = false) {
  const T* panel = p.data + blk * p.panel;
  switch (p.G * p.U) {
    case 3: panel_product<T, 3>(A, lda, B, panel, p.K, tile, resume); break;
    default: panel_product<T, 4>(A, lda, B, panel, p.K, tile, resume); break;
  }
}

// rec[b, g·H + u] = Σ_k A[b, k] · M[k, g·H + u] for every row b < B and the units u of
// block `blk`, M being the packed operand and A (B × K) dense. `tile`: B · G · W scratch.
template <typename T>
void recurrent_block(const PackedWeights<T>& p, const T* A, i64 B, i64 blk, T* tile, T* rec) {
  block_product(p, A, p.K, B, blk, tile);
  scatter_tile(p, B, blk, tile, rec);
}

// Scatters the tile of block blk (B × G·W) into the gate layout of rec (B × G·H).
template <typename T>
void scatter_tile(const PackedWeights<T>& p, i64 B, i64 blk, const T* tile, T* rec) {
  const i64 u0 = blk * p.W, n = std::min<i64>(p.W, p.H - u0), GH = p.G * p.H;
  for (i64 b = 0; b < B; ++b)
    for (i64 g = 0; g < p.G; ++g) copy_units(rec + b * GH + g * p.H + u0, tile + (b * p.G + g) * p.W, n, p);
}

// The units [u0, u1) a thread owns: whole blocks, split evenly.
inline void thread_units(i64 blocks, i64 W, i64 H, int tid, int nth, i64& b0, i64& b1, i64& u0, i64& u1) {
  b0 = blocks * tid / nth;
  b1 = blocks * (tid + 1) / nth;
  u0 = std::min(H, b0 * W);
  u1 = std::min(H, b1 * W);
}

// The i-th of a thread's blocks [b0, b1) to read at a step: upwards, or downwards when
// `down`. The recurrences alternate from step to step, so the blocks read last are read
// first next time, while still in the core's L2; the order enters no sum.
inline i64 block_in_turn(i64 b0, i64 b1, i64 i, bool down) { return down ? b1 - 1 - i : b0 + i; }

// Runs body(tid, nth) on nt threads (an OpenMP team when nt > 1), or once on the caller.
template <class Body>
void run_on_threads(int nt, Body&& body) {
#ifdef _OPENMP
  if (nt > 1) {
#pragma omp parallel num_threads(nt)
    body(omp_get_thread_num(), omp_get_num_threads());
    return;
  }
#endif
  (void)nt;
  body(0, 1);
}

// The input side of a fused recurrence (ForwardPlan::fused): each step's product is
// x_t·w_x + h_{t-1}·w_h in one sum, so no T·B × G·H buffer of x·w_x is written and read
// back. x: T·B rows of I in the walk's row order; w_x: I × G·H. Absent: x null.
template <typename T>
struct StepInput {
  const T* x = nullptr;
  Weight<T> w_x;
};

// The rows of x of iterations [s0, s1), as the fused products read them, to rows s·B + i
// (i < the sequences active at s) of xr: the rows a step's product reads are then
// consecutive for any walk. bfloat16 products: as bfloat16 pairs (rows of pair_width(I),
// the pad 0) when `native`, else rounded with the pairs swapped (rows of I; bf16.h); else
// copied as they are.
template <typename T>
void walk_rows(const Walk& walk, const T* x, i64 I, bool bf16, bool native, T* xr, i64 s0, i64 s1) {
  for (i64 s = s0; s < s1; ++s) {
    const i64 n = walk.active_count(s, walk.B);
    for (i64 i = 0; i < n; ++i) {
      const i64 b = walk.slot(i);
      const T* src = x + walk.row(walk.time(s, b), b) * I;
      const i64 r = s * walk.B + i;
      if constexpr (std::is_same_v<T, float>)
        if (native) {
          const i64 ld = pair_width(I);
          bf16_t* dst = reinterpret_cast<bf16_t*>(xr) + r * ld;
          to_bf16(src, I, dst, ld, 1, 0, I);
          if (ld > I) dst[I] = 0;  // the panel's pad row is 0, but 0 times a stale NaN is NaN
          continue;
        }
      if (bf16)
        round_swapped(src, I, xr + r * I, 1, 0, I, I);
      else
        std::memcpy(xr + r * I, src, sizeof(T) * I);
    }
  }
}

// Runs the walk's steps of a recurrence whose state is h (B × H, in h_n on entry and exit).
// The state lives in slots (Walk::slot; with lengths the walk must be sorted by length),
// so the n sequences active at iteration s are the first n slots. Each step: rec = h_{t-1}·w_h
// (fused, `in.x` set: x_t·w_x + h_{t-1}·w_h) for those n rows and the calling thread's unit
// blocks, then step(s, n, u0, u1, h_prev, h_next, rec) applies the cell to units [u0, u1)
// of slots i < n (sequence walk.slot(i); h_prev, h_next and rec are indexed by slot). A
// slot that has just finished gets its state copied into the other buffer once; after that
// neither buffer changes it. One barrier per step (fused: the next step's x part runs
// between its two halves). Rows of a product do not depend on the other rows in it, so the
// results are the very bits of a product over all B rows.
// The plan's regions: product (w_h packed, the threads and their tiles), h_other, rec;
// fused: x_round (x's rows) and projection.packed (w_x).
template <typename T, class Step>
void run_recurrence(const ForwardPlan& plan, const Scratch& ws, const Walk& walk, const T* w_h, WeightLayout layout,
                    i64 H, T* h_n, const StepInput<T>& in, Step&& step) {
  const i64 B = walk.B, steps = walk.T;
  T* packed = ws.get<T>(plan.product.packed);
  // bfloat16 products: w_h rounded once; the product reads h_{t-1} rounded, from the
  // buffer of the step's parity (the threads write the other one for the next step). On
  // AVX512-BF16 (native) both as bfloat16 pairs (bf16_kernel.h), in the same regions.
  // Rounded rows are in slot order, like the state.
  const bool bf16 = plan.product.bf16;
  const bool native = bf16 && kNativeBf16 && std::is_same_v<T, float>;
  T* h_round = ws.get<T>(plan.h_round);
  auto* packed16 = reinterpret_cast<bf16_t*>(packed);
  auto* h16 = reinterpret_cast<bf16_t*>(h_round);
  const i64 lda16 = pair_width(H), G = plan.product.pack.G;
  const PackedWeights<T> p = packed_layout(plan.product.pack, packed);
  // fused: w_x packed like w_h (K = I), x's rows (rounded) in walk order
  const bool fused = in.x != nullptr;
  const i64 I = in.w_x.K, ldx = native ? pair_width(I) : I;
  T* packed_x = ws.get<T>(plan.projection.packed);
  const PackedWeights<T> px = packed_layout(plan.projection.pack, packed_x);
  T* xr = ws.get<T>(plan.x_round);
  auto* x16 = reinterpret_cast<bf16_t*>(xr);
  if (native) std::memset(h16, 0, sizeof(bf16_t) * 2 * B * lda16);
  const i64 panel16 = lda16 * G * p.W, panelx16 = ldx * G * p.W;
  T* h_other = ws.get<T>(plan.h_other);
  T* rec = ws.get<T>(plan.rec);
  const int nt = plan.product.threads;
  const i64 tile_size = plan.product.tile_stride;
  T* tiles = ws.get<T>(plan.product.tiles);
  T* first = h_n;
  T* second = h_other;
  if (walk.order) {  // the state into slot order
    for (i64 i = 0; i < B; ++i) std::memcpy(h_other + i * H, h_n + walk.order[i] * H, sizeof(T) * H);
    std::swap(first, second);
  }
  if constexpr (std::is_same_v<T, float>)  // bfloat16 products: h_0 rounded, in slot order
    if (native) to_bf16(first, H, h16, lda16, B, 0, H);
  if (h_round && !native) round_swapped(static_cast<const T*>(first), H, h_round, B, 0, H, H);
  T* final_h = first;
  StepBarrier barrier;
  auto body = [&](int tid, int nth) {
    i64 b0, b1, u0, u1;
    thread_units(p.blocks, p.W, H, tid, nth, b0, b1, u0, u1);
    T* tile = tiles + tid * tile_size;
    // Each thread packs the blocks it reads: no thread waits for a packing of all of w_h,
    // and no barrier is needed, as no thread reads another's blocks. x's rows are shared:
    // each thread writes a share of the steps, then all wait once.
    if (fused) {
      walk_rows(walk, in.x, I, bf16, native, xr, steps * tid / nth, steps * (tid + 1) / nth);
      pack_weight_blocks(in.w_x, plan.projection.pack, bf16, packed_x, b0, b1);
      if (nth > 1) barrier.wait(nth);
    }
    pack_weight_blocks(Weight<T>(w_h, H, G * H, layout), plan.product.pack, bf16, packed, b0, b1);
    // fused: each block has its own tile, holding x_t·w_x before the step (indexed by
    // block, not by thread: a team smaller than planned gives a thread more blocks)
    auto tile_of = [&](i64 blk) { return fused ? tiles + blk * B * G * p.W : tile; };
    auto input_part = [&](i64 s, i64 n) {
      for (i64 blk = b0; blk < b1; ++blk) {
        T* t = tile_of(blk);
        if (native)
          panel_product_bf16(x16 + s * B * ldx, ldx, n, reinterpret_cast<const bf16_t*>(px.data) + blk * panelx16,
                             G * p.U, I, reinterpret_cast<float*>(t));
        else
          block_product(px, static_cast<const T*>(xr + s * B * I), I, n, blk, t);
      }
    };
    if (fused && steps > 0) input_part(0, walk.active_count(0, B));
    T* cur = first;
    T* nxt = second;
    i64 before = B;  // slots active at the previous iteration
    for (i64 s = 0; s < steps; ++s) {
      const i64 n = walk.active_count(s, before);
      const T* operand = h_round ? h_round + (s & 1) * B * H : cur;
      for (i64 i = 0; i < b1 - b0; ++i) {
        const i64 blk = block_in_turn(b0, b1, i, s & 1);
        T* t = tile_of(blk);
        if (native)
          panel_product_bf16(h16 + (s & 1) * B * lda16, lda16, n, packed16 + blk * panel16, G * p.U, H,
                             reinterpret_cast<float*>(t), fused);
        else
          block_product(p, operand, H, n, blk, t, fused);
        scatter_tile(p, n, blk, t, rec);
      }
      step(s, n, u0, u1, static_cast<const T*>(cur), nxt, static_cast<const T*>(rec));
      for (i64 i = n; i < before; ++i) std::memcpy(nxt + i * H + u0, cur + i * H + u0, sizeof(T) * (u1 - u0));
      before = n;
      // the next step's operand: at most the n slots active now are read again
      if constexpr (std::is_same_v<T, float>)
        if (native) to_bf16(nxt, H, h16 + ((s + 1) & 1) * B * lda16, lda16, n, u0, u1);
      if (h_round && !native) round_swapped(static_cast<const T*>(nxt), H, h_round + ((s + 1) & 1) * B * H, n, u0, u1, H);
      // The next step's x_{t+1}·w_x needs no one's h: it runs while the others finish.
      const unsigned ticket = nth > 1 ? barrier.arrive(nth) : 0;
      if (fused && s + 1 < steps) input_part(s + 1, walk.active_count(s + 1, n));
      if (nth > 1) barrier.await(ticket);
      std::swap(cur, nxt);
    }
    if (tid == 0) final_h = cur;
  };
  run_on_threads(nt, body);
  if (walk.order) {  // back into the batch's order, through the buffer not holding it
    if (final_h == h_n) {
      std::memcpy(h_other, h_n, sizeof(T) * B * H);
      final_h = h_other;
    }
    for (i64 i = 0; i < B; ++i) std::memcpy(h_n + walk.order[i] * H, final_h + i * H, sizeof(T) * H);
  } else if (final_h != h_n) {
    std::memcpy(h_n, final_h, sizeof(T) * B * H);
  }
}

// The backward walk (iterations steps-1 down to 0) of a recurrence with carried gradient
// dh (B × H, in the batch's order, in place). Slots as in run_recurrence: at iteration s
// the first n slots are active. Each iteration: grad(s, n, u0, u1, da) fills, for the
// units [u0, u1) of slots i < n, the gate gradients da[i, g·H + j] and sets dh[b, j]
// (b = walk.slot(i)) to the part of dL/dh_{t-1} that bypasses w_h (0 for LSTM and RNN,
// dh⊙z for GRU); then dh[b, u] += (da·w_hᵀ)[i, u] for those slots. One barrier per
// iteration (da alternates between two buffers, so the next iteration may fill one while
// slower threads still read the other).
// The plan's regions: product (w_hᵀ packed, the threads and their tiles), da[2], prod.
template <typename T, class Grad>
void run_backward_recurrence(const BackwardPlan& plan, const Scratch& ws, const Walk& walk, const T* w_h,
                             WeightLayout layout, i64 H, T* dh, Grad&& grad) {
  const i64 B = walk.B;
  T* packed = ws.get<T>(plan.product.packed);
  // bfloat16 products: w_h rounded once, each step's da rounded by its threads (native:
  // both as bfloat16 pairs, da into the plan's da16, by iteration parity).
  const bool bf16 = plan.product.bf16;
  const bool native = bf16 && kNativeBf16 && std::is_same_v<T, float>;
  const i64 GH = plan.product.pack.K;
  auto* packed16 = reinterpret_cast<bf16_t*>(packed);
  T* da_round = ws.get<T>(plan.da16);  // float kernels: 2 × (B, G·H) da rounded, pairs swapped
  auto* da16 = reinterpret_cast<bf16_t*>(da_round);
  const i64 lda16 = pair_width(GH);
  const PackedWeights<T> p = packed_layout(plan.product.pack, packed);
  // each thread packs the blocks it reads (as in run_recurrence)
  auto pack = [&](i64 b0, i64 b1) {
    if constexpr (std::is_same_v<T, float>)
      if (native) {
        const Weight<T> w(w_h, H, GH, layout);  // gate_major: stored as w_hᵀ, row by row
        pack_pairs(GH, H, 1, p.W, b0, b1, [&](i64 k, i64 c) { return w.at(c, k); }, packed16,
                   w.gate_major ? w_h : nullptr, H);
        return;
      }
    pack_recurrent_transposed(w_h, layout == WeightLayout::gate_major, plan.product.pack, packed, b0, b1);
    if (bf16) round_packed_swapped(packed + b0 * p.panel, b1 - b0, p.panel, GH, p.W);  // VDPBF16PS's order
  };
  if (native) std::memset(da16, 0, sizeof(bf16_t) * 2 * B * lda16);
  const i64 panel16 = lda16 * p.W;
  T* da_buf[2] = {ws.get<T>(plan.da[0]), ws.get<T>(plan.da[1])};
  T* prod = ws.get<T>(plan.prod);
  const int nt = plan.product.threads;
  const i64 tile_size = plan.product.tile_stride;
  T* tiles = ws.get<T>(plan.product.tiles);
  StepBarrier barrier;
  auto body = [&](int tid, int nth) {
    i64 b0, b1, u0, u1;
    thread_units(p.blocks, p.W, H, tid, nth, b0, b1, u0, u1);
    T* tile = tiles + tid * tile_size;
    pack(b0, b1);
    i64 n = 0;
    for (i64 s = walk.T - 1; s >= 0; --s) {
      n = walk.active_count(s, n);
      T* da = da_buf[s & 1];
      grad(s, n, u0, u1, da);
      bf16_t* d16 = da16 + (s & 1) * B * lda16;
      if constexpr (std::is_same_v<T, float>)
        if (native)
          for (i64 g = 0; g < GH; g += H) to_bf16(da + g, GH, d16 + g, lda16, n, u0, u1);
      T* d_round = bf16 ? da_round + (s & 1) * B * GH : nullptr;
      if (bf16 && !native)
        for (i64 g = 0; g < GH; g += H) round_swapped(static_cast<const T*>(da), GH, d_round, n, g + u0, g + u1, GH);
      if (nth > 1) barrier.wait(nth);
      for (i64 i = 0; i < b1 - b0; ++i) {
        const i64 blk = block_in_turn(b0, b1, i, s & 1);
        if (native) {
          panel_product_bf16(d16, lda16, n, packed16 + blk * panel16, p.U, GH, reinterpret_cast<float*>(tile));
          scatter_tile(p, n, blk, tile, prod);
        } else {
          recurrent_block(p, static_cast<const T*>(bf16 ? d_round : da), n, blk, tile, prod);
        }
      }
      for (i64 i = 0; i < n; ++i) {
        T* d = dh + walk.slot(i) * H;
        const T* q = prod + i * H;
        LSTMCORE_SIMD
        for (i64 j = u0; j < u1; ++j) d[j] += q[j];
      }
    }
  };
  run_on_threads(nt, body);
}

}  // namespace LSTMCORE_ISA_NS
}  // namespace cpu
LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
