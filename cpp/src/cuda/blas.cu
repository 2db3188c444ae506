// Row-major GEMMs on cuBLAS and the small elementwise passes every cell shares.
#include <climits>
#include <string>

#include "cuda/common.cuh"

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN
namespace cuda {
namespace backend {

namespace {

// cuBLAS takes 32-bit sizes.
int blas_int(i64 v, const char* what) {
  if (v > INT_MAX)
    throw InvalidArgument(std::string(what) + ": " + std::to_string(v) + " exceeds the 32-bit sizes of cuBLAS");
  return static_cast<int>(v);
}

cublasOperation_t op(bool trans) { return trans ? CUBLAS_OP_T : CUBLAS_OP_N; }

cublasStatus_t gemm_call(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                         const float* alpha, const float* A, int lda, const float* B, int ldb, const float* beta,
                         float* C, int ldc) {
  return cublasSgemm(h, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}
cublasStatus_t gemm_call(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                         const double* alpha, const double* A, int lda, const double* B, int ldb,
                         const double* beta, double* C, int ldc) {
  return cublasDgemm(h, ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}
cublasStatus_t gemv_call(cublasHandle_t h, int m, int n, const float* alpha, const float* A, int lda,
                         const float* x, const float* beta, float* y) {
  return cublasSgemv(h, CUBLAS_OP_N, m, n, alpha, A, lda, x, 1, beta, y, 1);
}
cublasStatus_t gemv_call(cublasHandle_t h, int m, int n, const double* alpha, const double* A, int lda,
                         const double* x, const double* beta, double* y) {
  return cublasDgemv(h, CUBLAS_OP_N, m, n, alpha, A, lda, x, 1, beta, y, 1);
}

template <typename T>
__global__ void fill_kernel(T* data, i64 n, T value) {
  LSTMCORE_FOR_EACH(i, n) data[i] = value;
}

template <typename T>
__global__ void zero_padding_kernel(Walk w, T* data, i64 width) {
  LSTMCORE_FOR_EACH(i, w.T * w.B * width) {
    const i64 r = i / width;
    const i64 t = w.batch_first ? r % w.T : r / w.B;
    const i64 b = w.batch_first ? r / w.T : r % w.B;
    if (t >= w.length(b)) data[i] = T(0);
  }
}

template <typename T>
__global__ void combine_bias_kernel(const T* b, const T* b_h, i64 width, i64 limit, T* out) {
  LSTMCORE_FOR_EACH(j, width) out[j] = (b ? b[j] : T(0)) + (b_h && j < limit ? b_h[j] : T(0));
}

}  // namespace

template <typename T>
void gemm(const Context& ctx, bool trans_a, bool trans_b, i64 m, i64 n, i64 k, const T* A, i64 lda, const T* B,
          i64 ldb, T beta, T* C, i64 ldc) {
  const T one = T(1);
  // Row-major C = op(A)·op(B) is column-major Cᵀ = op(B)ᵀ·op(A)ᵀ (see common.cuh).
  check_blas(gemm_call(ctx.blas, op(trans_b), op(trans_a), blas_int(n, "gemm n"), blas_int(m, "gemm m"),
                       blas_int(k, "gemm k"), &one, B, blas_int(ldb, "gemm ldb"), A, blas_int(lda, "gemm lda"), &beta,
                       C, blas_int(ldc, "gemm ldc")),
             sizeof(T) == 4 ? "cublasSgemm" : "cublasDgemm");
}

template <typename T>
void column_sums(const Context& ctx, const T* data, i64 rows, i64 width, i64 ld, const T* ones, T* out) {
  // Read column-major, data is the width × rows matrix Dᵀ (leading dimension ld); out = Dᵀ·1.
  const T one = T(1), zero = T(0);
  check_blas(gemv_call(ctx.blas, blas_int(width, "gemv m"), blas_int(rows, "gemv n"), &one, data,
                       blas_int(ld, "gemv lda"), ones, &zero, out),
             sizeof(T) == 4 ? "cublasSgemv" : "cublasDgemv");
}

template <typename T>
void copy_or_zero(const Context& ctx, T* dst, const T* src, i64 n) {
  const std::size_t bytes = sizeof(T) * static_cast<std::size_t>(n);
  if (src)
    LSTMCORE_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, ctx.stream));
  else
    LSTMCORE_CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, ctx.stream));  // all-zero bytes are +0.0
}

template <typename T>
void fill(const Context& ctx, T* data, i64 n, T value) {
  LSTMCORE_RUN(fill_kernel<T>, n, ctx.stream, data, n, value);
}

template <typename T>
void zero_padding(const Context& ctx, const Walk& walk, T* data, i64 width) {
  if (!walk.lengths) return;
  LSTMCORE_RUN(zero_padding_kernel<T>, walk.T * walk.B * width, ctx.stream, walk, data, width);
}

template <typename T>
const T* combine_bias(const Context& ctx, const T* b, const T* b_h, i64 width, i64 limit, T* out) {
  if (!b && !b_h) return nullptr;
  LSTMCORE_RUN(combine_bias_kernel<T>, width, ctx.stream, b, b_h, width, limit, out);
  return out;
}

#define LSTMCORE_INSTANTIATE(T)                                                                                   \
  template void gemm<T>(const Context&, bool, bool, i64, i64, i64, const T*, i64, const T*, i64, T, T*, i64);    \
  template void column_sums<T>(const Context&, const T*, i64, i64, i64, const T*, T*);                           \
  template void copy_or_zero<T>(const Context&, T*, const T*, i64);                                              \
  template void fill<T>(const Context&, T*, i64, T);                                                             \
  template void zero_padding<T>(const Context&, const Walk&, T*, i64);                                           \
  template const T* combine_bias<T>(const Context&, const T*, const T*, i64, i64, T*);
LSTMCORE_INSTANTIATE(float)
LSTMCORE_INSTANTIATE(double)
#undef LSTMCORE_INSTANTIATE

}  // namespace backend
}  // namespace cuda
LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
