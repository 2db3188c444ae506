// The thread rules of cpu/threads.h.
#include "cpu/threads.h"

#include <algorithm>

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN
namespace cpu {

using i64 = std::int64_t;

int threads_for(const Context& c, i64 work) {
  // Below a few thousand values a thread's start-up costs more than it saves.
  if (work < 4096) return 1;
  return static_cast<int>(std::min<i64>(c.threads, work / 2048));
}

int gemm_threads(const Context& c, double work) { return work < kParallelGemmWork ? 1 : std::max(1, c.threads); }

int product_threads(const Context& c, i64 flops, i64 blocks) {
  i64 n = std::min<i64>(c.threads, blocks);
  if (flops < 200000) n = 1;  // below ~0.2 MFLOP a barrier costs more than it saves
  return static_cast<int>(std::max<i64>(1, n));
}

int recurrence_threads(const Context& c, i64 B, i64 H, i64 G, i64 blocks) {
  return product_threads(c, 2 * B * H * G * H, blocks);
}

}  // namespace cpu
LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
