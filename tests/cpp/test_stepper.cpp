// lstmcore::Stepper (stepper.h): walked over a sequence it gives the reference's final
// state on every kernel variant; bad arguments are refused by name.
#include <lstmcore/lstmcore.h>

#include "harness.h"
#include "support.h"

using namespace ts;

TEST(api_stepper_matches_the_reference) {
  for_each_isa([](const std::string& isa) {
    for (const CellSpec& spec : all_specs()) {
      if (spec.cell == Cell::gru && !spec.reset_after) continue;
      Problem p = make_problem(spec, Dims{5, 3, 4, 21}, false, false, false, kAll, 11);
      p.label = isa;
      const State want = reference_forward(p);
      lstmcore::Stepper<double> s(spec, p.B(), p.I(), p.H(), p.w_x.data(), p.w_h.data(), p.b.data(), p.b_h.data());
      Vec h = p.h0, c = is_lstm(spec) ? p.c0 : Vec();
      Vec y(p.B() * p.H());
      for (i64 t = 0; t < p.T(); ++t)
        s.step(p.x.data() + t * p.B() * p.I(), h.data(), is_lstm(spec) ? c.data() : nullptr, y.data());
      CHECK_MSG(rel_err(h, want.h_n) < 1e-12, p.describe() << " h: " << rel_err(h, want.h_n));
      CHECK_MSG(rel_err(y, want.h_n) == 0.0 || rel_err(y, h) == 0.0, p.describe() << " y_t is the new h");
      if (is_lstm(spec)) CHECK_MSG(rel_err(c, want.c_n) < 1e-12, p.describe() << " c: " << rel_err(c, want.c_n));
    }
  });
}

TEST(errors_stepper_arguments) {
  const std::vector<float> w(4 * 4 * 4, 0.1f), x(4, 1.f);
  std::vector<float> h(4), c(4);
  CellSpec lstm;
  CHECK(error_of([&] { lstmcore::Stepper<float>(lstm, 0, 4, 4, w.data(), w.data(), nullptr, nullptr); })
            .rfind("batch", 0) == 0);
  CHECK(error_of([&] { lstmcore::Stepper<float>(lstm, 1, 4, 4, nullptr, w.data(), nullptr, nullptr); })
            .rfind("w_x", 0) == 0);
  CellSpec gru_before{Cell::gru, false};
  CHECK(error_of([&] { lstmcore::Stepper<float>(gru_before, 1, 4, 4, w.data(), w.data(), nullptr, nullptr); })
            .rfind("spec", 0) == 0);
  lstmcore::Stepper<float> s(lstm, 1, 4, 4, w.data(), w.data(), nullptr, nullptr);
  CHECK(error_of([&] { s.step(x.data(), h.data(), nullptr); }).rfind("c:", 0) == 0);
  CellSpec rnn{Cell::rnn_tanh, true};
  lstmcore::Stepper<float> r(rnn, 1, 4, 4, w.data(), w.data(), nullptr, nullptr);
  CHECK(error_of([&] { r.step(x.data(), h.data(), c.data()); }).rfind("c:", 0) == 0);
}
