// The CUDA backend's runtime side: errors, the device and stream of a call, one cuBLAS
// handle per host thread and device, the per-call workspace, and the entry points that
// pick the cell.
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "cuda/backend.h"
#include "cuda/common.cuh"

#ifndef LSTMCORE_CUDA_ARCHITECTURES
#define LSTMCORE_CUDA_ARCHITECTURES "unknown"
#endif

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN
namespace cuda {
namespace backend {

// ---- errors --------------------------------------------------------------------------

namespace {
// "cudaMemcpyAsync(dst, src, ...)" -> "cudaMemcpyAsync": the function a message names.
std::string function_of(const char* call) {
  const std::string s(call);
  return s.substr(0, s.find('('));
}
}  // namespace

void check_cuda(cudaError_t status, const char* call) {
  if (status == cudaSuccess) return;
  throw Error(function_of(call) + ": " + cudaGetErrorString(status) + " (" + cudaGetErrorName(status) + ")");
}

void check_blas(cublasStatus_t status, const char* call) {
  if (status == CUBLAS_STATUS_SUCCESS) return;
  throw Error(function_of(call) + ": " + cublasGetStatusString(status) + " (" + cublasGetStatusName(status) + ")");
}

// ---- workspace -----------------------------------------------------------------------

void Workspace::allocate(const Context& ctx) {
  if (bytes_ == 0) bytes_ = 256;
  int pools = 0;
  LSTMCORE_CUDA_CHECK(cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported, ctx.device));
  stream_ = ctx.stream;
  stream_ordered_ = pools != 0;
  if (stream_ordered_)
    LSTMCORE_CUDA_CHECK(cudaMallocAsync(&base_, bytes_, ctx.stream));
  else
    LSTMCORE_CUDA_CHECK(cudaMalloc(&base_, bytes_));
}

Workspace::~Workspace() {
  if (!base_) return;
  // Stream-ordered: the memory returns to the pool once the call's work is done. The
  // fallback cudaFree waits for the device. A failure here cannot be reported.
  if (stream_ordered_)
    (void)cudaFreeAsync(base_, stream_);
  else
    (void)cudaFree(base_);
}

Slot<i64> reserve_lengths(Workspace& ws, const Dims& d, const SequenceOptions& o) {
  return ws.reserve<i64>(o.seq_lengths ? d.batch : 0);
}

Walk make_walk(const Context& ctx, const Dims& d, const SequenceOptions& o, const Workspace& ws, Slot<i64> lengths) {
  Walk w;
  w.T = d.steps;
  w.B = d.batch;
  w.reverse = o.reverse;
  w.batch_first = o.batch_first;
  if (o.seq_lengths) {
    i64* dst = ws.get(lengths);
    // From pageable host memory: the copy is staged before this returns, so the
    // caller's array may go away afterwards.
    LSTMCORE_CUDA_CHECK(cudaMemcpyAsync(dst, o.seq_lengths, sizeof(i64) * static_cast<std::size_t>(d.batch),
                                        cudaMemcpyHostToDevice, ctx.stream));
    w.lengths = dst;
  }
  return w;
}

// ---- device, handles, context ----------------------------------------------------------

namespace {

// Makes `requested` (or, for -1, the thread's current device) current for the call and
// restores the thread's device afterwards.
class DeviceScope {
 public:
  explicit DeviceScope(int requested) {
    LSTMCORE_CUDA_CHECK(cudaGetDevice(&saved_));
    device_ = requested < 0 ? saved_ : requested;
    if (device_ != saved_) LSTMCORE_CUDA_CHECK(cudaSetDevice(device_));
  }
  ~DeviceScope() {
    if (device_ != saved_) (void)cudaSetDevice(saved_);
  }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;
  int device() const { return device_; }

 private:
  int saved_ = 0;
  int device_ = 0;
};

// This thread's cuBLAS handles, one per device, created on first use and destroyed when
// the thread ends. A handle is used by one thread at a time, so concurrent calls from
// different threads never share one.
class ThreadHandles {
 public:
  ~ThreadHandles() {
    for (auto& [device, handle] : handles_) {
      (void)device;
      (void)cublasDestroy(handle);
    }
  }
  cublasHandle_t get(int device) {
    for (auto& [d, h] : handles_)
      if (d == device) return h;
    cublasHandle_t h = nullptr;
    LSTMCORE_CUBLAS_CHECK(cublasCreate(&h));  // on the current device, which is `device`
    handles_.emplace_back(device, h);
    return h;
  }

 private:
  std::vector<std::pair<int, cublasHandle_t>> handles_;
};

cublasHandle_t thread_handle(int device) {
  thread_local ThreadHandles handles;
  return handles.get(device);
}

Context make_context(int device, const DeviceOptions& dev) {
  Context ctx;
  ctx.device = device;
  ctx.stream = static_cast<cudaStream_t>(dev.stream);
  ctx.blas = thread_handle(device);
  ctx.persistent_batch = dev.persistent_batch;
  LSTMCORE_CUBLAS_CHECK(cublasSetStream(ctx.blas, ctx.stream));
  // Default math keeps float GEMMs in full float32 (no TF32 tensor cores).
  LSTMCORE_CUBLAS_CHECK(
      cublasSetMathMode(ctx.blas, dev.allow_tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
  LSTMCORE_CUBLAS_CHECK(cublasSetPointerMode(ctx.blas, CUBLAS_POINTER_MODE_HOST));
  return ctx;
}

void finish(const Context& ctx, const DeviceOptions& dev) {
  if (dev.synchronize) LSTMCORE_CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
}

}  // namespace

// ---- entry points ------------------------------------------------------------------------

template <typename T>
void run_forward(const Context& ctx, const CellSpec& spec, const Dims& d, const SequenceOptions& o,
                 const ForwardArgs<T>& a) {
  switch (spec.cell) {
    case Cell::lstm: lstm_forward<T>(ctx, d, o, a); break;
    case Cell::gru: gru_forward<T>(ctx, spec.reset_after, d, o, a); break;
    case Cell::rnn_tanh: rnn_forward<T>(ctx, false, d, o, a); break;
    case Cell::rnn_relu: rnn_forward<T>(ctx, true, d, o, a); break;
  }
}

template <typename T>
void run_backward(const Context& ctx, const CellSpec& spec, const Dims& d, const SequenceOptions& o,
                  const BackwardArgs<T>& a) {
  switch (spec.cell) {
    case Cell::lstm: lstm_backward<T>(ctx, d, o, a); break;
    case Cell::gru: gru_backward<T>(ctx, spec.reset_after, d, o, a); break;
    case Cell::rnn_tanh: rnn_backward<T>(ctx, false, d, o, a); break;
    case Cell::rnn_relu: rnn_backward<T>(ctx, true, d, o, a); break;
  }
}

// Makes the device current, builds the call's context, runs body(ctx), then waits for
// the stream when asked.
template <class Body>
void on_device(const DeviceOptions& dev, Body&& body) {
  DeviceScope scope(dev.device);
  const Context ctx = make_context(scope.device(), dev);
  body(ctx);
  finish(ctx, dev);
}

template <typename T>
void forward(const CellSpec& spec, const Dims& d, const SequenceOptions& o, const ForwardArgs<T>& a,
             const DeviceOptions& dev) {
  on_device(dev, [&](const Context& ctx) { run_forward(ctx, spec, d, o, a); });
}

template <typename T>
void backward(const CellSpec& spec, const Dims& d, const SequenceOptions& o, const BackwardArgs<T>& a,
              const DeviceOptions& dev) {
  on_device(dev, [&](const Context& ctx) { run_backward(ctx, spec, d, o, a); });
}

template <typename T>
void stack_forward(const StackSpec& spec, const Dims& d, const SequenceOptions& o, const StackForwardArgs<T>& a,
                   const DeviceOptions& dev) {
  on_device(dev, [&](const Context& ctx) { stack_forward_on(ctx, spec, d, o, a); });
}

template <typename T>
void stack_backward(const StackSpec& spec, const Dims& d, const SequenceOptions& o, const StackBackwardArgs<T>& a,
                    const DeviceOptions& dev) {
  on_device(dev, [&](const Context& ctx) { stack_backward_on(ctx, spec, d, o, a); });
}

template void forward<float>(const CellSpec&, const Dims&, const SequenceOptions&, const ForwardArgs<float>&,
                             const DeviceOptions&);
template void forward<double>(const CellSpec&, const Dims&, const SequenceOptions&, const ForwardArgs<double>&,
                              const DeviceOptions&);
template void backward<float>(const CellSpec&, const Dims&, const SequenceOptions&, const BackwardArgs<float>&,
                              const DeviceOptions&);
template void backward<double>(const CellSpec&, const Dims&, const SequenceOptions&, const BackwardArgs<double>&,
                               const DeviceOptions&);

template void run_forward<float>(const Context&, const CellSpec&, const Dims&, const SequenceOptions&,
                                 const ForwardArgs<float>&);
template void run_forward<double>(const Context&, const CellSpec&, const Dims&, const SequenceOptions&,
                                  const ForwardArgs<double>&);
template void run_backward<float>(const Context&, const CellSpec&, const Dims&, const SequenceOptions&,
                                  const BackwardArgs<float>&);
template void run_backward<double>(const Context&, const CellSpec&, const Dims&, const SequenceOptions&,
                                   const BackwardArgs<double>&);
template void stack_forward<float>(const StackSpec&, const Dims&, const SequenceOptions&,
                                   const StackForwardArgs<float>&, const DeviceOptions&);
template void stack_forward<double>(const StackSpec&, const Dims&, const SequenceOptions&,
                                    const StackForwardArgs<double>&, const DeviceOptions&);
template void stack_backward<float>(const StackSpec&, const Dims&, const SequenceOptions&,
                                    const StackBackwardArgs<float>&, const DeviceOptions&);
template void stack_backward<double>(const StackSpec&, const Dims&, const SequenceOptions&,
                                     const StackBackwardArgs<double>&, const DeviceOptions&);

int device_count() noexcept {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // no driver or no device: not an error of a later call
    return 0;
  }
  return n;
}

std::string describe() {
  std::ostringstream s;
  s << "cuda: yes (CUDA " << CUDART_VERSION / 1000 << "." << CUDART_VERSION % 1000 / 10
    << ", cuBLAS, architectures " << LSTMCORE_CUDA_ARCHITECTURES << "; devices: ";
  int n = 0;
  const cudaError_t status = cudaGetDeviceCount(&n);
  if (status != cudaSuccess) {
    s << "0, " << cudaGetErrorString(status);
    (void)cudaGetLastError();
  } else {
    s << n;
    for (int i = 0; i < n; ++i) {
      cudaDeviceProp p;
      if (cudaGetDeviceProperties(&p, i) == cudaSuccess) s << (i ? ", " : " (") << p.name << " sm_" << p.major << p.minor;
    }
    if (n > 0) s << ")";
  }
  s << ")";
  return s.str();
}

}  // namespace backend
}  // namespace cuda
LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
