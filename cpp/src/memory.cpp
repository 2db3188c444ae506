// The pool of memory.h and the public release_memory() / kept_memory().
#include "memory.h"

#include "lstmcore/testing.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <mutex>
#include <new>
#include <vector>

namespace lstmcore {
LSTMCORE_INLINE_NAMESPACE_BEGIN
namespace detail {
namespace {

struct Idle {
  void* data;
  std::size_t bytes;
};

void* allocate(std::size_t bytes) { return ::operator new(bytes, std::align_val_t(64)); }
void deallocate(void* p) { ::operator delete(p, std::align_val_t(64)); }

class Pool {
 public:
  // An idle block that fits (the smallest), else a new one; a too-small idle block is
  // freed in exchange, as a thread's kept block used to grow.
  void* take(std::size_t& bytes, std::uint64_t& generation) {
    void* drop = nullptr;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      generation = generation_;
      auto best = idle_.end();
      for (auto it = idle_.begin(); it != idle_.end(); ++it)
        if (it->bytes >= bytes && (best == idle_.end() || it->bytes < best->bytes)) best = it;
      if (best != idle_.end()) {
        void* p = best->data;
        bytes = best->bytes;
        kept_ -= best->bytes;
        idle_.erase(best);
        return p;
      }
      if (!idle_.empty()) {
        auto largest = std::max_element(idle_.begin(), idle_.end(),
                                        [](const Idle& a, const Idle& b) { return a.bytes < b.bytes; });
        drop = largest->data;
        kept_ -= largest->bytes;
        idle_.erase(largest);
      }
    }
    if (drop) deallocate(drop);
    return allocate(bytes);
  }

  void give_back(void* p, std::size_t bytes, std::uint64_t generation) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (generation == generation_ && kept_ + bytes <= kKeptBytes) {
        idle_.push_back({p, bytes});
        kept_ += bytes;
        return;
      }
    }
    deallocate(p);
  }

  void release() {
    std::vector<Idle> drop;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      drop.swap(idle_);
      kept_ = 0;
      ++generation_;  // blocks in use now are freed when their calls return
    }
    for (const Idle& b : drop) deallocate(b.data);
  }

  std::size_t kept() {
    std::lock_guard<std::mutex> lock(mutex_);
    return kept_;
  }

 private:
  std::mutex mutex_;
  std::vector<Idle> idle_;
  std::size_t kept_ = 0;
  std::uint64_t generation_ = 0;
};

// testing::poison_scratch: every block handed out is first filled with 0xFF bytes.
std::atomic<bool> g_poison{false};

// Never destroyed: a call still running on another thread while the process exits may
// give its block back after static destructors ran.
Pool& pool() {
  static Pool* p = new Pool;
  return *p;
}

}  // namespace

Block::Block(std::size_t bytes) : bytes_((std::max<std::size_t>(bytes, 64) + 63) / 64 * 64) {
  data_ = pool().take(bytes_, generation_);
  if (g_poison.load(std::memory_order_relaxed)) std::memset(data_, 0xFF, bytes_);
}

Block::~Block() { pool().give_back(data_, bytes_, generation_); }

}  // namespace detail

namespace testing {
void poison_scratch(bool on) { detail::g_poison.store(on, std::memory_order_relaxed); }
bool scratch_poisoned() { return detail::g_poison.load(std::memory_order_relaxed); }
}  // namespace testing

void release_memory() { detail::pool().release(); }

std::size_t kept_memory() noexcept {
  try {
    return detail::pool().kept();
  } catch (...) {  // a failed lock: report nothing kept rather than throw from noexcept
    return 0;
  }
}

LSTMCORE_INLINE_NAMESPACE_END
}  // namespace lstmcore
