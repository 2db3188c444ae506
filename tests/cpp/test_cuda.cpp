// The CUDA backend against the CPU path (test_lstmcore_cuda; built with LSTMCORE_CUDA,
// skipped with exit code 77 when the machine has no CUDA device).
//
// Every cell, both dtypes, every option (reverse, batch_first, seq_lengths, each optional
// input present or absent): forward outputs, the training forward, and every gradient of
// backward, as relative norms against the CPU's results: ≤ 1e-5 in float (no TF32), ≤ 1e-12
// in double. The caches are exchanged too: a cache filled on one backend, run backward on
// the other, gives the same gradients, which checks that both share one layout.
#include <cuda_runtime.h>

#include <cstdio>
#include <deque>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "harness.h"
#include "lstmcore/cuda.h"
#include "support.h"

using namespace ts;

namespace {

void cuda_ok(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

// A device copy of a host vector (or an output of n elements prefilled with NaN bytes);
// nullptr when empty, like support.h's ptr().
template <typename T>
class Dev {
 public:
  Dev() = default;
  explicit Dev(const std::vector<T>& host) : n_(host.size()) {
    if (!n_) return;
    cuda_ok(cudaMalloc(&p_, bytes()), "cudaMalloc");
    cuda_ok(cudaMemcpy(p_, host.data(), bytes(), cudaMemcpyHostToDevice), "cudaMemcpy H2D");
  }
  static Dev output(std::size_t n) {
    Dev d;
    d.n_ = n;
    if (n) {
      cuda_ok(cudaMalloc(&d.p_, d.bytes()), "cudaMalloc");
      cuda_ok(cudaMemset(d.p_, 0xff, d.bytes()), "cudaMemset");  // all-ones bytes: NaN
    }
    return d;
  }
  Dev(Dev&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr; }
  Dev& operator=(Dev&& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(n_, o.n_);
    return *this;
  }
  ~Dev() {
    if (p_) cudaFree(p_);
  }
  T* get() const { return p_; }
  std::vector<T> host() const {
    std::vector<T> v(n_);
    if (n_) cuda_ok(cudaMemcpy(v.data(), p_, bytes(), cudaMemcpyDeviceToHost), "cudaMemcpy D2H");
    return v;
  }

 private:
  std::size_t bytes() const { return n_ * sizeof(T); }
  T* p_ = nullptr;
  std::size_t n_ = 0;
};

// The inputs on the device; with gate_major the weights as their transposes (G·H, I), (G·H, H).
template <typename T>
struct DevInputs {
  Dev<T> x, w_x, w_h, b, b_h, h0, c0;
  DevInputs(const Inputs<T>& in, const Problem& p, bool gate_major)
      : x(in.x),
        w_x(gate_major ? transposed(in.w_x, p.I(), p.G()) : in.w_x),
        w_h(gate_major ? transposed(in.w_h, p.H(), p.G()) : in.w_h),
        b(in.b),
        b_h(in.b_h),
        h0(in.h0),
        c0(in.c0) {}
};

lstmcore::WeightLayout layout_of(bool gate_major) {
  return gate_major ? lstmcore::WeightLayout::gate_major : lstmcore::WeightLayout::input_major;
}

lstmcore::cuda::DeviceOptions sync_options() {
  lstmcore::cuda::DeviceOptions o;
  o.synchronize = true;  // asynchronous kernel errors become exceptions here
  return o;
}

template <typename T>
struct DevForward {
  Vec y, h_n, c_n;
  std::vector<T> cache;
};

template <typename T>
DevForward<T> dev_forward(const Problem& p, bool training,
                          const lstmcore::cuda::DeviceOptions& options = sync_options(), bool gate_major = false) {
  const Inputs<T> in(p);
  const DevInputs<T> d(in, p, gate_major);
  const i64 BH = p.B() * p.H();
  Dev<T> y = Dev<T>::output(p.T() * BH), h_n = Dev<T>::output(BH), c_n = Dev<T>::output(is_lstm(p.spec) ? BH : 0);
  Dev<T> cache = Dev<T>::output(training ? lstmcore::cache_size(p.spec, p.d) : 0);
  lstmcore::ForwardArgs<T> a;
  a.x = d.x.get();
  a.w_x = d.w_x.get();
  a.w_h = d.w_h.get();
  a.b = d.b.get();
  a.b_h = d.b_h.get();
  a.h0 = d.h0.get();
  a.c0 = d.c0.get();
  a.y = y.get();
  a.h_n = h_n.get();
  a.c_n = c_n.get();
  a.cache = cache.get();
  a.weight_layout = layout_of(gate_major);
  lstmcore::cuda::forward<T>(p.spec, p.d, p.options(), a, options);
  cuda_ok(cudaStreamSynchronize(static_cast<cudaStream_t>(options.stream)), "cudaStreamSynchronize");
  return {to_double(y.host()), to_double(h_n.host()), to_double(c_n.host()), cache.host()};
}

// Backward on the device from a cache (filled by either backend), dy = Wy, dh_n = Wh, dc_n = Wc.
// gate_major: the weights and their gradients as their transposes; returned in input-major order.
template <typename T>
Grads dev_backward(const Problem& p, const LossWeights& l, const std::vector<T>& cache_host,
                   const lstmcore::cuda::DeviceOptions& options = sync_options(), bool gate_major = false) {
  const Inputs<T> in(p);
  const DevInputs<T> d(in, p, gate_major);
  Dev<T> cache(cache_host), dy(cast<T>(l.wy)), dh_n(cast<T>(l.wh)), dc_n(cast<T>(l.wc));
  const i64 BH = p.B() * p.H(), G = p.G();
  Dev<T> dx = Dev<T>::output(p.T() * p.B() * p.I()), dh0 = Dev<T>::output(BH),
         dc0 = Dev<T>::output(is_lstm(p.spec) ? BH : 0), dw_x = Dev<T>::output(p.I() * G),
         dw_h = Dev<T>::output(p.H() * G), db = Dev<T>::output(G), db_h = Dev<T>::output(G);
  lstmcore::BackwardArgs<T> a;
  a.x = d.x.get();
  a.w_x = d.w_x.get();
  a.w_h = d.w_h.get();
  a.h0 = d.h0.get();
  a.c0 = d.c0.get();
  a.cache = cache.get();
  a.dy = dy.get();
  a.dh_n = dh_n.get();
  a.dc_n = dc_n.get();
  a.dx = dx.get();
  a.dh0 = dh0.get();
  a.dc0 = dc0.get();
  a.dw_x = dw_x.get();
  a.dw_h = dw_h.get();
  a.db = db.get();
  a.db_h = db_h.get();
  a.weight_layout = layout_of(gate_major);
  lstmcore::cuda::backward<T>(p.spec, p.d, p.options(), a, options);
  Grads g;
  g.dx = to_double(dx.host());
  g.dh0 = to_double(dh0.host());
  g.dc0 = to_double(dc0.host());
  g.dw_x = to_double(gate_major ? transposed(dw_x.host(), G, p.I()) : dw_x.host());
  g.dw_h = to_double(gate_major ? transposed(dw_h.host(), G, p.H()) : dw_h.host());
  g.db = to_double(db.host());
  g.db_h = to_double(db_h.host());
  return g;
}

template <typename T>
double tol() {
  return sizeof(T) == 4 ? 1e-5 : 1e-12;
}

template <typename T>
void check_grads(const std::string& what, const Grads& got, const Grads& want) {
  const std::pair<const char*, std::pair<const Vec*, const Vec*>> fields[] = {
      {"dx", {&got.dx, &want.dx}},       {"dh0", {&got.dh0, &want.dh0}},    {"dc0", {&got.dc0, &want.dc0}},
      {"dw_x", {&got.dw_x, &want.dw_x}}, {"dw_h", {&got.dw_h, &want.dw_h}}, {"db", {&got.db, &want.db}},
      {"db_h", {&got.db_h, &want.db_h}}};
  for (const auto& [name, pair] : fields) {
    const double e = rel_err(*pair.first, *pair.second);
    th::note(std::string(sizeof(T) == 4 ? "f32 " : "f64 ") + name, e);
    CHECK_MSG(e <= tol<T>(), what << " " << name << ": relative error " << e);
  }
}

// The option sets: every option value somewhere, the sizes small but not all equal.
struct Options {
  Dims d;
  bool reverse, batch_first, lengths;
  unsigned optionals;
};
const Options kOptions[] = {
    {{7, 3, 5, 6}, false, false, false, kAll},  {{9, 4, 3, 7}, true, false, false, kAll},
    {{8, 5, 4, 5}, false, false, true, kAll},   {{6, 5, 7, 3}, true, true, true, kAll},
    {{3, 1, 1, 2}, false, false, false, 0},     {{5, 3, 6, 4}, false, true, false, kB | kH0},
    {{4, 2, 33, 9}, true, false, false, kBh | kC0}, {{5, 3, 4, 130}, false, false, true, kAll},
};

template <typename T>
void compare_all(const char* dtype) {
  std::uint64_t seed = 7;
  for (const CellSpec& spec : all_specs()) {
    for (const Options& o : kOptions) {
      Problem p = make_problem(spec, o.d, o.reverse, o.batch_first, o.lengths, o.optionals, ++seed);
      p.label = dtype;
      const std::string what = p.describe();
      // inference and training forward
      const FwdResult<T> cpu = lib_forward<T>(p, true);
      for (int run = 0; run < 4; ++run) {
        // inference and training, each with the persistent kernel (the default for these
        // small batches) and with a GEMM and a kernel per step
        const bool training = run % 2, persistent = run < 2;
        lstmcore::cuda::DeviceOptions options = sync_options();
        if (!persistent) options.persistent_batch = 0;
        const DevForward<T> gpu = dev_forward<T>(p, training, options);
        const std::string w = what + (training ? " (training" : " (inference") + (persistent ? ", persistent)" : ")");
        for (const auto& [name, got, want] : {std::tuple<const char*, const Vec*, const Vec*>{"y", &gpu.y, &cpu.y},
                                              {"h_n", &gpu.h_n, &cpu.h_n}, {"c_n", &gpu.c_n, &cpu.c_n}}) {
          const double e = rel_err(*got, *want);
          th::note(std::string(dtype) + " " + name, e);
          CHECK_MSG(e <= tol<T>(), w << " " << name << ": relative error " << e);
        }
      }
      // backward on each backend from its own cache (persistent forward or not) and from
      // the other's
      const LossWeights l = make_loss(p, seed * 31);
      const Grads cpu_grads = lib_backward<T>(p, l);
      const DevForward<T> gpu = dev_forward<T>(p, true);
      check_grads<T>(what + " backward", dev_backward<T>(p, l, gpu.cache), cpu_grads);
      lstmcore::cuda::DeviceOptions per_step = sync_options();
      per_step.persistent_batch = 0;
      const std::vector<T> per_step_cache = dev_forward<T>(p, true, per_step).cache;
      check_grads<T>(what + " backward (per-step forward)", dev_backward<T>(p, l, per_step_cache), cpu_grads);
      check_grads<T>(what + " per-step backward", dev_backward<T>(p, l, per_step_cache, per_step), cpu_grads);
      check_grads<T>(what + " backward from the CPU's cache", dev_backward<T>(p, l, lib_forward<T>(p, true).cache),
                     cpu_grads);
      check_grads<T>(what + " CPU backward from the GPU's cache", lib_backward_from<T>(p, l, gpu.cache), cpu_grads);
    }
  }
}

// WeightLayout::gate_major on the device: every cell, forward (inference, training) and
// backward, with the persistent kernels and with a GEMM per step, against the CPU on the
// input-major weights.
template <typename T>
void compare_gate_major(const char* dtype) {
  std::uint64_t seed = 500;
  for (const CellSpec& spec : all_specs()) {
    for (const Options& o : {kOptions[0], kOptions[3], kOptions[6]}) {
      Problem p = make_problem(spec, o.d, o.reverse, o.batch_first, o.lengths, o.optionals, ++seed);
      p.label = dtype;
      const std::string what = p.describe() + " gate_major";
      const FwdResult<T> cpu = lib_forward<T>(p, true);
      const LossWeights l = make_loss(p, seed * 31);
      const Grads cpu_grads = lib_backward<T>(p, l);
      for (bool persistent : {true, false}) {
        lstmcore::cuda::DeviceOptions options = sync_options();
        if (!persistent) options.persistent_batch = 0;
        const std::string w = what + (persistent ? " (persistent)" : " (per step)");
        for (bool training : {false, true}) {
          const DevForward<T> gpu = dev_forward<T>(p, training, options, true);
          for (const auto& [name, got, want] : {std::tuple<const char*, const Vec*, const Vec*>{"y", &gpu.y, &cpu.y},
                                                {"h_n", &gpu.h_n, &cpu.h_n}, {"c_n", &gpu.c_n, &cpu.c_n}}) {
            const double e = rel_err(*got, *want);
            th::note(std::string(dtype) + " gate_major " + name, e);
            CHECK_MSG(e <= tol<T>(), w << " " << name << ": relative error " << e);
          }
          if (training) check_grads<T>(w + " backward", dev_backward<T>(p, l, gpu.cache, options, true), cpu_grads);
        }
      }
    }
  }
}

// ---- layer stacks ----------------------------------------------------------------------

// Arrays of one stack call, on the host or (device = true) on the device.
template <typename T>
class Arena {
 public:
  explicit Arena(bool device) : device_(device) {}
  T* put(const Vec& v) {
    if (device_) {
      dev_.emplace_back(cast<T>(v));
      return dev_.back().get();
    }
    host_.push_back(cast<T>(v));
    return host_.back().data();
  }
  T* out(i64 n) { return put(Vec(static_cast<std::size_t>(n), std::nan(""))); }
  Vec get(const T* p, i64 n) const {
    if (!device_) return Vec(p, p + n);
    std::vector<T> v(static_cast<std::size_t>(n));
    cuda_ok(cudaMemcpy(v.data(), p, sizeof(T) * v.size(), cudaMemcpyDeviceToHost), "cudaMemcpy D2H");
    return to_double(v);
  }

 private:
  bool device_;
  std::deque<Dev<T>> dev_;
  std::deque<std::vector<T>> host_;
};

struct StackConfig {
  CellSpec cell;
  i64 L;
  int D;
  lstmcore::Merge merge;
  double dropout;
  bool lengths, batch_first;
};

// Training forward, backward and an inference forward of one stack; every output in order.
template <typename T>
std::vector<std::pair<std::string, Vec>> run_stack(bool device, const StackConfig& c, std::uint64_t seed) {
  const i64 T_ = 5, B = 3, I = 4, H = 6;
  const Dims dims{T_, B, I, H};
  lstmcore::StackSpec s;
  s.cell = c.cell;
  s.num_layers = c.L;
  s.directions = c.D;
  s.dropout = c.dropout;
  s.seed = 42;
  s.merge = c.merge;
  const bool lstm = is_lstm(c.cell);
  const i64 G = gates(c.cell) * H, O = c.D == 2 && c.merge == lstmcore::Merge::concat ? 2 * H : H;
  const i64 LD = c.L * c.D, rows = T_ * B;
  Rng r(seed);
  Arena<T> a(device);
  std::vector<lstmcore::LayerWeights<T>> w(static_cast<std::size_t>(LD));
  std::vector<lstmcore::LayerGradients<T>> g(w.size());
  std::vector<i64> in_width(w.size());
  for (i64 j = 0; j < LD; ++j) {
    in_width[j] = j < c.D ? I : O;
    w[j].w_x = a.put(r.vec(in_width[j] * G, -0.5, 0.5));
    w[j].w_h = a.put(r.vec(H * G, -0.5, 0.5));
    w[j].b = a.put(r.vec(G, -0.3, 0.3));
    w[j].b_h = j % 2 ? nullptr : a.put(r.vec(G, -0.3, 0.3));
    g[j].dw_x = a.out(in_width[j] * G);
    g[j].dw_h = a.out(H * G);
    g[j].db = a.out(G);
    g[j].db_h = a.out(G);
  }
  const std::vector<std::int64_t> lengths{5, 2, 4};
  lstmcore::SequenceOptions o;
  o.batch_first = c.batch_first;
  o.seq_lengths = c.lengths ? lengths.data() : nullptr;
  const i64 cache_n = static_cast<i64>(lstmcore::stack_cache_size(s, dims));
  lstmcore::StackForwardArgs<T> f;
  f.x = a.put(r.vec(rows * I, -1, 1));
  f.weights = w.data();
  f.h0 = a.put(r.vec(LD * B * H, -0.5, 0.5));
  f.c0 = lstm ? a.put(r.vec(LD * B * H, -0.5, 0.5)) : nullptr;
  f.y = a.out(rows * O);
  f.h_n = a.out(LD * B * H);
  f.c_n = lstm ? a.out(LD * B * H) : nullptr;
  f.cache = a.out(cache_n);
  lstmcore::StackBackwardArgs<T> b;
  b.dy = a.put(r.vec(rows * O, -1, 1));
  b.dh_n = a.put(r.vec(LD * B * H, -1, 1));
  b.dc_n = lstm ? a.put(r.vec(LD * B * H, -1, 1)) : nullptr;
  lstmcore::StackForwardArgs<T> inf = f;
  inf.y = a.out(rows * O);
  inf.h_n = a.out(LD * B * H);
  inf.c_n = lstm ? a.out(LD * B * H) : nullptr;
  inf.cache = nullptr;
  if (device) {
    lstmcore::cuda::stack_forward<T>(s, dims, o, f, sync_options());
  } else {
    lstmcore::stack_forward<T>(s, dims, o, f);
  }
  std::vector<std::pair<std::string, Vec>> res{{"y", a.get(f.y, rows * O)}, {"h_n", a.get(f.h_n, LD * B * H)},
                                               {"cache", a.get(f.cache, cache_n)}};
  if (lstm) res.push_back({"c_n", a.get(f.c_n, LD * B * H)});
  b.x = f.x;
  b.weights = w.data();
  b.h0 = f.h0;
  b.c0 = f.c0;
  b.cache = f.cache;
  b.dx = a.out(rows * I);
  b.dh0 = a.out(LD * B * H);
  b.dc0 = lstm ? a.out(LD * B * H) : nullptr;
  b.grads = g.data();
  if (device) {
    lstmcore::cuda::stack_backward<T>(s, dims, o, b, sync_options());
    lstmcore::cuda::stack_forward<T>(s, dims, o, inf, sync_options());
  } else {
    lstmcore::stack_backward<T>(s, dims, o, b);
    lstmcore::stack_forward<T>(s, dims, o, inf);
  }
  res.push_back({"dx", a.get(b.dx, rows * I)});
  res.push_back({"dh0", a.get(b.dh0, LD * B * H)});
  if (lstm) res.push_back({"dc0", a.get(b.dc0, LD * B * H)});
  for (i64 j = 0; j < LD; ++j) {
    const std::string at = "[" + std::to_string(j) + "]";
    res.push_back({"dw_x" + at, a.get(g[j].dw_x, in_width[j] * G)});
    res.push_back({"dw_h" + at, a.get(g[j].dw_h, H * G)});
    res.push_back({"db" + at, a.get(g[j].db, G)});
    res.push_back({"db_h" + at, a.get(g[j].db_h, G)});
  }
  res.push_back({"y (inference)", a.get(inf.y, rows * O)});
  res.push_back({"h_n (inference)", a.get(inf.h_n, LD * B * H)});
  return res;
}

template <typename T>
void compare_stacks(const char* dtype) {
  using lstmcore::Merge;
  std::uint64_t seed = 1000;
  for (const CellSpec& cell : all_specs()) {
    const StackConfig configs[] = {
        {cell, 2, 2, Merge::concat, 0.0, false, false}, {cell, 3, 2, Merge::sum, 0.4, true, false},
        {cell, 2, 1, Merge::concat, 0.5, true, true},   {cell, 1, 2, Merge::concat, 0.0, true, true},
        {cell, 2, 2, Merge::concat, 0.3, false, true},
    };
    for (const StackConfig& c : configs) {
      const auto cpu = run_stack<T>(false, c, ++seed);
      const auto gpu = run_stack<T>(true, c, seed);
      CHECK(cpu.size() == gpu.size());
      for (std::size_t i = 0; i < cpu.size() && i < gpu.size(); ++i) {
        // Cache rows past a sequence's length are never read; only the CPU zeros them.
        if (c.lengths && cpu[i].first == "cache") continue;
        const double e = rel_err(gpu[i].second, cpu[i].second);
        th::note(std::string(dtype) + " stack", e);
        CHECK_MSG(e <= tol<T>(), dtype << " " << spec_name(cell) << " L=" << c.L << " D=" << c.D << " p=" << c.dropout
                                       << " lengths=" << c.lengths << " batch_first=" << c.batch_first << ": "
                                       << cpu[i].first << " relative error " << e);
      }
    }
  }
}

}  // namespace

TEST(cuda_forward_backward_float) { compare_all<float>("f32"); }
TEST(cuda_forward_backward_double) { compare_all<double>("f64"); }

TEST(cuda_gate_major_float) { compare_gate_major<float>("f32"); }
TEST(cuda_gate_major_double) { compare_gate_major<double>("f64"); }

TEST(cuda_stack_float) { compare_stacks<float>("f32"); }
TEST(cuda_stack_double) { compare_stacks<double>("f64"); }

TEST(cuda_stack_refuses_variants) {
  lstmcore::StackSpec s;
  s.cell = {Cell::lstm, true};
  lstmcore::VariantOptions v = lstmcore::variant_defaults(Cell::lstm);
  v.peepholes = true;
  s.variant = &v;
  lstmcore::StackForwardArgs<float> f;
  CHECK_THROWS(lstmcore::cuda::stack_forward<float>(s, {3, 2, 4, 5}, {}, f), lstmcore::InvalidArgument,
               "plain cells only");
}

TEST(cuda_streams_and_devices) {
  // A caller's stream and an explicit device index give the same results as the defaults.
  const Problem p = make_problem({Cell::lstm, true}, {6, 3, 4, 5}, false, false, true, kAll, 99);
  const DevForward<double> ref = dev_forward<double>(p, false);
  cudaStream_t stream = nullptr;
  cuda_ok(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate");
  lstmcore::cuda::DeviceOptions o;
  o.device = 0;
  o.stream = stream;
  const DevForward<double> on_stream = dev_forward<double>(p, false, o);
  cudaStreamDestroy(stream);
  CHECK(rel_err(on_stream.y, ref.y) == 0.0);
  CHECK(rel_err(on_stream.h_n, ref.h_n) == 0.0);
  CHECK(rel_err(on_stream.c_n, ref.c_n) == 0.0);
  // A device index that does not exist is an error, not a crash.
  o.device = lstmcore::cuda::device_count();
  o.stream = nullptr;
  CHECK_THROWS(dev_forward<double>(p, false, o), lstmcore::cuda::Error, "cudaSetDevice");
}
