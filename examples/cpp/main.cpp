// lstmcore example: an application that links the installed C++ library.
//
//   lstmcore_example [DATA_FILE]
//
// DATA_FILE is whitespace-separated text: one line per time step, one column per
// input feature (lines starting with '#' and blank lines are skipped); it is one
// sequence. Without a file the program makes four sine-wave-like sequences.
//
// The program runs an LSTM and a GRU forward, then one training step of each:
// forward with a cache, an MSE loss that asks hidden unit 0 at step t to predict
// feature 0 at step t+1, backward with that loss's gradient, and plain SGD on the
// weights. It prints shapes and the loss before and after the step, and exits with
// status 1 if a step did not lower the loss (a small step along the negative
// gradient must).
#include <lstmcore/lstmcore.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using i64 = std::int64_t;

// Sequences in the library's default layout: x is (T, B, I), time-major.
struct Data {
  i64 steps = 0, batch = 0, features = 0;
  std::vector<float> x;
  float at(i64 t, i64 b, i64 i) const { return x[(t * batch + b) * features + i]; }
};

Data read_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path);
  Data d;
  d.batch = 1;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    const auto first = line.find_first_not_of(" \t\r");
    if (first == std::string::npos || line[first] == '#') continue;
    std::istringstream fields(line);
    std::vector<float> row;
    for (float v; fields >> v;) row.push_back(v);
    if (!fields.eof()) throw std::runtime_error(path + ":" + std::to_string(number) + ": not a number");
    if (d.features == 0) d.features = static_cast<i64>(row.size());
    if (static_cast<i64>(row.size()) != d.features)
      throw std::runtime_error(path + ":" + std::to_string(number) + ": expected " + std::to_string(d.features) +
                               " columns, got " + std::to_string(row.size()));
    d.x.insert(d.x.end(), row.begin(), row.end());
    ++d.steps;
  }
  if (d.steps < 2) throw std::runtime_error(path + ": need at least 2 time steps");
  // Scale into the range of the hidden state (|h| < 1).
  float peak = 0;
  for (float v : d.x) peak = std::max(peak, std::fabs(v));
  if (peak > 0)
    for (float& v : d.x) v *= 0.8f / peak;
  return d;
}

Data sine_waves() {
  Data d;
  d.steps = 40;
  d.batch = 4;
  d.features = 2;
  d.x.resize(d.steps * d.batch * d.features);
  for (i64 t = 0; t < d.steps; ++t)
    for (i64 b = 0; b < d.batch; ++b) {
      const double phase = 0.25 * t + 0.7 * b;
      d.x[(t * d.batch + b) * 2 + 0] = static_cast<float>(0.8 * std::sin(phase));
      d.x[(t * d.batch + b) * 2 + 1] = static_cast<float>(0.5 * std::sin(2.1 * phase) * std::cos(0.3 * phase));
    }
  return d;
}

// One layer's parameters in the fused layout: w_x (I, G·H), w_h (H, G·H), b and b_h (G·H).
struct Layer {
  lstmcore::CellSpec spec;
  lstmcore::Dims dims;
  std::vector<float> w_x, w_h, b, b_h;

  Layer(lstmcore::Cell cell, const Data& data, i64 hidden, unsigned seed) {
    spec.cell = cell;
    dims = {data.steps, data.batch, data.features, hidden};
    const i64 gh = lstmcore::gate_count(cell) * hidden;
    std::mt19937 rng(seed);
    const float k = 1.0f / std::sqrt(static_cast<float>(hidden));  // PyTorch's initialisation
    std::uniform_real_distribution<float> u(-k, k);
    for (auto* v : {&w_x, &w_h, &b, &b_h}) v->clear();
    for (i64 n = 0; n < data.features * gh; ++n) w_x.push_back(u(rng));
    for (i64 n = 0; n < hidden * gh; ++n) w_h.push_back(u(rng));
    for (i64 n = 0; n < gh; ++n) b.push_back(u(rng));
    for (i64 n = 0; n < gh; ++n) b_h.push_back(u(rng));
  }
  bool has_cell_state() const { return spec.cell == lstmcore::Cell::lstm; }
  const char* name() const { return lstmcore::cell_name(spec.cell); }
};

// The outputs of one forward call.
struct Outputs {
  std::vector<float> y, h_n, c_n, cache;
};

Outputs run_forward(const Layer& L, const Data& data, bool training) {
  const i64 T = L.dims.steps, B = L.dims.batch, H = L.dims.hidden;
  Outputs out;
  out.y.resize(T * B * H);
  out.h_n.resize(B * H);
  if (L.has_cell_state()) out.c_n.resize(B * H);
  if (training) out.cache.resize(lstmcore::cache_size(L.spec, L.dims));

  lstmcore::ForwardArgs<float> a;
  a.x = data.x.data();
  a.w_x = L.w_x.data();
  a.w_h = L.w_h.data();
  a.b = L.b.data();
  a.b_h = L.b_h.data();
  // h0 and c0 stay nullptr: the sequences start from a zero state.
  a.y = out.y.data();
  a.h_n = out.h_n.data();
  a.c_n = L.has_cell_state() ? out.c_n.data() : nullptr;
  a.cache = training ? out.cache.data() : nullptr;
  lstmcore::forward<float>(L.spec, L.dims, lstmcore::SequenceOptions{}, a);
  return out;
}

// MSE between y[t, b, 0] and x[t+1, b, 0] over t < T-1; optionally dL/dy.
double mse(const Layer& L, const Data& data, const std::vector<float>& y, std::vector<float>* dy) {
  const i64 T = L.dims.steps, B = L.dims.batch, H = L.dims.hidden;
  const double count = static_cast<double>((T - 1) * B);
  double sum = 0;
  if (dy) dy->assign(y.size(), 0.0f);
  for (i64 t = 0; t + 1 < T; ++t)
    for (i64 b = 0; b < B; ++b) {
      const i64 at = (t * B + b) * H;  // unit 0 of y[t, b, :]
      const double err = y[at] - data.at(t + 1, b, 0);
      sum += err * err;
      if (dy) (*dy)[at] = static_cast<float>(2.0 * err / count);
    }
  return sum / count;
}

void print_shape(const char* name, std::initializer_list<i64> shape) {
  std::printf("  %-6s (", name);
  const char* sep = "";
  for (i64 n : shape) {
    std::printf("%s%lld", sep, static_cast<long long>(n));
    sep = ", ";
  }
  std::printf(")\n");
}

// Forward with a cache, backward, SGD; returns whether the loss went down.
bool train_step(Layer& L, const Data& data, float learning_rate) {
  const i64 T = L.dims.steps, B = L.dims.batch, I = L.dims.input, H = L.dims.hidden;
  const i64 GH = lstmcore::gate_count(L.spec.cell) * H;

  Outputs f = run_forward(L, data, /*training=*/true);
  std::vector<float> dy;
  const double before = mse(L, data, f.y, &dy);

  // Every gradient output is overwritten by backward (nothing is accumulated).
  std::vector<float> dx(T * B * I), dh0(B * H), dc0(B * H), dw_x(I * GH), dw_h(H * GH), db(GH), db_h(GH);
  lstmcore::BackwardArgs<float> g;
  g.x = data.x.data();  // the same inputs forward saw
  g.w_x = L.w_x.data();
  g.w_h = L.w_h.data();
  g.cache = f.cache.data();  // consumed: do not reuse it
  g.dy = dy.data();
  // dh_n and dc_n stay nullptr: the loss does not look at the final state.
  g.dx = dx.data();
  g.dh0 = dh0.data();
  g.dc0 = L.has_cell_state() ? dc0.data() : nullptr;
  g.dw_x = dw_x.data();
  g.dw_h = dw_h.data();
  g.db = db.data();
  g.db_h = db_h.data();
  lstmcore::backward<float>(L.spec, L.dims, lstmcore::SequenceOptions{}, g);

  double grad_sq = 0;
  const auto sgd = [&](std::vector<float>& w, const std::vector<float>& dw) {
    for (std::size_t n = 0; n < w.size(); ++n) {
      w[n] -= learning_rate * dw[n];
      grad_sq += double(dw[n]) * dw[n];
    }
  };
  sgd(L.w_x, dw_x);
  sgd(L.w_h, dw_h);
  sgd(L.b, db);
  sgd(L.b_h, db_h);

  const double after = mse(L, data, run_forward(L, data, false).y, nullptr);
  std::printf("  training step (SGD, lr %.2f, |gradient| %.4g): loss before %.6f, loss after %.6f\n",
              learning_rate, std::sqrt(grad_sq), before, after);
  return after < before;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Data data = argc > 1 ? read_file(argv[1]) : sine_waves();
    std::printf("%s\n", lstmcore::build_info().c_str());
    std::printf("data: %s, %lld steps, batch %lld, %lld features\n", argc > 1 ? argv[1] : "generated sine waves",
                static_cast<long long>(data.steps), static_cast<long long>(data.batch),
                static_cast<long long>(data.features));

    const i64 hidden = 16;
    bool all_lower = true;
    unsigned seed = 1;
    for (lstmcore::Cell cell : {lstmcore::Cell::lstm, lstmcore::Cell::gru}) {
      Layer layer(cell, data, hidden, seed++);
      const i64 T = layer.dims.steps, B = layer.dims.batch, I = layer.dims.input, H = hidden;
      const i64 GH = lstmcore::gate_count(cell) * H;
      std::printf("\n%s, hidden %lld:\n", layer.name(), static_cast<long long>(H));
      print_shape("x", {T, B, I});
      print_shape("w_x", {I, GH});
      print_shape("w_h", {H, GH});
      print_shape("b", {GH});

      const Outputs f = run_forward(layer, data, false);
      print_shape("y", {T, B, H});
      print_shape("h_n", {B, H});
      if (layer.has_cell_state()) print_shape("c_n", {B, H});
      std::printf("  h_n[0, :4] = %.4f %.4f %.4f %.4f\n", f.h_n[0], f.h_n[1], f.h_n[2], f.h_n[3]);
      std::printf("  training cache: %zu floats\n", lstmcore::cache_size(layer.spec, layer.dims));
      all_lower = train_step(layer, data, 0.5f) && all_lower;
    }
    if (!all_lower) {
      std::fprintf(stderr, "a training step did not lower the loss\n");
      return 1;
    }
    return 0;
  } catch (const lstmcore::InvalidArgument& e) {  // a bad size or pointer: the message names it
    std::fprintf(stderr, "lstmcore: %s\n", e.what());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
  }
  return 2;
}
