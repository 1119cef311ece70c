// Threading and deterministic reductions shared by every CPU family.
//
// Work is cut into chunks whose boundaries depend only on the problem size,
// never on the thread count, and every partial sum is formed per chunk and then
// added in chunk order: results are bit-identical for any number of threads.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

namespace lossx {
namespace cpu {

int effective_threads();

// Calls f(begin, end) for consecutive chunks of [0, n) of `grain` items each.
// A thread is only woken for at least `min_chunks_per_thread` chunks: waking
// one costs microseconds on a quiet machine and a scheduler time slice on a
// busy one, more than a few cheap chunks are worth.
template <class F>
void parallel_for(int64_t n, int64_t grain, F&& f, int64_t min_chunks_per_thread = 1) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  const int64_t chunks = (n + grain - 1) / grain;
  const int64_t useful = chunks / std::max<int64_t>(min_chunks_per_thread, 1);
  const int nt = static_cast<int>(std::min<int64_t>(effective_threads(), useful));
  if (nt <= 1) {
    for (int64_t c = 0; c < chunks; ++c) f(c * grain, std::min(n, (c + 1) * grain));
    return;
  }
#pragma omp parallel for num_threads(nt) schedule(static)
  for (int64_t c = 0; c < chunks; ++c) f(c * grain, std::min(n, (c + 1) * grain));
}

// Rows per chunk so that one chunk touches about `target` elements.
inline int64_t grain_for(int64_t row_len, int64_t target = 1 << 15) {
  return std::max<int64_t>(1, target / std::max<int64_t>(row_len, 1));
}

// Elements per chunk for the row kernels with an exp per element (softmax,
// cross entropy, Keras' rows): at 0.3-0.4 ns per element a 2^15 chunk is
// 10 us, so calls of 10-60 thousand elements ran on one thread. With 2^13 on
// the 2-core AVX2 guest: CE 256x100 10.1 -> 7.8 us, 2048x33 19.8 -> 15.0 us,
// log_softmax 2048x33 41.7 -> 27.7 us, categorical focal 256x100 52.7 -> 36.7 us.
// Chunks depend only on the problem size, so the bits do not depend on the
// thread count. (They can on the chunk size: for C <= 64 a chunk's last rows
// may miss a short-row block and take the row path, equal to rounding.)
constexpr int64_t kExpChunk = 1 << 13;

// Deterministic sum in double: fixed blocks of 1024, summed in order; within
// a block, four interleaved partial sums (element i goes to i % 4), so the adds
// are not one latency-bound chain.
template <typename A>
double det_sum(const A* v, int64_t n) {
  constexpr int64_t kBlock = 1024;
  double total = 0.0;
  for (int64_t b = 0; b < n; b += kBlock) {
    double p[4] = {0.0, 0.0, 0.0, 0.0};
    const int64_t e = std::min(n, b + kBlock);
    int64_t i = b;
    for (; i + 4 <= e; i += 4)
      for (int k = 0; k < 4; ++k) p[k] += static_cast<double>(v[i + k]);
    for (int k = 0; i < e; ++i, ++k) p[k] += static_cast<double>(v[i]);
    total += (p[0] + p[1]) + (p[2] + p[3]);
  }
  return total;
}

// The reduced loss from per-row losses: their deterministic sum, divided by
// `divisor` for a mean (a zero divisor gives NaN, torch's empty mean).
template <typename A>
void store_reduced(const A* row_loss, int64_t n, bool mean, double divisor, void* out) {
  double total = det_sum(row_loss, n);
  if (mean) total /= divisor;
  static_cast<A*>(out)[0] = static_cast<A>(total);
}

}  // namespace cpu
}  // namespace lossx
