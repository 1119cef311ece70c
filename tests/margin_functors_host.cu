// The row code of cuda/margin.cu (multi_margin_loss, multilabel_margin_loss)
// compiled for the HOST by nvcc with a one-thread team (no kernels, no CUDA
// runtime calls), so that tests/test_margin_cuda_functors.py can check the GPU
// path's label scan, arithmetic and gradients against the CPU kernels on a
// machine without a GPU.
#define LOSSX_MARGIN_FUNCTORS_ONLY 1
#include <vector>

#include "../cuda/margin.cu"

namespace lossx {
namespace cuda {
namespace {

// A team of one thread: the strided loops visit every index in order and the
// reductions are the identity.
struct HostTeam {
  static constexpr int kSize = 1;
  int lane = 0;
  LOSSX_HD void sync() const {}
  template <typename V, class Op>
  LOSSX_HD V reduce(V v, Op) const {
    return v;
  }
};

// margin_rows' loop body for every row, in row order. Row losses go to loss
// (reduction "none" layout); the smallest bad label position is returned (-1
// when none), exactly what the kernel's error slot would hold.
template <typename A>
int64_t host_rows(int kind, int64_t N, int64_t C, const A* x, const int64_t* labels, const A* w, double margin,
                  int p, bool mean, const A* go, bool per_row_go, A* loss, A* g) {
  const HostTeam tm;
  const A base = mean ? A(1) / static_cast<A>(N) : A(1);
  const MultiMarginF<A> mf{static_cast<A>(margin), A(1) / static_cast<A>(C), p};
  std::vector<unsigned> mask(static_cast<size_t>((C + 31) / 32));
  int64_t bad = -1;
  for (int64_t i = 0; i < N; ++i) {
    const int64_t off = i * C;
    A* gr = g ? g + off : nullptr;
    const A scale = row_scale(g != nullptr, base, go, per_row_go, i);
    if (kind == 0) {
      const int64_t y = labels[i];
      if (y < 0 || y >= C) {
        if (bad < 0) bad = i;
        loss[i] = A(0);
        continue;
      }
      loss[i] = multi_margin_row(tm, mf, C, x + off, gr, y, w ? w[y] : A(1), scale);
    } else {
      const ListScan s = scan_list(tm, labels + off, C);
      if (s.big < s.nt) {
        if (bad < 0) bad = off + s.big;
        loss[i] = A(0);
        continue;
      }
      loss[i] = multilabel_margin_row(tm, C, x + off, gr, labels + off, s.nt, mask.data(), scale);
    }
  }
  return bad;
}

}  // namespace
}  // namespace cuda
}  // namespace lossx

// kind: 0 multi_margin, 1 multilabel_margin; f64: float64 (else float32) arrays.
// go: null (1), one value or (per_row_go) N values; g: null for forward only.
extern "C" int64_t lossx_margin_host(int kind, int f64, int64_t N, int64_t C, const void* x, const int64_t* labels,
                                     const void* w, double margin, int p, int mean, const void* go, int per_row_go,
                                     void* loss, void* g) {
  if (f64)
    return lossx::cuda::host_rows<double>(kind, N, C, static_cast<const double*>(x), labels,
                                          static_cast<const double*>(w), margin, p, mean != 0,
                                          static_cast<const double*>(go), per_row_go != 0,
                                          static_cast<double*>(loss), static_cast<double*>(g));
  return lossx::cuda::host_rows<float>(kind, N, C, static_cast<const float*>(x), labels, static_cast<const float*>(w),
                                       margin, p, mean != 0, static_cast<const float*>(go), per_row_go != 0,
                                       static_cast<float*>(loss), static_cast<float*>(g));
}
