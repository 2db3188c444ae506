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

template <typename T>
struct DevInputs {
  Dev<T> x, w_x, w_h, b, b_h, h0, c0;
  explicit DevInputs(const Inputs<T>& in)
      : x(in.x), w_x(in.w_x), w_h(in.w_h), b(in.b), b_h(in.b_h), h0(in.h0), c0(in.c0) {}
};

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
                          const lstmcore::cuda::DeviceOptions& options = sync_options()) {
  const Inputs<T> in(p);
  const DevInputs<T> d(in);
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
  lstmcore::cuda::forward<T>(p.spec, p.d, p.options(), a, options);
  cuda_ok(cudaStreamSynchronize(static_cast<cudaStream_t>(options.stream)), "cudaStreamSynchronize");
  return {to_double(y.host()), to_double(h_n.host()), to_double(c_n.host()), cache.host()};
}

// Backward on the device from a cache (filled by either backend), dy = Wy, dh_n = Wh, dc_n = Wc.
template <typename T>
Grads dev_backward(const Problem& p, const LossWeights& l, const std::vector<T>& cache_host) {
  const Inputs<T> in(p);
  const DevInputs<T> d(in);
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
  lstmcore::cuda::backward<T>(p.spec, p.d, p.options(), a, sync_options());
  Grads g;
  g.dx = to_double(dx.host());
  g.dh0 = to_double(dh0.host());
  g.dc0 = to_double(dc0.host());
  g.dw_x = to_double(dw_x.host());
  g.dw_h = to_double(dw_h.host());
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
      for (bool training : {false, true}) {
        const DevForward<T> gpu = dev_forward<T>(p, training);
        const std::string w = what + (training ? " (training)" : " (inference)");
        for (const auto& [name, got, want] : {std::tuple<const char*, const Vec*, const Vec*>{"y", &gpu.y, &cpu.y},
                                              {"h_n", &gpu.h_n, &cpu.h_n}, {"c_n", &gpu.c_n, &cpu.c_n}}) {
          const double e = rel_err(*got, *want);
          th::note(std::string(dtype) + " " + name, e);
          CHECK_MSG(e <= tol<T>(), w << " " << name << ": relative error " << e);
        }
      }
      // backward on each backend from its own cache and from the other's
      const LossWeights l = make_loss(p, seed * 31);
      const Grads cpu_grads = lib_backward<T>(p, l);
      const DevForward<T> gpu = dev_forward<T>(p, true);
      check_grads<T>(what + " backward", dev_backward<T>(p, l, gpu.cache), cpu_grads);
      check_grads<T>(what + " backward from the CPU's cache", dev_backward<T>(p, l, lib_forward<T>(p, true).cache),
                     cpu_grads);
      check_grads<T>(what + " CPU backward from the GPU's cache", lib_backward_from<T>(p, l, gpu.cache), cpu_grads);
    }
  }
}

}  // namespace

TEST(cuda_forward_backward_float) { compare_all<float>("f32"); }
TEST(cuda_forward_backward_double) { compare_all<double>("f64"); }

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
