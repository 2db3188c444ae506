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

// lstmcore::step_layer: the weights read where they lie, in either layout, stepped in place
// or into other arrays, gives the reference's final state on every kernel variant; a
// change to the weights reaches the next step (nothing is copied).
TEST(api_step_layer_matches_the_reference) {
  for_each_isa([](const std::string& isa) {
    for (const CellSpec& spec : all_specs())
      for (lstmcore::WeightLayout layout : {lstmcore::WeightLayout::input_major, lstmcore::WeightLayout::gate_major})
      for (i64 H : {37, 133}) {  // 133: two threads for LSTM and GRU (when two are set)
        Problem p = make_problem(spec, Dims{4, 3, 4, H}, false, false, false, kAll, 13);
        p.label = isa;
        const State want = reference_forward(p);
        const bool gm = layout == lstmcore::WeightLayout::gate_major, lstm = is_lstm(spec);
        const i64 G = gate_count(spec.cell) * p.H();
        const Vec w_x = gm ? transposed(p.w_x, p.I(), G) : p.w_x;
        const Vec w_h = gm ? transposed(p.w_h, p.H(), G) : p.w_h;
        lstmcore::LayerStep<double> a;
        a.spec = spec;
        a.layout = layout;
        a.batch = p.B();
        a.input = p.I();
        a.hidden = p.H();
        a.w_x = w_x.data();
        a.w_h = w_h.data();
        a.b = p.b.data();
        a.b_h = p.b_h.data();
        std::vector<double> ws(lstmcore::step_workspace_size(spec, p.B(), p.H()) + 1);
        Vec h = p.h0, c = lstm ? p.c0 : Vec(), h2(h.size()), c2(c.size());
        for (i64 t = 0; t < p.T(); ++t) {
          a.x_t = p.x.data() + t * p.B() * p.I();
          const bool in_place = t % 2 == 0;  // alternately in place and into the other arrays
          a.h_in = h.data();
          a.h_out = in_place ? h.data() : h2.data();
          a.c_in = lstm ? c.data() : nullptr;
          a.c_out = lstm ? (in_place ? c.data() : c2.data()) : nullptr;
          lstmcore::step_layer(a, ws.data() + 1, static_cast<i64>(ws.size()) - 1);  // not 64-byte aligned
          if (!in_place) {
            h = h2;
            if (lstm) c = c2;
          }
        }
        CHECK_MSG(rel_err(h, want.h_n) < 1e-12, p.describe() << (gm ? " gate_major" : "") << " h: "
                                                  << rel_err(h, want.h_n));
        if (lstm) CHECK_MSG(rel_err(c, want.c_n) < 1e-12, p.describe() << " c: " << rel_err(c, want.c_n));
      }
  });
}

TEST(errors_step_layer_arguments) {
  std::vector<float> w(4 * 4 * 4, 0.1f), x(4, 1.f), h(4), c(4), ws(1024);
  lstmcore::LayerStep<float> a;
  a.batch = a.input = a.hidden = 1;
  a.w_x = a.w_h = w.data();
  a.x_t = x.data();
  a.h_in = a.h_out = h.data();
  a.c_in = a.c_out = c.data();
  lstmcore::step_layer(a, ws.data(), 1024);  // the baseline is accepted
  const auto fails = [&](auto edit, const char* name) {
    lstmcore::LayerStep<float> b = a;
    edit(b);
    CHECK_MSG(error_of([&] { lstmcore::step_layer(b, ws.data(), 1024); }).rfind(name, 0) == 0, name);
  };
  fails([](auto& b) { b.batch = 0; }, "batch");
  fails([](auto& b) { b.w_h = nullptr; }, "w_h");
  fails([](auto& b) { b.c_out = nullptr; }, "c_out");
  fails([](auto& b) { b.spec.cell = Cell::gru; }, "c_in");
  fails([](auto& b) { b.spec.compute = lstmcore::Compute::bfloat16; }, "compute");
  fails([&](auto& b) { b.h_out = x.data(); }, "x_t");
  // weights under a state stepped in place: read while written
  fails([&](auto& b) { b.h_in = b.h_out = w.data() + 2; }, "w_x: overlaps h_out");
  fails([&](auto& b) { b.c_in = b.c_out = w.data() + 1; }, "w_x: overlaps c_out");
  fails([&](auto& b) { b.b_h = ws.data() + 3; }, "b_h: overlaps workspace");
  fails([&](auto& b) { b.h_in = b.h_out = ws.data() + 1; }, "h_in: overlaps workspace");
  fails([&](auto& b) { b.h_in = c.data(); }, "h_in: overlaps c_out");
  CHECK(error_of([&] { lstmcore::step_layer(a, static_cast<float*>(nullptr), 1024); }).rfind("workspace", 0) == 0);
  CHECK(error_of([&] { lstmcore::step_layer(a, ws.data(), 4); }).rfind("workspace_size", 0) == 0);
}
