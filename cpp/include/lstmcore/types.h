// lstmcore — the types every entry point shares.
//
// Letters used in every shape comment of this library:
//   T  time steps          B  batch size         I  input features
//   H  hidden units        G  gates per cell (LSTM 4, GRU 3, RNN 1)
// Arrays are dense and row-major: the rightmost dimension changes fastest.
// A "row" is the feature vector of one (step, batch) pair; rows are ordered (t, b)
// (time-major, the default) or (b, t) when SequenceOptions::batch_first is set.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "lstmcore/version.h"

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN

// The recurrent cells. Gate order inside the fused weights:
//   lstm: i, f, g, o   gru: r, z, n   rnn_tanh / rnn_relu: one block.
enum class Cell { lstm, gru, rnn_tanh, rnn_relu };

// Gates per cell: the G of the shape comments.
int gate_count(Cell cell) noexcept;
// "lstm", "gru", "rnn_tanh", "rnn_relu".
const char* cell_name(Cell cell) noexcept;
// Parses the names above; throws InvalidArgument for anything else.
Cell parse_cell(const std::string& name);

// How the products of a call are computed.
//   native:   in the arrays' own type (float or double).
//   bfloat16: float arrays only (InvalidArgument naming "compute" for double, for the
//             cell variants and for the CUDA entry points). Every operand of every
//             matrix product (x, w_x, w_h, h_{t-1}; in backward the gate gradients, x,
//             h_{t-1}, w_x, w_h) is rounded to bfloat16 (round to nearest even; NaN stays
//             NaN, subnormals are kept) and the products accumulate in float. Inputs,
//             outputs, states, the cache and the gradients stay float; the cell state,
//             the gates, the nonlinearities and the bias sums are computed in float.
//             Backward must be given the compute of the forward that filled the cache.
enum class Compute { native, bfloat16 };

// The cell and its variant. reset_after only matters for GRU:
//   true  (default): n = tanh(ax_n + r ⊙ (h·w_h[:, n] + b_h[n]))   (PyTorch, cuDNN)
//   false:           n = tanh(ax_n + (r ⊙ h)·w_h[:, n] + b_h[n])   (Cho et al. 2014)
// compute: see Compute above.
struct CellSpec {
  Cell cell = Cell::lstm;
  bool reset_after = true;
  Compute compute = Compute::native;
};

// How the weight matrices are stored (ForwardArgs / BackwardArgs / the stack's args).
//   input_major (default): w_x (I, G·H), w_h (R, G·H), w_proj (H, P); x·w_x is a plain product.
//   gate_major: the transposes, w_x (G·H, I), w_h (G·H, R), w_proj (P, H): PyTorch's
//     weight_ih / weight_hh / weight_hr and ONNX's W / R (per direction), read in place.
// Every weight gradient (dw_x, dw_h, dw_proj) is written in its weight's layout. Biases,
// peepholes and layer-norm parameters are vectors and do not depend on it. R = H, or P
// with a projection (variants.h).
enum class WeightLayout { input_major, gate_major };

// Problem sizes. Every size must be >= 1.
struct Dims {
  std::int64_t steps = 0;   // T
  std::int64_t batch = 0;   // B
  std::int64_t input = 0;   // I
  std::int64_t hidden = 0;  // H
};

// How time is walked.
struct SequenceOptions {
  // Run from the last step to the first. With seq_lengths, sequence b runs
  // from its own last valid step (len_b - 1) down to 0.
  bool reverse = false;
  // x, y, dy, dx are (B, T, ·) instead of (T, B, ·).
  bool batch_first = false;
  // (B) or nullptr. Each length in 1..T; sequence b uses steps 0..len_b-1, its
  // outputs at later steps are 0 and its final state is the one after its last
  // valid step (the semantics of PyTorch packed sequences and ONNX sequence_lens).
  const std::int64_t* seq_lengths = nullptr;
};

// Thrown for bad arguments (sizes, null pointers, lengths out of range, size
// overflow). The message names the argument, what was expected and what came.
class InvalidArgument : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// Threads used by every later call, process-wide (thread-safe to call). A call reads the
// setting (like set_isa's) once, at its entry, and keeps it to its end. n >= 1
// (else InvalidArgument); values above the hardware's are allowed. The default is
// OpenMP's (OMP_NUM_THREADS, else the core count). Without OpenMP the library runs on
// one thread and set_num_threads only records the value.
void set_num_threads(int n);
int get_num_threads() noexcept;

// Scratch memory. A call's workspace is one block planned up front from its sizes and
// thread count. When the call returns, the block is kept for later calls (of any thread)
// as long as the kept blocks stay within 256 MiB in all; nothing else is kept between
// calls (no buffer of the caller's is referred to after a call returns). kept_memory():
// the bytes kept now. release_memory(): frees every kept block now, and the blocks of
// calls running at that moment when they return (thread-safe).
void release_memory();
std::size_t kept_memory() noexcept;

// The CPU kernels are compiled for several instruction sets ("avx512_bf16": "avx512" plus
// AVX512-BF16, whose VDPBF16PS runs the recurrent products of Compute::bfloat16 calls;
// "avx512": AVX-512 F/DQ/BW/VL with FMA; "avx2": AVX2 with FMA; "generic": baseline x86-64
// or any other processor)
// and one is chosen at load time from CPUID: the best this processor supports, unless
// the environment variable LSTMCORE_ISA names another supported one.
// available_isas(): the variants compiled in and supported here, best first.
// get_isa(): the one in use. set_isa(name): switch (process-wide, thread-safe; calls
// already running finish on the old one); InvalidArgument for a name not available.
std::vector<std::string> available_isas();
std::string get_isa();
void set_isa(const std::string& name);

// Build facts: version, whether OpenMP is compiled in, the CPU kernel variant.
std::string build_info();

LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
