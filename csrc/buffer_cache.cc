// A small cache of large, recently freed output buffers for NumPy results.
//
// A fresh multi-megabyte NumPy array costs a page fault (and the kernel zeroing
// the page) on first touch of every 4 KiB: for a 4096x32000 float32 gradient
// that is more time than the fused cross-entropy sweep itself. Training loops
// ask for same-sized gradients every step, so outputs handed back to Python are
// carved from blocks that return here when the array is freed; the next call
// of the same size gets memory that is already mapped. Bounded by a byte limit
// (lossx.set_buffer_cache(bytes); 0 disables it), like PyTorch's caching allocator.
#include <sys/mman.h>

#include <cstdlib>
#include <map>
#include <mutex>

#include "bindings.h"

namespace lossx {
namespace {

struct Cache {
  std::mutex mu;
  std::multimap<size_t, void*> free_blocks;
  size_t held = 0;
  size_t limit = size_t(1) << 30;
};

Cache& cache() {
  static Cache* c = new Cache;  // never destroyed: capsules may outlive static destruction
  return *c;
}

constexpr size_t kAlign = 2u << 20;  // 2 MiB: lets the kernel back blocks with huge pages

void* take(size_t n) {
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mu);
    auto it = c.free_blocks.find(n);
    if (it != c.free_blocks.end()) {
      void* p = it->second;
      c.free_blocks.erase(it);
      c.held -= n;
      return p;
    }
  }
  void* p = std::aligned_alloc(kAlign, n);
  if (p == nullptr) throw std::bad_alloc();
#ifdef MADV_HUGEPAGE
  madvise(p, n, MADV_HUGEPAGE);  // advisory: fewer faults on first touch
#endif
  return p;
}

void give_back(void* p, size_t n) {
  Cache& c = cache();
  {
    std::lock_guard<std::mutex> lock(c.mu);
    if (c.held + n <= c.limit) {
      c.free_blocks.emplace(n, p);
      c.held += n;
      return;
    }
  }
  std::free(p);
}

void set_limit(size_t limit) {
  Cache& c = cache();
  std::lock_guard<std::mutex> lock(c.mu);
  c.limit = limit;
  while (c.held > c.limit && !c.free_blocks.empty()) {
    auto it = c.free_blocks.begin();
    c.held -= it->first;
    std::free(it->second);
    c.free_blocks.erase(it);
  }
}

}  // namespace

void bind_buffer_cache(py::module_& m) {
  m.def(
      "cached_empty",
      [](py::tuple shape, py::dtype dtype) {
        std::vector<py::ssize_t> dims;
        size_t n = static_cast<size_t>(dtype.itemsize());
        for (auto d : shape) {
          dims.push_back(d.cast<py::ssize_t>());
          n *= static_cast<size_t>(dims.back());
        }
        const size_t bytes = (n + kAlign - 1) / kAlign * kAlign;  // aligned_alloc needs a multiple
        struct Block {
          void* p;
          size_t n;
        };
        auto* b = new Block{take(bytes), bytes};
        py::capsule owner(b, [](void* q) {  // runs when the last NumPy view is freed
          auto* blk = static_cast<Block*>(q);
          give_back(blk->p, blk->n);
          delete blk;
        });
        return py::array(dtype, dims, {}, b->p, owner);
      },
      "Internal: an uninitialised C-contiguous array from the buffer cache.");
  m.def("set_buffer_cache", [](size_t limit) { set_limit(limit); });
  m.def("buffer_cache_held", []() {
    std::lock_guard<std::mutex> lock(cache().mu);
    return cache().held;
  });
}

}  // namespace lossx
