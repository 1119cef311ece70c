// The CUDA pairwise/embedding functors of cuda/embedding.cu compiled for the
// HOST (nvcc, no kernels, no CUDA runtime calls), so that
// tests/test_embedding_cuda_functors.py can check the GPU path's formulas
// against the CPU kernels on a machine without a GPU.
#define LOSSX_PAIR_FUNCTORS_ONLY 1
#include "../cuda/embedding.cu"

namespace lossx {
namespace cuda {
namespace {

// Rows as pair_rows computes them on the device (one thread per row here):
// sums, finish, gradient coefficients, gradients. reduction "none": grad_output per row.
template <typename A, class F>
void host_rows(const F& f, int64_t N, int64_t D, const void* const* xv, const void* gov, void* lossv,
               void* const* gv) {
  const A* x[3] = {static_cast<const A*>(xv[0]), static_cast<const A*>(xv[1]), static_cast<const A*>(xv[2])};
  const A* go = static_cast<const A*>(gov);
  A* loss = static_cast<A*>(lossv);
  A* g[3] = {static_cast<A*>(gv[0]), static_cast<A*>(gv[1]), static_cast<A*>(gv[2])};
  for (int64_t i = 0; i < N; ++i) {
    const int64_t off = i * D;
    auto at = [&](int k, int64_t j) { return k < F::kIn ? x[k][off + j] : A(0); };
    Sum3<A> s{{A(0), A(0), A(0)}};
    for (int64_t j = 0; j < D; ++j) f.acc(at(0, j), at(1, j), at(2, j), s);
    const double sums[3] = {static_cast<double>(s.v[0]), static_cast<double>(s.v[1]), static_cast<double>(s.v[2])};
    double c[3] = {0, 0, 0};
    loss[i] = static_cast<A>(f.finish(sums, i, go ? static_cast<double>(go[i]) : 1.0, true, c));
    const A ca[3] = {static_cast<A>(c[0]), static_cast<A>(c[1]), static_cast<A>(c[2])};
    for (int64_t j = 0; j < D; ++j) {
      A gr[3];
      f.grad(at(0, j), at(1, j), at(2, j), ca, gr);
      for (int k = 0; k < F::kIn; ++k) g[k][off + j] = gr[k];
    }
  }
}

template <typename A>
void host_typed(int kind, int64_t N, int64_t D, const void* const* x, const void* target, double margin, double p,
                double eps, bool swap, const void* go, void* loss, void* const* g) {
  if (kind == 1) {
    host_rows<A>(CosineRow<A>{margin, static_cast<const A*>(target)}, N, D, x, go, loss, g);
  } else if (p == 2.0) {
    host_rows<A>(TripletRow<2>{margin, p, eps, swap}, N, D, x, go, loss, g);
  } else if (p == 1.0) {
    host_rows<A>(TripletRow<1>{margin, p, eps, swap}, N, D, x, go, loss, g);
  } else {
    host_rows<A>(TripletRow<0>{margin, p, eps, swap}, N, D, x, go, loss, g);
  }
}

}  // namespace
}  // namespace cuda
}  // namespace lossx

// kind: 0 triplet, 1 cosine; f64: float64 (else float32) arrays; reduction "none".
extern "C" void lossx_pair_host(int kind, int f64, int64_t N, int64_t D, const void* x0, const void* x1,
                                const void* x2, const void* target, double margin, double p, double eps, int swap,
                                const void* go, void* loss, void* g0, void* g1, void* g2) {
  const void* x[3] = {x0, x1, x2};
  void* g[3] = {g0, g1, g2};
  if (f64) lossx::cuda::host_typed<double>(kind, N, D, x, target, margin, p, eps, swap != 0, go, loss, g);
  else lossx::cuda::host_typed<float>(kind, N, D, x, target, margin, p, eps, swap != 0, go, loss, g);
}
