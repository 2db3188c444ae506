// Chooses the instruction-set variant of the CPU kernels at run time: the best one
// this processor (and OS) supports, unless LSTMCORE_ISA or set_isa() says otherwise.
#include <atomic>
#include <cstdlib>
#include <string>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

#include "cpu/isa.h"
#include "cpu/kernels.h"
#include "lstmcore/types.h"

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN
namespace cpu {
namespace {

#define LSTMCORE_ENTRIES(ns, T) \
  Entries<T> { &ns::forward<T>, &ns::backward<T>, &ns::variant_forward<T>, &ns::variant_backward<T>, &ns::activation<T> }
#define LSTMCORE_TABLE(ns) \
  KernelTable { #ns, &ns::pack_geometry, LSTMCORE_ENTRIES(ns, float), LSTMCORE_ENTRIES(ns, double) }

const KernelTable generic_table = LSTMCORE_TABLE(generic);
#ifdef LSTMCORE_HAVE_AVX2
const KernelTable avx2_table = LSTMCORE_TABLE(avx2);
#endif
#ifdef LSTMCORE_HAVE_AVX512
const KernelTable avx512_table = LSTMCORE_TABLE(avx512);
#endif
#ifdef LSTMCORE_HAVE_AVX512_BF16
const KernelTable avx512_bf16_table = LSTMCORE_TABLE(avx512_bf16);
#endif

bool cpu_has(const std::string& isa) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (isa == "avx512_bf16") return cpu_has("avx512") && __builtin_cpu_supports("avx512bf16");
  if (isa == "avx512")
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("fma") && __builtin_cpu_supports("avx2");
  if (isa == "avx2") return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
  return isa == "generic";
}

// The compiled variants, best first.
std::vector<const KernelTable*> compiled() {
  std::vector<const KernelTable*> v;
#ifdef LSTMCORE_HAVE_AVX512_BF16
  v.push_back(&avx512_bf16_table);
#endif
#ifdef LSTMCORE_HAVE_AVX512
  v.push_back(&avx512_table);
#endif
#ifdef LSTMCORE_HAVE_AVX2
  v.push_back(&avx2_table);
#endif
  v.push_back(&generic_table);
  return v;
}

const KernelTable* find(const std::string& name) {
  for (const KernelTable* t : compiled())
    if (name == t->name) return t;
  return nullptr;
}

const KernelTable* best() {
  for (const KernelTable* t : compiled())
    if (cpu_has(t->name)) return t;
  return &generic_table;
}

const KernelTable* initial() {
  if (const char* env = std::getenv("LSTMCORE_ISA")) {
    const KernelTable* t = find(env);
    if (t && cpu_has(t->name)) return t;
    // An unknown or unsupported request falls back to the best variant rather than
    // failing at import; get_isa() tells which one runs.
  }
  return best();
}

std::atomic<const KernelTable*>& current() {
  static std::atomic<const KernelTable*> t{initial()};
  return t;
}

}  // namespace

const KernelTable& current_kernels() { return *current().load(std::memory_order_acquire); }

std::size_t machine_l2_bytes() {
  static const std::size_t bytes = [] {
    // LSTMCORE_L2_BYTES (a positive integer) overrides what the system says: for machines
    // whose C library misreports it, and to compare the planner's choices on one machine.
    if (const char* env = std::getenv("LSTMCORE_L2_BYTES")) {
      char* end = nullptr;
      const long long v = std::strtoll(env, &end, 10);
      if (end != env && *end == '\0' && v > 0) return static_cast<std::size_t>(v);
    }
    long n = 0;
#ifdef _SC_LEVEL2_CACHE_SIZE
    n = sysconf(_SC_LEVEL2_CACHE_SIZE);
#endif
    return n > 0 ? static_cast<std::size_t>(n) : std::size_t{512 * 1024};
  }();
  return bytes;
}

Context capture() {
  Context c;
  c.threads = get_num_threads();
  c.kernels = &current_kernels();
  c.l2_bytes = machine_l2_bytes();
  return c;
}

}  // namespace cpu

std::vector<std::string> available_isas() {
  std::vector<std::string> names;
  for (const cpu::KernelTable* t : cpu::compiled())
    if (cpu::cpu_has(t->name)) names.push_back(t->name);
  return names;
}

std::string get_isa() { return cpu::current_kernels().name; }

void set_isa(const std::string& name) {
  const cpu::KernelTable* t = cpu::find(name);
  if (!t || !cpu::cpu_has(name)) {
    std::string list;
    for (const auto& n : available_isas()) list += (list.empty() ? "" : ", ") + n;
    throw InvalidArgument("isa: expected one of " + list + " (compiled and supported here), got '" + name + "'");
  }
  cpu::current().store(t, std::memory_order_release);
}

LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
