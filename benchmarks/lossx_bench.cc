// lossx C++ microbenchmarks (Google Benchmark).
//
// Every kernel is first checked against the scalar double reference
// (csrc/cpu/reference.h) on the very inputs it is timed on; a disagreement
// beyond 1e-4 relative aborts the run, so a fast wrong kernel never produces a
// number. Threads: LOSSX_NUM_THREADS, else 2 (the size of the CI machine).
//
//   cmake -S . -B build/bench -DLOSSX_BENCHMARKS=ON -DLOSSX_PYTHON=OFF -DLOSSX_CUDA=OFF
//   cmake --build build/bench -j2 && build/bench/lossx_bench
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "cpu/reference.h"
#include "lossx/lossx.h"

namespace {

constexpr double kRelTol = 1e-4;

int BenchThreads() {
  if (const char* s = std::getenv("LOSSX_NUM_THREADS")) {
    char* end = nullptr;
    const long v = std::strtol(s, &end, 10);
    if (end != s && *end == '\0' && v > 0) return static_cast<int>(v);
    std::fprintf(stderr, "lossx_bench: ignoring LOSSX_NUM_THREADS=%s (not a positive integer)\n", s);
  }
  return 2;
}

// splitmix64: fast, so that filling 131M logits does not dominate the run.
struct Rng {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0); }
};

// Logits roughly N(0, 2^2) (sum of 4 uniforms), labels uniform in [0, C).
// Kept across the calls Google Benchmark makes while it picks an iteration
// count; only one size lives at a time.
struct Inputs {
  int64_t N = -1, C = -1;
  std::vector<float> logits;
  std::vector<int64_t> labels;
};

const Inputs& GetInputs(int64_t N, int64_t C) {
  static Inputs in;
  if (in.N == N && in.C == C) return in;
  in = Inputs();
  in.N = N;
  in.C = C;
  in.logits.resize(static_cast<size_t>(N * C));
  in.labels.resize(static_cast<size_t>(N));
  Rng r{static_cast<uint64_t>(N * 1000003 + C)};
  for (auto& v : in.logits) {
    const double u = r.uniform() + r.uniform() + r.uniform() + r.uniform() - 2.0;
    v = static_cast<float>(u * 2.0 * std::sqrt(3.0));
  }
  for (auto& y : in.labels) y = static_cast<int64_t>(r.next() % static_cast<uint64_t>(C));
  return in;
}

[[noreturn]] void Die(const char* what, int64_t N, int64_t C, const std::string& detail) {
  std::fprintf(stderr, "lossx_bench: %s (%lld x %lld) disagrees with lossx::ref: %s\n", what,
               static_cast<long long>(N), static_cast<long long>(C), detail.c_str());
  std::abort();
}

bool Close(double got, double want, double floor_abs = 0.0) {
  return std::fabs(got - want) <= kRelTol * std::fabs(want) + floor_abs;
}

lossx::CrossEntropyArgs MakeArgs(const Inputs& in, float* loss, float* grad) {
  lossx::CrossEntropyArgs a;
  a.dtype = lossx::DType::kF32;
  a.rows = in.N;
  a.classes = in.C;
  a.logits = in.logits.data();
  a.labels = in.labels.data();
  a.reduction = lossx::Reduction::kMean;
  a.loss = loss;
  a.grad_logits = grad;
  return a;
}

void Run(const lossx::CrossEntropyArgs& a) {
  lossx::StatusInfo info;
  if (lossx::cross_entropy(a, &info) != lossx::Status::kOk) {
    std::fprintf(stderr, "lossx_bench: cross_entropy failed: %s\n", info.message);
    std::abort();
  }
}

// Runs the kernel once and compares loss (and gradient) with the reference,
// row by row so that no rows x classes double buffer is needed.
void Check(const Inputs& in, bool backward, const char* name) {
  static std::set<std::pair<std::string, std::pair<int64_t, int64_t>>> done;
  if (!done.insert({name, {in.N, in.C}}).second) return;
  const int64_t N = in.N, C = in.C;
  float loss = 0;
  std::vector<float> grad(backward ? static_cast<size_t>(N * C) : 0);
  Run(MakeArgs(in, &loss, backward ? grad.data() : nullptr));

  lossx::ref::CrossEntropy r;
  r.rows = N;
  r.classes = C;
  r.labels = in.labels.data();
  const double norm = lossx::ref::ce_normalizer(r);
  std::vector<double> g(static_cast<size_t>(C));
  double total = 0;
  for (int64_t i = 0; i < N; ++i) {
    const double scale = lossx::ref::ce_row_scale(r, i, norm);
    total += lossx::ref::ce_row(r, in.logits.data(), i, scale, backward ? g.data() : nullptr);
    if (!backward) continue;
    double gmax = 0;
    for (int64_t j = 0; j < C; ++j) gmax = std::max(gmax, std::fabs(g[j]));
    // Entries far below the row's largest are exp of very negative numbers:
    // float32 underflows them, so they get an absolute floor instead.
    const double floor_abs = 1e-7 * gmax;
    const float* gi = grad.data() + i * C;
    for (int64_t j = 0; j < C; ++j) {
      if (!Close(gi[j], g[j], floor_abs)) {
        char buf[160];
        std::snprintf(buf, sizeof(buf), "grad[%lld, %lld] = %.9g, reference %.9g",
                      static_cast<long long>(i), static_cast<long long>(j), gi[j], g[j]);
        Die(name, N, C, buf);
      }
    }
  }
  const double want = total / norm;
  if (!Close(loss, want)) {
    char buf[128];
    std::snprintf(buf, sizeof(buf), "loss %.9g, reference %.9g", loss, want);
    Die(name, N, C, buf);
  }
}

void SetCounters(benchmark::State& st, int64_t N, int64_t C, bool backward, int threads) {
  const int64_t elems = N * C;
  const int64_t bytes = elems * static_cast<int64_t>(sizeof(float)) * (backward ? 2 : 1);
  st.SetItemsProcessed(st.iterations() * elems);
  st.SetBytesProcessed(st.iterations() * bytes);
  st.counters["threads"] = threads;
}

void BM_CrossEntropyForward(benchmark::State& st) {
  const int64_t N = st.range(0), C = st.range(1);
  const int threads = BenchThreads();
  lossx::set_num_threads(threads);
  const Inputs& in = GetInputs(N, C);
  Check(in, false, "cross_entropy forward");
  float loss = 0;
  const auto a = MakeArgs(in, &loss, nullptr);
  for (auto _ : st) {
    Run(a);
    benchmark::DoNotOptimize(loss);
  }
  SetCounters(st, N, C, false, threads);
}

void BM_CrossEntropyFwdBwd(benchmark::State& st) {
  const int64_t N = st.range(0), C = st.range(1);
  const int threads = BenchThreads();
  lossx::set_num_threads(threads);
  const Inputs& in = GetInputs(N, C);
  Check(in, true, "cross_entropy forward+backward");
  float loss = 0;
  std::vector<float> grad(static_cast<size_t>(N * C));
  const auto a = MakeArgs(in, &loss, grad.data());
  for (auto _ : st) {
    Run(a);
    benchmark::DoNotOptimize(loss);
    benchmark::DoNotOptimize(grad.data());
    benchmark::ClobberMemory();
  }
  SetCounters(st, N, C, true, threads);
}

// The memory-bandwidth ceiling: copy a 512 MB buffer (bytes = read + written),
// split over the benchmark's threads like the kernels are.
void BM_Copy(benchmark::State& st) {
  const int64_t bytes = int64_t{512} << 20;
  const int threads = static_cast<int>(st.range(0)) > 0 ? static_cast<int>(st.range(0)) : BenchThreads();
  std::unique_ptr<char[]> src(new char[bytes]), dst(new char[bytes]);
  std::memset(src.get(), 1, bytes);
  std::memset(dst.get(), 0, bytes);  // fault the pages in before timing
  const int64_t chunks = 64, per = bytes / chunks;
  for (auto _ : st) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t c = 0; c < chunks; ++c) std::memcpy(dst.get() + c * per, src.get() + c * per, per);
    benchmark::DoNotOptimize(dst.get());
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(st.iterations() * 2 * bytes);
  st.counters["threads"] = threads;
}

void Sizes(benchmark::internal::Benchmark* b) {
  b->Args({256, 10})->Args({4096, 1000})->Args({1024, 32000})->Args({4096, 32000})->Args({256, 128256});
  b->ArgNames({"N", "C"})->UseRealTime()->Unit(benchmark::kMillisecond);
}

}  // namespace

BENCHMARK(BM_CrossEntropyForward)->Apply(Sizes);
BENCHMARK(BM_CrossEntropyFwdBwd)->Apply(Sizes);
// Arg 1: one thread; arg 0: the benchmark's thread count.
BENCHMARK(BM_Copy)->Arg(1)->Arg(0)->ArgName("threads1_or_default")->UseRealTime()->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
