// Runs the registered tests:
//   test_lstmcore [FILTER...]              the tests whose name contains any FILTER (all without one)
//   test_lstmcore --group G [--group G2]   the tests of group G: names that start with "G_"
//   test_lstmcore --list                   the names
//   test_lstmcore --check-groups G1 G2...  runs nothing; fails unless every test belongs to exactly
//                                          one of the groups (ctest runs one entry per group)
// Built with LSTMCORE_TEST_NEEDS_CUDA_DEVICE, it exits 77 (skipped) on a machine without a CUDA device.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "harness.h"
#include "lstmcore/lstmcore.h"
#include "lstmcore/testing.h"

namespace {

bool in_group(const std::string& name, const std::string& group) { return name.rfind(group + "_", 0) == 0; }

// Every test in exactly one group, or a list of those that are not.
int check_groups(const std::vector<std::string>& groups) {
  int bad = 0;
  for (const auto& t : th::registry()) {
    std::string in;
    int n = 0;
    for (const auto& g : groups)
      if (in_group(t.name, g)) in += (n++ ? ", " : "") + g;
    if (n == 1) continue;
    ++bad;
    if (n == 0)
      std::printf("%s: in no group, so no ctest entry runs it\n", t.name);
    else
      std::printf("%s: in %d groups (%s), so it runs %d times\n", t.name, n, in.c_str(), n);
  }
  std::printf("%zu tests, %zu groups: %s\n", th::registry().size(), groups.size(),
              bad ? "some tests are not run exactly once" : "each test runs exactly once");
  return bad ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> filters, groups;
  bool list = false, check = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--list") == 0) list = true;
    else if (std::strcmp(argv[i], "--check-groups") == 0) check = true;
    else if (std::strcmp(argv[i], "--group") == 0 && i + 1 < argc) groups.emplace_back(argv[++i]);
    else if (check) groups.emplace_back(argv[i]);
    else filters.emplace_back(argv[i]);
  }
  if (check) return check_groups(groups);
  const auto selected = [&](const char* name) {
    if (filters.empty() && groups.empty()) return true;
    for (const auto& f : filters)
      if (std::string(name).find(f) != std::string::npos) return true;
    for (const auto& g : groups)
      if (in_group(name, g)) return true;
    return false;
  };
  if (list) {
    for (const auto& t : th::registry()) std::printf("%s\n", t.name);
    return 0;
  }

  // Scratch starts as NaN bytes: a kernel reading scratch it did not write fails here every
  // time, not only after a call that happened to leave NaN in a kept block.
  lstmcore::testing::poison_scratch(true);
  std::printf("%s\n", lstmcore::build_info().c_str());
#ifdef LSTMCORE_TEST_NEEDS_CUDA_DEVICE
  // ctest reads exit code 77 as "skipped" (SKIP_RETURN_CODE).
  if (lstmcore::cuda::device_count() == 0) {
    std::printf("skipped: no CUDA device on this machine\n");
    return 77;
  }
#endif
  int ran = 0, failed = 0;
  const auto start = std::chrono::steady_clock::now();
  for (const auto& t : th::registry()) {
    if (!selected(t.name)) continue;
    ++ran;
    const long before = th::failures();
    const auto t0 = std::chrono::steady_clock::now();
    try {
      t.fn();
    } catch (const std::exception& e) {
      th::fail(__FILE__, __LINE__, std::string("uncaught exception: ") + e.what());
    } catch (...) {
      th::fail(__FILE__, __LINE__, "uncaught exception of unknown type");
    }
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    const bool ok = th::failures() == before;
    if (!ok) ++failed;
    std::printf("[%s] %s (%.0f ms)\n", ok ? " OK " : "FAIL", t.name, ms);
    std::fflush(stdout);
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (const auto& [label, value] : th::maxima()) std::printf("  max %-34s %.3g\n", label.c_str(), value);
  std::printf("%d tests, %ld checks: %d passed, %d failed, %ld failed checks (%.2f s)\n", ran, th::checks(),
              ran - failed, failed, th::failures(), s);
  if (ran == 0) {
    std::fprintf(stderr, "no test matches the filter\n");
    return 2;
  }
  return failed == 0 ? 0 : 1;
}
