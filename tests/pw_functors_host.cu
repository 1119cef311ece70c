// The CUDA pointwise functors of cuda/pointwise.cu compiled for the HOST (nvcc,
// no kernels, no CUDA runtime calls), so that tests/test_pointwise_cuda_functors.py
// can check the GPU path's formulas against the CPU kernels on a machine without
// a GPU. Built by that test: nvcc -shared -DLOSSX_PW_FUNCTORS_ONLY ...
#define LOSSX_PW_FUNCTORS_ONLY 1
#include "../cuda/pointwise.cu"

#include <type_traits>

namespace lossx {
namespace cuda {
namespace {

// Element i as pw_elems computes it on the device: functor, weight, scale.
template <class Fn, typename A>
void host_run(const PwOpt<A>& o, int64_t n, const A* x, const A* y, const A* w, int64_t wp, const A* pw,
              int64_t pwp, const A* go, A* l, A* gx, A* gy, A* gz, int64_t* bad) {
  bad[0] = bad[1] = -1;
  for (int64_t i = 0; i < n; ++i) {
    A li, gxi, gyi, gzi;
    pw_element<Fn>(o, x[i], y[i], pw ? pw[i % pwp] : A(1), w != nullptr, w ? w[i % wp] : A(1), li, gxi, gyi,
                   gzi);
    if (Fn::kCheckInput && Fn::bad_input(x[i]) && bad[0] < 0) bad[0] = i;
    if (Fn::kCheckTarget && Fn::bad_target(y[i]) && bad[1] < 0) bad[1] = i;
    const A s = go ? go[i] : A(1);
    l[i] = li;
    gx[i] = gxi * s;
    gy[i] = gyi * s;
    gz[i] = gzi * s;
  }
}

template <class Fn, typename A>
int host_typed(const PointwiseArgs& a, int64_t n, const void* x, const void* y, const void* w, int64_t wp,
               const void* pw, int64_t pwp, const void* go, void* l, void* gx, void* gy, void* gz, int64_t* bad) {
  if constexpr (std::is_void_v<Fn>) {
    return -1;
  } else {
    host_run<Fn, A>(make_opt<A>(a), n, static_cast<const A*>(x), static_cast<const A*>(y), static_cast<const A*>(w),
                    wp, static_cast<const A*>(pw), pwp, static_cast<const A*>(go), static_cast<A*>(l),
                    static_cast<A*>(gx), static_cast<A*>(gy), static_cast<A*>(gz), bad);
    return 0;
  }
}

}  // namespace
}  // namespace cuda
}  // namespace lossx

// kind: the .def position; f64: float64 (else float32) arrays; pw: pos_weight,
// or the third operand (gaussian_nll's var, margin_ranking's target) with pwp = n;
// gz: d loss / d pw. The options are
// PointwiseArgs' (make_opt reads them as the kernel's launch does). Returns -1
// for a loss without a CUDA functor, -2 for an unknown kind.
extern "C" int lossx_pw_host(int kind, int f64, double beta, int log_target, int log_input, int full, double alpha,
                             double gamma, double margin, int from_logits, double label_smoothing,
                             int class_balancing, int binary_labels, int64_t n, const void* x, const void* y,
                             const void* w, int64_t wp, const void* pw, int64_t pwp, const void* go, void* l,
                             void* gx, void* gy, void* gz, int64_t* bad) {
  using namespace lossx;
  using namespace lossx::cuda;
  PointwiseArgs a;
  a.beta = beta;
  a.pos_weight = pw;
  a.log_target = log_target != 0;
  a.log_input = log_input != 0;
  a.full = full != 0;
  a.alpha = alpha;
  a.gamma = gamma;
  a.margin = margin;
  a.from_logits = from_logits != 0;
  a.label_smoothing = label_smoothing;
  a.class_balancing = class_balancing != 0;
  a.binary_labels = binary_labels != 0;
  switch (static_cast<PointwiseLoss>(kind)) {
#define LOSSX_POINTWISE(id, name, fn)                                                                     \
  case PointwiseLoss::id: {                                                                               \
    using F = typename CudaPw<PointwiseLoss::id>::type;                                                   \
    return f64 ? host_typed<F, double>(a, n, x, y, w, wp, pw, pwp, go, l, gx, gy, gz, bad)                    \
               : host_typed<F, float>(a, n, x, y, w, wp, pw, pwp, go, l, gx, gy, gz, bad);                    \
  }
#include "lossx/pointwise_losses.def"
#undef LOSSX_POINTWISE
    default:
      return -2;
  }
}
