// Cell names, threads, build facts, the size arithmetic and the argument checks every
// entry point shares.
#include <algorithm>
#include <atomic>
#ifdef _OPENMP
#include <omp.h>
#endif
#include <limits>
#include <sstream>

#include "common.h"
#include "lstmcore/cuda.h"

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN

int gate_count(Cell cell) noexcept {
  switch (cell) {
    case Cell::lstm: return 4;
    case Cell::gru: return 3;
    default: return 1;
  }
}

const char* cell_name(Cell cell) noexcept {
  switch (cell) {
    case Cell::lstm: return "lstm";
    case Cell::gru: return "gru";
    case Cell::rnn_tanh: return "rnn_tanh";
    default: return "rnn_relu";
  }
}

Cell parse_cell(const std::string& name) {
  for (Cell c : {Cell::lstm, Cell::gru, Cell::rnn_tanh, Cell::rnn_relu})
    if (name == cell_name(c)) return c;
  throw InvalidArgument("cell: expected one of 'lstm', 'gru', 'rnn_tanh', 'rnn_relu', got '" + name + "'");
}

namespace {
int default_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}
std::atomic<int>& thread_setting() {
  static std::atomic<int> n{default_threads()};
  return n;
}
}  // namespace

void set_num_threads(int n) {
  if (n < 1) throw InvalidArgument("set_num_threads: expected n >= 1, got " + std::to_string(n));
  thread_setting().store(n);
}

int get_num_threads() noexcept { return thread_setting().load(); }

namespace {
std::string isa_list() {
  std::string s;
  for (const auto& n : available_isas()) s += (s.empty() ? "" : ", ") + n;
  return s;
}
}  // namespace

std::string build_info() {
  std::ostringstream s;
  s << "lstmcore " << LSTMCORE_VERSION_STRING << "; openmp: "
#ifdef _OPENMP
    << "yes (" << _OPENMP << ")"
#else
    << "no"
#endif
    << "; threads: " << get_num_threads() << "; isa: " << get_isa() << " (available: " << isa_list() << ")"
    << "; dtypes: float32, float64; cells: lstm, gru, rnn_tanh, rnn_relu; " << cuda::describe();
  return s.str();
}

namespace detail {

std::int64_t checked_mul(std::int64_t a, std::int64_t b, const char* what) {
  std::int64_t r;
  if (__builtin_mul_overflow(a, b, &r) || r > std::numeric_limits<std::int64_t>::max() / 16)
    throw InvalidArgument(std::string(what) + ": size overflows (" + std::to_string(a) + " x " + std::to_string(b) + ")");
  return r;
}

void check_compute(const CellSpec& spec, bool supported, const char* what) {
  if (spec.compute != Compute::native && !supported)
    throw InvalidArgument(std::string("compute: bfloat16 products need ") + what);
}

void check_dims(const CellSpec& spec, const Dims& d) {
  const std::pair<const char*, std::int64_t> sizes[] = {
      {"steps (T)", d.steps}, {"batch (B)", d.batch}, {"input (I)", d.input}, {"hidden (H)", d.hidden}};
  for (const auto& [name, v] : sizes)
    if (v < 1) throw InvalidArgument(std::string("dims: ") + name + " must be >= 1, got " + std::to_string(v));
  // Every buffer the kernels touch is at most (T·B) × (G·H + I + H) elements.
  const std::int64_t gh = checked_mul(gate_count(spec.cell), d.hidden, "hidden (H)");
  const std::int64_t rows = checked_mul(d.steps, d.batch, "steps x batch");
  checked_mul(rows, gh + d.input + 2 * d.hidden, "steps (T) x batch (B) x features (G·H + I + 2H)");
  checked_mul(d.input + d.hidden, gh, "weights: (input (I) + hidden (H)) x G·H");
}

void check_lengths(const Dims& d, const SequenceOptions& o) {
  if (!o.seq_lengths) return;
  for (std::int64_t b = 0; b < d.batch; ++b) {
    const std::int64_t len = o.seq_lengths[b];
    if (len < 1 || len > d.steps)
      throw InvalidArgument("seq_lengths: expected every length in 1.." + std::to_string(d.steps) + ", got " +
                            std::to_string(len) + " at index " + std::to_string(b));
  }
}

void Spans::add(std::string name, const void* p, std::int64_t count, std::size_t elem, Role role) {
  if (!p || count <= 0) return;
  const auto begin = reinterpret_cast<std::uintptr_t>(p);
  spans_.push_back({std::move(name), begin, begin + static_cast<std::uintptr_t>(count) * elem, role});
}

void Spans::check() const {
  std::vector<const Span*> order;
  order.reserve(spans_.size());
  for (const Span& s : spans_) order.push_back(&s);
  std::sort(order.begin(), order.end(), [](const Span* a, const Span* b) { return a->begin < b->begin; });
  for (std::size_t i = 0; i < order.size(); ++i)
    for (std::size_t j = i + 1; j < order.size() && order[j]->begin < order[i]->end; ++j) {
      const Span* a = order[i];
      const Span* b = order[j];
      if (a->role == Role::input && b->role == Role::input) continue;  // inputs may share memory
      if (a->role == Role::input) std::swap(a, b);                       // name the output first
      const char* what = b->role == Role::input ? "the input " : "the output ";
      throw InvalidArgument(a->name + ": overlaps " + what + b->name +
                            "; an output must not share memory with any input or other output");
    }
}

void require(const void* p, const char* name) {
  if (!p) throw InvalidArgument(std::string(name) + ": required, got a null pointer");
}

void require_absent(const void* p, const char* name, Cell cell) {
  if (p)
    throw InvalidArgument(std::string(name) + ": the " + cell_name(cell) +
                          " cell has no cell state; expected nullptr");
}

}  // namespace detail

std::size_t cache_size(const CellSpec& spec, const Dims& dims) {
  detail::check_dims(spec, dims);
  const std::int64_t per_row = spec.cell == Cell::lstm || spec.cell == Cell::gru ? 5 : 1;
  return static_cast<std::size_t>(dims.steps * dims.batch * per_row * dims.hidden);
}

LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
