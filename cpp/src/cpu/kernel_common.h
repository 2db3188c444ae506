// Internal toolkit of the CPU kernels: the time walk, GEMMs on raw pointers, the step
// barrier and OpenMP helpers, each taking its thread count from the call's Context.
// Not installed.
#pragma once

#include <Eigen/Core>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <mutex>
#include <cstdint>
#include <cstring>

#include "common.h"
#include "lstmcore/recurrent.h"
#include "cpu/isa.h"
#include "cpu/math.h"
#include "cpu/threads.h"

#ifdef _OPENMP
#include <omp.h>
#endif

// Marks a loop whose iterations are independent, so the compiler vectorises it.
#if defined(_OPENMP) || defined(__clang__)
#define LSTMCORE_SIMD _Pragma("omp simd")
#else
#define LSTMCORE_SIMD
#endif

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN
namespace cpu {

using i64 = std::int64_t;

// Everything below is compiled once per instruction set (LSTMCORE_ISA_NS is avx512,
// avx2 or generic); the namespace keeps the variants' symbols apart.
namespace LSTMCORE_ISA_NS {

// Which time step (and which row of the row-ordered arrays) sequence b visits at
// iteration s of the recurrence. Iteration s of a forward walk is step s; of a
// reverse walk, step len_b - 1 - s. Sequence b is active while s < len_b.
struct Walk {
  i64 T, B;
  bool reverse, batch_first;
  const i64* lengths;  // (B) or nullptr (all T)
  // With lengths, after sort_by_length: the sequences by length, longest first (slot i
  // holds sequence order[i]), so the sequences active at any iteration are the first
  // slots: the packed recurrences run their products and cells on those rows only.
  const i64* order = nullptr;

  Walk(const Dims& d, const SequenceOptions& o)
      : T(d.steps), B(d.batch), reverse(o.reverse), batch_first(o.batch_first), lengths(o.seq_lengths) {}

  // Fills `buf` (B) with the order above and keeps it; nothing to do without lengths (the
  // slots are then the batch's rows). No allocation: std::sort works in place.
  void sort_by_length(i64* buf) {
    if (!lengths) return;
    for (i64 b = 0; b < B; ++b) buf[b] = b;
    const i64* len = lengths;
    std::sort(buf, buf + B, [len](i64 a, i64 b) { return len[a] != len[b] ? len[a] > len[b] : a < b; });
    order = buf;
  }
  i64 slot(i64 i) const { return order ? order[i] : i; }
  // The number of sequences active at iteration s (s >= 0), given the count `n` at a
  // neighbouring iteration: the first slots, moving from n.
  i64 active_count(i64 s, i64 n) const {
    if (!order) return B;
    while (n > 0 && lengths[order[n - 1]] <= s) --n;
    while (n < B && lengths[order[n]] > s) ++n;
    return n;
  }

  i64 length(i64 b) const { return lengths ? lengths[b] : T; }
  // Whether row r of a row-ordered array is within its sequence's length.
  bool row_active(i64 r) const {
    const i64 t = batch_first ? r % T : r / B, b = batch_first ? r / T : r % B;
    return t < length(b);
  }
  // The number of such rows.
  i64 active_rows() const {
    if (!lengths) return T * B;
    i64 n = 0;
    for (i64 b = 0; b < B; ++b) n += std::min(lengths[b], T);
    return n;
  }
  // Copies the rows within the lengths of a row-ordered array (`width` elements, stride
  // lds) to consecutive rows of dst (stride ldd), in row order. dst may be src (ldd = lds):
  // row c comes from a row r >= c, so no copy overwrites a row still to come.
  template <typename T_>
  void gather_active(const T_* src, i64 lds, i64 width, T_* dst, i64 ldd) const {
    i64 c = 0;
    for (i64 r = 0; r < T * B; ++r) {
      if (!row_active(r)) continue;
      if (dst + c * ldd != src + r * lds) std::memcpy(dst + c * ldd, src + r * lds, sizeof(T_) * width);
      ++c;
    }
  }
  bool active(i64 s, i64 b) const { return s < length(b); }
  i64 time(i64 s, i64 b) const { return reverse ? length(b) - 1 - s : s; }
  // The step whose state feeds iteration s, or -1 when the initial state does.
  i64 prev_time(i64 s, i64 b) const { return s == 0 ? -1 : (reverse ? length(b) - s : s - 1); }
  i64 row(i64 t, i64 b) const { return batch_first ? b * T + t : t * B + b; }

  // Sets the rows of steps past each sequence's length to zero in a buffer of
  // row-ordered vectors of `width` elements, `ld` apart (default: width).
  template <typename T_>
  void zero_padding(T_* data, i64 width, i64 ld = 0) const {
    if (!lengths) return;
    const i64 stride = ld > 0 ? ld : width;
    for (i64 b = 0; b < B; ++b)
      for (i64 t = lengths[b]; t < T; ++t) std::memset(data + row(t, b) * stride, 0, sizeof(T_) * width);
  }
};

// Eigen takes its GEMM thread count from the calling thread's OpenMP setting
// (omp_get_max_threads(), a per-thread value: concurrent callers do not race); this sets
// it, for one product, to the call's rule (threads.h gemm_threads) and restores it.
class GemmThreads {
 public:
  GemmThreads(const Context& c, double work) {
#ifdef _OPENMP
    const int want = gemm_threads(c, work);
    saved_ = omp_get_max_threads();
    if (want != saved_) omp_set_num_threads(want);
    else saved_ = 0;
#else
    (void)c;
    (void)work;
#endif
  }
  ~GemmThreads() {
#ifdef _OPENMP
    if (saved_ > 0) omp_set_num_threads(saved_);
#endif
  }
  GemmThreads(const GemmThreads&) = delete;
  GemmThreads& operator=(const GemmThreads&) = delete;

 private:
  int saved_ = 0;
};

// C (m × n, leading dimension ldc) = [C +] op(A) · op(B), row-major operands.
// op(A) is m × k: A is stored m × k (lda) or, transposed, k × m (lda). Same for B.
template <typename T>
void gemm(const Context& ctx, bool trans_a, bool trans_b, i64 m, i64 n, i64 k, const T* A, i64 lda, const T* B,
          i64 ldb, bool accumulate, T* C, i64 ldc) {
  using Mat = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using In = Eigen::Map<const Mat, 0, Eigen::OuterStride<>>;
  using Out = Eigen::Map<Mat, 0, Eigen::OuterStride<>>;
  Out c(C, m, n, Eigen::OuterStride<>(ldc));
  if (m == 0 || n == 0) return;
  if (k == 0) {
    if (!accumulate) c.setZero();
    return;
  }
  const GemmThreads threads(ctx, static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k));
  In a(A, trans_a ? k : m, trans_a ? m : k, Eigen::OuterStride<>(lda));
  In b(B, trans_b ? n : k, trans_b ? k : n, Eigen::OuterStride<>(ldb));
  auto run = [&](const auto& lhs, const auto& rhs) {
    if (accumulate)
      c.noalias() += lhs * rhs;
    else
      c.noalias() = lhs * rhs;
  };
  if (trans_a && trans_b) run(a.transpose(), b.transpose());
  else if (trans_a) run(a.transpose(), b);
  else if (trans_b) run(a, b.transpose());
  else run(a, b);
}

// out[j] (+)= Σ_r data[r·ld + j] over r < rows, j < width.
template <typename T>
void column_sums(const T* data, i64 rows, i64 width, i64 ld, T* out, bool accumulate = false) {
  if (!accumulate) std::memset(out, 0, sizeof(T) * width);
  for (i64 r = 0; r < rows; ++r) {
    const T* src = data + r * ld;
    for (i64 j = 0; j < width; ++j) out[j] += src[j];
  }
}

// The barrier between the steps of a recurrence. It spins for a short while (a step's
// threads normally arrive within microseconds of each other), then sleeps on a condition
// variable. OpenMP's barrier spins far longer (libgomp: ~300k pause instructions, several
// milliseconds) before it sleeps; on a machine whose cores are busy with other work the
// thread that waits then burns the very time slice its partner needs, and a recurrence
// of T steps slows down by T such slices. wait(team) takes the team's size from the caller:
// an OpenMP team may have fewer threads than were asked for (nested regions, limits).
//
// wait() also comes in two halves: arrive() marks this thread's part of the step done and
// returns a ticket; await(ticket) returns once every thread of the team has arrived. Work
// between the two (which must not read what the others write before they arrive) fills
// the time the thread would otherwise spin while a slower one finishes.
class StepBarrier {
 public:
  void wait(int team) { await(arrive(team)); }

  unsigned arrive(int team) {
    const unsigned gen = generation_.load(std::memory_order_acquire);
    if (arrived_.fetch_add(1, std::memory_order_acq_rel) == team - 1) {
      arrived_.store(0, std::memory_order_relaxed);
      generation_.fetch_add(1, std::memory_order_seq_cst);
      if (sleepers_.load(std::memory_order_seq_cst) > 0) {
        std::lock_guard<std::mutex> lock(mutex_);
        wake_.notify_all();
      }
    }
    return gen;
  }

  void await(unsigned gen) {
    if (generation_.load(std::memory_order_acquire) != gen) return;
    const auto start = std::chrono::steady_clock::now();
    for (unsigned i = 1;; ++i) {
      if (generation_.load(std::memory_order_acquire) != gen) return;
      relax();
      if ((i & 63) == 0 && std::chrono::steady_clock::now() - start > std::chrono::microseconds(kSpinMicros)) break;
    }
    std::unique_lock<std::mutex> lock(mutex_);
    sleepers_.fetch_add(1, std::memory_order_seq_cst);
    wake_.wait(lock, [&] { return generation_.load(std::memory_order_seq_cst) != gen; });
    sleepers_.fetch_sub(1, std::memory_order_relaxed);
  }

 private:
  static constexpr int kSpinMicros = 50;
  static void relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }
  std::atomic<int> arrived_{0};
  std::atomic<unsigned> generation_{0};
  std::atomic<int> sleepers_{0};
  std::mutex mutex_;
  std::condition_variable wake_;
};

// Copies n elements, or writes zeros when src is null (an absent optional input).
template <typename T>
void copy_or_zero(T* dst, const T* src, i64 n) {
  if (src == dst) return;
  if (src)
    std::memmove(dst, src, sizeof(T) * n);
  else
    std::memset(dst, 0, sizeof(T) * n);
}

using detail::Weight;  // a weight in either layout (common.h)

// C (m × cols) [+]= A (m × K, lda) · M[:, c : c + cols]
template <typename T>
void times_weight(const Context& ctx, i64 m, const T* A, i64 lda, const Weight<T>& w, i64 c, i64 cols,
                  bool accumulate, T* C, i64 ldc) {
  gemm<T>(ctx, false, w.gate_major, m, cols, w.K, A, lda, w.col(c), w.ld(), accumulate, C, ldc);
}

// C (m × K) [+]= A (m × cols, lda) · M[:, c : c + cols]ᵀ
template <typename T>
void times_weight_t(const Context& ctx, i64 m, const T* A, i64 lda, const Weight<T>& w, i64 c, i64 cols,
                    bool accumulate, T* C, i64 ldc) {
  gemm<T>(ctx, false, !w.gate_major, m, w.K, cols, A, lda, w.col(c), w.ld(), accumulate, C, ldc);
}

// The gradient of a weight from its product's two sides, written in the weight's layout:
// dM[:, c : c + cols] = leftᵀ·right, left (N × K, ld_left), right (N × cols, ld_right);
// gate_major writes its transpose rightᵀ·left into rows c.. of the (n × K) gradient.
template <typename T>
void weight_gradient(const Context& ctx, const Weight<T>& w, T* dw, i64 N, const T* left, i64 ld_left,
                     const T* right, i64 ld_right, i64 c, i64 cols) {
  T* out = w.gate_major ? dw + c * w.K : dw + c;  // the gradient is stored as its weight
  if (w.gate_major)
    gemm<T>(ctx, true, false, cols, w.K, N, right, ld_right, left, ld_left, false, out, w.K);
  else
    gemm<T>(ctx, true, false, w.K, cols, N, left, ld_left, right, ld_right, false, out, w.n);
}

// x·w_x plus a bias row for all T·B rows in one GEMM: out (N, GH), row stride ld. The
// bias rows are written first and the product accumulated onto them (one pass over out,
// not three).
template <typename T>
void project_inputs(const Context& ctx, const T* x, const Weight<T>& w_x, const T* bias, i64 rows, T* out, i64 ld) {
  if (bias)
    for (i64 r = 0; r < rows; ++r) std::memcpy(out + r * ld, bias, sizeof(T) * w_x.n);
  times_weight(ctx, rows, x, w_x.K, w_x, 0, w_x.n, bias != nullptr, out, ld);
}

// project_inputs for the rows within each sequence's length only, when the walk has
// lengths: rows past a length are set to zero and cost no product. The active rows of x
// are gathered, in row order, at the front of out; their product goes to out's last
// `active` rows; then each row moves to its place, in row order. Product row c never lies
// before its place r(c) (at most N − 1 − r(c) rows follow r(c), N_act − 1 − c of them
// active), so no move overwrites a row still to move. Returns false, having done nothing,
// when no row is padding or the gathered x could reach the product's rows.
template <typename T>
bool project_active_rows(const Context& ctx, const Walk& walk, const T* x, const Weight<T>& w_x, const T* bias,
                         i64 rows, T* out, i64 ld) {
  if (!walk.lengths) return false;
  const i64 I = w_x.K, active = walk.active_rows();
  // (the test takes the rows as w_x.n wide, not ld: a call decides alike whatever out's
  // row stride, so inference and training give the same bits)
  if (active >= rows || active * I > (rows - active) * w_x.n) return false;
  walk.gather_active(x, I, I, out, I);
  T* product = out + (rows - active) * ld;
  project_inputs(ctx, static_cast<const T*>(out), w_x, bias, active, product, ld);
  i64 c = 0;
  for (i64 r = 0; r < rows; ++r) {
    if (!walk.row_active(r)) continue;
    const T* src = product + (c++) * ld;
    if (src != out + r * ld) std::memcpy(out + r * ld, src, sizeof(T) * w_x.n);
  }
  walk.zero_padding(out, w_x.n, ld);
  return true;
}

// Runs f(b) for b in [0, B), split over threads when the pass is large enough.
template <class F>
void for_batch(const Context& ctx, i64 B, i64 work, F&& f) {
#ifdef _OPENMP
  const int nt = B > 1 ? threads_for(ctx, work) : 1;
  if (nt > 1) {
#pragma omp parallel for num_threads(nt) schedule(static)
    for (i64 b = 0; b < B; ++b) f(b);
    return;
  }
#else
  (void)ctx;
  (void)work;
#endif
  for (i64 b = 0; b < B; ++b) f(b);
}

}  // namespace LSTMCORE_ISA_NS
}  // namespace cpu
LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore

