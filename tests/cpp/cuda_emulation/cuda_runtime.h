// An emulated CUDA runtime for tests/cpp (test_lstmcore_cuda_emulated): just enough of the
// API the CUDA backend uses, on the host, so the backend's host code and kernels — compiled
// as C++ — run on a machine without a GPU and are compared with the CPU path.
//
// Device memory is host memory, allocated prefilled with NaN bytes (a read of anything the
// backend did not write shows up as NaN in the results) between guard bytes checked when
// it is freed (a write out of bounds aborts). A kernel launch is one call of the kernel with
// gridDim = blockDim = 1: the kernels' grid-stride loops then visit every element in order.
// Streams are placeholders; everything runs at once. Not emulated: real concurrency inside a
// kernel (races), launch limits, asynchronous errors.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#define CUDART_VERSION 13000
#define __global__
#define __device__
#define __host__

// Kernels run on the host: one "thread" walks the whole grid-stride loop.
#define LSTMCORE_KERNEL_CALL(kernel, n, stream, ...) ((void)(n), (void)(stream), kernel(__VA_ARGS__))
// A persistent (cooperative) kernel likewise: one thread is the whole grid, so a grid-wide
// barrier has nobody to wait for.
#define LSTMCORE_PERSISTENT_CALL(kernel, blocks, stream, ...) ((void)(blocks), (void)(stream), kernel(__VA_ARGS__))
#define LSTMCORE_GRID_SYNC() ((void)0)

struct emu_uint3 {
  unsigned x, y, z;
};
inline const emu_uint3 threadIdx{0, 0, 0};
inline const emu_uint3 blockIdx{0, 0, 0};
inline const emu_uint3 blockDim{1, 1, 1};
inline const emu_uint3 gridDim{1, 1, 1};

enum cudaError_t { cudaSuccess = 0, cudaErrorInvalidValue = 1, cudaErrorMemoryAllocation = 2, cudaErrorInvalidDevice = 101 };
enum cudaMemcpyKind { cudaMemcpyHostToHost, cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice };
enum cudaDeviceAttr {
  cudaDevAttrMultiProcessorCount = 16,
  cudaDevAttrCooperativeLaunch = 95,
  cudaDevAttrMemoryPoolsSupported = 115
};
struct CUstream_st {};
typedef CUstream_st* cudaStream_t;
#define cudaStreamNonBlocking 0x01

struct cudaDeviceProp {
  char name[256];
  int major, minor;
};

namespace emu {
constexpr std::size_t kGuard = 64;
constexpr unsigned char kGuardByte = 0xA5;
inline int& current_device() {
  static thread_local int d = 0;
  return d;
}
}  // namespace emu

inline const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
  }
  return "unknown error";
}
inline const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
  }
  return "cudaErrorUnknown";
}
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline cudaError_t cudaGetDeviceCount(int* n) {
  *n = 1;
  return cudaSuccess;
}
inline cudaError_t cudaGetDevice(int* d) {
  *d = emu::current_device();
  return cudaSuccess;
}
inline cudaError_t cudaSetDevice(int d) {
  if (d != 0) return cudaErrorInvalidDevice;
  emu::current_device() = d;
  return cudaSuccess;
}
inline cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int d) {
  if (d != 0) return cudaErrorInvalidDevice;
  std::snprintf(p->name, sizeof p->name, "emulated on the host");
  p->major = 0;
  p->minor = 0;
  return cudaSuccess;
}
inline cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr, int d) {
  if (d != 0) return cudaErrorInvalidDevice;
  *v = 1;  // one multiprocessor; memory pools and cooperative launches supported
  return cudaSuccess;
}
template <class Kernel>
cudaError_t cudaOccupancyMaxActiveBlocksPerMultiprocessor(int* blocks, Kernel, int, std::size_t) {
  *blocks = 1;
  return cudaSuccess;
}

inline cudaError_t cudaMalloc(void** p, std::size_t bytes) {
  auto* raw = static_cast<unsigned char*>(std::malloc(bytes + 2 * emu::kGuard + sizeof(std::size_t)));
  if (!raw) return cudaErrorMemoryAllocation;
  std::memcpy(raw, &bytes, sizeof bytes);
  unsigned char* user = raw + sizeof(std::size_t) + emu::kGuard;
  std::memset(user - emu::kGuard, emu::kGuardByte, emu::kGuard);
  std::memset(user, 0xFF, bytes);  // NaN in float and double
  std::memset(user + bytes, emu::kGuardByte, emu::kGuard);
  *p = user;
  return cudaSuccess;
}
inline cudaError_t cudaFree(void* p) {
  if (!p) return cudaSuccess;
  auto* user = static_cast<unsigned char*>(p);
  unsigned char* raw = user - emu::kGuard - sizeof(std::size_t);
  std::size_t bytes;
  std::memcpy(&bytes, raw, sizeof bytes);
  for (std::size_t i = 0; i < emu::kGuard; ++i)
    if (user[-1 - static_cast<std::ptrdiff_t>(i)] != emu::kGuardByte || user[bytes + i] != emu::kGuardByte) {
      std::fprintf(stderr, "emulated CUDA: a write out of the bounds of a %zu-byte allocation\n", bytes);
      std::abort();
    }
  std::free(raw);
  return cudaSuccess;
}
// The typed overload of CUDA's C++ API.
template <typename T>
cudaError_t cudaMalloc(T** p, std::size_t bytes) {
  return cudaMalloc(reinterpret_cast<void**>(p), bytes);
}
inline cudaError_t cudaMallocAsync(void** p, std::size_t bytes, cudaStream_t) { return cudaMalloc(p, bytes); }
inline cudaError_t cudaFreeAsync(void* p, cudaStream_t) { return cudaFree(p); }
inline cudaError_t cudaMemcpy(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind) {
  std::memmove(dst, src, bytes);
  return cudaSuccess;
}
inline cudaError_t cudaMemcpyAsync(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind k, cudaStream_t) {
  return cudaMemcpy(dst, src, bytes, k);
}
inline cudaError_t cudaMemset(void* p, int value, std::size_t bytes) {
  std::memset(p, value, bytes);
  return cudaSuccess;
}
inline cudaError_t cudaMemsetAsync(void* p, int value, std::size_t bytes, cudaStream_t) {
  return cudaMemset(p, value, bytes);
}
inline cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned) {
  *s = new CUstream_st;
  return cudaSuccess;
}
inline cudaError_t cudaStreamDestroy(cudaStream_t s) {
  delete s;
  return cudaSuccess;
}
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
