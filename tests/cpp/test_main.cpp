// Runs the registered tests: test_lstmcore [--list] [FILTER...]
// A test runs when its name contains any FILTER (every test without one). Built with
// LSTMCORE_TEST_NEEDS_CUDA_DEVICE, it exits 77 (skipped) on a machine without a CUDA device.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "harness.h"
#include "lstmcore/lstmcore.h"

int main(int argc, char** argv) {
  std::vector<std::string> filters;
  bool list = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--list") == 0) list = true;
    else filters.emplace_back(argv[i]);
  }
  const auto selected = [&](const char* name) {
    if (filters.empty()) return true;
    for (const auto& f : filters)
      if (std::string(name).find(f) != std::string::npos) return true;
    return false;
  };
  if (list) {
    for (const auto& t : th::registry()) std::printf("%s\n", t.name);
    return 0;
  }

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
