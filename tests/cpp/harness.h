// A minimal test harness for the C++ tests (no external framework).
//
//   TEST(name) { CHECK(cond); CHECK_MSG(cond, "x = " << x); CHECK_THROWS(expr, Exc, "substr"); }
//
// Tests register themselves at static-initialisation time; test_main.cpp runs the
// ones whose name contains the filter given on the command line (all without one),
// prints one line per test and a summary, and exits nonzero on any failure.
// A failing CHECK reports and carries on; an exception escaping a test fails it.
#pragma once

#include <cmath>
#include <cstdio>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace th {

struct Test {
  const char* name;
  void (*fn)();
};

inline std::vector<Test>& registry() {
  static std::vector<Test> tests;
  return tests;
}

struct Registrar {
  Registrar(const char* name, void (*fn)()) { registry().push_back({name, fn}); }
};

inline long& checks() {
  static long n = 0;
  return n;
}
inline long& failures() {
  static long n = 0;
  return n;
}

inline void fail(const char* file, int line, const std::string& what) {
  ++failures();
  std::fprintf(stderr, "    FAILED %s:%d: %s\n", file, line, what.c_str());
}

// The largest value recorded under each label (printed after the summary), so a run
// shows how close each tolerance came to being exceeded.
inline std::map<std::string, double>& maxima() {
  static std::map<std::string, double> m;
  return m;
}
inline void note(const std::string& label, double value) {
  auto& m = maxima();
  auto it = m.find(label);
  if (it == m.end() || value > it->second || std::isnan(value)) m[label] = value;
}

}  // namespace th

#define TH_CAT2(a, b) a##b
#define TH_CAT(a, b) TH_CAT2(a, b)

#define TEST(name)                                              \
  static void name();                                           \
  static const th::Registrar TH_CAT(th_reg_, name)(#name, name); \
  static void name()

#define CHECK(cond)                                             \
  do {                                                          \
    ++th::checks();                                             \
    if (!(cond)) th::fail(__FILE__, __LINE__, "CHECK(" #cond ")"); \
  } while (0)

// msg is a stream expression: CHECK_MSG(err <= tol, "err " << err << " in " << what).
#define CHECK_MSG(cond, msg)                                                        \
  do {                                                                              \
    ++th::checks();                                                                 \
    if (!(cond)) {                                                                  \
      std::ostringstream th_os_;                                                    \
      th_os_ << "CHECK(" #cond "): " << msg;                                        \
      th::fail(__FILE__, __LINE__, th_os_.str());                                   \
    }                                                                               \
  } while (0)

// expr must throw Exc whose what() contains substr.
#define CHECK_THROWS(expr, Exc, substr)                                                              \
  do {                                                                                               \
    ++th::checks();                                                                                  \
    bool th_thrown_ = false;                                                                         \
    try {                                                                                            \
      expr;                                                                                          \
    } catch (const Exc& th_e_) {                                                                     \
      th_thrown_ = true;                                                                             \
      if (std::string(th_e_.what()).find(substr) == std::string::npos)                               \
        th::fail(__FILE__, __LINE__,                                                                 \
                 std::string("message '") + th_e_.what() + "' does not contain '" + (substr) + "'"); \
    } catch (const std::exception& th_e_) {                                                          \
      th_thrown_ = true;                                                                             \
      th::fail(__FILE__, __LINE__, std::string("wrong exception type: ") + th_e_.what());            \
    } catch (...) {                                                                                  \
      th_thrown_ = true;                                                                             \
      th::fail(__FILE__, __LINE__, "wrong exception type (not std::exception)");                     \
    }                                                                                                \
    if (!th_thrown_) th::fail(__FILE__, __LINE__, "no exception from: " #expr);                      \
  } while (0)
