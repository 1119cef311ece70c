// Row-softmax family on the CPU: cross_entropy (hard and soft targets, label
// smoothing, class and sample weights, z-loss, softcap), nll_loss, log_softmax
// and logsumexp. Highway kernels compiled for every target, dispatched at run
// time.
//
// The fused sweep per row (the row stays in L1/L2 between touches):
//   1. max (the only pass that reads memory),
//   2. s = sum exp(z - max), storing e = exp(z - max) into the gradient row;
//      a non-finite s marks a row holding NaN or +-inf,
//   3. gradient = scale * (A * e / s - a) in place over e.
// Rows holding NaN or +-inf take an exact scalar path in double so that
// non-finite inputs give PyTorch's NaN/inf results instead of whatever the
// clamped fast exp would make of them.

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "cpu/softmax.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "cpu/convert.h"
#include "cpu/softmax.h"
#include "cpu/vecmath-inl.h"
#include "hwy/cache_control.h"
#include "hwy/highway.h"

HWY_BEFORE_NAMESPACE();
namespace lossx {
namespace cpu {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

// Max over the row. A NaN may or may not survive x86's max, so non-finite rows
// are recognised afterwards, by a non-finite exp sum (see RowExpSum).
template <class D>
HWY_INLINE hn::TFromD<D> RowMax(D d, const hn::TFromD<D>* z, int64_t n) {
  using T = hn::TFromD<D>;
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  auto m0 = hn::Set(d, -std::numeric_limits<T>::infinity());
  auto m1 = m0, m2 = m0, m3 = m0;
  int64_t j = 0;
  for (; j + 4 * L <= n; j += 4 * L) {
    m0 = hn::Max(m0, hn::LoadU(d, z + j));
    m1 = hn::Max(m1, hn::LoadU(d, z + j + L));
    m2 = hn::Max(m2, hn::LoadU(d, z + j + 2 * L));
    m3 = hn::Max(m3, hn::LoadU(d, z + j + 3 * L));
  }
  for (; j + L <= n; j += L) m0 = hn::Max(m0, hn::LoadU(d, z + j));
  if (j < n) m0 = hn::Max(m0, LoadTail(d, z + j, static_cast<size_t>(n - j), z[0]));
  m0 = hn::Max(hn::Max(m0, m1), hn::Max(m2, m3));
  return hn::GetLane(hn::MaxOfLanes(d, m0));
}

// Software prefetch distance for the sweep's streaming read of the logits.
// On the Sapphire Rapids guest the hardware prefetcher alone kept a core at
// 9 GB/s while the exp ran (a plain sum streams 17 GB/s per core): compute and
// memory time added up. 4 KiB ahead, on into the thread's next rows, took the
// 4096x32000 forward from 30.8 to 18.3 ms and fwd+bwd from 35.5 to 27.4 ms at
// 2 threads (2 KiB: 20 ms, 8 KiB with rows as the limit: slower than none).
constexpr int64_t kPrefetchAhead = 4096;

// Prefetches the cache lines of base + [off, off + bytes) below base + limit
// (offsets, so that no pointer past the array is ever formed).
HWY_INLINE void PrefetchStep(const char* base, int64_t off, int64_t bytes, int64_t limit) {
  for (int64_t b = off; b < off + bytes && b < limit; b += 64) hwy::Prefetch(base + b);
}

// sum_j exp(z_j - m); stores the exponentials into e when kStore.
// m must be finite. The sum is NaN when the chunk holds a NaN (the max may have
// dropped it, the exp does not); -inf next to a finite m is exact (exp gives 0).
// kAbove: m is an estimate that logits may exceed (see RowMaxExpSum).
// kCopy: also writes cp_scale * cp_src[0, n) to cp_dst with non-temporal
// stores, a vector per exp vector (cp_dst must be vector-aligned; see
// CERowsImpl's streamed gradient).
// pf_end (>= z + n): the end of the memory read in place, prefetched up to.
template <bool kStore, bool kAbove, bool kCopy, class D>
HWY_INLINE hn::TFromD<D> RowExpSum(D d, const hn::TFromD<D>* z, int64_t n, hn::TFromD<D> m,
                                   hn::TFromD<D>* e, const hn::TFromD<D>* cp_src,
                                   hn::TFromD<D>* cp_dst, hn::TFromD<D> cp_scale,
                                   const hn::TFromD<D>* pf_end) {
  using T = hn::TFromD<D>;
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  const auto vm = hn::Set(d, m);
  const auto vcp = hn::Set(d, cp_scale);
  // Two vectors per step and two sums: with four, GCC ran out of the 16 AVX2
  // registers and kept the sums in memory.
  auto s0 = hn::Zero(d), s1 = s0;
  int64_t j = 0;
  const char* zb = reinterpret_cast<const char*>(z);
  const int64_t pf_limit = (pf_end - z) * static_cast<int64_t>(sizeof(T));
  const int64_t step = 2 * L * static_cast<int64_t>(sizeof(T));
  for (; j + 2 * L <= n; j += 2 * L) {
    PrefetchStep(zb, j * static_cast<int64_t>(sizeof(T)) + kPrefetchAhead, step, pf_limit);
    hn::Vec<D> x[2] = {hn::Sub(hn::LoadU(d, z + j), vm), hn::Sub(hn::LoadU(d, z + j + L), vm)};
    if (kCopy) hn::Stream(hn::Mul(vcp, hn::LoadU(d, cp_src + j)), d, cp_dst + j);
    ExpSoftmaxN<2, kAbove>(d, x);
    if (kCopy) hn::Stream(hn::Mul(vcp, hn::LoadU(d, cp_src + j + L)), d, cp_dst + j + L);
    s0 = hn::Add(s0, x[0]);
    s1 = hn::Add(s1, x[1]);
    if (kStore) {
      hn::StoreU(x[0], d, e + j);
      hn::StoreU(x[1], d, e + j + L);
    }
  }
  for (; j + L <= n; j += L) {
    auto e0 = hn::Sub(hn::LoadU(d, z + j), vm);
    if (kCopy) hn::Stream(hn::Mul(vcp, hn::LoadU(d, cp_src + j)), d, cp_dst + j);
    ExpSoftmaxN<1, kAbove>(d, &e0);
    s0 = hn::Add(s0, e0);
    if (kStore) hn::StoreU(e0, d, e + j);
  }
  if (j < n) {
    const size_t rem = static_cast<size_t>(n - j);
    if (kCopy) {
      for (size_t k = 0; k < rem; ++k) cp_dst[j + k] = cp_scale * cp_src[j + k];
    }
    auto e0 = hn::Sub(LoadTail(d, z + j, rem, -std::numeric_limits<T>::infinity()), vm);
    ExpSoftmaxN<1, kAbove>(d, &e0);
    s0 = hn::Add(s0, e0);
    if (kStore) StoreTail(d, e0, e + j, rem);
  }
  return hn::GetLane(hn::SumOfLanes(d, hn::Add(s0, s1)));
}

// The row is swept in chunks small enough for L1, so that each logit is read
// from memory once and the exp work on one chunk overlaps the (software,
// kPrefetchAhead) prefetch of what follows (a whole-row max pass first would
// leave the cores idle during the memory read, and rows beyond L2's size would
// be read from memory twice).
// Only the first chunk gets a max pass. Later chunks are summed against that
// max m, which any m does exactly as long as no term overflows: a logit above
// m is fine (kAbove), and its term shows in the chunk's sum. A chunk whose sum
// reaches 2^20 (a logit about 14 above m, where the exp's error grows past 3
// ulp), or is NaN or inf, is swept again after a max pass, with the sum so far
// rescaled to the new max. Skipping the max pass saves about 10% of a long
// row's sweep, and logits rarely jump by 14 after the first 2048.
// chunk_max[c] records the m chunk c's stored exponentials are relative to, so
// the gradient pass can rescale them by exp(chunk_max[c] - m) (exactly 1 for
// every chunk after the last rescale).
constexpr int64_t kChunk = 2048;

HWY_INLINE int64_t NumChunks(int64_t n) { return (n + kChunk - 1) / kChunk; }

// The factor that turns chunk c's stored exponentials (relative to cmax_c)
// into coef * exp(z - m).
template <typename T>
HWY_INLINE T ChunkScale(T cmax_c, T m, T coef) {
  return cmax_c == m ? coef : coef * std::exp(cmax_c - m);
}

// A finished gradient row waiting in scratch to be written to dst: chunk c of
// src times scale[c], then dst[fix] = fix_val (fix < 0: none). CERowsImpl
// writes it along the next row's sweep (RowMaxExpSum), or all at once.
template <class D>
struct PendingRow {
  using T = hn::TFromD<D>;
  T* dst = nullptr;
  const T* src = nullptr;
  const T* scale = nullptr;
  int64_t fix = -1;
  T fix_val = 0;

  // After the streamed part: the label element goes in with an ordinary store,
  // fenced so that it lands after the streamed line holding it.
  void Finish() {
    if (dst && fix >= 0) {
      hwy::FlushStream();
      dst[fix] = fix_val;
    }
    dst = nullptr;
  }
  void Flush(D d, int64_t n);
};

// Returns NaN when the row holds NaN or +inf, or starts with a chunk of -inf
// (whose x = -inf - -inf would be NaN): the caller's exact path handles those.
// With a pending row, writes it along the sweep (RowExpSum's kCopy); a row that
// returns NaN early leaves it unfinished, for the caller to Flush.
template <bool kStore, class D>
HWY_INLINE hn::TFromD<D> RowMaxExpSum(D d, const hn::TFromD<D>* z, int64_t n, hn::TFromD<D>* m_out,
                                      hn::TFromD<D>* e, hn::TFromD<D>* chunk_max,
                                      const hn::TFromD<D>* pf_end,
                                      const PendingRow<D>* pend = nullptr) {
  using T = hn::TFromD<D>;
  constexpr T kInf = std::numeric_limits<T>::infinity();
  constexpr T kNaN = std::numeric_limits<T>::quiet_NaN();
  const bool copy = pend && pend->dst;
  const int64_t len0 = std::min(kChunk, n);
  T m = RowMax(d, z, len0);
  if (!(m > -kInf && m < kInf)) return kNaN;
  T s = copy ? RowExpSum<kStore, false, true>(d, z, len0, m, e, pend->src, pend->dst, pend->scale[0], pf_end)
             : RowExpSum<kStore, false, false>(d, z, len0, m, e, nullptr, nullptr, T(0), pf_end);
  if (chunk_max) chunk_max[0] = m;
  for (int64_t c0 = kChunk, c = 1; c0 < n; c0 += kChunk, ++c) {
    const int64_t len = std::min(kChunk, n - c0);
    T* ec = kStore ? e + c0 : nullptr;
    T sc = copy ? RowExpSum<kStore, true, true>(d, z + c0, len, m, ec, pend->src + c0,
                                                 pend->dst + c0, pend->scale[c], pf_end)
                : RowExpSum<kStore, true, false>(d, z + c0, len, m, ec, nullptr, nullptr, T(0), pf_end);
    if (!(sc < T(1 << 20))) {
      const T mc = RowMax(d, z + c0, len);
      if (std::isnan(mc) || mc == kInf) return kNaN;
      if (mc > m) {
        s *= std::exp(m - mc);
        m = mc;
      }
      sc = RowExpSum<kStore, false, false>(d, z + c0, len, m, ec, nullptr, nullptr, T(0), pf_end);
    }
    s += sc;
    if (chunk_max) chunk_max[c] = m;
  }
  *m_out = m;
  return s;
}

template <class D>
void PendingRow<D>::Flush(D d, int64_t n) {
  if (!dst) return;
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  for (int64_t c0 = 0, c = 0; c0 < n; c0 += kChunk, ++c) {
    const auto vs = hn::Set(d, scale[c]);
    const int64_t end = std::min(n, c0 + kChunk);
    int64_t j = c0;
    for (; j + L <= end; j += L) hn::Stream(hn::Mul(vs, hn::LoadU(d, src + j)), d, dst + j);
    for (; j < end; ++j) dst[j] = scale[c] * src[j];
  }
  Finish();
}

// Gradient pass in place over the stored exponentials: e[j] = f(j, coef_c * e[j])
// with the chunk's rescale folded into coef_c (see RowMaxExpSum).
template <class D, class F>
HWY_INLINE void RowMapScaled(D d, int64_t n, hn::TFromD<D>* e, const hn::TFromD<D>* chunk_max,
                             hn::TFromD<D> m, hn::TFromD<D> coef, F&& f) {
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  for (int64_t c0 = 0, c = 0; c0 < n; c0 += kChunk, ++c) {
    const auto vc = hn::Set(d, ChunkScale(chunk_max[c], m, coef));
    const int64_t end = std::min(n, c0 + kChunk);
    int64_t j = c0;
    for (; j + L <= end; j += L) hn::StoreU(f(j, hn::Mul(vc, hn::LoadU(d, e + j))), d, e + j);
    if (j < end) {
      const size_t rem = static_cast<size_t>(end - j);
      StoreTail(d, f(j, hn::Mul(vc, LoadTail(d, e + j, rem, hn::TFromD<D>(0)))), e + j, rem);
    }
  }
}

// Applies y = f(vector) elementwise over n elements with a safe tail.
template <class D, class F>
HWY_INLINE void RowMap(D d, int64_t n, hn::TFromD<D>* out, F&& f) {
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  int64_t j = 0;
  for (; j + L <= n; j += L) hn::StoreU(f(j, hn::FirstN(d, L)), d, out + j);
  if (j < n) {
    const size_t rem = static_cast<size_t>(n - j);
    StoreTail(d, f(j, hn::FirstN(d, rem)), out + j, rem);
  }
}

template <class D>
HWY_INLINE hn::Vec<D> LoadSafe(D d, const hn::TFromD<D>* p, int64_t j, int64_t n,
                               hn::TFromD<D> pad = 0) {
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  return j + L <= n ? hn::LoadU(d, p + j) : LoadTail(d, p + j, static_cast<size_t>(n - j), pad);
}

template <typename T>
struct Scratch {
  std::vector<T> z, e, e2, t, w, cm, ps, ps2;
  T* get(std::vector<T>& v, int64_t n) {
    if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
    return v.data();
  }
};

template <typename T>
Scratch<T>& ThreadScratch() {
  static thread_local Scratch<T> s;
  return s;
}

// Exact scalar path (double) for rows with NaN/inf: same formulas as the
// vector path, written so that IEEE rules produce PyTorch's results.
template <typename T>
void CERowScalar(const CEJob& job, int64_t i, const T* z, const T* t, const T* w, T scale,
                 T sw, T* loss_out, T* lse_out, T* g, T* gt) {
  const int64_t C = job.C;
  double m = -std::numeric_limits<double>::infinity();
  bool has_nan = false;
  for (int64_t j = 0; j < C; ++j) {
    if (std::isnan(static_cast<double>(z[j]))) has_nan = true;
    m = std::max(m, static_cast<double>(z[j]));
  }
  if (has_nan) m = std::numeric_limits<double>::quiet_NaN();
  double s = 0;
  for (int64_t j = 0; j < C; ++j) s += std::exp(static_cast<double>(z[j]) - m);
  const double lse = m + std::log(s);
  const double eps = job.eps, zl = job.z_loss;
  auto wv = [&](int64_t j) { return w ? static_cast<double>(w[j]) : 1.0; };
  double A = 0, az = 0;
  if (job.labels) {
    const int64_t y = job.labels[i];
    A = (1 - eps) * wv(y);
    az = (1 - eps) * wv(y) * static_cast<double>(z[y]);
    if (eps > 0) {
      for (int64_t j = 0; j < C; ++j) {
        A += eps / C * wv(j);
        az += eps / C * wv(j) * static_cast<double>(z[j]);
      }
    }
  } else {
    for (int64_t j = 0; j < C; ++j) {
      const double a = wv(j) * ((1 - eps) * static_cast<double>(t[j]) + eps / C);
      A += a;
      az += a * static_cast<double>(z[j]);
    }
  }
  double loss = A * lse - az;
  if (zl != 0) loss += zl * lse * lse;
  *loss_out = static_cast<T>(static_cast<double>(sw) * loss);
  if (lse_out) *lse_out = static_cast<T>(lse);
  if (g) {
    const double coef = static_cast<double>(scale) * (A + 2 * zl * lse);
    for (int64_t j = 0; j < C; ++j) {
      double a;
      if (job.labels) {
        a = eps / C * wv(j) + (j == job.labels[i] ? (1 - eps) * wv(j) : 0.0);
      } else {
        a = wv(j) * ((1 - eps) * static_cast<double>(t[j]) + eps / C);
      }
      g[j] = static_cast<T>(coef * std::exp(static_cast<double>(z[j]) - lse) -
                            static_cast<double>(scale) * a);
    }
  }
  if (gt) {
    for (int64_t j = 0; j < C; ++j)
      gt[j] = static_cast<T>(static_cast<double>(scale) * (1 - eps) * wv(j) *
                             (lse - static_cast<double>(z[j])));
  }
}

// Cross entropy (value, and gradient when job.grad is set) for rows of at most
// kShortRow classes, hard labels, in the compute type, no softcap: lane k of
// every vector holds row i0 + k. A
// row-at-a-time sweep is latency-bound there (two horizontal reductions, an
// exp and a log chained per row, about 90 ns for 10 classes); side by side,
// L rows share every instruction and the chain is paid once per block.
// Same formulas as the row path (the sums run in another order: equal to
// rounding, and fixed for a given problem size, so thread counts still agree;
// forward-only and forward+backward calls both take this path, so they give
// the same loss bit for bit).
// Returns false, having written nothing, when a row holds NaN or +-inf: the
// caller then runs the block through the row path's exact handling.
// 64: on the AVX2 guest (1 thread, float32) this beats the row path from 33 to
// 64 classes, forward (0.29 vs 0.92 ns per logit at 33, 0.28 vs 0.47 at 64)
// and forward+backward (0.69 vs 1.30, 0.62 vs 0.65). Above 64 the gradient's
// transposing write costs more than it saves; a forward-only limit of 128
// would also win, but would give forward and forward+backward different bits.
constexpr int64_t kShortRow = 64;

template <typename T, class D>
HWY_NOINLINE bool ShortRows(D d, const CEJob& job, int64_t i0) {
  const int64_t C = job.C;
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  const hn::RebindToSigned<D> di;
  using TI = hn::TFromD<decltype(di)>;
  const T* z = static_cast<const T*>(job.x) + i0 * C;
  const T* w = static_cast<const T*>(job.weight);
  const T* sw = static_cast<const T*>(job.sample_weight);
  const T eps = static_cast<T>(job.eps), zl = static_cast<T>(job.z_loss);
  // Column j of the block: z[k * C + j] for lane k.
  const auto rows = hn::Mul(hn::Iota(di, 0), hn::Set(di, static_cast<TI>(C)));
  HWY_ALIGN T cols[kShortRow * hn::MaxLanes(d)];
  auto m = hn::Set(d, -std::numeric_limits<T>::infinity());
  for (int64_t j = 0; j < C; ++j) {
    const auto v = hn::GatherIndex(d, z + j, rows);
    hn::Store(v, d, cols + j * L);
    m = hn::Max(m, v);
  }
  // The exponentials replace the columns when a gradient is wanted.
  const bool grad = job.grad != nullptr;
  auto s = hn::Zero(d);
  for (int64_t j = 0; j < C; ++j) {
    const auto e = ExpSoftmax(d, hn::Sub(hn::Load(d, cols + j * L), m));
    s = hn::Add(s, e);
    if (grad && eps == 0) hn::Store(e, d, cols + j * L);
  }
  // A finite row's sum is in [1, C]; anything else means NaN/inf somewhere
  // (the max may drop a NaN, but its own x is NaN and so is the sum).
  if (!hn::AllTrue(d, hn::And(hn::Ge(s, hn::Set(d, T(1))), hn::Le(s, hn::Set(d, static_cast<T>(C))))))
    return false;
  // Per-lane label terms, as the row path: A = sum_k a_k, AZ = sum_k a_k (z_k - m).
  HWY_ALIGN T av[hn::MaxLanes(d)], azv[hn::MaxLanes(d)], ms[hn::MaxLanes(d)];
  hn::Store(m, d, ms);
  for (int64_t k = 0; k < L; ++k) {
    const int64_t y = job.labels[i0 + k];
    if (y == job.ignore_index) {
      av[k] = azv[k] = 0;
      continue;
    }
    const T wy = w ? w[y] : T(1);
    av[k] = (1 - eps) * wy;
    azv[k] = av[k] * (z[k * C + y] - ms[k]);
  }
  auto A = hn::Load(d, av), AZ = hn::Load(d, azv);
  if (eps > 0) {
    auto acc = hn::Zero(d);
    for (int64_t j = 0; j < C; ++j)
      acc = hn::MulAdd(hn::Set(d, w ? w[j] : T(1)), hn::Sub(hn::Load(d, cols + j * L), m), acc);
    const T inv_c = T(1) / static_cast<T>(C);
    // Ignored lanes keep A = AZ = 0.
    HWY_ALIGN T live[hn::MaxLanes(d)];
    for (int64_t k = 0; k < L; ++k) live[k] = job.labels[i0 + k] == job.ignore_index ? T(0) : T(1);
    const auto vl = hn::Load(d, live);
    A = hn::MulAdd(vl, hn::Set(d, eps * static_cast<T>(job.weight_sum) * inv_c), A);
    AZ = hn::MulAdd(hn::Mul(vl, hn::Set(d, eps * inv_c)), acc, AZ);
  }
  const auto log_s = hn::Log(d, s);
  const auto lse = hn::Add(m, log_s);
  auto loss = hn::Sub(hn::Mul(A, log_s), AZ);
  if (zl != 0) loss = hn::MulAdd(hn::Mul(hn::Set(d, zl), lse), lse, loss);
  HWY_ALIGN T lv[hn::MaxLanes(d)];
  hn::Store(loss, d, lv);
  T* row_loss = static_cast<T*>(job.row_loss);
  for (int64_t k = 0; k < L; ++k) {
    const int64_t i = i0 + k;
    row_loss[i] = job.labels[i] == job.ignore_index ? T(0) : (sw ? sw[i] : T(1)) * lv[k];
  }
  if (job.lse) hn::StoreU(lse, d, static_cast<T*>(job.lse) + i0);
  if (!grad) return true;
  // g_j = scale (A + 2 zl lse) / s * e_j - scale eps / C * w_j, then
  // g_y -= scale (1 - eps) w_y: the row path's gradient. Ignored rows have
  // scale 0 and so a zero gradient. Built column-wise, then written row-wise
  // (after every read of z: the output may be z itself, inplace_grad).
  const auto scale = hn::LoadU(d, static_cast<const T*>(job.row_scale) + i0);
  const auto coef = hn::Div(hn::Mul(scale, hn::MulAdd(hn::Set(d, 2 * zl), lse, A)), s);
  const auto smooth = hn::Mul(scale, hn::Set(d, eps / static_cast<T>(C)));
  for (int64_t j = 0; j < C; ++j) {
    const auto cj = hn::Load(d, cols + j * L);
    auto g = hn::Mul(coef, eps == 0 ? cj : ExpSoftmax(d, hn::Sub(cj, m)));
    if (eps > 0) g = hn::NegMulAdd(smooth, hn::Set(d, w ? w[j] : T(1)), g);
    hn::Store(g, d, cols + j * L);
  }
  T* gout = static_cast<T*>(job.grad) + i0 * C;
  const T* sc = static_cast<const T*>(job.row_scale) + i0;
  for (int64_t k = 0; k < L; ++k) {
    T* gr = gout + k * C;
    for (int64_t j = 0; j < C; ++j) gr[j] = cols[j * L + k];
    const int64_t y = job.labels[i0 + k];
    if (y != job.ignore_index) gr[y] -= sc[k] * (1 - eps) * (w ? w[y] : T(1));
  }
  return true;
}

template <typename T>
void CERowsImpl(const CEJob& job, int64_t begin, int64_t end) {
  const hn::ScalableTag<T> d;
  const int64_t C = job.C;
  const bool native = IsNative<T>(job.dtype);
  const bool cap = job.softcap > 0;
  const T eps = static_cast<T>(job.eps), zl = static_cast<T>(job.z_loss);
  const T* w = static_cast<const T*>(job.weight);
  const T* sw = static_cast<const T*>(job.sample_weight);
  const T* scales = static_cast<const T*>(job.row_scale);
  T* row_loss = static_cast<T*>(job.row_loss);
  T* lse_out = static_cast<T*>(job.lse);
  const bool want_grad = job.grad != nullptr;
  Scratch<T>& sc = ThreadScratch<T>();
  // stream_grad (large outputs, long rows, aligned): a row's exponentials stay
  // in scratch, and the next row's sweep writes them out as the gradient, one
  // non-temporal vector per exp vector, scaling on the way for the plain
  // hard-label case. That saves the in-place gradient pass over the row and
  // the output's read for ownership: fwd+bwd at 4096x32000 went from 82 to
  // 71 ms. Copying a row out right after it, even with non-temporal stores,
  // measured 25% slower than building it in place: the stores stall unless
  // they are spread under the compute-bound sweep.
  PendingRow<hn::ScalableTag<T>> pending;

  auto row = [&](int64_t i) {
    const int64_t off = i * C;
    int64_t y = -1;
    bool ignored = false;
    if (job.labels) {
      y = job.labels[i];
      ignored = y == job.ignore_index;
    }
    // Ignored rows: zero loss and exactly zero gradient, whatever the logits hold.
    // With return_lse the zeros are written after the row's lse: the gradient
    // may be the logits themselves (inplace_grad).
    const auto zero_grad = [&] {
      if (want_grad) {
        std::memset(static_cast<char*>(job.grad) + off * dtype_size(job.dtype), 0,
                    static_cast<size_t>(C) * dtype_size(job.dtype));
      }
    };
    if (ignored) {
      pending.Flush(d, C);
      row_loss[i] = 0;
      if (!lse_out) return zero_grad();
    }
    const T scale = (want_grad && scales) ? scales[i] : T(0);
    const T swi = sw ? sw[i] : T(1);

    // The row in the compute type: the input itself, or a converted/capped copy.
    const T* z;
    if (native && !cap) {
      z = static_cast<const T*>(job.x) + off;
    } else {
      T* zb = sc.get(sc.z, C);
      ConvertRow<T>(job.x, job.dtype, off, C, zb);
      if (cap) {
        const T s = static_cast<T>(job.softcap);
        const auto vs = hn::Set(d, s), vinv = hn::Set(d, T(1) / s);
        RowMap(d, C, zb, [&](int64_t j, auto) {
          return hn::Mul(vs, hn::Tanh(d, hn::Mul(LoadSafe(d, zb, j, C), vinv)));
        });
      }
      z = zb;
    }
    const T* t = nullptr;
    if (!job.labels) {
      if (native) {
        t = static_cast<const T*>(job.target) + off;
      } else {
        T* tb = sc.get(sc.t, C);
        ConvertRow<T>(job.target, job.dtype, off, C, tb);
        t = tb;
      }
    }

    const bool grad_row = want_grad && !ignored;
    // Gradient written straight into the output when its type is the compute
    // type and nothing later needs z at the same address (grad_target, in-place
    // softcap are the cases that do).
    T* g_native = (grad_row && native) ? static_cast<T*>(job.grad) + off : nullptr;
    T* gt_native = (job.grad_target && native) ? static_cast<T*>(job.grad_target) + off : nullptr;
    // Exponentials go where the gradient will be built: scratch when streamed
    // (above); else the output row itself when it has the compute type, so that
    // its read for ownership overlaps the compute-bound exp pass, unless the
    // output is z itself (inplace_grad), which is still read below.
    const bool streamed = job.stream_grad && g_native && g_native != z;
    const bool direct = !streamed && g_native && g_native != z;
    T* e = grad_row ? (direct ? g_native : sc.get(sc.e, C)) : nullptr;
    T* cmax = grad_row ? sc.get(sc.cm, NumChunks(C)) : nullptr;
    T m;
    // Logits read in place: prefetch on into this thread's next rows.
    const T* pf_end = (native && !cap) ? static_cast<const T*>(job.x) + end * C : z + C;
    const T s = e ? RowMaxExpSum<true>(d, z, C, &m, e, cmax, pf_end, &pending)
                  : RowMaxExpSum<false>(d, z, C, &m, nullptr, nullptr, pf_end, &pending);
    // A finite sum means every chunk was swept, carrying the pending row out.
    if (std::isfinite(s)) {
      pending.Finish();
    } else {
      pending.Flush(d, C);
    }
    if (!std::isfinite(s)) {  // NaN/inf in the row: exact scalar path
      T* gb = grad_row ? sc.get(sc.e, C) : nullptr;
      T* gtb = (job.grad_target && !ignored) ? sc.get(sc.w, C) : nullptr;
      T lossv;
      T lsev;
      CERowScalar<T>(job, i, z, t, w, scale, swi, &lossv, &lsev, gb, gtb);
      if (lse_out) lse_out[i] = lsev;
      if (ignored) return zero_grad();
      row_loss[i] = lossv;
      if (gb) StoreRow<T>(gb, C, job.grad, job.dtype, off);
      if (gtb) StoreRow<T>(gtb, C, job.grad_target, job.dtype, off);
      return;
    }

    // The loss is sum_k a_k (lse - z_k) = A log(s) - sum_k a_k (z_k - m) with A = sum a_k.
    // Shifting by m before summing keeps large logits from cancelling catastrophically.
    T A, AZ;
    const auto vm = hn::Set(d, m);
    const T inv_c = T(1) / static_cast<T>(C);
    if (job.labels) {
      const T wy = ignored ? T(0) : (w ? w[y] : T(1));
      A = (1 - eps) * wy;
      AZ = ignored ? T(0) : A * (z[y] - m);
      if (eps > 0) {
        auto acc = hn::Zero(d);
        const int64_t L = static_cast<int64_t>(hn::Lanes(d));
        for (int64_t j = 0; j < C; j += L) {
          const auto zv = hn::Sub(LoadSafe(d, z, j, C, m), vm);  // padding contributes 0
          acc = hn::MulAdd(w ? LoadSafe(d, w, j, C) : hn::Set(d, T(1)), zv, acc);
        }
        A += eps * static_cast<T>(job.weight_sum) * inv_c;
        AZ += eps * inv_c * hn::GetLane(hn::SumOfLanes(d, acc));
      }
    } else {
      auto acc = hn::Zero(d), asum = hn::Zero(d);
      const int64_t L = static_cast<int64_t>(hn::Lanes(d));
      const auto k1 = hn::Set(d, 1 - eps), k2 = hn::Set(d, eps * inv_c);
      for (int64_t j = 0; j < C; j += L) {
        // Padding lanes: t = 0 and w = 0 make a = 0 there.
        auto a = hn::MulAdd(k1, LoadSafe(d, t, j, C), k2);
        if (w) {
          a = hn::Mul(a, LoadSafe(d, w, j, C));  // zero padding zeroes the tail
        } else if (j + L > C) {
          a = hn::IfThenElseZero(hn::FirstN(d, static_cast<size_t>(C - j)), a);
        }
        asum = hn::Add(asum, a);
        acc = hn::MulAdd(a, hn::Sub(LoadSafe(d, z, j, C, m), vm), acc);
      }
      A = hn::GetLane(hn::SumOfLanes(d, asum));
      AZ = hn::GetLane(hn::SumOfLanes(d, acc));
    }

    const T log_s = std::log(s);
    const T lse = m + log_s;
    if (lse_out) lse_out[i] = lse;
    if (ignored) return zero_grad();
    T loss = A * log_s - AZ;
    if (zl != 0) loss += zl * lse * lse;
    row_loss[i] = swi * loss;

    T* ps = streamed ? sc.get(sc.ps, NumChunks(C)) : nullptr;
    int64_t fix = -1;
    T fix_val = 0;
    const T coef = scale * (A + 2 * zl * lse) / s;
    if (streamed && job.labels && eps == 0 && !cap) {
      // The plain gradient, coef * e with the label's term, is formed as the
      // next row's sweep writes it out: one pass over the row fewer.
      for (int64_t c = 0; c < NumChunks(C); ++c) ps[c] = ChunkScale(cmax[c], m, coef);
      fix = y;
      fix_val = ps[y / kChunk] * e[y] - scale * (w ? w[y] : T(1));
    } else if (grad_row) {
      if (ps) std::fill(ps, ps + NumChunks(C), T(1));
      const auto capinv = hn::Set(d, cap ? T(1) / static_cast<T>(job.softcap) : T(0));
      const auto one = hn::Set(d, T(1));
      if (job.labels) {
        const auto smooth = hn::Set(d, scale * eps * inv_c);
        RowMapScaled(d, C, e, cmax, m, coef, [&](int64_t j, auto g) {
          if (eps > 0) g = hn::NegMulAdd(smooth, w ? LoadSafe(d, w, j, C) : one, g);
          if (cap) {
            const auto zc = hn::Mul(LoadSafe(d, z, j, C), capinv);
            g = hn::Mul(g, hn::NegMulAdd(zc, zc, one));
          }
          return g;
        });
        const T wy = w ? w[y] : T(1);
        T corr = scale * (1 - eps) * wy;
        if (cap) {
          const T zc = z[y] / static_cast<T>(job.softcap);
          corr *= (1 - zc * zc);
        }
        e[y] -= corr;
      } else {
        const auto k1 = hn::Set(d, scale * (1 - eps)), k2 = hn::Set(d, scale * eps * inv_c);
        RowMapScaled(d, C, e, cmax, m, coef, [&](int64_t j, auto ce) {
          auto a = hn::MulAdd(k1, LoadSafe(d, t, j, C), k2);
          if (w) a = hn::Mul(a, LoadSafe(d, w, j, C));
          auto g = hn::Sub(ce, a);
          if (cap) {
            const auto zc = hn::Mul(LoadSafe(d, z, j, C), capinv);
            g = hn::Mul(g, hn::NegMulAdd(zc, zc, one));
          }
          return g;
        });
      }
    }
    if (job.grad_target) {
      // d loss / d t_c = scale (1 - eps) w_c (lse - z_c)
      T* gt = gt_native ? gt_native : sc.get(sc.w, C);
      const auto k = hn::Set(d, scale * (1 - eps));
      const auto vlse = hn::Set(d, lse);
      RowMap(d, C, gt, [&](int64_t j, auto) {
        auto g = hn::Mul(k, hn::Sub(vlse, LoadSafe(d, z, j, C)));
        if (w) g = hn::Mul(g, LoadSafe(d, w, j, C));
        return g;
      });
      if (!gt_native) StoreRow<T>(gt, C, job.grad_target, job.dtype, off);
    }
    // Copied out last: with inplace_grad the output is z, read until here.
    if (streamed) {
      // e and ps now live in e2 and ps2, which nothing else touches.
      sc.e.swap(sc.e2);
      sc.ps.swap(sc.ps2);
      pending = PendingRow<hn::ScalableTag<T>>{g_native, e, ps, fix, fix_val};
    } else if (grad_row && !direct) {
      if (g_native) {
        std::memcpy(g_native, e, static_cast<size_t>(C) * sizeof(T));
      } else {
        StoreRow<T>(e, C, job.grad, job.dtype, off);
      }
    }
  };

  // Short rows: a vector's worth of rows at a time, one per lane (see ShortRows).
  int64_t i = begin;
  if (native && !cap && job.labels && C <= kShortRow) {
    const int64_t L = static_cast<int64_t>(hn::Lanes(d));
    for (; i + L <= end; i += L) {
      if (!ShortRows<T>(d, job, i)) {
        for (int64_t r = i; r < i + L; ++r) row(r);
      }
    }
  }
  for (; i < end; ++i) row(i);
  pending.Flush(d, C);
  if (job.stream_grad) hwy::FlushStream();  // order the streamed stores before the join
}

void CERowsF32(const CEJob& job, int64_t begin, int64_t end) { CERowsImpl<float>(job, begin, end); }
void CERowsF64(const CEJob& job, int64_t begin, int64_t end) { CERowsImpl<double>(job, begin, end); }

// A row's outputs from its lse, for the row path and the short-row blocks alike:
// log_softmax's z - lse, and the input gradient: g - softmax * gsum for
// log_softmax (g: grad_output's row, nullptr = ones, gsum its sum), go * softmax
// for logsumexp.
template <class D, typename T = hn::TFromD<D>>
HWY_INLINE void LogSoftmaxRow(D d, int64_t C, const T* z, T lse, T* o) {
  const auto vl = hn::Set(d, lse);
  RowMap(d, C, o, [&](int64_t j, auto) { return hn::Sub(LoadSafe(d, z, j, C), vl); });
}

template <class D, typename T = hn::TFromD<D>>
HWY_INLINE void SoftmaxGradRow(D d, bool log_softmax, int64_t C, const T* z, T lse, const T* g, T gsum, T go,
                               T* gi) {
  const auto vl = hn::Set(d, lse);
  if (log_softmax) {
    const auto vs = hn::Set(d, gsum);
    const auto one = hn::Set(d, T(1));
    RowMap(d, C, gi, [&](int64_t j, auto) {
      const auto p = FastExp(d, hn::Sub(LoadSafe(d, z, j, C), vl));
      return hn::NegMulAdd(p, vs, g ? LoadSafe(d, g, j, C) : one);
    });
  } else {
    const auto vg = hn::Set(d, go);
    RowMap(d, C, gi, [&](int64_t j, auto) { return hn::Mul(vg, FastExp(d, hn::Sub(LoadSafe(d, z, j, C), vl))); });
  }
}

// 48: from there on the row path is as fast (0.66 ns per element at 48 both,
// 0.51 vs 0.65 at 64; 0.69 vs 0.94 at 33).
constexpr int64_t kSoftmaxShortRow = 48;

// log_softmax / logsumexp for rows of at most kSoftmaxShortRow columns, compute-type
// input: lane k holds row i0 + k, as CE's ShortRows (a row at a time costs about
// 90 ns for 10 columns, latency-bound; side by side the chain is paid once per
// block). Returns false, having written nothing, when a row holds NaN or +-inf:
// the caller runs that block through the row path's exact handling.
template <typename T, class D>
HWY_NOINLINE bool SoftmaxShortRows(D d, const SoftmaxJob& job, int64_t i0) {
  const int64_t C = job.cols;
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  const T* z = static_cast<const T*>(job.x) + i0 * C;
  HWY_ALIGN T cols[kSoftmaxShortRow * hn::MaxLanes(d)];
  // The block transposed by scalar copies: faster than a gather per column on
  // the AVX2 machines measured (Zen's vgatherdps issues one load per lane anyway).
  for (int64_t k = 0; k < L; ++k)
    for (int64_t j = 0; j < C; ++j) cols[j * L + k] = z[k * C + j];
  auto m = hn::Set(d, -std::numeric_limits<T>::infinity());
  for (int64_t j = 0; j < C; ++j) m = hn::Max(m, hn::Load(d, cols + j * L));
  auto s = hn::Zero(d);
  for (int64_t j = 0; j < C; ++j) s = hn::Add(s, ExpSoftmax(d, hn::Sub(hn::Load(d, cols + j * L), m)));
  // A finite row's sum is in [1, C]; anything else means NaN/inf somewhere.
  if (!hn::AllTrue(d, hn::And(hn::Ge(s, hn::Set(d, T(1))), hn::Le(s, hn::Set(d, static_cast<T>(C))))))
    return false;
  const auto lse = hn::Add(m, hn::Log(d, s));
  // The outputs are written row by row, vectorised along the row, from each
  // lane's lse (and gradient coefficient): reading single lanes back out of
  // freshly stored column vectors stalls store-to-load forwarding (measured:
  // it doubled the block's time).
  HWY_ALIGN T lv[hn::MaxLanes(d)], cv[hn::MaxLanes(d)];
  hn::Store(lse, d, lv);
  if (job.out) {
    if (job.log_softmax) {
      T* o = static_cast<T*>(job.out) + i0 * C;
      for (int64_t k = 0; k < L; ++k) LogSoftmaxRow(d, C, z + k * C, lv[k], o + k * C);
    } else {
      hn::StoreU(lse, d, static_cast<T*>(job.out) + i0);
    }
  }
  if (!job.grad_input) return true;
  T* gi = static_cast<T*>(job.grad_input) + i0 * C;
  const T* g = static_cast<const T*>(job.grad_output);
  if (job.log_softmax) {
    // gsum = sum(g) per row (ones: C), column-wise over the transposed block.
    auto gs = hn::Set(d, static_cast<T>(C));
    if (g) {
      g += i0 * C;
      for (int64_t k = 0; k < L; ++k)
        for (int64_t j = 0; j < C; ++j) cols[j * L + k] = g[k * C + j];
      gs = hn::Zero(d);
      for (int64_t j = 0; j < C; ++j) gs = hn::Add(gs, hn::Load(d, cols + j * L));
    }
    hn::Store(gs, d, cv);
  }
  for (int64_t k = 0; k < L; ++k) {
    const T* gr = (job.log_softmax && g) ? g + k * C : nullptr;
    const T go = (!job.log_softmax && g) ? g[i0 + k] : T(1);
    SoftmaxGradRow(d, job.log_softmax, C, z + k * C, lv[k], gr, job.log_softmax ? cv[k] : T(0), go, gi + k * C);
  }
  return true;
}

// log_softmax / logsumexp over rows, forward and backward.
template <typename T>
void SoftmaxRowsImpl(const SoftmaxJob& job, int64_t begin, int64_t end) {
  const hn::ScalableTag<T> d;
  const int64_t C = job.cols;
  const bool native = IsNative<T>(job.dtype);
  Scratch<T>& sc = ThreadScratch<T>();
  auto row = [&](int64_t i) HWY_ATTR {
    const int64_t off = i * C;
    const T* z;
    if (native) {
      z = static_cast<const T*>(job.x) + off;
    } else {
      T* zb = sc.get(sc.z, C);
      ConvertRow<T>(job.x, job.dtype, off, C, zb);
      z = zb;
    }
    T m;
    const T* pf_end = native ? static_cast<const T*>(job.x) + end * C : z + C;
    const T s = RowMaxExpSum<false>(d, z, C, &m, nullptr, nullptr, pf_end);
    T lse;
    if (std::isfinite(s)) {
      lse = m + std::log(s);
    } else {
      double md = -std::numeric_limits<double>::infinity(), s = 0;
      bool nan = false;
      for (int64_t j = 0; j < C; ++j) {
        nan |= std::isnan(static_cast<double>(z[j]));
        md = std::max(md, static_cast<double>(z[j]));
      }
      if (nan) md = std::numeric_limits<double>::quiet_NaN();
      if (!job.log_softmax && std::isinf(md)) {
        // torch's logsumexp: +inf for a row holding +inf, -inf for a row of -inf
        // (its log_softmax of such rows is NaN, which the sum below gives).
        lse = static_cast<T>(md);
      } else {
        for (int64_t j = 0; j < C; ++j) s += std::exp(static_cast<double>(z[j]) - md);
        lse = static_cast<T>(md + std::log(s));
      }
    }
    // Forward output.
    if (job.out) {
      if (job.log_softmax) {
        T* o = native ? static_cast<T*>(job.out) + off : sc.get(sc.e, C);
        LogSoftmaxRow(d, C, z, lse, o);
        if (!native) StoreRow<T>(o, C, job.out, job.dtype, off);
      } else {
        StoreRow<T>(&lse, 1, job.out, job.dtype, i);
      }
    }
    if (!job.grad_input) return;
    T* gi = native ? static_cast<T*>(job.grad_input) + off : sc.get(sc.t, C);
    const T* g = nullptr;
    T gsum = static_cast<T>(C), go = T(1);
    if (job.log_softmax) {
      if (job.grad_output) {
        if (native) {
          g = static_cast<const T*>(job.grad_output) + off;
        } else {
          T* gb = sc.get(sc.w, C);
          ConvertRow<T>(job.grad_output, job.dtype, off, C, gb);
          g = gb;
        }
      }
      if (g) {
        auto acc = hn::Zero(d);
        for (int64_t j = 0; j < C; j += static_cast<int64_t>(hn::Lanes(d)))
          acc = hn::Add(acc, LoadSafe(d, g, j, C));
        gsum = hn::GetLane(hn::SumOfLanes(d, acc));
      }
    } else if (job.grad_output) {
      go = LoadAs<T>(job.grad_output, job.dtype, i);
    }
    SoftmaxGradRow(d, job.log_softmax, C, z, lse, g, gsum, go, gi);
    if (!native) StoreRow<T>(gi, C, job.grad_input, job.dtype, off);
  };
  int64_t i = begin;
  if (native && C <= kSoftmaxShortRow) {
    const int64_t L = static_cast<int64_t>(hn::Lanes(d));
    for (; i + L <= end; i += L) {
      if (!SoftmaxShortRows<T>(d, job, i)) {
        for (int64_t r = i; r < i + L; ++r) row(r);
      }
    }
  }
  for (; i < end; ++i) row(i);
}

void SoftmaxRowsF32(const SoftmaxJob& job, int64_t b, int64_t e) { SoftmaxRowsImpl<float>(job, b, e); }
void SoftmaxRowsF64(const SoftmaxJob& job, int64_t b, int64_t e) { SoftmaxRowsImpl<double>(job, b, e); }

// Float32 exp accuracy probe for the tests: max ulp error of FastExp (or, when
// `softmax`, of the sweep's exp in its kAbove form, which is the plain form
// plus a clamp at 88) against double.
double ExpMaxUlp(const float* x, int64_t n, bool softmax) {
  const hn::ScalableTag<float> d;
  const int64_t L = static_cast<int64_t>(hn::Lanes(d));
  double worst = 0;
  for (int64_t j = 0; j < n; j += L) {
    HWY_ALIGN float out[hn::MaxLanes(d)];
    auto v = LoadSafe(d, x, j, n);
    if (softmax) {
      ExpSoftmaxN<1, true>(d, &v);
    } else {
      v = FastExp(d, v);
    }
    hn::Store(v, d, out);
    for (int64_t k = 0; k < L && j + k < n; ++k) {
      const double ref = std::exp(static_cast<double>(x[j + k]));
      const float rf = static_cast<float>(ref);
      const double ulp = std::nextafter(rf, std::numeric_limits<float>::infinity()) - rf;
      worst = std::max(worst, std::fabs(static_cast<double>(out[k]) - ref) / ulp);
    }
  }
  return worst;
}

}  // namespace HWY_NAMESPACE
}  // namespace cpu
}  // namespace lossx
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
#include <algorithm>
#include <cstdio>

#include "cpu/parallel.h"
#include "status.h"

namespace lossx {
namespace cpu {

HWY_EXPORT(CERowsF32);
HWY_EXPORT(CERowsF64);
HWY_EXPORT(SoftmaxRowsF32);
HWY_EXPORT(SoftmaxRowsF64);
HWY_EXPORT(ExpMaxUlp);

double exp_max_ulp(const float* x, int64_t n, bool softmax) {
  return HWY_DYNAMIC_DISPATCH(ExpMaxUlp)(x, n, softmax);
}

namespace {


// nll_loss rows [b, e): loss_i = -sw_i w[y] x[y]; the gradient is one entry
// per row. The dtype is a template argument so that the per-row loads and
// stores are single instructions (a row costs a few cycles; a switch per
// element doubled it).
template <typename A, DType kDt>
void NllRows(const CrossEntropyArgs& a, const A* w, const A* sw, const A* scale, A* row_loss, int64_t b,
             int64_t e) {
  const int64_t C = a.classes, ignore = a.ignore_index;
  const int64_t* labels = a.labels;
  const void* x = a.logits;
  void* g = a.grad_logits;
  const size_t row_bytes = static_cast<size_t>(C) * dtype_size(kDt);
  for (int64_t i = b; i < e; ++i) {
    const int64_t y = labels[i];
    // x[y] is read before the row is zeroed: the gradient may be written over x.
    const A xv = y == ignore ? A(0) : LoadAs<A>(x, kDt, i * C + y);
    if (g) std::memset(static_cast<char*>(g) + i * static_cast<int64_t>(row_bytes), 0, row_bytes);
    if (y == ignore) {
      row_loss[i] = 0;
      continue;
    }
    const A wy = w ? w[y] : A(1);
    row_loss[i] = -(sw ? sw[i] : A(1)) * wy * xv;
    if (g) StoreAs<A>(-scale[i] * wy, g, kDt, i * C + y);
  }
}

template <typename A>
Status CrossEntropyImpl(const CrossEntropyArgs& a, StatusInfo* info) {
  const int64_t N = a.rows, C = a.classes;
  const A* w = static_cast<const A*>(a.weight);
  const A* sw = static_cast<const A*>(a.sample_weight);
  const bool hard = a.labels != nullptr;
  const bool want_grad = a.grad_logits != nullptr || a.grad_target != nullptr;

  // Labels: range check (first offending position, independent of threads)
  // and the normaliser of the mean.
  double norm = 0.0;
  if (hard) {
    // The range check and the count first, without the weight sums' serial
    // double adds: unweighted calls (the common case) need only the count.
    int64_t valid = 0;
    for (int64_t i = 0; i < N; ++i) {
      const int64_t y = a.labels[i];
      if (y == a.ignore_index) continue;
      if (static_cast<uint64_t>(y) >= static_cast<uint64_t>(C)) {
        char msg[160];
        std::snprintf(msg, sizeof(msg), "label %lld at position %lld is out of range [0, %lld)",
                      static_cast<long long>(y), static_cast<long long>(i),
                      static_cast<long long>(C));
        return fail(info, Status::kIndexError, msg, i, y);
      }
      ++valid;
    }
    double wsum = static_cast<double>(valid), wswsum = wsum;
    if (w || sw) {
      wsum = wswsum = 0;
      for (int64_t i = 0; i < N; ++i) {
        const int64_t y = a.labels[i];
        if (y == a.ignore_index) continue;
        const double wy = w ? static_cast<double>(w[y]) : 1.0;
        wsum += wy;
        wswsum += wy * (sw ? static_cast<double>(sw[i]) : 1.0);
      }
    }
    switch (a.normalizer) {
      case Normalizer::kAuto: norm = wsum; break;
      case Normalizer::kValid: norm = static_cast<double>(valid); break;
      case Normalizer::kWeights: norm = wswsum; break;
      case Normalizer::kValue: norm = a.normalizer_value; break;
    }
  } else {
    switch (a.normalizer) {
      case Normalizer::kAuto:
      case Normalizer::kValid: norm = static_cast<double>(N); break;
      case Normalizer::kWeights: norm = sw ? det_sum(sw, N) : static_cast<double>(N); break;
      case Normalizer::kValue: norm = a.normalizer_value; break;
    }
  }
  if (a.log_probs_input && !hard) return fail(info, Status::kInvalidArgument, "nll_loss needs integer labels");

  // d(returned loss)/d(loss_i) per row.
  std::vector<A> scale;
  const A* go = static_cast<const A*>(a.grad_output);
  if (want_grad) {
    scale.resize(static_cast<size_t>(N));
    const double base = a.reduction == Reduction::kMean ? 1.0 / norm : 1.0;
    for (int64_t i = 0; i < N; ++i) {
      double s = base * (sw ? static_cast<double>(sw[i]) : 1.0);
      if (go) s *= static_cast<double>(a.reduction == Reduction::kNone ? go[i] : go[0]);
      if (hard && a.labels[i] == a.ignore_index) s = 0.0;
      scale[static_cast<size_t>(i)] = static_cast<A>(s);
    }
  }

  std::vector<A> row_loss_buf;
  A* row_loss = static_cast<A*>(a.loss);
  if (a.reduction != Reduction::kNone) {
    row_loss_buf.resize(static_cast<size_t>(N));
    row_loss = row_loss_buf.data();
  }

  if (a.log_probs_input) {
    // Without a gradient a row is one load: chunks by rows, not by row length.
    const A* sc = want_grad ? scale.data() : nullptr;
    parallel_for(N, grain_for(a.grad_logits ? C : 1), [&](int64_t b, int64_t e) {
      switch (a.dtype) {
        case DType::kF32: NllRows<A, DType::kF32>(a, w, sw, sc, row_loss, b, e); break;
        case DType::kF64: NllRows<A, DType::kF64>(a, w, sw, sc, row_loss, b, e); break;
        case DType::kF16: NllRows<A, DType::kF16>(a, w, sw, sc, row_loss, b, e); break;
        case DType::kBF16: NllRows<A, DType::kBF16>(a, w, sw, sc, row_loss, b, e); break;
      }
    });
  } else {
    CEJob job;
    job.dtype = a.dtype;
    job.C = C;
    job.x = a.logits;
    job.labels = a.labels;
    job.target = a.target;
    job.weight = a.weight;
    job.weight_sum = w ? det_sum(w, C) : static_cast<double>(C);
    job.sample_weight = a.sample_weight;
    job.ignore_index = a.ignore_index;
    job.eps = a.label_smoothing;
    job.z_loss = a.z_loss;
    job.softcap = a.softcap;
    job.row_scale = want_grad ? scale.data() : nullptr;
    job.row_loss = row_loss;
    job.lse = a.lse;
    job.grad = a.grad_logits;
    job.grad_target = a.grad_target;
    // Streaming pays off when the gradient is far larger than the caches and a
    // row spans several sweep chunks; each call then gets several rows, since
    // a row's gradient is written during the next row's sweep. Rows must start
    // on 64-byte boundaries for the aligned non-temporal stores.
    const size_t row_bytes = static_cast<size_t>(C) * sizeof(A);
    job.stream_grad = a.grad_logits && C >= 8192 && N * C >= (int64_t{1} << 22) &&
                      reinterpret_cast<uintptr_t>(a.grad_logits) % 64 == 0 && row_bytes % 64 == 0;
    const int64_t grain = job.stream_grad ? grain_for(C, 1 << 18) : grain_for(C, kExpChunk);
    parallel_for(N, grain, [&](int64_t b, int64_t e) {
      if (sizeof(A) == 8) {
        HWY_DYNAMIC_DISPATCH(CERowsF64)(job, b, e);
      } else {
        HWY_DYNAMIC_DISPATCH(CERowsF32)(job, b, e);
      }
    });
  }

  if (a.reduction != Reduction::kNone)
    store_reduced(row_loss, N, a.reduction == Reduction::kMean, norm, a.loss);
  return Status::kOk;
}

template <typename A>
Status SoftmaxImpl(const SoftmaxArgs& a) {
  SoftmaxJob job{a.dtype, a.cols, a.input, a.log_softmax, a.out, a.grad_output, a.grad_input};
  parallel_for(a.rows, grain_for(a.cols, kExpChunk), [&](int64_t b, int64_t e) {
    if (sizeof(A) == 8) {
      HWY_DYNAMIC_DISPATCH(SoftmaxRowsF64)(job, b, e);
    } else {
      HWY_DYNAMIC_DISPATCH(SoftmaxRowsF32)(job, b, e);
    }
  });
  return Status::kOk;
}

}  // namespace

Status cpu_cross_entropy(const CrossEntropyArgs& a, StatusInfo* info) {
  return acc_is_f64(a.dtype) ? CrossEntropyImpl<double>(a, info) : CrossEntropyImpl<float>(a, info);
}

Status cpu_softmax_family(const SoftmaxArgs& a, StatusInfo*) {
  return acc_is_f64(a.dtype) ? SoftmaxImpl<double>(a) : SoftmaxImpl<float>(a);
}

}  // namespace cpu
}  // namespace lossx
#endif  // HWY_ONCE
