// Internal toolkit of the CUDA backend: the call's context (device, stream, cuBLAS
// handle), errors, the per-call workspace, row-major GEMMs on cuBLAS, the time walk on
// the device, the activations, and the cell entry points. Not installed.
//
// cuBLAS is column-major and this library is row-major. A row-major m × n matrix with
// leading dimension ld is, read column-major, its n × m transpose with the same ld. So
// the row-major product C = op(A)·op(B) is computed as the column-major Cᵀ = op(B)ᵀ·op(A)ᵀ:
// the operands swap places, keep their own transpose flags and leading dimensions
// (gemm() below does this once; every caller speaks row-major, like cpu::gemm).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#if defined(__CUDACC__)
#include <cooperative_groups.h>
#endif

#include <algorithm>
#include <cstdint>
#include <string>

#include "common.h"
#include "lstmcore/cuda.h"

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN
namespace cuda {
namespace backend {

using i64 = std::int64_t;
using detail::Weight;  // a weight in either layout (common.h)

// ---- errors --------------------------------------------------------------------------

// Throws cuda::Error "<call>: <CUDA's message> (<error name>)" unless status is success.
void check_cuda(cudaError_t status, const char* call);
void check_blas(cublasStatus_t status, const char* call);

#define LSTMCORE_CUDA_CHECK(call) ::lstmcore::cuda::backend::check_cuda((call), #call)
#define LSTMCORE_CUBLAS_CHECK(call) ::lstmcore::cuda::backend::check_blas((call), #call)
// After a kernel launch: a bad configuration (or an earlier asynchronous failure) is
// reported here rather than at some later call.
#define LSTMCORE_CUDA_LAUNCHED(name) ::lstmcore::cuda::backend::check_cuda(cudaGetLastError(), name)

// ---- the call's context --------------------------------------------------------------

struct Context {
  int device = 0;
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;  // this thread's handle for `device`, bound to `stream`
  int persistent_batch = 0;       // DeviceOptions::persistent_batch
};

// ---- workspace: one device allocation per call ----------------------------------------

template <typename U>
struct Slot {
  std::size_t offset = 0;
};

// Regions are reserved first (reserve), then allocated together (allocate), stream-
// ordered where the device has memory pools (cudaMallocAsync / cudaFreeAsync on the
// call's stream), else with cudaMalloc / cudaFree. Each region starts on 256 bytes.
class Workspace {
 public:
  Workspace() = default;
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  ~Workspace();

  template <typename U>
  Slot<U> reserve(i64 count) {
    const std::size_t offset = (bytes_ + 255) / 256 * 256;
    bytes_ = offset + static_cast<std::size_t>(count) * sizeof(U);
    return Slot<U>{offset};
  }
  void allocate(const Context& ctx);
  template <typename U>
  U* get(Slot<U> s) const {
    return reinterpret_cast<U*>(static_cast<char*>(base_) + s.offset);
  }

 private:
  std::size_t bytes_ = 0;
  void* base_ = nullptr;
  cudaStream_t stream_ = nullptr;
  bool stream_ordered_ = false;
};

// ---- the time walk on the device (the CPU's cpu::Walk, see cpu/kernel_common.h) --------

struct Walk {
  i64 T = 0, B = 0;
  bool reverse = false, batch_first = false;
  const i64* lengths = nullptr;  // device copy of seq_lengths (B), or nullptr (all T)

  __device__ i64 length(i64 b) const { return lengths ? lengths[b] : T; }
  __device__ bool active(i64 s, i64 b) const { return s < length(b); }
  // The step sequence b visits at iteration s.
  __device__ i64 time(i64 s, i64 b) const { return reverse ? length(b) - 1 - s : s; }
  // The step whose state feeds iteration s, or -1 for the initial state.
  __device__ i64 prev_time(i64 s, i64 b) const { return s == 0 ? -1 : (reverse ? length(b) - s : s - 1); }
  __device__ i64 row(i64 t, i64 b) const { return batch_first ? b * T + t : t * B + b; }
};

// Reserves room for the lengths (when there are any); after allocate, make_walk copies
// the host lengths there.
Slot<i64> reserve_lengths(Workspace& ws, const Dims& d, const SequenceOptions& o);
Walk make_walk(const Context& ctx, const Dims& d, const SequenceOptions& o, const Workspace& ws, Slot<i64> lengths);

// ---- activations: CUDA's accurate functions, never the fast-math intrinsics ----------

__device__ inline float exp_of(float x) { return expf(x); }
__device__ inline double exp_of(double x) { return exp(x); }
__device__ inline float tanh_of(float x) { return tanhf(x); }
__device__ inline double tanh_of(double x) { return tanh(x); }

// σ(x) = 1 / (1 + e^−x) for x >= 0, e^x / (1 + e^x) below: e^−|x| never overflows.
template <typename T>
__device__ inline T sigmoid(T x) {
  const T e = exp_of(x < T(0) ? x : -x);
  return (x < T(0) ? e : T(1)) / (T(1) + e);
}

// ---- launches -------------------------------------------------------------------------

constexpr int kThreads = 256;

inline unsigned blocks_for(i64 n) {
  const i64 b = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(b < 1 ? 1 : (b > 0x7fffffff ? 0x7fffffff : b));
}

// Runs kernel(args...) on `stream` with enough blocks for n elements (the kernels' grid-
// stride loops cover any n) and reports a failed launch. The emulated CUDA runtime of the
// tests (tests/cpp/cuda_emulation/) defines LSTMCORE_KERNEL_CALL to call the kernel on the host.
#ifndef LSTMCORE_KERNEL_CALL
#define LSTMCORE_KERNEL_CALL(kernel, n, stream, ...) \
  kernel<<<::lstmcore::cuda::backend::blocks_for(n), ::lstmcore::cuda::backend::kThreads, 0, (stream)>>>(__VA_ARGS__)
#endif
#define LSTMCORE_RUN(kernel, n, stream, ...)                \
  do {                                                      \
    LSTMCORE_KERNEL_CALL(kernel, n, stream, __VA_ARGS__);   \
    LSTMCORE_CUDA_LAUNCHED(#kernel);                        \
  } while (0)

// Grid-stride loop over [0, n).
#define LSTMCORE_FOR_EACH(idx, n)                                                        \
  for (::lstmcore::cuda::backend::i64 idx = blockIdx.x * static_cast<::lstmcore::cuda::backend::i64>(blockDim.x) + \
                                            threadIdx.x;                                 \
       idx < (n); idx += static_cast<::lstmcore::cuda::backend::i64>(blockDim.x) * gridDim.x)

// ---- persistent kernels: a whole time loop in one launch ------------------------------
//
// With a small batch, one step's arithmetic takes less time than launching its GEMM and
// its elementwise kernel. A persistent kernel is launched once, cooperatively (every block
// resident), and walks all steps itself: each thread computes the recurrent dot products
// of its (row, unit) from w_h and h_{t-1} (RecProduct below; backward: back_product),
// applies the cell, and the grid meets at a grid-wide barrier before the next step reads
// what the others wrote.

#ifndef LSTMCORE_GRID_SYNC
#define LSTMCORE_GRID_SYNC() ::cooperative_groups::this_grid().sync()
#endif
#ifndef LSTMCORE_PERSISTENT_CALL
#define LSTMCORE_PERSISTENT_CALL(kernel, blocks, stream, ...) \
  ::lstmcore::cuda::backend::launch_cooperative(kernel, blocks, stream, __VA_ARGS__)
#endif

#if defined(__CUDACC__)
template <class X>
struct same_type {
  using type = X;
};
// kernel<<<blocks, kThreads>>>(args...) as a cooperative launch (the grid may synchronise).
template <typename... A>
void launch_cooperative(void (*kernel)(A...), unsigned blocks, cudaStream_t stream,
                        typename same_type<A>::type... args) {
  void* ptrs[] = {static_cast<void*>(&args)...};
  check_cuda(cudaLaunchCooperativeKernel(reinterpret_cast<const void*>(kernel), dim3(blocks), dim3(kThreads), ptrs,
                                         0, stream),
             "cudaLaunchCooperativeKernel");
}
#endif

// Blocks for a persistent launch of `kernel` over n (row, unit) pairs: no more than can be
// resident at once (grid-stride loops cover the rest); 0 when the batch is above the
// context's persistent_batch or the device cannot launch cooperatively.
template <class Kernel>
unsigned persistent_blocks(const Context& ctx, Kernel kernel, i64 batch, i64 n) {
  if (batch > ctx.persistent_batch) return 0;
  int cooperative = 0, sms = 0, per_sm = 0;
  LSTMCORE_CUDA_CHECK(cudaDeviceGetAttribute(&cooperative, cudaDevAttrCooperativeLaunch, ctx.device));
  if (!cooperative) return 0;
  LSTMCORE_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, ctx.device));
  LSTMCORE_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, 0));
  const i64 most = static_cast<i64>(per_sm) * sms;
  return most <= 0 ? 0u : static_cast<unsigned>(std::min<i64>(blocks_for(n), most));
}

// Where a step finds rec[b, col] = (h_{t-1}·w_h)[b, col]: in the buffer a GEMM filled
// (RecBuffer, the per-step path), or as a dot product the thread computes (RecProduct,
// the persistent kernels; h is (B, K), w_h the K × width weight in either layout).
template <typename T>
struct RecBuffer {
  const T* rec;
  i64 width;
  __device__ T operator()(i64 b, i64 col) const { return rec[b * width + col]; }
};

template <typename T>
struct RecProduct {
  Weight<T> w_h;
  const T* h;
  __device__ T operator()(i64 b, i64 col) const {
    const T* hb = h + b * w_h.K;
    T sum = T(0);
    for (i64 k = 0; k < w_h.K; ++k) sum += hb[k] * w_h.at(k, col);
    return sum;
  }
};

// The recurrent side of backward for one (row b, unit j): (da·w_hᵀ)[b, j] =
// Σ_col da[b, col]·w_h[j, col], da being (B, width) and w_h (H, width) in either layout.
template <typename T>
__device__ inline T back_product(const Weight<T>& w_h, const T* da, i64 b, i64 j, i64 width) {
  const T* db = da + b * width;
  T sum = T(0);
  for (i64 col = 0; col < width; ++col) sum += db[col] * w_h.at(j, col);
  return sum;
}

// Every forward step in one launch. unit(s, idx, rec, h_prev, h_next) is a cell's step
// for the (row, unit) pair idx = b·H + j; h alternates between h_a (h0 on entry) and h_b,
// so after T steps it is in h_a for even T, in h_b for odd T.
template <typename T, class Unit>
__global__ void forward_persistent(Walk w, i64 H, Weight<T> w_h, T* h_a, T* h_b, Unit unit) {
  T* cur = h_a;
  T* next = h_b;
  for (i64 s = 0; s < w.T; ++s) {
    const RecProduct<T> rec{w_h, cur};
    LSTMCORE_FOR_EACH(idx, w.B * H) unit(s, idx, rec, cur, next);
    LSTMCORE_GRID_SYNC();
    T* t = cur;
    cur = next;
    next = t;
  }
}

// Every backward iteration (s = T-1 down to 0) in one launch. unit(s, idx, da) is a cell's
// gradient step for the pair idx: it reads the carried dh[idx], writes its gate gradients
// into da (B, width) and resets dh[idx] to the part that bypasses w_h; the part through w_h,
// da·w_hᵀ, is added at the start of the next iteration (and once after the last), from the
// other of the two da buffers, which the grid barrier has made complete.
template <typename T, class Unit>
__global__ void backward_persistent(Walk w, i64 H, Weight<T> w_h, T* dh, T* da_a, T* da_b, Unit unit) {
  const i64 width = w_h.n;
  T* cur = da_a;
  T* done = da_b;  // the previous iteration's gradients
  for (i64 s = w.T - 1; s >= 0; --s) {
    LSTMCORE_FOR_EACH(idx, w.B * H) {
      if (s < w.T - 1) dh[idx] += back_product(w_h, done, idx / H, idx % H, width);
      unit(s, idx, cur);
    }
    LSTMCORE_GRID_SYNC();
    T* t = cur;
    cur = done;
    done = t;
  }
  LSTMCORE_FOR_EACH(idx, w.B * H) dh[idx] += back_product(w_h, done, idx / H, idx % H, width);
}

// ---- row-major linear algebra and small passes (blas.cu) -----------------------------

// C (m × n, ldc) = op(A)·op(B) + beta·C, row-major; op(A) is m × k (A stored m × k, or
// k × m when trans_a), op(B) is k × n (B stored k × n, or n × k when trans_b).
template <typename T>
void gemm(const Context& ctx, bool trans_a, bool trans_b, i64 m, i64 n, i64 k, const T* A, i64 lda, const T* B,
          i64 ldb, T beta, T* C, i64 ldc);

// out[j] = Σ_r data[r·ld + j] for j < width, r < rows (a GEMV with a vector of ones).
template <typename T>
void column_sums(const Context& ctx, const T* data, i64 rows, i64 width, i64 ld, const T* ones, T* out);

// C (m × cols) = A (m × K, lda) · M[:, c : c + cols] + beta·C, M the weight w.
template <typename T>
void times_weight(const Context& ctx, i64 m, const T* A, i64 lda, const Weight<T>& w, i64 c, i64 cols, T beta, T* C,
                  i64 ldc) {
  gemm<T>(ctx, false, w.gate_major, m, cols, w.K, A, lda, w.col(c), w.ld(), beta, C, ldc);
}

// C (m × K) = A (m × cols, lda) · M[:, c : c + cols]ᵀ + beta·C.
template <typename T>
void times_weight_t(const Context& ctx, i64 m, const T* A, i64 lda, const Weight<T>& w, i64 c, i64 cols, T beta,
                    T* C, i64 ldc) {
  gemm<T>(ctx, false, !w.gate_major, m, w.K, cols, A, lda, w.col(c), w.ld(), beta, C, ldc);
}

// The gradient of the weight w, columns c .. c + cols: dM = leftᵀ·right (left N × K, right
// N × cols), written in w's layout (gate_major: rightᵀ·left into rows c.. of dw).
template <typename T>
void weight_gradient(const Context& ctx, const Weight<T>& w, T* dw, i64 N, const T* left, i64 ld_left,
                     const T* right, i64 ld_right, i64 c, i64 cols) {
  if (w.gate_major)
    gemm<T>(ctx, true, false, cols, w.K, N, right, ld_right, left, ld_left, T(0), dw + c * w.K, w.K);
  else
    gemm<T>(ctx, true, false, w.K, cols, N, left, ld_left, right, ld_right, T(0), dw + c, w.n);
}

// What every cell's backward ends with, from the gate gradients da (N rows of `width`):
// dx = da·w_xᵀ (N × I), dw_x = xᵀ·da (in w_x's layout) and, when db is given, db = Σ_rows da
// (ones: N ones, filled when db is given).
template <typename T>
void input_gradients(const Context& ctx, i64 N, const T* da, const T* x, const Weight<T>& w_x, T* dx, T* dw_x, T* db,
                     const T* ones) {
  times_weight_t(ctx, N, da, w_x.n, w_x, 0, w_x.n, T(0), dx, w_x.K);  // dx = da·w_xᵀ
  weight_gradient(ctx, w_x, dw_x, N, x, w_x.K, da, w_x.n, 0, w_x.n);  // dw_x = xᵀ·da
  if (db) column_sums(ctx, da, N, w_x.n, w_x.n, ones, db);
}

// dst = src (n elements, device to device), or zeros when src is nullptr.
template <typename T>
void copy_or_zero(const Context& ctx, T* dst, const T* src, i64 n);

// data[i] = value for i < n.
template <typename T>
void fill(const Context& ctx, T* data, i64 n, T value);

// Zeros the rows of steps past each sequence's length in a row-ordered buffer of
// `width` features (nothing to do without lengths).
template <typename T>
void zero_padding(const Context& ctx, const Walk& walk, T* data, i64 width);

// out[j] = b[j] + b_h[j] (b_h only for j < limit; either may be nullptr) for j < width.
// Returns out, or nullptr when both are absent (no bias to add).
template <typename T>
const T* combine_bias(const Context& ctx, const T* b, const T* b_h, i64 width, i64 limit, T* out);

// ---- the cells (lstm.cu, gru.cu, rnn.cu) ----------------------------------------------

template <typename T>
void lstm_forward(const Context& ctx, const Dims& d, const SequenceOptions& o, const ForwardArgs<T>& a);
template <typename T>
void lstm_backward(const Context& ctx, const Dims& d, const SequenceOptions& o, const BackwardArgs<T>& a);
template <typename T>
void gru_forward(const Context& ctx, bool reset_after, const Dims& d, const SequenceOptions& o,
                 const ForwardArgs<T>& a);
template <typename T>
void gru_backward(const Context& ctx, bool reset_after, const Dims& d, const SequenceOptions& o,
                  const BackwardArgs<T>& a);
template <typename T>
void rnn_forward(const Context& ctx, bool relu, const Dims& d, const SequenceOptions& o, const ForwardArgs<T>& a);
template <typename T>
void rnn_backward(const Context& ctx, bool relu, const Dims& d, const SequenceOptions& o, const BackwardArgs<T>& a);

// One layer of the cell `spec` names, on the call's context (runtime.cu).
template <typename T>
void run_forward(const Context& ctx, const CellSpec& spec, const Dims& d, const SequenceOptions& o,
                 const ForwardArgs<T>& a);
template <typename T>
void run_backward(const Context& ctx, const CellSpec& spec, const Dims& d, const SequenceOptions& o,
                  const BackwardArgs<T>& a);

// ---- layer stacks (stack.cu) ----------------------------------------------------------

template <typename T>
void stack_forward_on(const Context& ctx, const StackSpec& s, const Dims& d, const SequenceOptions& o,
                      const StackForwardArgs<T>& a);
template <typename T>
void stack_backward_on(const Context& ctx, const StackSpec& s, const Dims& d, const SequenceOptions& o,
                       const StackBackwardArgs<T>& a);

}  // namespace backend
}  // namespace cuda
LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
