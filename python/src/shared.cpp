// The helpers the binding files share (declared in arrays.h and bindings.h).
#include <lstmcore/lstmcore.h>

#include <pybind11/stl.h>

#include "arrays.h"
#include "bindings.h"

namespace lstmcore_py {

using std::int64_t;

std::string shape_str(const std::vector<int64_t>& dims) {
  std::string s = "(";
  for (std::size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + (dims.size() == 1 ? ",)" : ")");
}

std::vector<int64_t> shape_of(const py::array& a) { return std::vector<int64_t>(a.shape(), a.shape() + a.ndim()); }

const int64_t* lengths_pointer(py::handle seq_lengths, int64_t batch) {
  return optional_input<int64_t>(seq_lengths, "seq_lengths", {{batch}, "(B,)"});
}

void require_no_state(lstmcore::Cell cell, py::handle obj, const char* name) {
  if (cell != lstmcore::Cell::lstm && !obj.is_none())
    throw py::value_error(std::string(name) + ": the " + lstmcore::cell_name(cell) +
                          " cell has no cell state; pass None");
}

lstmcore::Merge parse_merge(const std::string& merge) {
  if (merge == "concat") return lstmcore::Merge::concat;
  if (merge == "sum") return lstmcore::Merge::sum;
  throw py::value_error("merge: expected 'concat' or 'sum', got '" + merge + "'");
}

namespace {

// Activation entries come as (name, alpha or None, beta or None).
lstmcore::ActivationSpec activation_from(py::handle entry) {
  auto t = py::reinterpret_borrow<py::tuple>(entry);
  const auto kind = lstmcore::parse_nonlinearity(t[0].cast<std::string>());
  lstmcore::ActivationSpec s = lstmcore::default_activation(kind);
  if (!t[1].is_none()) s.alpha = t[1].cast<double>();
  if (!t[2].is_none()) s.beta = t[2].cast<double>();
  return s;
}

}  // namespace

void read_variant_options(const py::dict& opts, lstmcore::VariantOptions& o) {
  if (opts.contains("activations")) {
    auto acts = opts["activations"].cast<py::list>();
    lstmcore::ActivationSpec* slots[] = {&o.f, &o.g, &o.h};
    for (std::size_t k = 0; k < acts.size() && k < 3; ++k) *slots[k] = activation_from(acts[k]);
  }
  o.clip = opts.contains("clip") ? opts["clip"].cast<double>() : 0.0;
  o.input_forget = opts.contains("input_forget") && opts["input_forget"].cast<bool>();
  o.forget_gate = !opts.contains("forget_gate") || opts["forget_gate"].cast<bool>();
  o.peepholes = opts.contains("peepholes") && opts["peepholes"].cast<bool>();
  o.layer_norm = opts.contains("layer_norm") && opts["layer_norm"].cast<bool>();
  if (opts.contains("zoneout")) {
    auto z = opts["zoneout"].cast<std::pair<double, double>>();
    o.zoneout_h = z.first;
    o.zoneout_c = z.second;
  }
  if (opts.contains("seed")) o.seed = opts["seed"].cast<std::uint64_t>();
}

}  // namespace lstmcore_py
