// lstmcore — the CUDA backend: forward and backward of every cell on device memory.
//
// The same cells, shapes, options and training cache as recurrent.h (letters of
// types.h), computed on a GPU with cuBLAS GEMMs and fused elementwise kernels:
//
//   forward   one GEMM for the input projection of all T steps, (T·B, I)·(I, G·H);
//             then per step the recurrent GEMM (B, H)·(H, G·H) and one kernel that
//             applies the gates and updates the state (GRU with reset_after = false:
//             two GEMMs and two kernels per step, the second product needs r).
//   backward  per step one kernel for the gate gradients and the GEMM that carries
//             dL/dh back through w_h; then dx, dw_x, dw_h as single GEMMs and the bias
//             gradients as column sums over all steps.
//
// Memory: every pointer in ForwardArgs / BackwardArgs is a DEVICE pointer on the chosen
// device (x, weights, states, outputs, the cache), written as in recurrent.h, except
// SequenceOptions::seq_lengths, which stays a HOST array of B int64 values: the lengths
// are checked on the host (1..T, as on the CPU) and copied to the device by the call.
// The cache has cache_size() elements and the CPU's layout, so a cache filled here
// holds the same quantities as one filled by lstmcore::forward (up to rounding).
//
// Streams: the call enqueues its work on DeviceOptions::stream (nullptr: the legacy
// default stream) and returns without waiting, unless `synchronize` is set. Outputs are
// ready when the stream reaches that point; inputs must stay unchanged until then. The
// call's scratch memory is taken once per call (stream-ordered, cudaMallocAsync where
// the device supports it) and given back on the stream, never inside the time loop.
//
// Threads: calls from many host threads may run concurrently (each thread has its own
// cuBLAS handle per device). The device current on the calling thread is restored on
// return.
//
// Errors: InvalidArgument for bad sizes, lengths or pointers (the checks of the CPU
// path, before anything is enqueued); cuda::Error (a std::runtime_error) for a failed
// CUDA or cuBLAS call, naming the call and the reason (no device, out of memory, ...),
// and for a build without CUDA. Errors of kernels that fail after the call returned
// surface in a later CUDA call on that stream (set `synchronize` to catch them here).
//
// Precision: float and double; float GEMMs never use TF32 unless allow_tf32 is set.
// sigmoid and tanh are CUDA's accurate functions (no fast-math intrinsics).
#pragma once

#include <stdexcept>
#include <string>

#include "lstmcore/recurrent.h"
#include "lstmcore/stack.h"
#include "lstmcore/types.h"

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN
namespace cuda {

// Where and how a call runs.
struct DeviceOptions {
  int device = -1;          // CUDA device index; -1: the calling thread's current device
  void* stream = nullptr;   // a cudaStream_t of that device; nullptr: the legacy default stream
  bool allow_tf32 = false;  // float GEMMs may use TF32 tensor cores (about 1e-3 relative error)
  bool synchronize = false;  // wait for the stream before returning and report its errors
  // Forward and backward passes of batches up to this size (LSTM, GRU with reset_after,
  // RNN) run all steps in one persistent cooperative kernel instead of a GEMM and a kernel
  // launch per step, when the device supports cooperative launches; 0: never.
  int persistent_batch = 8;
};

// A failed CUDA or cuBLAS call, or CUDA asked of a build without it.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// True when this library was built with the CUDA backend (LSTMCORE_CUDA=ON).
bool built() noexcept;
// Devices the CUDA runtime sees; 0 without a CUDA build, driver or device. Never throws.
int device_count() noexcept;
// One line for build_info(): "cuda: no", or the toolkit, architectures and devices.
std::string describe();

// Runs the layer over all steps on the device. Supported T: float, double.
template <typename T>
void forward(const CellSpec& spec, const Dims& dims, const SequenceOptions& options, const ForwardArgs<T>& args,
             const DeviceOptions& device = {});

// Backpropagation through time for a cache filled by cuda::forward with the same spec,
// dims, options (reverse, batch_first, seq_lengths) and inputs; consumes the cache.
template <typename T>
void backward(const CellSpec& spec, const Dims& dims, const SequenceOptions& options, const BackwardArgs<T>& args,
              const DeviceOptions& device = {});

// A layer stack (stack.h) on the device: the same walk, validation, cache layout and
// dropout masks as lstmcore::stack_forward / stack_backward (a cache moves between the
// two backends). Every pointer of the args, of the LayerWeights / LayerGradients they
// point to, and the workspace are DEVICE pointers; the `weights` and `grads` arrays
// themselves and SequenceOptions::seq_lengths are HOST arrays. Directions run one after
// the other on the stream. Plain cells only: a StackSpec::variant other than the cell's
// defaults is an InvalidArgument.
template <typename T>
void stack_forward(const StackSpec& spec, const Dims& dims, const SequenceOptions& options,
                   const StackForwardArgs<T>& args, const DeviceOptions& device = {});
template <typename T>
void stack_backward(const StackSpec& spec, const Dims& dims, const SequenceOptions& options,
                    const StackBackwardArgs<T>& args, const DeviceOptions& device = {});

extern template void forward<float>(const CellSpec&, const Dims&, const SequenceOptions&, const ForwardArgs<float>&,
                                    const DeviceOptions&);
extern template void forward<double>(const CellSpec&, const Dims&, const SequenceOptions&,
                                     const ForwardArgs<double>&, const DeviceOptions&);
extern template void backward<float>(const CellSpec&, const Dims&, const SequenceOptions&,
                                     const BackwardArgs<float>&, const DeviceOptions&);
extern template void backward<double>(const CellSpec&, const Dims&, const SequenceOptions&,
                                      const BackwardArgs<double>&, const DeviceOptions&);
extern template void stack_forward<float>(const StackSpec&, const Dims&, const SequenceOptions&,
                                          const StackForwardArgs<float>&, const DeviceOptions&);
extern template void stack_forward<double>(const StackSpec&, const Dims&, const SequenceOptions&,
                                           const StackForwardArgs<double>&, const DeviceOptions&);
extern template void stack_backward<float>(const StackSpec&, const Dims&, const SequenceOptions&,
                                           const StackBackwardArgs<float>&, const DeviceOptions&);
extern template void stack_backward<double>(const StackSpec&, const Dims&, const SequenceOptions&,
                                            const StackBackwardArgs<double>&, const DeviceOptions&);

}  // namespace cuda
LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
