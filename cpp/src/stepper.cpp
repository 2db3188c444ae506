// lstmcore::Stepper (stepper.h): checks, one 64-byte aligned block for the packed weights
// and the step's scratch, and the step kernel of the instruction set in force at
// construction (cpu/stepper_kernels.h).
#include "lstmcore/stepper.h"

#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>

#include "cpu/context.h"
#include "cpu/stepper_kernels.h"
#include "cpu/threads.h"

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN
namespace {

using i64 = std::int64_t;

template <typename T>
struct Kernels {
  void (*pack)(const cpu::PackGeometry&, const T*, T*);
  void (*step)(const cpu::StepperRun<T>&, const T*, T*, T*, T*);
  void (*direct)(const cpu::DirectStep<T>&);
};

template <typename T>
Kernels<T> kernels_of(const cpu::KernelTable& table) {
  const std::string name = table.name;
#ifdef LSTMCORE_HAVE_AVX512_BF16
  if (name == "avx512_bf16") return {&cpu::avx512_bf16::stepper_pack<T>, &cpu::avx512_bf16::stepper_step<T>, &cpu::avx512_bf16::direct_step<T>};
#endif
#ifdef LSTMCORE_HAVE_AVX512
  if (name == "avx512") return {&cpu::avx512::stepper_pack<T>, &cpu::avx512::stepper_step<T>, &cpu::avx512::direct_step<T>};
#endif
#ifdef LSTMCORE_HAVE_AVX2
  if (name == "avx2") return {&cpu::avx2::stepper_pack<T>, &cpu::avx2::stepper_step<T>, &cpu::avx2::direct_step<T>};
#endif
  // The packing geometry is the table's: another variant's kernels would read it wrongly.
  if (name != "generic") throw std::logic_error("Stepper: no step kernel for the instruction set " + name);
  return {&cpu::generic::stepper_pack<T>, &cpu::generic::stepper_step<T>, &cpu::generic::direct_step<T>};
}

constexpr std::size_t kLine = 64;
std::size_t lines(std::size_t bytes) { return (bytes + kLine - 1) / kLine * kLine; }

void require(bool ok, const std::string& what) {
  if (!ok) throw InvalidArgument(what);
}

}  // namespace

template <typename T>
struct Stepper<T>::Impl {
  cpu::StepperRun<T> run;
  Kernels<T> k;
  void* block = nullptr;
  ~Impl() { std::free(block); }
};

template <typename T>
Stepper<T>::Stepper(const CellSpec& spec, i64 batch, i64 input, i64 hidden, const T* w_x, const T* w_h, const T* b,
                    const T* b_h) {
  require(batch >= 1, "batch: expected >= 1, got " + std::to_string(batch));
  require(input >= 1, "input: expected >= 1, got " + std::to_string(input));
  require(hidden >= 1, "hidden: expected >= 1, got " + std::to_string(hidden));
  require(w_x != nullptr, "w_x: required (got a null pointer)");
  require(w_h != nullptr, "w_h: required (got a null pointer)");
  require(!(spec.cell == Cell::gru && !spec.reset_after),
          "spec: a Stepper runs GRU with the reset after the product only (reset_after=true)");
  const cpu::Context ctx = cpu::capture();
  auto impl = std::make_unique<Impl>();
  cpu::StepperRun<T>& r = impl->run;
  r.spec = spec;
  r.B = batch;
  r.I = input;
  r.H = hidden;
  r.G = gate_count(spec.cell);
  const i64 GH = r.G * hidden;
  const cpu::Dtype dt = cpu::dtype_of<T>();
  r.gx = ctx.kernels->pack_geometry(dt, input, hidden, r.G);
  r.gh = ctx.kernels->pack_geometry(dt, hidden, hidden, r.G);
  r.threads = cpu::product_threads(ctx, 2 * batch * (input + hidden) * GH, r.gh.blocks);
  r.tile_stride = static_cast<i64>(lines(sizeof(T) * batch * r.G * r.gh.W) / sizeof(T));
  // One block: packed w_x, packed w_h, bias, bhn, hcopy, recx, rech, tiles.
  const std::size_t sizes[] = {sizeof(T) * r.gx.elements, sizeof(T) * r.gh.elements, sizeof(T) * GH,
                               sizeof(T) * hidden,        sizeof(T) * batch * hidden, sizeof(T) * batch * GH,
                               sizeof(T) * batch * GH,    sizeof(T) * r.threads * r.tile_stride};
  std::size_t total = 0;
  for (std::size_t s : sizes) total += lines(s);
  impl->block = std::aligned_alloc(kLine, total);
  if (!impl->block) throw std::bad_alloc();
  unsigned char* p = static_cast<unsigned char*>(impl->block);
  T* parts[8];
  for (int i = 0; i < 8; ++i) {
    parts[i] = reinterpret_cast<T*>(p);
    p += lines(sizes[i]);
  }
  impl->k = kernels_of<T>(*ctx.kernels);
  impl->k.pack(r.gx, w_x, parts[0]);
  impl->k.pack(r.gh, w_h, parts[1]);
  T* bias = parts[2];
  T* bhn = parts[3];
  const bool gru = spec.cell == Cell::gru;
  for (i64 j = 0; j < GH; ++j)
    bias[j] = (b ? b[j] : T(0)) + (b_h && !(gru && j >= 2 * hidden) ? b_h[j] : T(0));
  for (i64 j = 0; j < hidden; ++j) bhn[j] = gru && b_h ? b_h[2 * hidden + j] : T(0);
  r.px = parts[0];
  r.ph = parts[1];
  r.bias = bias;
  r.bhn = bhn;
  r.hcopy = parts[4];
  r.recx = parts[5];
  r.rech = parts[6];
  r.tiles = parts[7];
  impl_ = std::move(impl);
}

template <typename T>
Stepper<T>::~Stepper() = default;
template <typename T>
Stepper<T>::Stepper(Stepper&&) noexcept = default;
template <typename T>
Stepper<T>& Stepper<T>::operator=(Stepper&&) noexcept = default;

template <typename T>
void Stepper<T>::step(const T* x_t, T* h, T* c, T* y_t) {
  require(impl_ != nullptr, "step: the Stepper was moved from");
  const cpu::StepperRun<T>& r = impl_->run;
  require(x_t != nullptr, "x_t: required (got a null pointer)");
  require(h != nullptr, "h: required (got a null pointer)");
  const bool lstm = r.spec.cell == Cell::lstm;
  require(!lstm || c != nullptr, "c: required for LSTM (got a null pointer)");
  require(lstm || c == nullptr, std::string("c: must be a null pointer for ") + cell_name(r.spec.cell));
  impl_->k.step(r, x_t, h, c, y_t);
}

template <typename T>
i64 Stepper<T>::batch() const { return impl_->run.B; }
template <typename T>
i64 Stepper<T>::input() const { return impl_->run.I; }
template <typename T>
i64 Stepper<T>::hidden() const { return impl_->run.H; }
template <typename T>
CellSpec Stepper<T>::spec() const { return impl_->run.spec; }

namespace {

// The workspace of step_layer: acc (B, G, Hp), hn, rh, hcopy (B, Hp), Hp = H rounded up to
// 16 values, so that the threads' unit ranges (whole 16-unit blocks) never share a cache
// line; then, for the row split, one partial (B, G + 1, Hp) per thread; 16 values of
// slack let the front align the start to 64 bytes.
struct StepRegions {
  i64 Hp, acc, hn, rh, hcopy, parts, part;
  StepRegions(const CellSpec& spec, i64 B, i64 H) {
    const i64 G = gate_count(spec.cell);
    Hp = (H + 15) / 16 * 16;
    acc = 0;
    hn = B * G * Hp;
    rh = hn + B * Hp;
    hcopy = rh + B * Hp;
    parts = hcopy + B * Hp;
    part = B * (G + 1) * Hp;
  }
  i64 size(int threads) const { return parts + (threads > 1 ? threads * part : 0) + 16; }
};

template <typename T>
bool overlap(const T* a, i64 na, const T* b, i64 nb) {
  return a && b && a < b + nb && b < a + na;
}

}  // namespace

i64 step_workspace_size(const CellSpec& spec, i64 batch, i64 hidden) {
  require(batch >= 1, "batch: expected >= 1, got " + std::to_string(batch));
  require(hidden >= 1, "hidden: expected >= 1, got " + std::to_string(hidden));
  return StepRegions(spec, batch, hidden).size(cpu::capture().threads);
}

template <typename T>
void step_layer(const LayerStep<T>& a, T* workspace, i64 workspace_size) {
  const i64 B = a.batch, I = a.input, H = a.hidden;
  require(B >= 1, "batch: expected >= 1, got " + std::to_string(B));
  require(I >= 1, "input: expected >= 1, got " + std::to_string(I));
  require(H >= 1, "hidden: expected >= 1, got " + std::to_string(H));
  require(a.spec.compute == Compute::native, "compute: step_layer computes in the arrays' type (native) only");
  for (const auto& [p, name] : {std::pair<const void*, const char*>{a.w_x, "w_x"}, {a.w_h, "w_h"}, {a.x_t, "x_t"},
                                {a.h_in, "h_in"}, {a.h_out, "h_out"}, {workspace, "workspace"}})
    require(p != nullptr, std::string(name) + ": required (got a null pointer)");
  const bool lstm = a.spec.cell == Cell::lstm;
  for (const auto& [p, name] : {std::pair<const void*, const char*>{a.c_in, "c_in"}, {a.c_out, "c_out"}}) {
    require(!lstm || p != nullptr, std::string(name) + ": required for LSTM (got a null pointer)");
    require(lstm || p == nullptr, std::string(name) + ": must be a null pointer for " + cell_name(a.spec.cell));
  }
  const i64 n = B * H;
  require(!overlap<T>(a.x_t, B * I, a.h_out, n) && !overlap<T>(a.x_t, B * I, a.c_out, n),
          "x_t: overlaps h_out or c_out");
  require(a.h_in == a.h_out || !overlap<T>(a.h_in, n, a.h_out, n), "h_out: overlaps h_in partly");
  require(a.c_in == a.c_out || !overlap<T>(a.c_in, n, a.c_out, n), "c_out: overlaps c_in partly");
  require(!overlap<T>(a.h_out, n, a.c_out, n), "h_out: overlaps c_out");
  require(!overlap<T>(a.h_in, n, a.c_out, n), "h_in: overlaps c_out");
  require(!overlap<T>(a.c_in, n, a.h_out, n), "c_in: overlaps h_out");
  const StepRegions reg(a.spec, B, H);
  require(workspace_size >= reg.size(1), "workspace_size: expected >= " + std::to_string(reg.size(1)) +
                                             " (step_workspace_size), got " + std::to_string(workspace_size));
  // The weights and biases must not lie under what the step writes, nor anything under its workspace.
  struct Span {
    const T* p;
    i64 count;
    const char* name;
  };
  const i64 GH = gate_count(a.spec.cell) * H;
  const Span weights[] = {{a.w_x, I * GH, "w_x"}, {a.w_h, H * GH, "w_h"}, {a.b, GH, "b"}, {a.b_h, GH, "b_h"}};
  const Span written[] = {{a.h_out, n, "h_out"}, {a.c_out, n, "c_out"}, {workspace, workspace_size, "workspace"}};
  const Span states[] = {{a.x_t, B * I, "x_t"}, {a.h_in, n, "h_in"}, {a.c_in, n, "c_in"}, {a.h_out, n, "h_out"},
                         {a.c_out, n, "c_out"}};
  for (const Span& r : weights)
    for (const Span& w : written)
      require(!overlap<T>(r.p, r.count, w.p, w.count), std::string(r.name) + ": overlaps " + w.name);
  for (const Span& r : states)
    require(!overlap<T>(r.p, r.count, workspace, workspace_size), std::string(r.name) + ": overlaps workspace");
  const cpu::Context ctx = cpu::capture();
  cpu::DirectStep<T> r;
  r.spec = a.spec;
  r.B = B;
  r.I = I;
  r.H = H;
  r.G = gate_count(a.spec.cell);
  r.gate_major = a.layout == WeightLayout::gate_major;
  r.threads = cpu::product_threads(ctx, 2 * B * (I + H) * r.G * H, (H + 15) / 16);
  // the row split where it applies and the workspace holds a partial per thread
  const bool rows = a.layout == WeightLayout::input_major && !(a.spec.cell == Cell::gru && !a.spec.reset_after);
  if (rows && r.threads > 1)
    while (r.threads > 1 && reg.size(r.threads) > workspace_size) --r.threads;
  r.w_x = a.w_x;
  r.w_h = a.w_h;
  r.b = a.b;
  r.b_h = a.b_h;
  r.x = a.x_t;
  r.h_in = a.h_in;
  r.c_in = a.c_in;
  r.h_out = a.h_out;
  r.c_out = a.c_out;
  const std::uintptr_t at = reinterpret_cast<std::uintptr_t>(workspace);
  if (at % alignof(T) != 0) throw InvalidArgument("workspace: not aligned to its type");
  T* ws = workspace + (kLine - at % kLine) % kLine / sizeof(T);
  r.ld = reg.Hp;
  r.acc = ws + reg.acc;
  r.hn = ws + reg.hn;
  r.rh = ws + reg.rh;
  r.hcopy = ws + reg.hcopy;
  if (rows && r.threads > 1) {
    r.parts = ws + reg.parts;
    r.part_stride = reg.part;
  }
  kernels_of<T>(*ctx.kernels).direct(r);
}

template void step_layer<float>(const LayerStep<float>&, float*, i64);
template void step_layer<double>(const LayerStep<double>&, double*, i64);

template class Stepper<float>;
template class Stepper<double>;

LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
