// Runtime information and control: threads, SIMD targets, CUDA presence.
#include <atomic>
#include <cstring>

#include "cpu/parallel.h"
#include "hwy/highway.h"
#include "hwy/targets.h"
#include "lossx/lossx.h"
#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef LOSSX_WITH_CUDA
#include "lossx/cuda.h"
#endif

#ifndef LOSSX_VERSION
#define LOSSX_VERSION "0.0.0"
#endif

namespace lossx {
namespace {
std::atomic<int> g_threads{0};
}

namespace cpu {
int effective_threads() {
  const int n = g_threads.load(std::memory_order_relaxed);
  if (n > 0) return n;
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}
}  // namespace cpu

int num_threads() { return cpu::effective_threads(); }
void set_num_threads(int n) { g_threads.store(n > 0 ? n : 0); }

static int64_t usable_targets() { return hwy::SupportedTargets() & HWY_TARGETS; }

const char* simd_target() {
  const int64_t t = usable_targets();
  return hwy::TargetName(t & ~(t - 1));  // lowest bit = best target on every arch
}

int simd_targets(const char** names, int max, bool compiled) {
  int k = 0;
  const int64_t all = compiled ? static_cast<int64_t>(HWY_TARGETS) : usable_targets();
  for (int64_t t = all; t != 0 && k < max; t &= t - 1) names[k++] = hwy::TargetName(t & ~(t - 1));
  return k;
}

bool force_simd_target(const char* name) {
  if (name == nullptr || name[0] == '\0') {
    hwy::SetSupportedTargetsForTest(0);
    hwy::GetChosenTarget().Update(hwy::SupportedTargets());
    return true;
  }
  hwy::SetSupportedTargetsForTest(0);
  for (int64_t t = usable_targets(); t != 0; t &= t - 1) {
    const int64_t bit = t & ~(t - 1);
    if (std::strcmp(hwy::TargetName(bit), name) == 0) {
      hwy::SetSupportedTargetsForTest(bit);
      hwy::GetChosenTarget().Update(hwy::SupportedTargets());
      return true;
    }
  }
  hwy::GetChosenTarget().Update(hwy::SupportedTargets());
  return false;
}

bool cuda_compiled() {
#ifdef LOSSX_WITH_CUDA
  return true;
#else
  return false;
#endif
}

bool cuda_available() {
#ifdef LOSSX_WITH_CUDA
  return cuda::device_count() > 0;
#else
  return false;
#endif
}

const char* version() { return LOSSX_VERSION; }

}  // namespace lossx
