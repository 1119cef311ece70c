// Margin family on CUDA: multi_margin_loss and multilabel_margin_loss over
// `rows x classes` rows, with the semantics of csrc/cpu/margin.cc (the
// reference: torch's kernels, hinge terms counted only when strictly > 0, the
// multilabel list ending at its first negative entry).
//
// One kernel (margin_rows), a team of threads per row as in embedding.cu: a
// warp for rows shorter than kBlockTeamDim classes, the whole 256-thread block
// for longer ones (the choice depends on the shape only). The row code is
// written once against a Team (lane, size, sync, fixed-tree reduce) so that a
// host build with a one-thread team (tests/margin_functors_host.cu,
// LOSSX_MARGIN_FUNCTORS_ONLY) runs the very same arithmetic on machines
// without a GPU.
//
// Labels are checked by the same kernel that uses them: a row with a bad label
// records its smallest bad flat position in an error slot (atomicMin) and
// skips its arithmetic, so no bad label ever indexes x, the weights or the
// target mask. After the row losses are reduced (deterministically, in fixed
// chunks as the other families), one stream synchronisation reads the slot and
// a bad label is reported with the CPU's message and StatusInfo. Nothing
// waits on the host before that.
//
// multilabel_margin_loss keeps the row's target set as a bit mask: in shared
// memory (one per team) when it fits, else in a global workspace (one per
// team, the grid capped). Its gradient entries are the CPU's repeated
// additions of +-grad_scale, one per hinge pair with z > 0, replayed in the
// same order (the count is what differs per entry; the sequence of identical
// additions is order-free), so the gradient is bit-identical to the CPU's.
// Like pointwise.cu, this file is built without --use_fast_math.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <type_traits>

#include "common.cuh"
#include "hd_math.cuh"
#include "team.cuh"
#include "lossx/cuda.h"
#include "status.h"

namespace lossx {
namespace cuda {
namespace {

// ------------------------------------------------------------ row code ----
// Everything below up to the kernels is __host__ __device__ and compiled for
// the host by tests/margin_functors_host.cu.

// The target mask: bit k of the row's words says "class k is in the list".
// Several lanes may set bits of one word: an atomic or (the host harness runs
// teams of threads too); the team's next sync publishes it.
LOSSX_HD void mask_set(unsigned* m, int64_t k) {
#ifdef __CUDA_ARCH__
  atomicOr(m + (k >> 5), 1u << (k & 31));
#else
  __atomic_fetch_or(m + (k >> 5), 1u << (k & 31), __ATOMIC_RELAXED);
#endif
}
LOSSX_HD bool mask_has(const unsigned* m, int64_t k) { return (m[k >> 5] >> (k & 31)) & 1u; }

// 0 + v + v + ... (n times), the CPU's gradient update sequence for one entry.
template <typename A>
LOSSX_HD A repeat_add(A v, int64_t n) {
  A s = A(0);
  for (int64_t r = 0; r < n; ++r) {
    const A next = s + v;
    // Once an addition leaves s unchanged (or s is NaN) every later one does:
    // stop, with the same bits, instead of up to C^2 / 2 serial adds in one lane.
    if (next == s || next != next) return next;
    s = next;
  }
  return s;
}

// multi_margin_loss. One class j != y: its hinge term goes into `sum`, its
// gradient is returned. gsw = (scale * invc) * wy, so that gsw * factor is
// the CPU's r.scale * invc * wy * factor, rounding for rounding.
template <typename A>
struct MultiMarginF {
  A margin, invc;
  int p;
  LOSSX_HD A term(A xy, A xj, A wy, A gsw, A& sum) const {
    const A z = margin - xy + xj;
    if (z > 0) {  // torch's kernel: strictly positive (NaN counts nothing)
      sum += (p == 1 ? z : z * z) * wy;
      return gsw * (p == 1 ? A(1) : 2 * z);
    }
    return A(0);
  }
};

// One row of multi_margin_loss; y is in [0, C) (checked by the caller). Every
// lane returns the row's loss; g (may be null) gets the row's gradient.
template <class Team, typename T, typename A>
LOSSX_HD A multi_margin_row(const Team& tm, const MultiMarginF<A>& f, int64_t C, const T* x, T* g, int64_t y,
                            A wy, A scale) {
  const A xy = ld<A>(x, y);
  const A gsw = scale * f.invc * wy;
  A sum = 0, gy = 0;
  for (int64_t j = tm.lane; j < C; j += Team::size) {
    if (j == y) continue;
    const A gj = f.term(xy, ld<A>(x, j), wy, gsw, sum);
    gy -= gj;
    if (g) st(g, j, gj);
  }
  sum = tm.reduce(sum, OpSum());
  gy = tm.reduce(gy, OpSum());
  if (g && tm.lane == 0) st(g, y, gy);  // no other lane writes entry y
  return sum * f.invc;
}

// multilabel_margin_loss, first pass over a row's labels t[0, C): the list
// length nt (the first negative entry, or C) and the first entry >= C. The
// CPU reports the first bad entry before the list's end, so the row is bad
// when big < nt, at flat position row * C + big.
struct ListScan {
  int64_t nt, big;
};
template <class Team>
LOSSX_HD ListScan scan_list(const Team& tm, const int64_t* t, int64_t C) {
  int64_t neg = C, big = C;
  for (int64_t k = tm.lane; k < C; k += Team::size) {
    const int64_t v = t[k];
    if (v < 0 && k < neg) neg = k;
    if (v >= C && k < big) big = k;
  }
  return ListScan{tm.reduce(neg, OpMin()), tm.reduce(big, OpMin())};
}

// One row of multilabel_margin_loss whose list t[0, nt) is valid (every entry
// in [0, C)). mask: (C + 31) / 32 words owned by this team. The hinge sum is
// accumulated in double as on the CPU (up to (C/2)^2 terms).
template <class Team, typename T, typename A>
LOSSX_HD A multilabel_margin_row(const Team& tm, int64_t C, const T* x, T* g, const int64_t* t, int64_t nt,
                                 unsigned* mask, A scale) {
  const int64_t words = (C + 31) >> 5;
  for (int64_t w = tm.lane; w < words; w += Team::size) mask[w] = 0u;
  tm.sync();
  for (int64_t a = tm.lane; a < nt; a += Team::size) mask_set(mask, t[a]);
  tm.sync();
  const A invc = A(1) / static_cast<A>(C);
  const A gs = scale * invc;
  double sum = 0;
  for (int64_t k = tm.lane; k < C; k += Team::size) {
    const A xk = ld<A>(x, k);
    if (!mask_has(mask, k)) {
      // k is a non-target: its pairs with every list entry (duplicates included).
      int64_t cnt = 0;
      for (int64_t a = 0; a < nt; ++a) {
        const A z = 1 - ld<A>(x, t[a]) + xk;
        if (z > 0) {
          sum += z;
          ++cnt;
        }
      }
      if (g) st(g, k, repeat_add(gs, cnt));
    } else if (g) {
      // k is a target, listed m times: m times its pairs with the non-targets.
      int64_t cnt = 0, m = 0;
      for (int64_t c = 0; c < C; ++c)
        if (!mask_has(mask, c) && 1 - xk + ld<A>(x, c) > 0) ++cnt;
      for (int64_t a = 0; a < nt; ++a) m += t[a] == k;
      st(g, k, repeat_add(-gs, m * cnt));
    }
  }
  sum = tm.reduce(sum, OpSum());
  tm.sync();  // the mask is cleared for the team's next row
  return static_cast<A>(sum * invc);
}

// The gradient scale of row i: d(returned loss) / d(loss_i), as the CPU's
// base * grad_output in the compute type.
template <typename A>
LOSSX_HD A row_scale(bool want_grad, A base, const A* go, bool per_row_go, int64_t i) {
  return want_grad ? base * (go ? go[per_row_go ? i : 0] : A(1)) : A(0);
}

#ifndef LOSSX_MARGIN_FUNCTORS_ONLY
// ------------------------------------------------------------- launching ----

constexpr int kThreads = 256;
constexpr int64_t kBlockTeamDim = 2048;  // rows this long or longer: a block per row
constexpr int64_t kRowChunk = 4096;      // rows per first-stage partial of a reduction
constexpr size_t kMaxSmem = 48 * 1024;  // static + dynamic shared memory without opting in

// --------------------------------------------------------------- kernel ----

enum : int { kMulti = 0, kMultilabel = 1 };

template <typename T>
struct MarginParams {
  using A = typename AccOf<T>::type;
  int64_t N, C;
  const T* x;
  const int64_t* labels;
  const A* w;  // multi_margin's class weights or null
  T* g;        // null: forward only
  A margin;
  int p;
  A base;             // 1/N for a mean, else 1
  const A* go;        // one value, or N ("none"); null = 1
  bool per_row_go;
  A* row_loss;        // N values: the output ("none") or the workspace
  unsigned long long* bad;  // smallest bad label position
  unsigned* gmask;    // multilabel masks in global memory (one per team), or null: shared
  int64_t words;      // mask words per team
};

template <typename T, int kTeam, int kLoss>
__global__ void __launch_bounds__(kThreads) margin_rows(const MarginParams<T> p) {
  using A = typename AccOf<T>::type;
  using Team = typename std::conditional<kTeam == 32, WarpTeam, BlockTeam<kThreads>>::type;
  extern __shared__ unsigned smask[];
  __shared__ alignas(8) unsigned char scratch[8 * (kThreads / 32)];
  Team tm;
  tm.lane = kTeam == 32 ? static_cast<int>(threadIdx.x & 31) : static_cast<int>(threadIdx.x);
  if constexpr (kTeam != 32) tm.smem = scratch;
  constexpr int kTeamsPerBlock = kThreads / kTeam;
  const int team_in_block = static_cast<int>(threadIdx.x) / kTeam;
  const int64_t team0 = static_cast<int64_t>(blockIdx.x) * kTeamsPerBlock + team_in_block;
  const int64_t nteams = static_cast<int64_t>(gridDim.x) * kTeamsPerBlock;
  const int64_t C = p.C;
  unsigned* mask = nullptr;
  if constexpr (kLoss == kMultilabel)
    mask = p.gmask ? p.gmask + team0 * p.words : smask + static_cast<int64_t>(team_in_block) * p.words;
  const MultiMarginF<A> mf{p.margin, A(1) / static_cast<A>(C), p.p};
  for (int64_t i = team0; i < p.N; i += nteams) {
    const int64_t off = i * C;
    T* g = p.g ? p.g + off : nullptr;
    const A scale = row_scale(p.g != nullptr, p.base, p.go, p.per_row_go, i);
    A loss;
    if constexpr (kLoss == kMulti) {
      const int64_t y = p.labels[i];  // the same value for the whole team: uniform branch
      if (y < 0 || y >= C) {
        if (tm.lane == 0) {
          note_bad(p.bad, i);
          p.row_loss[i] = A(0);
        }
        continue;
      }
      loss = multi_margin_row(tm, mf, C, p.x + off, g, y, p.w ? p.w[y] : A(1), scale);
    } else {
      const int64_t* t = p.labels + off;
      const ListScan s = scan_list(tm, t, C);  // reduced: the same for the whole team
      if (s.big < s.nt) {
        if (tm.lane == 0) {
          note_bad(p.bad, off + s.big);
          p.row_loss[i] = A(0);
        }
        continue;
      }
      loss = multilabel_margin_row(tm, C, p.x + off, g, t, s.nt, mask, scale);
    }
    if (tm.lane == 0) p.row_loss[i] = loss;
  }
}

// ---------------------------------------------------------------- launch ----

template <typename T, int kTeam, int kLoss>
cudaError_t launch_rows(const MarginParams<T>& p, int64_t blocks, size_t smem, cudaStream_t stream) {
  margin_rows<T, kTeam, kLoss><<<static_cast<unsigned>(blocks), kThreads, smem, stream>>>(p);
  return cudaGetLastError();
}

template <typename T>
Status margin_typed(const MarginArgs& a, StatusInfo* info) {
  using A = typename AccOf<T>::type;
  DeviceGuard guard;
  LOSSX_CU(guard.enter(a.loss_out));
  cudaStream_t stream = static_cast<cudaStream_t>(a.stream);
  const int64_t N = a.rows, C = a.classes;
  const bool none = a.reduction == Reduction::kNone;
  const bool multi = a.loss == MarginLoss::kMultiMargin;
  LOSSX_NO_CAPTURE(stream, "multi_margin_loss / multilabel_margin_loss");
  const bool block_team = C >= kBlockTeamDim;
  const int64_t teams_per_block = block_team ? 1 : kThreads / 32;

  MarginParams<T> p;
  p.N = N;
  p.C = C;
  p.x = static_cast<const T*>(a.x0);
  p.labels = a.labels;
  p.w = static_cast<const A*>(a.weight);
  p.g = static_cast<T*>(a.grad0);
  p.margin = static_cast<A>(a.margin);
  p.p = a.p;
  p.base = a.reduction == Reduction::kMean ? A(1) / static_cast<A>(N) : A(1);
  p.go = static_cast<const A*>(a.grad_output);
  p.per_row_go = none;
  p.words = (C + 31) / 32;
  p.gmask = nullptr;

  // Grid: a team per row, grid-stride over the rest (rows are independent).
  int64_t blocks = (N + teams_per_block - 1) / teams_per_block;
  if (blocks > 65535) blocks = 65535;
  size_t smem = 0;
  bool global_mask = false;
  if (!multi) {
    const size_t mask_bytes = sizeof(unsigned) * static_cast<size_t>(p.words) * static_cast<size_t>(teams_per_block);
    // The kernel's own static shared memory counts against the same 48 KiB.
    cudaFuncAttributes fa;
    LOSSX_CU(cudaFuncGetAttributes(&fa, block_team ? margin_rows<T, kThreads, kMultilabel>
                                                   : margin_rows<T, 32, kMultilabel>));
    if (mask_bytes + fa.sharedSizeBytes <= kMaxSmem) {
      smem = mask_bytes;
    } else {
      // From about 392,700 classes on: a mask per resident team in global memory.
      int dev = guard.device(), sms = 0;
      LOSSX_CU(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
      const int64_t cap = 2 * static_cast<int64_t>(sms > 0 ? sms : 1);
      if (blocks > cap) blocks = cap;
      global_mask = true;
    }
  }

  // Workspace: [error slot][row losses][chunk partials][global masks].
  const int64_t nchunks = (N + kRowChunk - 1) / kRowChunk;
  const size_t rows_off = 16;
  const size_t part_off = (rows_off + (none ? 0 : sizeof(A) * static_cast<size_t>(N)) + 15) & ~size_t(15);
  const size_t mask_off = (part_off + (none ? 0 : sizeof(double) * static_cast<size_t>(nchunks)) + 15) & ~size_t(15);
  const size_t bytes =
      mask_off + (global_mask ? sizeof(unsigned) * static_cast<size_t>(p.words) *
                                     static_cast<size_t>(blocks * teams_per_block)
                               : 0);
  void* ws = nullptr;
  LOSSX_CU(cudaMallocAsync(&ws, bytes, stream));
  char* wsb = static_cast<char*>(ws);
  p.bad = reinterpret_cast<unsigned long long*>(wsb);
  p.row_loss = none ? static_cast<A*>(a.loss_out) : reinterpret_cast<A*>(wsb + rows_off);
  double* part = none ? nullptr : reinterpret_cast<double*>(wsb + part_off);
  if (global_mask) p.gmask = reinterpret_cast<unsigned*>(wsb + mask_off);

  cudaError_t err = cudaSuccess;
  const char* where = "";
  auto step = [&](cudaError_t e, const char* w) {
    if (err == cudaSuccess && e != cudaSuccess) {
      err = e;
      where = w;
    }
  };
  step(cudaMemsetAsync(p.bad, 0xff, 8, stream), "cudaMemsetAsync(error slot)");
  if (N > 0 && err == cudaSuccess) {
    cudaError_t e;
    if (multi)
      e = block_team ? launch_rows<T, kThreads, kMulti>(p, blocks, 0, stream)
                     : launch_rows<T, 32, kMulti>(p, blocks, 0, stream);
    else
      e = block_team ? launch_rows<T, kThreads, kMultilabel>(p, blocks, smem, stream)
                     : launch_rows<T, 32, kMultilabel>(p, blocks, smem, stream);
    step(e, "margin_rows launch");
  }
  if (!none && err == cudaSuccess) {
    if (nchunks > 0) {
      chunk_sums<A><<<static_cast<unsigned>(nchunks), kThreads, 0, stream>>>(p.row_loss, N, kRowChunk, part);
      step(cudaGetLastError(), "chunk_sums launch");
    }
    if (err == cudaSuccess) {
      sum_partials<A><<<1, 1024, 0, stream>>>(part, nchunks, a.reduction == Reduction::kMean,
                                              static_cast<double>(N), static_cast<A*>(a.loss_out));
      step(cudaGetLastError(), "sum_partials launch");
    }
  }
  unsigned long long bad = ~0ull;
  if (err == cudaSuccess)
    step(cudaMemcpyAsync(&bad, p.bad, sizeof(bad), cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync(error slot)");
  step(cudaFreeAsync(ws, stream), "cudaFreeAsync");
  if (err == cudaSuccess) step(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
  if (err != cudaSuccess) return cuda_fail(info, err, where);
  if (bad == ~0ull) return Status::kOk;

  // A bad label: the CPU's message, position and value.
  const int64_t pos = static_cast<int64_t>(bad);
  int64_t y = 0;
  LOSSX_CU(cudaMemcpyAsync(&y, a.labels + pos, sizeof(y), cudaMemcpyDeviceToHost, stream));
  LOSSX_CU(cudaStreamSynchronize(stream));
  char msg[200];
  if (multi) {
    std::snprintf(msg, sizeof(msg), "multi_margin_loss: label %lld at position %lld is out of range [0, %lld)",
                  static_cast<long long>(y), static_cast<long long>(pos), static_cast<long long>(C));
  } else {
    std::snprintf(msg, sizeof(msg),
                  "multilabel_margin_loss: label %lld at position (%lld, %lld) is out of range [-1, %lld)",
                  static_cast<long long>(y), static_cast<long long>(pos / C), static_cast<long long>(pos % C),
                  static_cast<long long>(C));
  }
  return fail(info, Status::kIndexError, msg, pos, y);
}

}  // namespace

Status margin(const MarginArgs& a, StatusInfo* info) {
  switch (a.dtype) {
    case DType::kF32: return margin_typed<float>(a, info);
    case DType::kF64: return margin_typed<double>(a, info);
    case DType::kF16: return margin_typed<__half>(a, info);
    case DType::kBF16: return margin_typed<__nv_bfloat16>(a, info);
  }
  return fail(info, Status::kUnsupported, "unsupported dtype");
}

}  // namespace cuda
}  // namespace lossx
#else   // LOSSX_MARGIN_FUNCTORS_ONLY
}  // namespace
}  // namespace cuda
}  // namespace lossx
#endif  // LOSSX_MARGIN_FUNCTORS_ONLY
