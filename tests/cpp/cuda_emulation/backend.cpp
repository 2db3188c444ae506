// The CUDA backend (cpp/src/cuda/*.cu and the entry points of cpp/src/cuda_api.cpp)
// compiled as C++ against the emulated runtime and cuBLAS of this folder, for
// test_lstmcore_cuda_emulated. One translation unit: the sources' internal names differ.
#include "cuda_api.cpp"
#include "cuda/runtime.cu"
#include "cuda/blas.cu"
#include "cuda/lstm.cu"
#include "cuda/gru.cu"
#include "cuda/rnn.cu"
#include "cuda/stack.cu"
