// The scratch memory of the CPU calls: one 64-byte aligned block per call, from a
// process-wide pool of idle blocks.
//
// Fresh pages cost a page fault and the kernel's zeroing of them, which for a large
// inference call (the T·B·G·H gate buffer) is a tenth of its run time; so a block goes
// back to the pool when its call returns and serves a later call of any thread. What the
// pool keeps is bounded: idle blocks of at most kKeptBytes in all (a returned block that
// would exceed it is freed). release_memory() (types.h) frees every idle block at once,
// and the blocks of calls running at that moment when they return. Internal: not installed.
#pragma once

#include <cstddef>
#include <cstdint>

#include "lstmcore/types.h"

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN
namespace detail {

constexpr std::size_t kKeptBytes = std::size_t(256) << 20;

// A block of at least `bytes`, 64-byte aligned, held until destruction. std::bad_alloc
// when it cannot be had.
class Block {
 public:
  explicit Block(std::size_t bytes);
  ~Block();
  Block(const Block&) = delete;
  Block& operator=(const Block&) = delete;
  void* data() const { return data_; }

 private:
  void* data_ = nullptr;
  std::size_t bytes_ = 0;
  std::uint64_t generation_ = 0;
};

}  // namespace detail
LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
