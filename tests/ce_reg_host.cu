// cuda/ce_reg.cuh's row code (cross_entropy with the row in registers)
// compiled for the HOST by nvcc, so that tests/test_ce_reg_cuda_functors.py can
// check its lane layout, its three sweeps and every option against the CPU
// kernels on a machine without a GPU. It runs under a one-thread team or a
// team of `lanes` host threads doing what a block or a cluster does on the
// device (strided 16-byte vectors, fixed-order reductions every lane gets).
#include "host_team.h"  // first: LOSSX_HOST_TEAM, the host teams
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <deque>
#include <thread>
#include <vector>

#include "../cuda/ce_reg.cuh"

namespace lossx {
namespace cuda {
namespace {

// The variant the launcher picks (launch_reg): options compiled in only when used.
template <typename T, class Team>
void rows(const Team& tm, const CEParams& p, int64_t first, int64_t step) {
  if (ce_reg_needs_opts(p)) {
    ce_reg_rows<T, true>(tm, p, first, step);
  } else {
    ce_reg_rows<T, false>(tm, p, first, step);
  }
}

template <typename T, int S>
int threaded(const CEParams& p, int row_teams) {
  // row_teams teams of S lanes, team t taking rows t, t + row_teams, ...:
  // the kernel's grid-stride over rows.
  std::deque<TeamShared> sh;  // not movable (mutex): no vector
  for (int t = 0; t < row_teams; ++t) sh.emplace_back(S);
  std::vector<std::thread> th;
  for (int t = 0; t < row_teams; ++t)
    for (int l = 0; l < S; ++l)
      th.emplace_back([&, t, l] {
        const ThreadTeam<S> tm{l, &sh[t]};
        rows<T>(tm, p, t, row_teams);
      });
  for (auto& x : th) x.join();
  for (auto& s : sh)
    if (s.broken) return -2;
  return 0;
}

template <typename T>
int run(int lanes, const CEParams& p) {
  switch (lanes) {
    case 1: rows<T>(HostTeam{}, p, 0, 1); return 0;
    case 3: return threaded<T, 3>(p, 2);
    case 32: return threaded<T, 32>(p, 1);
    case 64: return threaded<T, 64>(p, 1);
    default: return -1;
  }
}

}  // namespace
}  // namespace cuda
}  // namespace lossx

// dtype: 0 float32, 1 bfloat16, 2 float16 (x and grad as raw storage bits).
// w, sw, go: float32 or null; go holds N values for reduction 0 ("none"),
// else 1. norm and wsum_all: what ce_prep/ce_finalize put in the header.
// row_loss: N values (sample-weighted, unreduced); lse: N values or null;
// grad: N*C storage values, null, or x itself (inplace_grad).
// Returns 0, -1 for an unsupported lane count, -2 when the team's lanes
// reached different barriers. err_pos: the bad label position ce_prep
// recorded, or -1 for none.
extern "C" int lossx_ce_reg_host(int lanes, int dtype, int64_t N, int64_t C, const void* x, const int64_t* labels,
                                 const float* w, const float* sw, const float* go, int64_t ignore_index, double eps,
                                 double zl, double softcap, int reduction, double norm, double wsum_all,
                                 float* row_loss, float* lse, void* grad, int64_t err_pos) {
  using namespace lossx::cuda;
  Header hdr{};
  hdr.err_pos = err_pos < 0 ? ~0ull : static_cast<unsigned long long>(err_pos);
  hdr.norm = norm;
  hdr.wsum_all = wsum_all;
  CEParams p{};
  p.N = N;
  p.C = C;
  p.x = x;
  p.labels = labels;
  p.w = w;
  p.sw = sw;
  p.go = go;
  p.ignore_index = ignore_index;
  p.eps = eps;
  p.zl = zl;
  p.softcap = softcap;
  p.reduction = reduction;
  p.row_loss = row_loss;
  p.lse = lse;
  p.grad = grad;
  p.hdr = &hdr;
  // The kernel's precondition (reg_plan and launch_ce): the row fits the team
  // in whole 16-byte vectors.
  const int64_t V = dtype == 0 ? 4 : 8;
  if (C % V != 0 || C > lanes * kRegVec * V) return -3;
  switch (dtype) {
    case 0: return run<float>(lanes, p);
    case 1: return run<__nv_bfloat16>(lanes, p);
    case 2: return run<__half>(lanes, p);
    default: return -1;
  }
}
