// lstmcore::cuda in any build, no GPU needed: what a build without CUDA, or a CUDA build
// on a machine without a device, answers. (The numbers on a GPU: test_cuda.cpp.)
#include <string>
#include <vector>

#include "harness.h"
#include "lstmcore/cuda.h"
#include "support.h"

using namespace ts;

namespace {

// A forward call whose pointers are host buffers of the right sizes: valid arguments, so
// what fails is the CUDA side (no build, no device), never a check.
struct HostCall {
  CellSpec spec;
  Dims d{3, 2, 4, 5};
  std::vector<double> x, w_x, w_h, y, h_n, c_n;
  lstmcore::ForwardArgs<double> a;
  explicit HostCall(CellSpec s) : spec(s) {
    const i64 G = gates(spec) * d.hidden;
    x.assign(d.steps * d.batch * d.input, 0.5);
    w_x.assign(d.input * G, 0.1);
    w_h.assign(d.hidden * G, 0.1);
    y.assign(d.steps * d.batch * d.hidden, 0.0);
    h_n.assign(d.batch * d.hidden, 0.0);
    c_n.assign(d.batch * d.hidden, 0.0);
    a.x = x.data();
    a.w_x = w_x.data();
    a.w_h = w_h.data();
    a.y = y.data();
    a.h_n = h_n.data();
    a.c_n = is_lstm(spec) ? c_n.data() : nullptr;
  }
};

}  // namespace

TEST(api_cuda_build_and_devices) {
  const int n = lstmcore::cuda::device_count();
  CHECK(n >= 0);
  if (!lstmcore::cuda::built()) CHECK(n == 0);
  const std::string info = lstmcore::build_info();
  CHECK_MSG(info.find(lstmcore::cuda::built() ? "cuda: yes" : "cuda: no") != std::string::npos, info);
}

TEST(api_cuda_checks_before_device) {
  // Bad arguments are refused by the CPU path's checks, with its messages, in any build.
  for (const CellSpec& spec : all_specs()) {
    HostCall c(spec);
    c.a.x = nullptr;
    CHECK_THROWS(lstmcore::cuda::forward<double>(c.spec, c.d, {}, c.a), lstmcore::InvalidArgument, "x: required");
    HostCall l(spec);
    const std::vector<i64> lengths = {1, 4};  // 4 > T = 3
    lstmcore::SequenceOptions o;
    o.seq_lengths = lengths.data();
    CHECK_THROWS(lstmcore::cuda::forward<double>(l.spec, l.d, o, l.a), lstmcore::InvalidArgument, "seq_lengths");
  }
}

TEST(api_cuda_unavailable) {
  if (lstmcore::cuda::built() && lstmcore::cuda::device_count() > 0) return;  // test_cuda.cpp's case
  for (const CellSpec& spec : all_specs()) {
    HostCall c(spec);
    // No CUDA build: says so. A CUDA build without a device: the runtime's reason, as
    // cuda::Error, before anything touches the (here host) pointers.
    const char* expected = lstmcore::cuda::built() ? "" : "built without CUDA";
    CHECK_THROWS(lstmcore::cuda::forward<double>(c.spec, c.d, {}, c.a), lstmcore::cuda::Error, expected);
    CHECK_MSG(c.y[0] == 0.0 && c.h_n[0] == 0.0, spec_name(spec) << ": an output was written");
  }
}
