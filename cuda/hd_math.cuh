// Scalar math for the CUDA functors, __host__ __device__ so that the tests can
// compile the functors for the host (tests/*_functors_host.cu) and check them
// against the CPU kernels on machines without a GPU. Overloads on float and
// double pick the single- or double-precision libm function on both sides.
#pragma once
#include <cuda_runtime.h>

#include <cmath>

#define LOSSX_HD __host__ __device__ __forceinline__

namespace lossx {
namespace cuda {
namespace {

LOSSX_HD float d_exp(float v) { return expf(v); }
LOSSX_HD double d_exp(double v) { return exp(v); }
LOSSX_HD float d_log(float v) { return logf(v); }
LOSSX_HD double d_log(double v) { return log(v); }
LOSSX_HD float d_log1p(float v) { return log1pf(v); }
LOSSX_HD double d_log1p(double v) { return log1p(v); }
LOSSX_HD float d_expm1(float v) { return expm1f(v); }
LOSSX_HD double d_expm1(double v) { return expm1(v); }
LOSSX_HD float d_tanh(float v) { return tanhf(v); }
LOSSX_HD double d_tanh(double v) { return tanh(v); }
LOSSX_HD float d_sqrt(float v) { return sqrtf(v); }
LOSSX_HD double d_sqrt(double v) { return sqrt(v); }
LOSSX_HD float d_abs(float v) { return fabsf(v); }
LOSSX_HD double d_abs(double v) { return fabs(v); }
LOSSX_HD float d_max(float a, float b) { return fmaxf(a, b); }
LOSSX_HD double d_max(double a, double b) { return fmax(a, b); }
LOSSX_HD float d_min(float a, float b) { return fminf(a, b); }
LOSSX_HD double d_min(double a, double b) { return fmin(a, b); }
LOSSX_HD float d_copysign(float a, float b) { return copysignf(a, b); }
LOSSX_HD double d_copysign(double a, double b) { return copysign(a, b); }
LOSSX_HD float d_fma(float a, float b, float c) { return fmaf(a, b, c); }
LOSSX_HD double d_fma(double a, double b, double c) { return fma(a, b, c); }

template <typename A>
LOSSX_HD bool is_nan(A v) {
  return v != v;
}

}  // namespace
}  // namespace cuda
}  // namespace lossx
