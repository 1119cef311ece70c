// Keras losses that see a row only through its sums (cosine_similarity, dice,
// tversky): the row's value and its gradient's coefficients from the five row
// sums. Shared by the CPU driver (cpu/keras_rows.cc) and the CUDA kernels
// (cuda/keras_rows.cu), so both devices finish a row with the same code.
#pragma once
#include <cmath>

#include "lossx/lossx.h"

#ifdef __CUDACC__
#define LOSSX_HD_INLINE __host__ __device__ inline
#else
#define LOSSX_HD_INLINE inline
#endif

namespace lossx {

constexpr int kKerasSumCount = 5;  // sum t*t, p*p, t*p, t, p

LOSSX_HD_INLINE float keras_sqrt(float v) { return sqrtf(v); }
LOSSX_HD_INLINE double keras_sqrt(double v) { return sqrt(v); }

// S: the row's sums in double. loss = the row's value; coef (when not null) =
// (a, b, c) with d(scale * loss)/dp = a t + b p + c, element by element.
template <typename A>
LOSSX_HD_INLINE void keras_row_from_sums(KerasLoss kind, double alpha, double beta, const double* S, A scale,
                                         A* loss, A* coef) {
  const double eps = 1e-7;
  const double stt = S[0], spp = S[1], stp = S[2], st = S[3], sp = S[4];
  double l = 0, ca = 0, cb = 0, cc = 0;
  switch (kind) {
    case KerasLoss::kCosineSimilarity: {
      // Keras' l2 normalisation: x * min(rsqrt(sum x^2), 1/eps). Where the
      // bound is active the factor is a constant and passes no gradient.
      const A cap = A(1) / static_cast<A>(eps);
      const A itr = A(1) / keras_sqrt(static_cast<A>(stt));
      const A it = cap < itr ? cap : itr;  // std::min(itr, cap), NaN kept as it does
      const A ipr = A(1) / keras_sqrt(static_cast<A>(spp));
      const A ip = cap < ipr ? cap : ipr;
      l = -stp * it * ip;
      ca = -static_cast<double>(it) * ip;
      cb = ipr < cap ? static_cast<double>(it) * stp * ip * ip * ip : 0.0;
      break;
    }
    case KerasLoss::kDice: {
      const double D = st + sp + eps;
      l = 1 - 2 * stp / D;
      ca = -2 / D;
      cc = 2 * stp / (D * D);
      break;
    }
    default: {  // tversky: fp = sum((1-p) t) = st - I, fn = sum(p (1-t)) = sp - I
      const double I = stp;
      const double D = I + alpha * (st - I) + beta * (sp - I) + eps;
      l = 1 - I / D;
      ca = -1 / D + I * (1 - alpha - beta) / (D * D);
      cc = I * beta / (D * D);
      break;
    }
  }
  *loss = static_cast<A>(l);
  if (coef) {
    coef[0] = static_cast<A>(scale * ca);
    coef[1] = static_cast<A>(scale * cb);
    coef[2] = static_cast<A>(scale * cc);
  }
}

}  // namespace lossx
