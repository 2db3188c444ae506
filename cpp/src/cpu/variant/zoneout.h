// Zoneout (Krueger et al. 2016) for the LSTM variant: the masks of a training call, drawn
// from a counter-based generator, and the update that keeps a unit's previous value.
// Compiled per instruction set.
#pragma once

#include <cstdint>
#include <cstring>

#include "common.h"
#include "cpu/kernel_common.h"
#include "variant_plan.h"

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN
namespace cpu {
namespace LSTMCORE_ISA_NS {

// The zoneout masks of one stream, row-order (T, B, W): element (t, b, j) is 1 (keep the
// previous value) when counter_uniform(stream key, (t·B + b)·W + j) < z. Time-major
// counters: the masks do not depend on batch_first.
template <typename T>
void make_zoneout_mask(const Context& ctx, const detail::VariantPlan& p, const Walk& walk, std::uint64_t seed,
                       std::uint64_t stream, double z, i64 W, T* mask) {
  const std::uint64_t key = detail::stream_key(seed, stream);
  for_batch(ctx, p.N, p.N * W * 8, [&](i64 r) {
    const i64 t = walk.batch_first ? r % p.T : r / p.B;
    const i64 b = walk.batch_first ? r / p.T : r % p.B;
    const std::uint64_t base = static_cast<std::uint64_t>((t * p.B + b) * W);
    for (i64 j = 0; j < W; ++j)
      mask[r * W + j] = detail::counter_uniform(key, base + static_cast<std::uint64_t>(j)) < z ? T(1) : T(0);
  });
}

// prev ← k ⊙ prev + (1 − k) ⊙ next, k the mask row, or z everywhere (inference), or none.
template <typename T>
void zoneout_update(T* prev, const T* next, const T* mask, T z, i64 n) {
  if (mask) {
    for (i64 j = 0; j < n; ++j) prev[j] = mask[j] != T(0) ? prev[j] : next[j];
  } else if (z > T(0)) {
    for (i64 j = 0; j < n; ++j) prev[j] = z * prev[j] + (T(1) - z) * next[j];
  } else {
    std::memcpy(prev, next, sizeof(T) * n);
  }
}

}  // namespace LSTMCORE_ISA_NS
}  // namespace cpu
LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
