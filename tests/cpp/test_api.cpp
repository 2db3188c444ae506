// The API around the numerics: argument errors, cache sizes, threads, names, version.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "harness.h"
#include "support.h"

using namespace ts;
using lstmcore::BackwardArgs;
using lstmcore::ForwardArgs;
using lstmcore::InvalidArgument;
using lstmcore::SequenceOptions;

namespace {

// Valid buffers for one call; each test breaks one thing.
struct Call {
  CellSpec spec;
  Dims d{4, 3, 2, 5};
  SequenceOptions o;
  std::vector<double> x, w_x, w_h, b, b_h, h0, c0, y, h_n, c_n, cache, dy, dh_n, dc_n, dx, dh0, dc0, dw_x, dw_h, db,
      db_h;
  ForwardArgs<double> fa;
  BackwardArgs<double> ba;

  explicit Call(CellSpec s) : spec(s) {
    const std::size_t T = d.steps, B = d.batch, I = d.input, H = d.hidden, G = gates(s) * H;
    Rng r(5);
    x = r.vec(T * B * I, -1, 1);
    w_x = r.vec(I * G, -.5, .5);
    w_h = r.vec(H * G, -.5, .5);
    b = r.vec(G, -.5, .5);
    b_h = r.vec(G, -.5, .5);
    h0 = r.vec(B * H, -.5, .5);
    c0 = r.vec(B * H, -.5, .5);
    dy = r.vec(T * B * H, -1, 1);
    dh_n = r.vec(B * H, -1, 1);
    dc_n = r.vec(B * H, -1, 1);
    const double sentinel = 777.0;  // outputs must keep it when a call is refused
    y.assign(T * B * H, sentinel);
    h_n.assign(B * H, sentinel);
    c_n.assign(B * H, sentinel);
    cache.assign(lstmcore::cache_size(s, d), sentinel);
    dx.assign(T * B * I, sentinel);
    dh0.assign(B * H, sentinel);
    dc0.assign(B * H, sentinel);
    dw_x.assign(I * G, sentinel);
    dw_h.assign(H * G, sentinel);
    db.assign(G, sentinel);
    db_h.assign(G, sentinel);
    const bool lstm = s.cell == Cell::lstm;
    fa = {x.data(), w_x.data(), w_h.data(), b.data(), b_h.data(), h0.data(), lstm ? c0.data() : nullptr,
          y.data(), h_n.data(), lstm ? c_n.data() : nullptr, cache.data()};
    ba.x = x.data();
    ba.w_x = w_x.data();
    ba.w_h = w_h.data();
    ba.h0 = h0.data();
    ba.c0 = lstm ? c0.data() : nullptr;
    ba.cache = cache.data();
    ba.dy = dy.data();
    ba.dh_n = dh_n.data();
    ba.dc_n = lstm ? dc_n.data() : nullptr;
    ba.dx = dx.data();
    ba.dh0 = dh0.data();
    ba.dc0 = lstm ? dc0.data() : nullptr;
    ba.dw_x = dw_x.data();
    ba.dw_h = dw_h.data();
    ba.db = db.data();
    ba.db_h = db_h.data();
  }
  void forward() { lstmcore::forward<double>(spec, d, o, fa); }
  void backward() { lstmcore::backward<double>(spec, d, o, ba); }
  bool outputs_untouched() const {
    for (const auto* v : {&y, &h_n, &c_n, &cache, &dx, &dh0, &dc0, &dw_x, &dw_h, &db, &db_h})
      for (double e : *v)
        if (e != 777.0) return false;
    return true;
  }
};

bool starts_with(const std::string& s, const std::string& prefix) { return s.compare(0, prefix.size(), prefix) == 0; }

}  // namespace

TEST(errors_null_required_pointers) {
  for (const CellSpec& spec : all_specs()) {
    const bool lstm = is_lstm(spec);
    std::vector<std::pair<const char*, const void**>> fwd, bwd;
    // Each case: a fresh Call with one pointer cleared; the message starts with its name.
    const char* fnames[] = {"x", "w_x", "w_h", "y", "h_n", "c_n"};
    for (const char* name : fnames) {
      if (!lstm && std::strcmp(name, "c_n") == 0) continue;
      Call c(spec);
      const std::string n = name;
      if (n == "x") c.fa.x = nullptr;
      if (n == "w_x") c.fa.w_x = nullptr;
      if (n == "w_h") c.fa.w_h = nullptr;
      if (n == "y") c.fa.y = nullptr;
      if (n == "h_n") c.fa.h_n = nullptr;
      if (n == "c_n") c.fa.c_n = nullptr;
      const std::string m = error_of([&] { c.forward(); });
      CHECK_MSG(starts_with(m, n + ":"), spec_name(spec) << " forward " << n << " = nullptr: '" << m << "'");
      CHECK_MSG(c.outputs_untouched(), spec_name(spec) << " forward " << n << ": an output was written");
    }
    const char* bnames[] = {"x", "w_x", "w_h", "cache", "dx", "dh0", "dw_x", "dw_h", "dc0"};
    for (const char* name : bnames) {
      if (!lstm && std::strcmp(name, "dc0") == 0) continue;
      Call c(spec);
      const std::string n = name;
      if (n == "x") c.ba.x = nullptr;
      if (n == "w_x") c.ba.w_x = nullptr;
      if (n == "w_h") c.ba.w_h = nullptr;
      if (n == "cache") c.ba.cache = nullptr;
      if (n == "dx") c.ba.dx = nullptr;
      if (n == "dh0") c.ba.dh0 = nullptr;
      if (n == "dw_x") c.ba.dw_x = nullptr;
      if (n == "dw_h") c.ba.dw_h = nullptr;
      if (n == "dc0") c.ba.dc0 = nullptr;
      const std::string m = error_of([&] { c.backward(); });
      CHECK_MSG(starts_with(m, n + ":"), spec_name(spec) << " backward " << n << " = nullptr: '" << m << "'");
      CHECK_MSG(c.outputs_untouched(), spec_name(spec) << " backward " << n << ": an output was written");
    }
  }
}

TEST(errors_dims_below_one) {
  for (const CellSpec& spec : all_specs()) {
    for (int which = 0; which < 4; ++which)
      for (std::int64_t bad : {std::int64_t(0), std::int64_t(-1), INT64_MIN}) {
        Call c(spec);
        std::int64_t* field[] = {&c.d.steps, &c.d.batch, &c.d.input, &c.d.hidden};
        const char* name[] = {"steps", "batch", "input", "hidden"};
        *field[which] = bad;
        const std::string mf = error_of([&] { c.forward(); });
        const std::string mb = error_of([&] { c.backward(); });
        const std::string mc = error_of([&] { lstmcore::cache_size(spec, c.d); });
        for (const std::string& m : {mf, mb, mc})
          CHECK_MSG(starts_with(m, "dims:") && m.find(name[which]) != std::string::npos &&
                        m.find(std::to_string(bad)) != std::string::npos,
                    spec_name(spec) << " " << name[which] << " = " << bad << ": '" << m << "'");
        CHECK(c.outputs_untouched());
      }
  }
}

TEST(errors_seq_lengths_out_of_range) {
  for (const CellSpec& spec : all_specs())
    for (std::int64_t bad : {std::int64_t(0), std::int64_t(-2), std::int64_t(5), INT64_MAX}) {
      Call c(spec);  // T = 4
      std::vector<std::int64_t> lengths = {4, 1, bad};
      c.o.seq_lengths = lengths.data();
      for (bool fwd : {true, false}) {
        const std::string m = error_of([&] { fwd ? c.forward() : c.backward(); });
        CHECK_MSG(starts_with(m, "seq_lengths:") && m.find(std::to_string(bad)) != std::string::npos &&
                      m.find("index 2") != std::string::npos,
                  spec_name(spec) << " length " << bad << ": '" << m << "'");
      }
      CHECK(c.outputs_untouched());
    }
}

TEST(errors_cell_state_for_non_lstm) {
  for (const CellSpec& spec : all_specs()) {
    if (is_lstm(spec)) continue;
    std::vector<double> extra(15, 0.0);
    {
      Call c(spec);
      c.fa.c0 = extra.data();
      const std::string m = error_of([&] { c.forward(); });
      CHECK_MSG(starts_with(m, "c0:"), spec_name(spec) << ": '" << m << "'");
      CHECK(c.outputs_untouched());
    }
    {
      Call c(spec);
      c.fa.c_n = extra.data();
      const std::string m = error_of([&] { c.forward(); });
      CHECK_MSG(starts_with(m, "c_n:"), spec_name(spec) << ": '" << m << "'");
    }
    {
      Call c(spec);
      c.ba.c0 = extra.data();
      const std::string m = error_of([&] { c.backward(); });
      CHECK_MSG(starts_with(m, "c0:"), spec_name(spec) << ": '" << m << "'");
    }
    {
      Call c(spec);
      c.ba.dc_n = extra.data();
      const std::string m = error_of([&] { c.backward(); });
      CHECK_MSG(starts_with(m, "dc_n:"), spec_name(spec) << ": '" << m << "'");
    }
    {
      Call c(spec);
      c.ba.dc0 = extra.data();
      const std::string m = error_of([&] { c.backward(); });
      CHECK_MSG(starts_with(m, "dc0:"), spec_name(spec) << ": '" << m << "'");
      CHECK(c.outputs_untouched());
    }
  }
}

TEST(errors_size_overflow) {
  const std::int64_t big = std::int64_t(1) << 40;
  for (const CellSpec& spec : all_specs()) {
    // The buffers are tiny: the call must refuse before touching them.
    const Dims cases[] = {{1, 1, 1, big}, {1, 1, big, big}, {big, big, 1, 1}, {1, big, big, 1}, {INT64_MAX, 2, 1, 1}};
    for (const Dims& d : cases) {
      Call c(spec);
      c.d = d;
      const std::string mf = error_of([&] { c.forward(); });
      const std::string mb = error_of([&] { c.backward(); });
      const std::string mc = error_of([&] { lstmcore::cache_size(spec, d); });
      for (const std::string& m : {mf, mb, mc})
        CHECK_MSG(m.find("overflow") != std::string::npos &&
                      (m.find("hidden") != std::string::npos || m.find("weights") != std::string::npos ||
                       m.find("steps") != std::string::npos || m.find("batch") != std::string::npos),
                  spec_name(spec) << " T" << d.steps << " B" << d.batch << " I" << d.input << " H" << d.hidden
                                  << ": '" << m << "'");
      CHECK(c.outputs_untouched());
    }
  }
}

TEST(errors_names_and_threads) {
  CHECK(lstmcore::parse_cell("lstm") == Cell::lstm);
  CHECK(lstmcore::parse_cell("gru") == Cell::gru);
  CHECK(lstmcore::parse_cell("rnn_tanh") == Cell::rnn_tanh);
  CHECK(lstmcore::parse_cell("rnn_relu") == Cell::rnn_relu);
  CHECK_THROWS(lstmcore::parse_cell("LSTM"), InvalidArgument, "cell");
  CHECK_THROWS(lstmcore::parse_cell(""), InvalidArgument, "cell");
  CHECK_THROWS(lstmcore::set_num_threads(0), InvalidArgument, "set_num_threads");
  CHECK_THROWS(lstmcore::set_num_threads(-4), InvalidArgument, "-4");
  // InvalidArgument is a std::invalid_argument, so generic handlers catch it.
  CHECK((std::is_base_of<std::invalid_argument, InvalidArgument>::value));
}

TEST(api_cache_size) {
  const Dims d{7, 3, 2, 5};
  CHECK(lstmcore::cache_size({Cell::lstm, true}, d) == 7u * 3 * 5 * 5);
  CHECK(lstmcore::cache_size({Cell::gru, true}, d) == 7u * 3 * 5 * 5);
  CHECK(lstmcore::cache_size({Cell::gru, false}, d) == 7u * 3 * 5 * 5);
  CHECK(lstmcore::cache_size({Cell::rnn_tanh, true}, d) == 7u * 3 * 5);
  CHECK(lstmcore::cache_size({Cell::rnn_relu, true}, d) == 7u * 3 * 5);
  CHECK(lstmcore::lstm_cache_size(d) == 7u * 3 * 5 * 5);
  CHECK(lstmcore::gru_cache_size(d) == 7u * 3 * 5 * 5);
  CHECK(lstmcore::gru_cache_size(d, false) == 7u * 3 * 5 * 5);
  CHECK(lstmcore::rnn_cache_size(d) == 7u * 3 * 5);
  CHECK(lstmcore::cache_size({Cell::lstm, true}, Dims{1, 1, 1, 1}) == 5u);
  // The input size does not enter the cache.
  CHECK(lstmcore::cache_size({Cell::lstm, true}, Dims{7, 3, 900, 5}) == 7u * 3 * 5 * 5);
  // A large but valid problem: the size is computed, not allocated.
  const Dims big{100000, 512, 1024, 2048};
  CHECK(lstmcore::cache_size({Cell::lstm, true}, big) == std::size_t(100000) * 512 * 5 * 2048);
  // The guards of lib_forward / lib_backward check the sizes are enough; here, that a
  // cache of exactly cache_size() elements is used up to its last element.
  for (const CellSpec& spec : all_specs()) {
    const Problem p = make_problem(spec, Dims{3, 2, 2, 3}, false, false, false, kAll, 9);
    const auto f = lib_forward<double>(p, true);
    CHECK_MSG(f.guards_ok && f.cache.size() == lstmcore::cache_size(spec, p.d), spec_name(spec));
    CHECK_MSG(!std::isnan(f.cache.back()) && !std::isnan(f.cache.front()),
              spec_name(spec) << ": forward left the cache's ends unwritten");
  }
}

TEST(api_names_version) {
  CHECK(lstmcore::gate_count(Cell::lstm) == 4);
  CHECK(lstmcore::gate_count(Cell::gru) == 3);
  CHECK(lstmcore::gate_count(Cell::rnn_tanh) == 1);
  CHECK(lstmcore::gate_count(Cell::rnn_relu) == 1);
  for (Cell c : {Cell::lstm, Cell::gru, Cell::rnn_tanh, Cell::rnn_relu})
    CHECK(lstmcore::parse_cell(lstmcore::cell_name(c)) == c);
  CHECK(std::string(LSTMCORE_VERSION_STRING) == std::to_string(LSTMCORE_VERSION_MAJOR) + "." +
                                                   std::to_string(LSTMCORE_VERSION_MINOR) + "." +
                                                   std::to_string(LSTMCORE_VERSION_PATCH));
  CHECK(lstmcore::build_info().find(LSTMCORE_VERSION_STRING) != std::string::npos);
  // Everything lives in the inline namespace v0; lstmcore::X names lstmcore::v0::X.
  CHECK((std::is_same<lstmcore::Dims, lstmcore::v0::Dims>::value));
  CHECK((std::is_same<lstmcore::ForwardArgs<float>, lstmcore::v0::ForwardArgs<float>>::value));
  void (*f1)(const CellSpec&, const Dims&, const SequenceOptions&, const ForwardArgs<double>&) =
      &lstmcore::forward<double>;
  void (*f2)(const CellSpec&, const Dims&, const SequenceOptions&, const ForwardArgs<double>&) =
      &lstmcore::v0::forward<double>;
  CHECK(f1 == f2);
  // Default-constructed structs: everything null / false / zero.
  const ForwardArgs<float> fa;
  CHECK(!fa.x && !fa.w_x && !fa.w_h && !fa.b && !fa.b_h && !fa.h0 && !fa.c0 && !fa.y && !fa.h_n && !fa.c_n && !fa.cache);
  const SequenceOptions o;
  CHECK(!o.reverse && !o.batch_first && !o.seq_lengths);
  const CellSpec s;
  CHECK(s.cell == Cell::lstm && s.reset_after);
}

TEST(threads_set_get) {
  ThreadsGuard guard;
  CHECK(lstmcore::get_num_threads() >= 1);
  lstmcore::set_num_threads(1);
  CHECK(lstmcore::get_num_threads() == 1);
  lstmcore::set_num_threads(2);
  CHECK(lstmcore::get_num_threads() == 2);
  lstmcore::set_num_threads(64);  // more than the hardware's is allowed
  CHECK(lstmcore::get_num_threads() == 64);
  try {
    lstmcore::set_num_threads(0);
  } catch (const InvalidArgument&) {
  }
  CHECK(lstmcore::get_num_threads() == 64);  // a refused value changes nothing
}

// One thread and two give the same forward outputs and gradients, on sizes where the
// OpenMP loops and the parallel GEMMs engage.
TEST(threads_one_vs_two) {
  ThreadsGuard guard;
  for (const CellSpec& spec : all_specs()) {
    const Problem p = make_problem(spec, Dims{4, 4096 / (gates(spec) * 32) + 3, 48, 32}, true, false, true, kAll, 123);
    const LossWeights l = make_loss(p, 124);
    lstmcore::set_num_threads(1);
    const auto f1 = lib_forward<double>(p, false);
    const Grads g1 = lib_backward<double>(p, l);
    const auto ff1 = lib_forward<float>(p, true);
    lstmcore::set_num_threads(2);
    const auto f2 = lib_forward<double>(p, false);
    const Grads g2 = lib_backward<double>(p, l);
    const auto ff2 = lib_forward<float>(p, true);
    const double ef = std::max({rel_err(f2.y, f1.y), rel_err(f2.h_n, f1.h_n), rel_err(f2.c_n, f1.c_n)});
    const double eb = std::max({rel_err(g2.dx, g1.dx), rel_err(g2.dh0, g1.dh0), rel_err(g2.dc0, g1.dc0),
                                rel_err(g2.dw_x, g1.dw_x), rel_err(g2.dw_h, g1.dw_h), rel_err(g2.db, g1.db),
                                rel_err(g2.db_h, g1.db_h)});
    const double eff = rel_err(ff2.y, ff1.y);
    th::note("1 vs 2 threads rel diff (double)", std::max(ef, eb));
    th::note("1 vs 2 threads rel diff (float)", eff);
    CHECK_MSG(ef <= 1e-14 && eb <= 1e-14, spec_name(spec) << ": forward " << ef << ", backward " << eb);
    CHECK_MSG(eff <= 1e-6, spec_name(spec) << ": float forward " << eff);
  }
}

// Concurrent calls on distinct buffers from several application threads.
TEST(threads_concurrent_calls) {
  std::vector<Problem> problems;
  for (const CellSpec& spec : all_specs())
    problems.push_back(make_problem(spec, Dims{5, 16, 8, 12}, false, true, true, kAll, 321));
  std::vector<Grads> serial;
  for (const Problem& p : problems) serial.push_back(lib_backward<double>(p, make_loss(p, 1)));
  std::vector<Grads> parallel(problems.size());
  std::vector<std::thread> workers;
  for (std::size_t i = 0; i < problems.size(); ++i)
    workers.emplace_back([&, i] {
      for (int rep = 0; rep < 3; ++rep) parallel[i] = lib_backward<double>(problems[i], make_loss(problems[i], 1));
    });
  for (auto& w : workers) w.join();
  for (std::size_t i = 0; i < problems.size(); ++i) {
    const double e = std::max({rel_err(parallel[i].dx, serial[i].dx), rel_err(parallel[i].dw_h, serial[i].dw_h),
                               rel_err(parallel[i].dh0, serial[i].dh0)});
    CHECK_MSG(e <= 1e-14, problems[i].describe() << ": " << e);
  }
}

TEST(api_isa_variants) {
  const std::vector<std::string> isas = lstmcore::available_isas();
  CHECK(!isas.empty());
  CHECK(!isas.empty() && isas.back() == "generic");  // best first; generic runs anywhere
  const std::string current = lstmcore::get_isa();
  CHECK(std::find(isas.begin(), isas.end(), current) != isas.end());
  CHECK(lstmcore::build_info().find("isa: " + current) != std::string::npos);
  for_each_isa([&](const std::string& isa) { CHECK_MSG(lstmcore::get_isa() == isa, isa); });
  CHECK(lstmcore::get_isa() == current);  // for_each_isa restored it
  CHECK_THROWS(lstmcore::set_isa("sse9"), InvalidArgument, "isa:");
  CHECK_THROWS(lstmcore::set_isa("sse9"), InvalidArgument, "sse9");
  CHECK(lstmcore::get_isa() == current);  // a refused name changes nothing
}
