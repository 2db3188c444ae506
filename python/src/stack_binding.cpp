// Bindings of lstmcore::stack_forward / stack_backward (stack.h): shapes in, pointers
// down, GIL released, NumPy results out. The layer objects, their defaults and the
// cache object live in Python (python/lstmcore/layers.py); this file only checks and forwards.
#include <lstmcore/lstmcore.h>

#include <optional>
#include <string>
#include <vector>

#include "arrays.h"
#include "bindings.h"

namespace lstmcore_py {

using std::int64_t;

namespace {

// The cell variant of a stack: the Python layer's options dict (None or empty: the
// plain cell), read over the cell's defaults; "proj" is the projection size P.
struct StackVariant {
  lstmcore::VariantOptions options;
  bool on = false;

  StackVariant() = default;
  StackVariant(lstmcore::Cell cell, py::handle opts) : options(lstmcore::variant_defaults(cell)) {
    if (opts.is_none()) return;
    auto d = py::reinterpret_borrow<py::dict>(opts);
    if (d.size() == 0) return;
    on = true;
    read_variant_options(d, options);
    if (d.contains("proj")) options.proj = d["proj"].cast<int64_t>();
  }
  int64_t proj() const { return on ? options.proj : 0; }
};

// Sizes of one stack call, read from x and the first layer's weights.
struct StackProblem {
  lstmcore::StackSpec spec;  // spec.variant is set by with_variant(), never stored
  StackVariant variant;
  lstmcore::Dims dims;
  lstmcore::SequenceOptions options;
  int64_t G = 0;
  std::string gh;

  lstmcore::StackSpec with_variant() const {
    lstmcore::StackSpec s = spec;
    s.variant = variant.on ? &variant.options : nullptr;
    return s;
  }
  int64_t L() const { return spec.num_layers; }
  int64_t D() const { return spec.directions; }
  bool sum() const { return D() == 2 && spec.merge == lstmcore::Merge::sum; }
  // The width of h: R = P with a projection, else H.
  int64_t R() const { return variant.proj() > 0 ? variant.proj() : dims.hidden; }
  const char* r_letter() const { return variant.proj() > 0 ? "P" : "H"; }
  // A layer's output width O: 2R (bidirectional, concatenated) or R.
  int64_t OW() const { return sum() ? R() : D() * R(); }
  std::string ow_letter() const { return std::string(D() == 2 && !sum() ? "2" : "") + r_letter(); }
  int64_t input_of(int64_t k) const { return k == 0 ? dims.input : OW(); }
  Shape rows(int64_t features, const std::string& letter) const {
    const auto& d = dims;
    if (options.batch_first) return {{d.batch, d.steps, features}, "(B, T, " + letter + ")"};
    return {{d.steps, d.batch, features}, "(T, B, " + letter + ")"};
  }
  Shape states() const { return {{L() * D(), dims.batch, dims.hidden}, "(L·D, B, H)"}; }
  Shape h_states() const { return {{L() * D(), dims.batch, R()}, std::string("(L·D, B, ") + r_letter() + ")"}; }
  Shape w_x(int64_t k) const {
    return {{input_of(k), G * dims.hidden}, "(" + (k == 0 ? std::string("I") : ow_letter()) + ", " + gh + ")"};
  }
  Shape w_h() const { return {{R(), G * dims.hidden}, std::string("(") + r_letter() + ", " + gh + ")"}; }
  Shape bias() const { return {{G * dims.hidden}, "(" + gh + ",)"}; }
  Shape units() const { return {{dims.hidden}, "(H,)"}; }
  Shape peepholes() const { return {{3, dims.hidden}, "(3, H)"}; }
  Shape w_proj() const { return {{dims.hidden, R()}, "(H, P)"}; }
  // Entries of a weights tuple: (w_x, w_h, b, b_h), plus (peepholes, w_proj, layer_norm)
  // with a variant.
  std::size_t entries() const { return variant.on ? 7 : 4; }
  const char* entries_text() const {
    return variant.on ? "a tuple (w_x, w_h, b, b_h, peepholes, w_proj, layer_norm)" : "a tuple (w_x, w_h, b, b_h)";
  }
  std::string name(int64_t j, const char* what) const {
    return "weights[" + std::to_string(j) + "]." + what + " (layer " + std::to_string(j / D()) +
           (j % D() ? ", reverse)" : ")");
  }
  bool lstm() const { return spec.cell.cell == lstmcore::Cell::lstm; }
};

StackProblem make_stack_problem(const std::string& cell, bool reset_after, int64_t num_layers, int directions,
                                double dropout, uint64_t seed, const py::array& x, const py::sequence& weights,
                                bool batch_first, const std::string& merge, py::handle variant, bool bf16) {
  StackProblem p;
  p.spec.merge = parse_merge(merge);
  p.spec.cell = {lstmcore::parse_cell(cell), reset_after,
                 bf16 ? lstmcore::Compute::bfloat16 : lstmcore::Compute::native};
  p.variant = StackVariant(p.spec.cell.cell, variant);
  p.spec.num_layers = num_layers;
  p.spec.directions = directions;
  p.spec.dropout = dropout;
  p.spec.seed = seed;
  p.G = lstmcore::gate_count(p.spec.cell.cell);
  p.gh = p.G == 1 ? "H" : std::to_string(p.G) + "H";
  if (num_layers < 1) throw py::value_error("num_layers: must be >= 1, got " + std::to_string(num_layers));
  if (directions != 1 && directions != 2)
    throw py::value_error("directions: expected 1 or 2, got " + std::to_string(directions));
  if (x.ndim() != 3)
    throw py::value_error(std::string("x: expected 3 dimensions ") + (batch_first ? "(B, T, I)" : "(T, B, I)") +
                          ", got shape " + shape_str(shape_of(x)));
  const int64_t n = num_layers * directions;
  if (static_cast<int64_t>(py::len(weights)) != n)
    throw py::value_error("weights: expected num_layers·directions = " + std::to_string(n) + " entries, got " +
                          std::to_string(py::len(weights)));
  py::object first = weights[0];
  if (!py::isinstance<py::sequence>(first) || py::len(first) != p.entries())
    throw py::type_error(std::string("weights[0]: expected ") + p.entries_text());
  py::object w_h0 = py::reinterpret_borrow<py::sequence>(first)[1];
  if (!py::isinstance<py::array>(w_h0) || py::reinterpret_borrow<py::array>(w_h0).ndim() != 2)
    throw py::value_error(std::string("weights[0].w_h: expected a 2-dimensional array (") + p.r_letter() + ", " +
                          p.gh + ")");
  p.dims.steps = batch_first ? x.shape(1) : x.shape(0);
  p.dims.batch = batch_first ? x.shape(0) : x.shape(1);
  p.dims.input = x.shape(2);
  // H is w_h's row count, or with a projection (rows P) its columns / G.
  const auto w_h0a = py::reinterpret_borrow<py::array>(w_h0);
  p.dims.hidden = p.variant.proj() > 0 ? w_h0a.shape(1) / p.G : w_h0a.shape(0);
  for (auto [nm, v] : {std::pair<const char*, int64_t>{"T", p.dims.steps}, {"B", p.dims.batch}, {"I", p.dims.input}})
    if (v < 1) throw py::value_error(std::string("x: ") + nm + " must be >= 1, got shape " + shape_str(shape_of(x)));
  if (p.dims.hidden < 1) throw py::value_error("weights[0].w_h: H must be >= 1");
  p.options.batch_first = batch_first;
  lstmcore::stack_cache_size(p.with_variant(), p.dims);  // the spec's, the options' and the sizes' checks
  return p;
}

template <typename T>
struct CheckedWeights {
  std::vector<py::array_t<T>> keep;  // alive while the GIL is released
  std::vector<lstmcore::LayerWeights<T>> ptrs;
};

template <typename T>
CheckedWeights<T> check_weights(const StackProblem& p, const py::sequence& weights) {
  CheckedWeights<T> out;
  const int64_t n = p.L() * p.D();
  out.ptrs.resize(static_cast<std::size_t>(n));
  for (int64_t j = 0; j < n; ++j) {
    py::object entry = weights[static_cast<std::size_t>(j)];
    if (!py::isinstance<py::sequence>(entry) || py::len(entry) != p.entries())
      throw py::type_error("weights[" + std::to_string(j) + "]: expected " + p.entries_text());
    auto t = py::reinterpret_borrow<py::sequence>(entry);
    const int64_t k = j / p.D();
    auto w_x = checked<T>(t[0], p.name(j, "w_x").c_str(), p.w_x(k));
    auto w_h = checked<T>(t[1], p.name(j, "w_h").c_str(), p.w_h());
    out.keep.push_back(w_x);
    out.keep.push_back(w_h);
    auto& w = out.ptrs[static_cast<std::size_t>(j)];
    w.w_x = w_x.data();
    w.w_h = w_h.data();
    for (int i : {2, 3}) {
      py::object b = t[static_cast<std::size_t>(i)];
      if (b.is_none()) continue;
      auto arr = checked<T>(b, p.name(j, i == 2 ? "b" : "b_h").c_str(), p.bias());
      out.keep.push_back(arr);
      (i == 2 ? w.b : w.b_h) = arr.data();
    }
    if (!p.variant.on) continue;
    auto& v = w.variant;
    auto take = [&](py::handle obj, const std::string& what, const Shape& shape) -> const T* {
      if (obj.is_none()) return nullptr;
      auto arr = checked<T>(obj, p.name(j, what.c_str()).c_str(), shape);
      out.keep.push_back(arr);
      return arr.data();
    };
    v.peepholes = take(t[4], "peepholes", p.peepholes());
    v.w_proj = take(t[5], "w_proj", p.w_proj());
    py::object ln = t[6];
    if (ln.is_none()) continue;
    if (!py::isinstance<py::sequence>(ln) || py::len(ln) != 6)
      throw py::type_error(p.name(j, "layer_norm") + ": expected a tuple of 6 arrays or None");
    auto lns = py::reinterpret_borrow<py::sequence>(ln);
    const char* names[] = {"ln_gain_x", "ln_bias_x", "ln_gain_h", "ln_bias_h", "ln_gain_c", "ln_bias_c"};
    const T** slots[] = {&v.ln_gain_x, &v.ln_bias_x, &v.ln_gain_h, &v.ln_bias_h, &v.ln_gain_c, &v.ln_bias_c};
    for (std::size_t i = 0; i < 6; ++i) *slots[i] = take(lns[i], names[i], i < 4 ? p.bias() : p.units());
  }
  return out;
}

template <typename T>
py::tuple stack_forward_t(const StackProblem& p, const py::array& x, const py::sequence& weights, py::handle h0,
                          py::handle c0, py::handle seq_lengths, bool training) {
  lstmcore::SequenceOptions options = p.options;
  options.seq_lengths = lengths_pointer(seq_lengths, p.dims.batch);
  CheckedWeights<T> w = check_weights<T>(p, weights);
  lstmcore::StackForwardArgs<T> a;
  a.x = checked<T>(x, "x", p.rows(p.dims.input, "I")).data();
  a.weights = w.ptrs.data();
  a.h0 = optional_input<T>(h0, "h0", p.h_states());
  require_no_state(p.spec.cell.cell, c0, "c0");
  a.c0 = optional_input<T>(c0, "c0", p.states());

  const lstmcore::StackSpec spec = p.with_variant();
  auto y = new_array<T>(p.rows(p.OW(), p.ow_letter()).dims);
  auto h_n = new_array<T>(p.h_states().dims);
  std::optional<py::array_t<T>> c_n, cache;
  if (p.lstm()) c_n = new_array<T>(p.states().dims);
  if (training) cache = new_array<T>({static_cast<int64_t>(lstmcore::stack_cache_size(spec, p.dims))});
  a.y = y.mutable_data();
  a.h_n = h_n.mutable_data();
  a.c_n = c_n ? c_n->mutable_data() : nullptr;
  a.cache = cache ? cache->mutable_data() : nullptr;
  {
    py::gil_scoped_release unlocked;
    lstmcore::stack_forward<T>(spec, p.dims, options, a);
  }
  py::object none = py::none();
  return py::make_tuple(y, h_n, c_n ? py::object(*c_n) : none, cache ? py::object(*cache) : none);
}

template <typename T>
py::tuple stack_backward_t(const StackProblem& p, const py::array& x, const py::sequence& weights, py::handle h0,
                           py::handle c0, py::handle seq_lengths, const py::array& cache, py::handle dy,
                           py::handle dh_n, py::handle dc_n) {
  lstmcore::SequenceOptions options = p.options;
  options.seq_lengths = lengths_pointer(seq_lengths, p.dims.batch);
  CheckedWeights<T> w = check_weights<T>(p, weights);
  lstmcore::StackBackwardArgs<T> a;
  a.x = checked<T>(x, "x", p.rows(p.dims.input, "I")).data();
  a.weights = w.ptrs.data();
  a.h0 = optional_input<T>(h0, "h0", p.h_states());
  require_no_state(p.spec.cell.cell, c0, "c0");
  a.c0 = optional_input<T>(c0, "c0", p.states());
  const lstmcore::StackSpec spec = p.with_variant();
  const int64_t cache_len = static_cast<int64_t>(lstmcore::stack_cache_size(spec, p.dims));
  a.cache = checked<T>(cache, "cache", {{cache_len}, "(stack_cache_size,)"}, true).mutable_data();
  a.dy = optional_input<T>(dy, "dy", p.rows(p.OW(), p.ow_letter()));
  a.dh_n = optional_input<T>(dh_n, "dh_n", p.h_states());
  require_no_state(p.spec.cell.cell, dc_n, "dc_n");
  a.dc_n = optional_input<T>(dc_n, "dc_n", p.states());

  auto dx = new_array<T>(p.rows(p.dims.input, "I").dims);
  auto dh0 = new_array<T>(p.h_states().dims);
  std::optional<py::array_t<T>> dc0;
  if (p.lstm()) dc0 = new_array<T>(p.states().dims);
  a.dx = dx.mutable_data();
  a.dh0 = dh0.mutable_data();
  a.dc0 = dc0 ? dc0->mutable_data() : nullptr;

  const int64_t n = p.L() * p.D();
  py::list grads;
  std::vector<lstmcore::LayerGradients<T>> g(static_cast<std::size_t>(n));
  for (int64_t j = 0; j < n; ++j) {
    const auto& wj = w.ptrs[static_cast<std::size_t>(j)];
    auto dw_x = new_array<T>(p.w_x(j / p.D()).dims);
    auto dw_h = new_array<T>(p.w_h().dims);
    py::object db = py::none(), db_h = py::none();
    auto& gj = g[static_cast<std::size_t>(j)];
    gj.dw_x = dw_x.mutable_data();
    gj.dw_h = dw_h.mutable_data();
    if (wj.b) {
      auto arr = new_array<T>(p.bias().dims);
      gj.db = arr.mutable_data();
      db = arr;
    }
    if (wj.b_h) {
      auto arr = new_array<T>(p.bias().dims);
      gj.db_h = arr.mutable_data();
      db_h = arr;
    }
    if (!p.variant.on) {
      grads.append(py::make_tuple(dw_x, dw_h, db, db_h));
      continue;
    }
    // The variant's parameters: a gradient for each one the layer has.
    auto grad_for = [&](const T* param, const Shape& shape, T*& slot) -> py::object {
      if (!param) return py::none();
      auto arr = new_array<T>(shape.dims);
      slot = arr.mutable_data();
      return arr;
    };
    auto& gv = gj.variant;
    py::object dpeep = grad_for(wj.variant.peepholes, p.peepholes(), gv.dpeepholes);
    py::object dproj = grad_for(wj.variant.w_proj, p.w_proj(), gv.dw_proj);
    py::object dln = py::none();
    if (wj.variant.ln_gain_x)
      dln = py::make_tuple(grad_for(wj.variant.ln_gain_x, p.bias(), gv.dln_gain_x),
                           grad_for(wj.variant.ln_bias_x, p.bias(), gv.dln_bias_x),
                           grad_for(wj.variant.ln_gain_h, p.bias(), gv.dln_gain_h),
                           grad_for(wj.variant.ln_bias_h, p.bias(), gv.dln_bias_h),
                           grad_for(wj.variant.ln_gain_c, p.units(), gv.dln_gain_c),
                           grad_for(wj.variant.ln_bias_c, p.units(), gv.dln_bias_c));
    grads.append(py::make_tuple(dw_x, dw_h, db, db_h, dpeep, dproj, dln));
  }
  a.grads = g.data();
  {
    py::gil_scoped_release unlocked;
    lstmcore::stack_backward<T>(spec, p.dims, options, a);
  }
  return py::make_tuple(dx, dh0, dc0 ? py::object(*dc0) : py::object(py::none()), grads);
}

lstmcore::StackSpec make_spec(const std::string& cell, bool reset_after, int64_t num_layers, int directions,
                              double dropout, uint64_t seed, const std::string& merge,
                              const StackVariant* variant = nullptr) {
  lstmcore::StackSpec s;
  s.merge = parse_merge(merge);
  s.cell = {lstmcore::parse_cell(cell), reset_after};
  s.num_layers = num_layers;
  s.directions = directions;
  s.dropout = dropout;
  s.seed = seed;
  if (variant && variant->on) s.variant = &variant->options;
  return s;
}

}  // namespace

void register_stack(py::module_& m) {
  m.def(
      "stack_forward",
      [](const std::string& cell, bool reset_after, int64_t num_layers, int directions, double dropout, uint64_t seed,
         const py::array& x, const py::sequence& weights, py::object h0, py::object c0, py::object seq_lengths,
         bool batch_first, bool training, const std::string& merge, py::object variant, bool bf16) {
        const StackProblem p = make_stack_problem(cell, reset_after, num_layers, directions, dropout, seed, x, weights,
                                                  batch_first, merge, variant, bf16);
        if (is_float32(x, "x")) return stack_forward_t<float>(p, x, weights, h0, c0, seq_lengths, training);
        return stack_forward_t<double>(p, x, weights, h0, c0, seq_lengths, training);
      },
      py::arg("cell"), py::arg("reset_after"), py::arg("num_layers"), py::arg("directions"), py::arg("dropout"),
      py::arg("seed"), py::arg("x"), py::arg("weights"), py::arg("h0"), py::arg("c0"), py::arg("seq_lengths"),
      py::arg("batch_first"), py::arg("training"), py::arg("merge") = "concat", py::arg("variant") = py::none(),
      py::arg("bf16") = false,
      "Checked stack forward; weights is a sequence of L·D tuples (w_x, w_h, b, b_h) in order k·D + d, with "
      "(peepholes, w_proj, layer_norm) appended when variant (a dict of cell options) is given; "
      "returns (y, h_n, c_n, cache_buffer).");
  m.def(
      "stack_backward",
      [](const std::string& cell, bool reset_after, int64_t num_layers, int directions, double dropout, uint64_t seed,
         const py::array& x, const py::sequence& weights, py::object h0, py::object c0, py::object seq_lengths,
         bool batch_first, const py::array& cache, py::object dy, py::object dh_n, py::object dc_n,
         const std::string& merge, py::object variant, bool bf16) {
        const StackProblem p = make_stack_problem(cell, reset_after, num_layers, directions, dropout, seed, x, weights,
                                                  batch_first, merge, variant, bf16);
        if (is_float32(x, "x"))
          return stack_backward_t<float>(p, x, weights, h0, c0, seq_lengths, cache, dy, dh_n, dc_n);
        return stack_backward_t<double>(p, x, weights, h0, c0, seq_lengths, cache, dy, dh_n, dc_n);
      },
      py::arg("cell"), py::arg("reset_after"), py::arg("num_layers"), py::arg("directions"), py::arg("dropout"),
      py::arg("seed"), py::arg("x"), py::arg("weights"), py::arg("h0"), py::arg("c0"), py::arg("seq_lengths"),
      py::arg("batch_first"), py::arg("cache"), py::arg("dy"), py::arg("dh_n"), py::arg("dc_n"),
      py::arg("merge") = "concat", py::arg("variant") = py::none(), py::arg("bf16") = false,
      "Checked stack backward; consumes the cache buffer; returns (dx, dh0, dc0, [(dw_x, dw_h, db, db_h)...]), "
      "each gradient tuple with (dpeepholes, dw_proj, dlayer_norm) appended when variant is given.");
  m.def(
      "stack_cache_size",
      [](const std::string& cell, bool reset_after, int64_t num_layers, int directions, double dropout, int64_t T,
         int64_t B, int64_t I, int64_t H, const std::string& merge, py::object variant) {
        const StackVariant v(lstmcore::parse_cell(cell), variant);
        return lstmcore::stack_cache_size(make_spec(cell, reset_after, num_layers, directions, dropout, 0, merge, &v),
                                          {T, B, I, H});
      },
      py::arg("cell"), py::arg("reset_after"), py::arg("num_layers"), py::arg("directions"), py::arg("dropout"),
      py::arg("T"), py::arg("B"), py::arg("I"), py::arg("H"), py::arg("merge") = "concat",
      py::arg("variant") = py::none());
  m.def(
      "stack_dropout_mask_offset",
      [](const std::string& cell, bool reset_after, int64_t num_layers, int directions, double dropout, int64_t T,
         int64_t B, int64_t I, int64_t H, int64_t layer, const std::string& merge, py::object variant) {
        const StackVariant v(lstmcore::parse_cell(cell), variant);
        return lstmcore::stack_dropout_mask_offset(
            make_spec(cell, reset_after, num_layers, directions, dropout, 0, merge, &v), {T, B, I, H}, layer);
      },
      py::arg("cell"), py::arg("reset_after"), py::arg("num_layers"), py::arg("directions"), py::arg("dropout"),
      py::arg("T"), py::arg("B"), py::arg("I"), py::arg("H"), py::arg("layer"), py::arg("merge") = "concat",
      py::arg("variant") = py::none());
  m.def(
      "stack_variant_seed",
      [](uint64_t seed, int64_t layer, int direction) {
        lstmcore::StackSpec s;
        s.seed = seed;
        return lstmcore::stack_variant_seed(s, layer, direction);
      },
      py::arg("seed"), py::arg("layer"), py::arg("direction"),
      "The zoneout seed (VariantOptions::seed) of one layer and direction of a stack whose seed is seed.");
}

}  // namespace lstmcore_py
