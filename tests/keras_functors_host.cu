// The row code of cuda/keras_rows.cu compiled for the HOST (nvcc, no kernels,
// no CUDA runtime calls) with a team of one, so that
// tests/test_keras_cuda_functors.py can check the GPU path's sweeps, clip and
// hinge rules and the sums losses' segments against the CPU kernels on a
// machine without a GPU. The kernels only add the team's striding and its
// fixed-tree reductions (tested on a GPU by tests/cuda/test_keras_cuda.py).
#define LOSSX_KERAS_FUNCTORS_ONLY 1
#define LOSSX_HOST_TEAM 1
#include "../cuda/keras_rows.cu"

#include <vector>

namespace lossx {
namespace cuda {
namespace {

// As keras_typed launches it, reduction "none" (grad_output per row, or none).
template <typename A>
void host_call(int kind, int64_t N, int64_t C, const void* t, const int64_t* labels, const void* p, bool from_logits,
               double smoothing, double alpha, double beta, double gamma, const void* alpha_vec, bool has_ignore,
               int64_t ignore_class, const void* go, void* loss, void* grad) {
  RowParams<A> k;
  k.N = N;
  k.C = C;
  k.kind = static_cast<KerasLoss>(kind);
  k.from_logits = from_logits;
  k.t = static_cast<const A*>(t);
  k.labels = labels;
  k.p = static_cast<const A*>(p);
  k.has_ignore = has_ignore;
  k.ignore_class = ignore_class;
  const A ls = static_cast<A>(smoothing);
  k.term = ProbTerm<A>{k.kind == KerasLoss::kCategoricalFocalCE, ls != A(0), A(1) - ls, ls / static_cast<A>(C),
                       static_cast<A>(gamma), static_cast<A>(alpha), static_cast<const A*>(alpha_vec)};
  k.base = 1.0;
  k.go = static_cast<const A*>(go);
  k.per_row_go = true;
  k.row_loss = static_cast<A*>(loss);
  k.grad = static_cast<A*>(grad);
  const HostTeam tm;
  if (sums_kind(k)) {
    const int64_t seg = C < kSegment ? C : kSegment, nseg = (C + seg - 1) / seg;
    std::vector<A> partial(static_cast<size_t>(N * nseg * kKerasSumCount)), coef(static_cast<size_t>(N * 3));
    for (int64_t task = 0; task < N * nseg; ++task) sums_task(tm, k, seg, nseg, task, partial.data());
    for (int64_t i = 0; i < N; ++i) sums_finish(k, alpha, beta, nseg, partial.data(), i, coef.data());
    if (grad)
      for (int64_t e = 0; e < N * C; ++e) sums_grad(k, coef.data(), e);
    return;
  }
  for (int64_t i = 0; i < N; ++i) any_row(tm, k, i);
}

}  // namespace
}  // namespace cuda
}  // namespace lossx

// kind: lossx::KerasLoss; f64: float64 (else float32) arrays; reduction "none".
extern "C" void lossx_keras_host(int kind, int f64, int64_t N, int64_t C, const void* t, const int64_t* labels,
                                 const void* p, int from_logits, double smoothing, double alpha, double beta,
                                 double gamma, const void* alpha_vec, int has_ignore, int64_t ignore_class,
                                 const void* go, void* loss, void* grad) {
  if (f64)
    lossx::cuda::host_call<double>(kind, N, C, t, labels, p, from_logits, smoothing, alpha, beta, gamma, alpha_vec,
                                   has_ignore, ignore_class, go, loss, grad);
  else
    lossx::cuda::host_call<float>(kind, N, C, t, labels, p, from_logits, smoothing, alpha, beta, gamma, alpha_vec,
                                  has_ignore, ignore_class, go, loss, grad);
}
