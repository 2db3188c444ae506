// Calls that must fail cleanly or stay exact under misuse: outputs that share memory with
// inputs (refused by name, nothing written), settings changed while other threads' calls
// run (each call keeps the settings it started with), and the scratch memory kept
// between calls (bounded, released on request).
#include <atomic>
#include <cstdint>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"
#include "support.h"

using namespace ts;
using lstmcore::InvalidArgument;

namespace {

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// One LSTM call's buffers, all inside one arena, so that a test can make any two of them
// share memory.
struct Arena {
  Dims d{5, 3, 4, 6};
  CellSpec spec{Cell::lstm, true};
  std::vector<double> mem;
  std::vector<std::int64_t> lengths{5, 2, 4};
  lstmcore::ForwardArgs<double> fa;
  lstmcore::BackwardArgs<double> ba;
  lstmcore::SequenceOptions o;

  Arena() {
    const i64 T = d.steps, B = d.batch, I = d.input, H = d.hidden, G = 4 * H;
    const i64 C = static_cast<i64>(lstmcore::cache_size(spec, d));
    const i64 sizes[] = {T * B * I, I * G, H * G, G, G, B * H, B * H, T * B * H, B * H, B * H, C,
                         T * B * H, B * H, B * H, T * B * I, B * H, B * H, I * G, H * G, G, G};
    i64 total = 0;
    for (i64 n : sizes) total += n;
    Rng r(3);
    mem = r.vec(static_cast<std::size_t>(total), -0.5, 0.5);
    double* p = mem.data();
    auto take = [&p](i64 n) {
      double* q = p;
      p += n;
      return q;
    };
    fa.x = take(T * B * I);
    fa.w_x = take(I * G);
    fa.w_h = take(H * G);
    fa.b = take(G);
    fa.b_h = take(G);
    fa.h0 = take(B * H);
    fa.c0 = take(B * H);
    fa.y = take(T * B * H);
    fa.h_n = take(B * H);
    fa.c_n = take(B * H);
    fa.cache = take(C);
    ba.x = fa.x;
    ba.w_x = fa.w_x;
    ba.w_h = fa.w_h;
    ba.h0 = fa.h0;
    ba.c0 = fa.c0;
    ba.cache = fa.cache;
    ba.dy = take(T * B * H);
    ba.dh_n = take(B * H);
    ba.dc_n = take(B * H);
    ba.dx = take(T * B * I);
    ba.dh0 = take(B * H);
    ba.dc0 = take(B * H);
    ba.dw_x = take(I * G);
    ba.dw_h = take(H * G);
    ba.db = take(G);
    ba.db_h = take(G);
    o.seq_lengths = lengths.data();
  }
  void forward() { lstmcore::forward<double>(spec, d, o, fa); }
  void backward() { lstmcore::backward<double>(spec, d, o, ba); }
};

}  // namespace

TEST(errors_overlapping_outputs) {
  {  // y over the lengths (the crash of issue 12): refused before anything is written
    Arena a;
    std::vector<std::int64_t> shared(64, 2);
    a.o.seq_lengths = shared.data();
    a.fa.y = reinterpret_cast<double*>(shared.data());  // 8-byte elements: the same bytes
    const std::vector<std::int64_t> before = shared;
    const std::string e = error_of([&] { a.forward(); });
    CHECK_MSG(has(e, "y: overlaps the input seq_lengths"), e);
    CHECK(shared == before);
  }
  {  // a partial overlap of two outputs, through an offset view
    Arena a;
    a.fa.h_n = a.fa.y + 2;
    const std::string e = error_of([&] { a.forward(); });
    CHECK_MSG((has(e, "y: overlaps the output h_n") || has(e, "h_n: overlaps the output y")), e);
  }
  {  // the last element of an input
    Arena a;
    a.fa.c_n = const_cast<double*>(a.fa.w_h) + 4 * 6 * 6 - 1;
    const std::string e = error_of([&] { a.forward(); });
    CHECK_MSG(has(e, "c_n: overlaps the input w_h"), e);
  }
  {  // the cache is an output of forward
    Arena a;
    a.fa.cache = const_cast<double*>(a.fa.x);
    const std::string e = error_of([&] { a.forward(); });
    CHECK_MSG(has(e, "cache: overlaps the input x"), e);
  }
  {  // adjacent buffers do not overlap; inputs may share memory
    Arena a;
    a.fa.b_h = a.fa.b;
    a.ba.c0 = a.fa.c0 = a.fa.h0;
    const std::string e = error_of([&] { a.forward(); });
    CHECK_MSG(e == "<no exception>", e);
  }
  {  // backward: the cache is in/out, so no input may share it either
    Arena a;
    a.forward();
    a.ba.dy = a.ba.cache + 7;
    const std::string e = error_of([&] { a.backward(); });
    CHECK_MSG(has(e, "cache: overlaps the input dy"), e);
  }
  {
    Arena a;
    a.forward();
    a.ba.dw_h = a.ba.dx;
    const std::string e = error_of([&] { a.backward(); });
    CHECK_MSG((has(e, "dx: overlaps the output dw_h") || has(e, "dw_h: overlaps the output dx")), e);
    a.ba.dw_h = const_cast<double*>(a.ba.dh_n);
    const std::string e2 = error_of([&] { a.backward(); });
    CHECK_MSG(has(e2, "dw_h: overlaps the input dh_n"), e2);
  }
  {  // a cell variant's parameters are inputs too
    Arena a;
    lstmcore::VariantOptions vo;
    vo.peepholes = true;
    std::vector<double> cache(lstmcore::variant_cache_size(a.spec, vo, a.d));
    a.fa.cache = cache.data();
    lstmcore::VariantParams<double> v;
    v.peepholes = a.fa.y + 1;
    const std::string e = error_of([&] { lstmcore::variant_forward<double>(a.spec, vo, a.d, a.o, a.fa, v); });
    CHECK_MSG(has(e, "y: overlaps the input peepholes"), e);
    std::vector<double> peepholes(3 * 6, 0.1);
    v.peepholes = peepholes.data();
    lstmcore::variant_forward<double>(a.spec, vo, a.d, a.o, a.fa, v);
    a.ba.cache = cache.data();
    lstmcore::VariantGrads<double> g;
    g.dpeepholes = a.ba.dw_x + 3;  // a variant's gradient over another output
    const std::string e2 = error_of([&] { lstmcore::variant_backward<double>(a.spec, vo, a.d, a.o, a.ba, v, g); });
    CHECK_MSG((has(e2, "dpeepholes: overlaps the output dw_x") || has(e2, "dw_x: overlaps the output dpeepholes")),
              e2);
  }
  {  // a stack names the layer
    const Dims d{4, 2, 3, 5};
    lstmcore::StackSpec s;
    s.cell = {Cell::gru, true};
    s.num_layers = 2;
    Rng r(9);
    std::vector<Vec> w;
    for (i64 k = 0; k < 2; ++k) {
      w.push_back(r.vec((k == 0 ? 3 : 5) * 15, -0.3, 0.3));
      w.push_back(r.vec(5 * 15, -0.3, 0.3));
    }
    std::vector<lstmcore::LayerWeights<double>> lw(2);
    for (i64 k = 0; k < 2; ++k) {
      lw[k].w_x = w[2 * k].data();
      lw[k].w_h = w[2 * k + 1].data();
    }
    Vec x = r.vec(4 * 2 * 3, -1, 1), y(4 * 2 * 5), h_n(2 * 2 * 5);
    lstmcore::StackForwardArgs<double> a;
    a.x = x.data();
    a.weights = lw.data();
    a.y = w[3].data();  // the output over layer 1's w_h
    a.h_n = h_n.data();
    const std::string e = error_of([&] { lstmcore::stack_forward<double>(s, d, {}, a); });
    CHECK_MSG(has(e, "y: overlaps the input weights[1] (layer 1, forward).w_h"), e);
    a.y = y.data();
    a.workspace = x.data();
    const std::string e2 = error_of([&] { lstmcore::stack_forward<double>(s, d, {}, a); });
    CHECK_MSG(has(e2, "workspace: overlaps the input x"), e2);
  }
}

// Calls run on several threads while another keeps changing set_num_threads (1, 2, 8)
// and the instruction set. Each call reads its settings once at entry, so each result
// equals, bit for bit, the serial result of one setting (results may depend on the
// setting: the instruction sets differ in the last bits). Before the settings were read
// once, the packed kernels' per-thread tiles were sized with one thread count and used
// with another (a heap overflow; caught at once by the sanitizer build).
TEST(threads_settings_change_during_calls) {
  ThreadsGuard threads_guard;
  const std::string isa_before = lstmcore::get_isa();
  const std::vector<std::string> isas = lstmcore::available_isas();
  const Problem p = make_problem({Cell::lstm, true}, Dims{20, 16, 32, 64}, false, false, true, kAll, 77);
  const LossWeights l = make_loss(p, 78);
  const int counts[] = {1, 2, 8};
  std::vector<std::pair<int, std::string>> settings;
  for (const std::string& isa : isas)
    for (int n : counts) settings.emplace_back(n, isa);
  auto apply = [](const std::pair<int, std::string>& s) {
    lstmcore::set_num_threads(s.first);
    lstmcore::set_isa(s.second);
  };
  auto same = [](const Grads& a, const Grads& b) {
    return a.dx == b.dx && a.dw_h == b.dw_h && a.dw_x == b.dw_x && a.db == b.db && a.db_h == b.db_h &&
           a.dh0 == b.dh0 && a.dc0 == b.dc0;
  };
  // Serial references: every setting's forward (y and cache); every setting's backward
  // from each distinct forward cache (a backward sees its forward only through it).
  std::vector<FwdResult<float>> forwards;
  std::vector<std::vector<float>> caches;
  for (const auto& s : settings) {
    apply(s);
    forwards.push_back(lib_forward<float>(p, true));
    bool known = false;
    for (const auto& c : caches) known = known || c == forwards.back().cache;
    if (!known) caches.push_back(forwards.back().cache);
  }
  std::vector<std::vector<Grads>> backwards(caches.size());
  for (std::size_t c = 0; c < caches.size(); ++c)
    for (const auto& s : settings) {
      apply(s);
      backwards[c].push_back(lib_backward_from<float>(p, l, caches[c]));
    }
  std::atomic<bool> stop{false};
  std::thread toggler([&] {
    for (unsigned k = 0; !stop.load(); ++k) {
      lstmcore::set_num_threads(counts[k % 3]);
      lstmcore::set_isa(isas[(k / 3) % isas.size()]);
      std::this_thread::yield();
    }
  });
  constexpr int kWorkers = 4, kCalls = 3;
  std::vector<int> forward_ok(kWorkers * kCalls, 0), backward_ok(kWorkers * kCalls, 0);
  std::vector<std::thread> workers;
  for (int w = 0; w < kWorkers; ++w)
    workers.emplace_back([&, w] {
      for (int k = 0; k < kCalls; ++k) {
        const FwdResult<float> f = lib_forward<float>(p, true);
        std::size_t cache = caches.size();
        for (const auto& s : forwards)
          if (f.y == s.y && f.cache == s.cache) forward_ok[w * kCalls + k] = 1;
        for (std::size_t c = 0; c < caches.size(); ++c)
          if (f.cache == caches[c]) cache = c;
        if (cache == caches.size()) continue;
        const Grads g = lib_backward_from<float>(p, l, f.cache);
        for (const Grads& s : backwards[cache])
          if (same(g, s)) backward_ok[w * kCalls + k] = 1;
      }
    });
  for (auto& t : workers) t.join();
  stop = true;
  toggler.join();
  lstmcore::set_isa(isa_before);
  for (int i = 0; i < kWorkers * kCalls; ++i) {
    CHECK_MSG(forward_ok[i] == 1, "forward " << i << " matches no serial result");
    CHECK_MSG(backward_ok[i] == 1, "backward " << i << " matches no serial result");
  }
}

// What the library keeps between calls: bounded, and freed by release_memory().
TEST(api_release_memory) {
  const Problem p = make_problem({Cell::gru, true}, Dims{6, 4, 5, 9}, false, false, false, kAll, 3);
  const auto first = lib_forward<double>(p, true);
  CHECK(lstmcore::kept_memory() > 0);                       // the call's block waits for the next call
  CHECK(lstmcore::kept_memory() <= (std::size_t(256) << 20));  // the documented bound
  lstmcore::release_memory();
  CHECK(lstmcore::kept_memory() == 0);
  const auto again = lib_forward<double>(p, true);
  CHECK(again.y == first.y && again.cache == first.cache);
  // A call whose workspace exceeds the bound gives its block back to the system: a GRU
  // inference with H = 1 over 4100 × 1024 rows plans 64 bytes per row (a padded row of
  // pre-activations), 269 MB in all, for little arithmetic.
  lstmcore::release_memory();
  const Dims big{4100, 1024, 1, 1};
  std::vector<float> x(4100 * 1024, 0.5f), w_x(3, 0.25f), w_h(3, 0.5f), y(4100 * 1024), h_n(1024);
  lstmcore::ForwardArgs<float> a;
  a.x = x.data();
  a.w_x = w_x.data();
  a.w_h = w_h.data();
  a.y = y.data();
  a.h_n = h_n.data();
  lstmcore::gru_forward<float>(big, {}, a);
  CHECK_MSG(lstmcore::kept_memory() == 0, lstmcore::kept_memory());
}
