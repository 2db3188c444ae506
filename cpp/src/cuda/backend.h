// The CUDA backend behind lstmcore::cuda (cuda_api.cpp), built only with LSTMCORE_CUDA.
// Arguments arrive validated; no CUDA type appears here, so plain C++ can include it.
#pragma once

#include <string>

#include "lstmcore/cuda.h"

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN
namespace cuda {
namespace backend {

template <typename T>
void forward(const CellSpec& spec, const Dims& d, const SequenceOptions& o, const ForwardArgs<T>& a,
             const DeviceOptions& dev);
template <typename T>
void backward(const CellSpec& spec, const Dims& d, const SequenceOptions& o, const BackwardArgs<T>& a,
              const DeviceOptions& dev);

template <typename T>
void stack_forward(const StackSpec& spec, const Dims& d, const SequenceOptions& o, const StackForwardArgs<T>& a,
                   const DeviceOptions& dev);
template <typename T>
void stack_backward(const StackSpec& spec, const Dims& d, const SequenceOptions& o, const StackBackwardArgs<T>& a,
                    const DeviceOptions& dev);

int device_count() noexcept;
std::string describe();

}  // namespace backend
}  // namespace cuda
LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
