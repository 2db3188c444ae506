// An emulated cuBLAS for tests/cpp (see cuda_runtime.h here): the column-major GEMM and
// GEMV the CUDA backend calls, written from cuBLAS's documented semantics, with its
// argument checks (leading dimensions), so the backend's row-major-to-column-major mapping
// is exercised for real. beta = 0 never reads C, as in cuBLAS.
#pragma once

#include "cuda_runtime.h"

struct emu_cublas {
  cudaStream_t stream = nullptr;
};
typedef emu_cublas* cublasHandle_t;
enum cublasStatus_t { CUBLAS_STATUS_SUCCESS = 0, CUBLAS_STATUS_NOT_INITIALIZED = 1, CUBLAS_STATUS_INVALID_VALUE = 7 };
enum cublasOperation_t { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1 };
enum cublasMath_t { CUBLAS_DEFAULT_MATH = 0, CUBLAS_TF32_TENSOR_OP_MATH = 3 };
enum cublasPointerMode_t { CUBLAS_POINTER_MODE_HOST = 0, CUBLAS_POINTER_MODE_DEVICE = 1 };

inline const char* cublasGetStatusString(cublasStatus_t s) {
  return s == CUBLAS_STATUS_SUCCESS ? "success" : s == CUBLAS_STATUS_INVALID_VALUE ? "invalid value" : "error";
}
inline const char* cublasGetStatusName(cublasStatus_t s) {
  return s == CUBLAS_STATUS_SUCCESS ? "CUBLAS_STATUS_SUCCESS"
         : s == CUBLAS_STATUS_INVALID_VALUE ? "CUBLAS_STATUS_INVALID_VALUE"
                                            : "CUBLAS_STATUS_NOT_INITIALIZED";
}
inline cublasStatus_t cublasCreate(cublasHandle_t* h) {
  *h = new emu_cublas;
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasDestroy(cublasHandle_t h) {
  delete h;
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s) {
  h->stream = s;
  return CUBLAS_STATUS_SUCCESS;
}
inline cublasStatus_t cublasSetMathMode(cublasHandle_t, cublasMath_t) { return CUBLAS_STATUS_SUCCESS; }
inline cublasStatus_t cublasSetPointerMode(cublasHandle_t, cublasPointerMode_t m) {
  return m == CUBLAS_POINTER_MODE_HOST ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_INVALID_VALUE;
}

namespace emu {
inline int at_least_one(int v) { return v < 1 ? 1 : v; }

// C (m × n, ldc) = alpha·op(A)·op(B) + beta·C, all column-major.
template <typename T>
cublasStatus_t gemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, const T* alpha, const T* A,
                    int lda, const T* B, int ldb, const T* beta, T* C, int ldc) {
  if (m < 0 || n < 0 || k < 0 || lda < at_least_one(ta == CUBLAS_OP_N ? m : k) ||
      ldb < at_least_one(tb == CUBLAS_OP_N ? k : n) || ldc < at_least_one(m))
    return CUBLAS_STATUS_INVALID_VALUE;
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < m; ++i) {
      T sum = T(0);
      for (int l = 0; l < k; ++l) {
        const T a = ta == CUBLAS_OP_N ? A[i + static_cast<long>(l) * lda] : A[l + static_cast<long>(i) * lda];
        const T b = tb == CUBLAS_OP_N ? B[l + static_cast<long>(j) * ldb] : B[j + static_cast<long>(l) * ldb];
        sum += a * b;
      }
      T& c = C[i + static_cast<long>(j) * ldc];
      c = *beta == T(0) ? *alpha * sum : *alpha * sum + *beta * c;
    }
  return CUBLAS_STATUS_SUCCESS;
}

// y (m) = alpha·A·x + beta·y, A m × n column-major (no transpose: all the backend uses).
template <typename T>
cublasStatus_t gemv(cublasOperation_t t, int m, int n, const T* alpha, const T* A, int lda, const T* x, int incx,
                    const T* beta, T* y, int incy) {
  if (t != CUBLAS_OP_N || m < 0 || n < 0 || lda < at_least_one(m) || incx == 0 || incy == 0)
    return CUBLAS_STATUS_INVALID_VALUE;
  for (int i = 0; i < m; ++i) {
    T sum = T(0);
    for (int j = 0; j < n; ++j) sum += A[i + static_cast<long>(j) * lda] * x[static_cast<long>(j) * incx];
    T& out = y[static_cast<long>(i) * incy];
    out = *beta == T(0) ? *alpha * sum : *alpha * sum + *beta * out;
  }
  return CUBLAS_STATUS_SUCCESS;
}
}  // namespace emu

inline cublasStatus_t cublasSgemm(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                                  const float* alpha, const float* A, int lda, const float* B, int ldb,
                                  const float* beta, float* C, int ldc) {
  return emu::gemm(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}
inline cublasStatus_t cublasDgemm(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                                  const double* alpha, const double* A, int lda, const double* B, int ldb,
                                  const double* beta, double* C, int ldc) {
  return emu::gemm(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}
inline cublasStatus_t cublasSgemv(cublasHandle_t, cublasOperation_t t, int m, int n, const float* alpha,
                                  const float* A, int lda, const float* x, int incx, const float* beta, float* y,
                                  int incy) {
  return emu::gemv(t, m, n, alpha, A, lda, x, incx, beta, y, incy);
}
inline cublasStatus_t cublasDgemv(cublasHandle_t, cublasOperation_t t, int m, int n, const double* alpha,
                                  const double* A, int lda, const double* x, int incx, const double* beta, double* y,
                                  int incy) {
  return emu::gemv(t, m, n, alpha, A, lda, x, incx, beta, y, incy);
}
