// Internal helpers shared by the validation and dispatch layer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "lstmcore/recurrent.h"
#include "lstmcore/variants.h"

// Functions the CUDA kernels share with the host code (a no-op outside nvcc).
#if defined(__CUDACC__)
#define LSTMCORE_HOST_DEVICE __host__ __device__
#else
#define LSTMCORE_HOST_DEVICE
#endif

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN
namespace detail {

// a·b, or InvalidArgument naming `what` when it overflows (with headroom for element sizes).
std::int64_t checked_mul(std::int64_t a, std::int64_t b, const char* what);
// Sizes >= 1 and products that fit.
void check_dims(const CellSpec& spec, const Dims& d);
// Every sequence length (when given) in 1..T.
void check_lengths(const Dims& d, const SequenceOptions& o);
// InvalidArgument naming `name` for a null required pointer.
void require(const void* p, const char* name);
// InvalidArgument naming `name` for a cell-state pointer given to a cell without one.
void require_absent(const void* p, const char* name, Cell cell);

// The checks every forward / backward entry makes before any arithmetic: sizes, lengths,
// required pointers, and no cell-state pointers for a cell without a cell state.
// InvalidArgument naming "compute" unless `supported` or the spec computes natively:
// bfloat16 products exist for float arrays on the plain cells of the CPU path only.
void check_compute(const CellSpec& spec, bool supported, const char* what);

template <typename T>
void check_forward_args(const CellSpec& spec, const Dims& d, const SequenceOptions& o, const ForwardArgs<T>& a) {
  check_compute(spec, sizeof(T) == 4, "float arrays (float32 in, float32 out), got double");
  check_dims(spec, d);
  check_lengths(d, o);
  require(a.x, "x");
  require(a.w_x, "w_x");
  require(a.w_h, "w_h");
  require(a.y, "y");
  require(a.h_n, "h_n");
  if (spec.cell == Cell::lstm) {
    require(a.c_n, "c_n");
  } else {
    require_absent(a.c0, "c0", spec.cell);
    require_absent(a.c_n, "c_n", spec.cell);
  }
}

template <typename T>
void check_backward_args(const CellSpec& spec, const Dims& d, const SequenceOptions& o, const BackwardArgs<T>& a) {
  check_compute(spec, sizeof(T) == 4, "float arrays (float32 in, float32 out), got double");
  check_dims(spec, d);
  check_lengths(d, o);
  require(a.x, "x");
  require(a.w_x, "w_x");
  require(a.w_h, "w_h");
  require(a.cache, "cache");
  require(a.dx, "dx");
  require(a.dh0, "dh0");
  require(a.dw_x, "dw_x");
  require(a.dw_h, "dw_h");
  if (spec.cell == Cell::lstm) {
    require(a.dc0, "dc0");
  } else {
    require_absent(a.c0, "c0", spec.cell);
    require_absent(a.dc_n, "dc_n", spec.cell);
    require_absent(a.dc0, "dc0", spec.cell);
  }
}

// The memory of a call's arguments, for the check that no output shares memory with
// an input or another output (the precondition of recurrent.h, checked). Byte ranges
// come from the dims; absent (null) arguments take no room. Inputs may share memory with
// each other; an in/out argument (backward's cache) counts as an output.
class Spans {
 public:
  enum class Role { input, output, inout };

  template <typename P>
  void input(std::string name, const P* p, std::int64_t count) {
    add(std::move(name), p, count, sizeof(P), Role::input);
  }
  template <typename P>
  void output(std::string name, const P* p, std::int64_t count) {
    add(std::move(name), p, count, sizeof(P), Role::output);
  }
  template <typename P>
  void inout(std::string name, const P* p, std::int64_t count) {
    add(std::move(name), p, count, sizeof(P), Role::inout);
  }
  // InvalidArgument naming both arguments of the first overlap found.
  void check() const;

 private:
  struct Span {
    std::string name;
    std::uintptr_t begin, end;
    Role role;
  };
  void add(std::string name, const void* p, std::int64_t count, std::size_t elem, Role role);
  std::vector<Span> spans_;
};

// The inputs forward and backward of one layer share: x, w_x, w_h, h0, c0, the lengths.
template <typename A>
void layer_input_spans(Spans& s, const CellSpec& spec, const Dims& d, const SequenceOptions& o, const A& a,
                       std::int64_t R) {
  const std::int64_t GH = gate_count(spec.cell) * d.hidden;
  s.input("x", a.x, d.steps * d.batch * d.input);
  s.input("w_x", a.w_x, d.input * GH);
  s.input("w_h", a.w_h, R * GH);
  s.input("h0", a.h0, d.batch * R);
  s.input("c0", a.c0, d.batch * d.hidden);
  s.input("seq_lengths", o.seq_lengths, d.batch);
}

// The arguments of a single-layer call as spans: R the width of h (P with a projection,
// else H), cache_elems the cache's size (forward: when a cache is given).
template <typename T>
void forward_spans(Spans& s, const CellSpec& spec, const Dims& d, const SequenceOptions& o, const ForwardArgs<T>& a,
                   std::int64_t R, std::int64_t cache_elems) {
  const std::int64_t T_ = d.steps, B = d.batch, H = d.hidden, GH = gate_count(spec.cell) * H;
  layer_input_spans(s, spec, d, o, a, R);
  s.input("b", a.b, GH);
  s.input("b_h", a.b_h, GH);
  s.output("y", a.y, T_ * B * R);
  s.output("h_n", a.h_n, B * R);
  s.output("c_n", a.c_n, B * H);
  s.output("cache", a.cache, cache_elems);
}

template <typename T>
void backward_spans(Spans& s, const CellSpec& spec, const Dims& d, const SequenceOptions& o,
                    const BackwardArgs<T>& a, std::int64_t R, std::int64_t cache_elems) {
  const std::int64_t T_ = d.steps, B = d.batch, I = d.input, H = d.hidden, GH = gate_count(spec.cell) * H;
  layer_input_spans(s, spec, d, o, a, R);
  s.input("dy", a.dy, T_ * B * R);
  s.input("dh_n", a.dh_n, B * R);
  s.input("dc_n", a.dc_n, B * H);
  s.inout("cache", a.cache, cache_elems);
  s.output("dx", a.dx, T_ * B * I);
  s.output("dh0", a.dh0, B * R);
  s.output("dc0", a.dc0, B * H);
  s.output("dw_x", a.dw_x, I * GH);
  s.output("dw_h", a.dw_h, R * GH);
  s.output("db", a.db, GH);
  s.output("db_h", a.db_h, GH);
}

// A cell variant's parameters (inputs) and their gradients (outputs); `prefix` names a
// stack's layer ("weights[3] (layer 1, reverse)." / "grads[3] ..."). P: the projection size.
template <typename P>
void variant_spans(Spans& s, bool gradients, const P* const (&ptrs)[8], std::int64_t H, std::int64_t proj,
                   std::int64_t GH, const std::string& prefix) {
  static const char* const names[] = {"peepholes", "w_proj",    "ln_gain_x", "ln_bias_x",
                                      "ln_gain_h", "ln_bias_h", "ln_gain_c", "ln_bias_c"};
  const std::int64_t counts[] = {3 * H, H * proj, GH, GH, GH, GH, H, H};
  for (int k = 0; k < 8; ++k) {
    if (gradients)
      s.output(prefix + "d" + names[k], ptrs[k], counts[k]);
    else
      s.input(prefix + names[k], ptrs[k], counts[k]);
  }
}

template <typename T>
void variant_param_spans(Spans& s, const VariantParams<T>& v, std::int64_t H, std::int64_t proj, std::int64_t GH,
                         const std::string& prefix = "") {
  const T* const ptrs[8] = {v.peepholes, v.w_proj,    v.ln_gain_x, v.ln_bias_x,
                            v.ln_gain_h, v.ln_bias_h, v.ln_gain_c, v.ln_bias_c};
  variant_spans(s, false, ptrs, H, proj, GH, prefix);
}

template <typename T>
void variant_grad_spans(Spans& s, const VariantGrads<T>& g, std::int64_t H, std::int64_t proj, std::int64_t GH,
                        const std::string& prefix = "") {
  const T* const ptrs[8] = {g.dpeepholes, g.dw_proj,    g.dln_gain_x, g.dln_bias_x,
                            g.dln_gain_h, g.dln_bias_h, g.dln_gain_c, g.dln_bias_c};
  variant_spans(s, true, ptrs, H, proj, GH, prefix);
}

// A weight as the products read it: the K × n matrix M of the equations (w_x: I × G·H,
// w_h: R × G·H, w_proj: H × P), stored as M (input_major, row stride n) or as Mᵀ
// (gate_major, n × K, row stride K: PyTorch's layout). The GEMMs of either backend take
// the stored matrix with a transpose flag (col(), ld()); the CUDA persistent kernels read
// single elements (at()).
template <typename T>
struct Weight {
  const T* data = nullptr;
  std::int64_t K = 0, n = 0;
  bool gate_major = false;
  Weight() = default;
  Weight(const T* p, std::int64_t k, std::int64_t cols, WeightLayout layout)
      : data(p), K(k), n(cols), gate_major(layout == WeightLayout::gate_major) {}
  LSTMCORE_HOST_DEVICE std::int64_t ld() const { return gate_major ? K : n; }
  // Where column c of M starts (gate_major: row c of the stored matrix).
  LSTMCORE_HOST_DEVICE const T* col(std::int64_t c) const { return gate_major ? data + c * K : data + c; }
  // M[k, c]
  LSTMCORE_HOST_DEVICE T at(std::int64_t k, std::int64_t c) const {
    return gate_major ? data[c * K + k] : data[k * n + c];
  }
};

// A counter-based random generator (splitmix64's output function): the same key and
// index give the same number on any thread, in any order.
LSTMCORE_HOST_DEVICE inline std::uint64_t mix64(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}
constexpr std::uint64_t kGolden = 0x9E3779B97F4A7C15ULL;
// The key of stream `stream` (>= 1) under `seed`.
inline std::uint64_t stream_key(std::uint64_t seed, std::uint64_t stream) { return mix64(seed + kGolden * stream); }
// Element n of a stream: the top 53 bits of mix64(key + golden·(n + 1)), uniform in [0, 1).
LSTMCORE_HOST_DEVICE inline double counter_uniform(std::uint64_t key, std::uint64_t n) {
  return static_cast<double>(mix64(key + kGolden * (n + 1)) >> 11) * 0x1.0p-53;
}

}  // namespace detail
LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
