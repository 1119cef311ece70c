// The per-sample code of cuda/ctc.cu compiled for the HOST (nvcc, no kernels,
// no CUDA runtime calls) with a team of one, so that
// tests/test_ctc_cuda_functors.py can check the GPU path's recursions, special
// values, class occupations and gradient rows against the CPU kernel on a
// machine without a GPU. The kernel only adds the block's striding, barriers
// and the blank sum's fixed tree (tested on a GPU by tests/cuda/test_ctc_cuda.py).
#define LOSSX_CTC_FUNCTORS_ONLY 1
#define LOSSX_HOST_TEAM 1
#include "../cuda/ctc.cu"

namespace lossx {
namespace cuda {
namespace {

template <typename T>
bool host_ctc(const CtcArgs& a, const T* go, double* nll) {
  std::vector<SampleDesc> desc;
  int64_t dn = 0, in = 0;
  const bool want_grad = a.grad != nullptr;
  if (!ctc_layout(a, want_grad, desc, &dn, &in)) return false;
  std::vector<double> dws(static_cast<size_t>(dn) + 1);
  std::vector<int64_t> iws(static_cast<size_t>(in) + 1);
  CtcParams<T> P;
  P.T_ = a.T;
  P.N = a.N;
  P.C = a.C;
  P.blank = a.blank;
  P.lp = static_cast<const T*>(a.log_probs);
  P.targets = a.targets;
  P.desc = desc.data();
  P.zero_infinity = a.zero_infinity;
  P.mean = false;
  P.go = go;
  P.per_row_go = true;
  P.dws = dws.data();
  P.iws = iws.data();
  P.nll = nll;
  P.grad = static_cast<T*>(a.grad);
  const HostTeam tm;
  for (int64_t b = 0; b < a.N; ++b) ctc_sample(tm, P, b);
  return true;
}

}  // namespace
}  // namespace cuda
}  // namespace lossx

// f64: float64 (else float32) log_probs; reduction "none" (grad_output per
// sample, or nullptr); nll: per-sample losses in float64. Returns 0 on success.
extern "C" int lossx_ctc_host(int f64, int64_t T, int64_t N, int64_t C, const void* lp, const int64_t* targets,
                              int concatenated, int64_t S, const int64_t* il, const int64_t* tl, int64_t blank,
                              int zero_infinity, const void* go, double* nll, void* grad) {
  lossx::CtcArgs a;
  a.T = T;
  a.N = N;
  a.C = C;
  a.log_probs = lp;
  a.targets = targets;
  a.concatenated = concatenated != 0;
  a.S = S;
  a.input_lengths = il;
  a.target_lengths = tl;
  a.blank = blank;
  a.zero_infinity = zero_infinity != 0;
  a.grad = grad;
  const bool ok = f64 ? lossx::cuda::host_ctc<double>(a, static_cast<const double*>(go), nll)
                      : lossx::cuda::host_ctc<float>(a, static_cast<const float*>(go), nll);
  return ok ? 0 : 1;
}
