// The row code of cuda/margin.cu (multi_margin_loss, multilabel_margin_loss)
// compiled for the HOST by nvcc (no kernels, no CUDA runtime calls), so that
// tests/test_margin_cuda_functors.py can check the GPU path's label scan,
// arithmetic and gradients against the CPU kernels on a machine without a GPU.
// The row code runs under a one-thread team (the CPU's loop order) or under a
// team of `lanes` host threads that does what a warp or block does on the
// device: lanes strided over the classes, concurrent atomic mask updates,
// barriers, and fixed-order reductions whose result every lane gets.
#define LOSSX_MARGIN_FUNCTORS_ONLY 1
#include "host_team.h"  // first: LOSSX_HOST_TEAM, the host teams
#include <cstring>
#include <thread>
#include <vector>

#include "../cuda/margin.cu"

namespace lossx {
namespace cuda {
namespace {

// margin_rows' loop body for every row, in row order, run by one team. Row
// losses go to loss (reduction "none" layout); the smallest bad label position
// is returned (-1 when none): what the kernel's error slot would hold.
template <typename A, class Team>
int64_t team_rows(const Team& tm, int kind, int64_t N, int64_t C, const A* x, const int64_t* labels, const A* w,
                  double margin, int p, bool mean, const A* go, bool per_row_go, A* loss, A* g, unsigned* mask) {
  const A base = mean ? A(1) / static_cast<A>(N) : A(1);
  const MultiMarginF<A> mf{static_cast<A>(margin), A(1) / static_cast<A>(C), p};
  int64_t bad = -1;
  for (int64_t i = 0; i < N; ++i) {
    const int64_t off = i * C;
    A* gr = g ? g + off : nullptr;
    const A scale = row_scale(g != nullptr, base, go, per_row_go, i);
    A l;
    if (kind == 0) {
      const int64_t y = labels[i];
      if (y < 0 || y >= C) {
        if (bad < 0) bad = i;
        if (tm.lane == 0) loss[i] = A(0);
        continue;
      }
      l = multi_margin_row(tm, mf, C, x + off, gr, y, w ? w[y] : A(1), scale);
    } else {
      const ListScan s = scan_list(tm, labels + off, C);
      if (s.big < s.nt) {
        if (bad < 0) bad = off + s.big;
        if (tm.lane == 0) loss[i] = A(0);
        continue;
      }
      l = multilabel_margin_row(tm, C, x + off, gr, labels + off, s.nt, mask, scale);
    }
    if (tm.lane == 0) loss[i] = l;
  }
  return bad;
}

template <int S, typename A>
int64_t threaded_rows(int kind, int64_t N, int64_t C, const A* x, const int64_t* labels, const A* w, double margin,
                      int p, bool mean, const A* go, bool per_row_go, A* loss, A* g, unsigned* mask) {
  TeamShared sh(S);
  std::vector<int64_t> bad(S);
  std::vector<std::thread> th;
  for (int l = 0; l < S; ++l)
    th.emplace_back([&, l] {
      const ThreadTeam<S> tm{l, &sh};
      bad[l] = team_rows<A>(tm, kind, N, C, x, labels, w, margin, p, mean, go, per_row_go, loss, g, mask);
    });
  for (auto& t : th) t.join();
  if (sh.broken) return -2;
  for (int l = 1; l < S; ++l)
    if (bad[l] != bad[0]) return -2;  // lanes disagreeing on a reduced value
  return bad[0];
}

template <typename A>
int64_t host_rows(int lanes, int kind, int64_t N, int64_t C, const A* x, const int64_t* labels, const A* w,
                  double margin, int p, bool mean, const A* go, bool per_row_go, A* loss, A* g) {
  std::vector<unsigned> mask(static_cast<size_t>((C + 31) / 32));
  switch (lanes) {
    case 3: return threaded_rows<3>(kind, N, C, x, labels, w, margin, p, mean, go, per_row_go, loss, g, mask.data());
    case 32:
      return threaded_rows<32>(kind, N, C, x, labels, w, margin, p, mean, go, per_row_go, loss, g, mask.data());
    default:
      return team_rows<A>(HostTeam{}, kind, N, C, x, labels, w, margin, p, mean, go, per_row_go, loss, g,
                          mask.data());
  }
}

}  // namespace
}  // namespace cuda
}  // namespace lossx

// lanes: 1 (one thread, the CPU's order), 3 or 32 (a team of threads).
// kind: 0 multi_margin, 1 multilabel_margin; f64: float64 (else float32) arrays.
// go: null (1), one value or (per_row_go) N values; g: null for forward only.
extern "C" int64_t lossx_margin_host(int lanes, int kind, int f64, int64_t N, int64_t C, const void* x,
                                     const int64_t* labels, const void* w, double margin, int p, int mean,
                                     const void* go, int per_row_go, void* loss, void* g) {
  if (f64)
    return lossx::cuda::host_rows<double>(lanes, kind, N, C, static_cast<const double*>(x), labels,
                                          static_cast<const double*>(w), margin, p, mean != 0,
                                          static_cast<const double*>(go), per_row_go != 0,
                                          static_cast<double*>(loss), static_cast<double*>(g));
  return lossx::cuda::host_rows<float>(lanes, kind, N, C, static_cast<const float*>(x), labels,
                                       static_cast<const float*>(w), margin, p, mean != 0,
                                       static_cast<const float*>(go), per_row_go != 0, static_cast<float*>(loss),
                                       static_cast<float*>(g));
}
