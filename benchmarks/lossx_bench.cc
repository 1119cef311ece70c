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

// ---- Other families ----------------------------------------------------------
// No scalar reference is kept for these: each float32 run is checked against
// the same entry point in float64 on the same inputs (widened), which catches
// a wrong SIMD path, tail handling or threading, while tests/ checks the
// formulas against torch.

struct Buffers {
  std::string key;
  std::vector<float> f[3];
  std::vector<double> d[3];
  std::vector<float> t;  // +-1 targets (acc type of float32)
  std::vector<double> td;
  std::vector<int64_t> labels;
};

// Element domains: most losses take any real input; these need their own.
enum class Domain { kReal, kProb, kPm1Target, kLogProb, kCount, kUnitTarget, kVariance, kPm1Third };

bool IsKeras(lossx::PointwiseLoss k) { return std::strncmp(lossx::pointwise_name(k), "keras.", 6) == 0; }

Domain PointwiseDomain(lossx::PointwiseLoss k) {
  using K = lossx::PointwiseLoss;
  switch (k) {
    case K::kKerasBCE: case K::kKerasBinaryFocal: case K::kKerasKLDivergence: case K::kKerasPoisson:
    case K::kKerasMsle: return Domain::kProb;
    case K::kKerasHinge: case K::kKerasSquaredHinge: return Domain::kPm1Target;
    case K::kBCE: return Domain::kProb;
    case K::kSoftMargin: return Domain::kPm1Target;
    case K::kKLDiv: return Domain::kLogProb;
    case K::kPoissonNLL: return Domain::kCount;
    case K::kBCEWithLogits: return Domain::kUnitTarget;
    case K::kSigmoidFocal: return Domain::kUnitTarget;
    case K::kHingeEmbedding: return Domain::kPm1Target;
    case K::kGaussianNLL: return Domain::kVariance;
    case K::kMarginRanking: return Domain::kPm1Third;
    default: return Domain::kReal;
  }
}

double Normal(Rng& r) { return (r.uniform() + r.uniform() + r.uniform() + r.uniform() - 2.0) * std::sqrt(3.0); }

// Three float arrays of n values (+ their float64 copies), filled per domain.
Buffers& GetBuffers(const std::string& key, int64_t n, Domain dom, int64_t rows = 0, int64_t classes = 0) {
  static Buffers b;
  if (b.key == key) return b;
  b = Buffers();
  b.key = key;
  Rng r{static_cast<uint64_t>(n * 7919 + static_cast<int>(dom))};
  for (int k = 0; k < 3; ++k) {
    b.f[k].resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      double v = Normal(r);
      if (k == 0 && dom == Domain::kProb) v = 0.02 + 0.96 * r.uniform();
      if (k == 0 && dom == Domain::kLogProb) v = std::log(0.01 + 0.99 * r.uniform());
      if (k == 1 && (dom == Domain::kProb || dom == Domain::kLogProb || dom == Domain::kUnitTarget)) v = r.uniform();
      if (k == 1 && dom == Domain::kPm1Target) v = r.uniform() < 0.5 ? -1.0 : 1.0;
      if (k == 1 && dom == Domain::kCount) v = std::floor(4.0 * r.uniform());
      if (k == 2 && dom == Domain::kVariance) v = 0.5 + 1.5 * r.uniform();
      if (k == 2 && dom == Domain::kPm1Third) v = r.uniform() < 0.5 ? -1.0 : 1.0;
      b.f[k][static_cast<size_t>(i)] = static_cast<float>(v);
    }
    b.d[k].assign(b.f[k].begin(), b.f[k].end());
  }
  if (rows > 0) {
    b.t.resize(static_cast<size_t>(rows));
    for (auto& v : b.t) v = r.uniform() < 0.5 ? -1.0f : 1.0f;
    b.td.assign(b.t.begin(), b.t.end());
    b.labels.resize(static_cast<size_t>(rows));
    for (auto& y : b.labels) y = static_cast<int64_t>(r.next() % static_cast<uint64_t>(classes));
  }
  return b;
}

void Ok(lossx::Status s, const lossx::StatusInfo& info, const char* what) {
  if (s != lossx::Status::kOk) {
    std::fprintf(stderr, "lossx_bench: %s failed: %s\n", what, info.message);
    std::abort();
  }
}

// float32 gradient vs its float64 twin: relative to the array's largest entry.
void CheckClose(const char* name, const std::string& what, const float* got, const double* want, int64_t n) {
  double gmax = 0;
  for (int64_t i = 0; i < n; ++i) gmax = std::max(gmax, std::fabs(want[i]));
  for (int64_t i = 0; i < n; ++i) {
    if (!Close(got[i], want[i], 1e-6 * gmax)) {
      char buf[200];
      std::snprintf(buf, sizeof(buf), "%s[%lld] = %.9g, float64 %.9g", what.c_str(), static_cast<long long>(i),
                    got[i], want[i]);
      Die(name, n, 1, buf);
    }
  }
}

const char* const kPointwiseNames[] = {
#define LOSSX_POINTWISE(id, name, fn) name,
#include "lossx/pointwise_losses.def"
#undef LOSSX_POINTWISE
};

lossx::PointwiseArgs PointwiseArgsFor(lossx::PointwiseLoss kind, int64_t n, lossx::DType dt, const void* x,
                                      const void* y, const void* var, void* loss, void* gx, void* gy, void* gv) {
  lossx::PointwiseArgs a;
  if (kind == lossx::PointwiseLoss::kGaussianNLL) {
    a.var = var;
    a.grad_var = gx ? gv : nullptr;
  }
  if (kind == lossx::PointwiseLoss::kMarginRanking) a.var = var;  // the +-1 target; not differentiable
  a.dtype = dt;
  a.kind = kind;
  a.n = n;
  a.input = x;
  a.target = y;
  a.reduction = lossx::Reduction::kMean;
  a.loss = loss;
  a.grad_input = gx;
  a.grad_target = IsKeras(kind) ? nullptr : gy;  // Keras losses differentiate y_pred only
  return a;
}

// Arg 0: the loss (its position in pointwise_losses.def), arg 1: log2(n).
void BM_Pointwise(benchmark::State& st, bool backward) {
  const auto kind = static_cast<lossx::PointwiseLoss>(st.range(0));
  const int64_t n = int64_t{1} << st.range(1);
  const int threads = BenchThreads();
  lossx::set_num_threads(threads);
  const char* name = kPointwiseNames[st.range(0)];
  st.SetLabel(name);
  Buffers& b = GetBuffers(std::string(name) + std::to_string(n), n, PointwiseDomain(kind));
  float loss = 0;
  const bool has_var = kind == lossx::PointwiseLoss::kGaussianNLL;
  const bool third = has_var || kind == lossx::PointwiseLoss::kMarginRanking;
  std::vector<float> gx(backward ? n : 0), gy(backward ? n : 0), gv(backward && has_var ? n : 0);
  const auto a = PointwiseArgsFor(kind, n, lossx::DType::kF32, b.f[0].data(), b.f[1].data(), b.f[2].data(), &loss,
                                  backward ? gx.data() : nullptr, backward ? gy.data() : nullptr, gv.data());
  lossx::StatusInfo info;
  {
    static std::set<std::string> done;
    if (done.insert(b.key + (backward ? "b" : "f")).second) {
      double dl = 0;
      std::vector<double> dgx(backward ? n : 0), dgy(backward ? n : 0), dgv(backward && has_var ? n : 0);
      const auto ad = PointwiseArgsFor(kind, n, lossx::DType::kF64, b.d[0].data(), b.d[1].data(), b.d[2].data(),
                                       &dl, backward ? dgx.data() : nullptr, backward ? dgy.data() : nullptr,
                                       dgv.data());
      Ok(lossx::pointwise(ad, &info), info, name);
      Ok(lossx::pointwise(a, &info), info, name);
      if (!Close(loss, dl)) Die(name, n, 1, "loss " + std::to_string(loss) + " vs float64 " + std::to_string(dl));
      if (backward) {
        CheckClose(name, "grad_input", gx.data(), dgx.data(), n);
        if (!IsKeras(kind)) CheckClose(name, "grad_target", gy.data(), dgy.data(), n);
        if (has_var) CheckClose(name, "grad_var", gv.data(), dgv.data(), n);
      }
    }
  }
  for (auto _ : st) {
    Ok(lossx::pointwise(a, &info), info, name);
    benchmark::DoNotOptimize(loss);
    benchmark::ClobberMemory();
  }
  // Bytes a perfect kernel moves: input and target (and var) read, + their gradients written.
  const int64_t reads = third ? 3 : 2, writes = backward ? (has_var ? 3 : 2) : 0;
  st.SetBytesProcessed(st.iterations() * n * int64_t{4} * (reads + writes));
  st.SetItemsProcessed(st.iterations() * n);
  st.counters["threads"] = threads;
}

lossx::PairwiseArgs PairArgsFor(lossx::PairLoss kind, int64_t N, int64_t D, lossx::DType dt, const void* x0,
                                const void* x1, const void* x2, const void* t, void* loss, void* g0, void* g1,
                                void* g2) {
  lossx::PairwiseArgs a;
  a.dtype = dt;
  a.loss = kind;
  a.rows = N;
  a.dim = D;
  a.x0 = x0;
  a.x1 = x1;
  a.x2 = kind == lossx::PairLoss::kTriplet ? x2 : nullptr;
  a.target = kind == lossx::PairLoss::kCosine ? t : nullptr;
  a.margin = kind == lossx::PairLoss::kTriplet ? 1.0 : 0.0;
  a.loss_out = loss;
  a.grad0 = g0;
  a.grad1 = g1;
  a.grad2 = kind == lossx::PairLoss::kTriplet ? g2 : nullptr;
  return a;
}

// Arg 0: 0 triplet, 1 cosine; args 1, 2: N, D; arg 3: with the gradient.
void BM_Pairwise(benchmark::State& st) {
  const auto kind = static_cast<lossx::PairLoss>(st.range(0));
  const int64_t N = st.range(1), D = st.range(2), n = N * D;
  const bool backward = st.range(3) != 0;
  const int threads = BenchThreads();
  lossx::set_num_threads(threads);
  const char* name = kind == lossx::PairLoss::kTriplet ? "triplet_margin_loss" : "cosine_embedding_loss";
  st.SetLabel(std::string(name) + (backward ? " fwd+bwd" : " fwd"));
  const int nin = kind == lossx::PairLoss::kTriplet ? 3 : 2;
  Buffers& b = GetBuffers(std::string(name) + std::to_string(n), n, Domain::kReal, N, D);
  float loss = 0;
  std::vector<float> g[3];
  for (int k = 0; k < 3; ++k) g[k].resize(backward ? n : 0);
  auto gp = [&](std::vector<float>& v) { return backward ? v.data() : nullptr; };
  const auto a = PairArgsFor(kind, N, D, lossx::DType::kF32, b.f[0].data(), b.f[1].data(), b.f[2].data(),
                             b.t.data(), &loss, gp(g[0]), gp(g[1]), gp(g[2]));
  lossx::StatusInfo info;
  static std::set<std::string> done;
  if (done.insert(b.key + (backward ? "b" : "f")).second) {
    double dl = 0;
    std::vector<double> dg[3];
    for (int k = 0; k < 3; ++k) dg[k].resize(backward ? n : 0);
    auto dp = [&](std::vector<double>& v) { return backward ? v.data() : nullptr; };
    const auto ad = PairArgsFor(kind, N, D, lossx::DType::kF64, b.d[0].data(), b.d[1].data(), b.d[2].data(),
                                b.td.data(), &dl, dp(dg[0]), dp(dg[1]), dp(dg[2]));
    Ok(lossx::pairwise_embedding(ad, &info), info, name);
    Ok(lossx::pairwise_embedding(a, &info), info, name);
    if (!Close(loss, dl)) Die(name, N, D, "loss " + std::to_string(loss) + " vs float64 " + std::to_string(dl));
    for (int k = 0; backward && k < nin; ++k)
      CheckClose(name, "grad" + std::to_string(k), g[k].data(), dg[k].data(), n);
  }
  for (auto _ : st) {
    Ok(lossx::pairwise_embedding(a, &info), info, name);
    benchmark::DoNotOptimize(loss);
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(st.iterations() * n * int64_t{4} * nin * (backward ? 2 : 1));
  st.SetItemsProcessed(st.iterations() * N);
  st.counters["threads"] = threads;
}

// Margin family: arg 0 the MarginLoss code (2 multi_margin, 3 multilabel_margin),
// args 1, 2: N, C; arg 3: with the gradient. (multilabel_soft_margin_loss runs the
// pointwise kernel's binary_cross_entropy_with_logits in row mode.)
void BM_Margin(benchmark::State& st) {
  const auto kind = static_cast<lossx::MarginLoss>(st.range(0));
  const int64_t N = st.range(1), C = st.range(2), n = N * C;
  const bool backward = st.range(3) != 0;
  const int threads = BenchThreads();
  lossx::set_num_threads(threads);
  const char* name = kind == lossx::MarginLoss::kMultiMargin ? "multi_margin_loss" : "multilabel_margin_loss";
  st.SetLabel(std::string(name) + (backward ? " fwd+bwd" : " fwd"));
  Buffers& b = GetBuffers(std::string(name) + std::to_string(n), n, Domain::kUnitTarget, N, C);
  // multilabel_margin: each row lists C/20 + 1 distinct classes, then -1.
  std::vector<int64_t> mlm(static_cast<size_t>(n), -1);
  for (int64_t i = 0; i < N; ++i)
    for (int64_t k = 0; k <= C / 20 && k < C; ++k) mlm[static_cast<size_t>(i * C + k)] = (i + 7 * k) % C;
  auto args = [&](lossx::DType dt, const void* x, void* loss, void* g) {
    lossx::MarginArgs a;
    a.dtype = dt;
    a.loss = kind;
    a.rows = N;
    a.classes = C;
    a.x0 = x;
    a.labels = kind == lossx::MarginLoss::kMultiMargin ? b.labels.data() : mlm.data();
    a.loss_out = loss;
    a.grad0 = g;
    return a;
  };
  float loss = 0;
  std::vector<float> g(backward ? n : 0);
  const auto a = args(lossx::DType::kF32, b.f[0].data(), &loss, backward ? g.data() : nullptr);
  lossx::StatusInfo info;
  static std::set<std::string> done;
  if (done.insert(b.key + (backward ? "b" : "f")).second) {
    double dl = 0;
    std::vector<double> dg(backward ? n : 0);
    Ok(lossx::margin_loss(args(lossx::DType::kF64, b.d[0].data(), &dl, backward ? dg.data() : nullptr),
                          &info), info, name);
    Ok(lossx::margin_loss(a, &info), info, name);
    if (!Close(loss, dl)) Die(name, N, C, "loss " + std::to_string(loss) + " vs float64 " + std::to_string(dl));
    if (backward) CheckClose(name, "grad", g.data(), dg.data(), n);
  }
  for (auto _ : st) {
    Ok(lossx::margin_loss(a, &info), info, name);
    benchmark::DoNotOptimize(loss);
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(st.iterations() * n * int64_t{4} * (backward ? 2 : 1));
  st.SetItemsProcessed(st.iterations() * N);
  st.counters["threads"] = threads;
}

// ctc_loss: args T, N, C, S (padded targets), arg 4: with the gradient.
void BM_Ctc(benchmark::State& st) {
  const int64_t T = st.range(0), N = st.range(1), C = st.range(2), S = st.range(3), n = T * N * C;
  const bool backward = st.range(4) != 0;
  const int threads = BenchThreads();
  lossx::set_num_threads(threads);
  const char* name = "ctc_loss";
  st.SetLabel(backward ? "ctc_loss fwd+bwd" : "ctc_loss fwd");
  Buffers& b = GetBuffers(std::string(name) + std::to_string(n), n, Domain::kReal, N * S, C);
  // Rows of log_softmax over C, so the probabilities are proper.
  for (int64_t r = 0; r < T * N; ++r) {
    double m = -1e300, s = 0;
    for (int64_t c = 0; c < C; ++c) m = std::max(m, b.d[0][static_cast<size_t>(r * C + c)]);
    for (int64_t c = 0; c < C; ++c) s += std::exp(b.d[0][static_cast<size_t>(r * C + c)] - m);
    for (int64_t c = 0; c < C; ++c) {
      double& v = b.d[0][static_cast<size_t>(r * C + c)];
      v = v - m - std::log(s);
      b.f[0][static_cast<size_t>(r * C + c)] = static_cast<float>(v);
      v = b.f[0][static_cast<size_t>(r * C + c)];  // the float64 run sees the same values
    }
  }
  std::vector<int64_t> targets(static_cast<size_t>(N * S)), in_len(static_cast<size_t>(N), T), tgt_len(static_cast<size_t>(N));
  for (int64_t i = 0; i < N * S; ++i) targets[static_cast<size_t>(i)] = 1 + b.labels[static_cast<size_t>(i)] % (C - 1);
  for (int64_t i = 0; i < N; ++i) tgt_len[static_cast<size_t>(i)] = S / 2 + i % (S / 2 + 1);
  auto args = [&](lossx::DType dt, const void* lp, void* loss, void* g) {
    lossx::CtcArgs a;
    a.dtype = dt;
    a.T = T;
    a.N = N;
    a.C = C;
    a.log_probs = lp;
    a.targets = targets.data();
    a.S = S;
    a.input_lengths = in_len.data();
    a.target_lengths = tgt_len.data();
    a.loss = loss;
    a.grad = g;
    return a;
  };
  float loss = 0;
  std::vector<float> g(backward ? n : 0);
  const auto a = args(lossx::DType::kF32, b.f[0].data(), &loss, backward ? g.data() : nullptr);
  lossx::StatusInfo info;
  static std::set<std::string> done;
  if (done.insert(b.key + (backward ? "b" : "f")).second) {
    double dl = 0;
    std::vector<double> dg(backward ? n : 0);
    Ok(lossx::ctc_loss(args(lossx::DType::kF64, b.d[0].data(), &dl, backward ? dg.data() : nullptr), &info), info,
       name);
    Ok(lossx::ctc_loss(a, &info), info, name);
    if (!Close(loss, dl)) Die(name, N, C, "loss " + std::to_string(loss) + " vs float64 " + std::to_string(dl));
    if (backward) CheckClose(name, "grad", g.data(), dg.data(), n);
  }
  for (auto _ : st) {
    Ok(lossx::ctc_loss(a, &info), info, name);
    benchmark::DoNotOptimize(loss);
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(st.iterations() * n * int64_t{4} * (backward ? 2 : 1));
  st.SetItemsProcessed(st.iterations() * N);
  st.counters["threads"] = threads;
}

// log_softmax (arg 0 = 1) / logsumexp (0) over rows: args 1, 2: N, C; arg 3: gradient.
void BM_Softmax(benchmark::State& st) {
  const bool logsm = st.range(0) != 0;
  const int64_t N = st.range(1), C = st.range(2), n = N * C;
  const bool backward = st.range(3) != 0;
  const int threads = BenchThreads();
  lossx::set_num_threads(threads);
  const char* name = logsm ? "log_softmax" : "logsumexp";
  st.SetLabel(std::string(name) + (backward ? " fwd+bwd" : " fwd"));
  Buffers& b = GetBuffers(std::string(name) + std::to_string(n), n, Domain::kReal);
  const int64_t nout = logsm ? n : N;
  auto args = [&](lossx::DType dt, const void* x, void* out, void* g) {
    lossx::SoftmaxArgs a;
    a.dtype = dt;
    a.rows = N;
    a.cols = C;
    a.input = x;
    a.log_softmax = logsm;
    a.out = out;
    a.grad_input = g;
    return a;
  };
  std::vector<float> out(static_cast<size_t>(nout)), g(backward ? n : 0);
  const auto a = args(lossx::DType::kF32, b.f[0].data(), out.data(), backward ? g.data() : nullptr);
  lossx::StatusInfo info;
  static std::set<std::string> done;
  if (done.insert(b.key + (backward ? "b" : "f")).second) {
    std::vector<double> dout(static_cast<size_t>(nout)), dg(backward ? n : 0);
    Ok(lossx::softmax_family(args(lossx::DType::kF64, b.d[0].data(), dout.data(), backward ? dg.data() : nullptr),
                             &info), info, name);
    Ok(lossx::softmax_family(a, &info), info, name);
    CheckClose(name, "out", out.data(), dout.data(), nout);
    if (backward) CheckClose(name, "grad", g.data(), dg.data(), n);
  }
  for (auto _ : st) {
    Ok(lossx::softmax_family(a, &info), info, name);
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(st.iterations() * int64_t{4} * (n + nout + (backward ? n : 0)));
  st.counters["threads"] = threads;
}

// lossx.keras row losses: arg 0 the KerasLoss code, args 1, 2: N, C; arg 3: gradient.
void BM_KerasRows(benchmark::State& st) {
  const auto kind = static_cast<lossx::KerasLoss>(st.range(0));
  const int64_t N = st.range(1), C = st.range(2), n = N * C;
  const bool backward = st.range(3) != 0;
  const int threads = BenchThreads();
  lossx::set_num_threads(threads);
  static const char* const kNames[] = {"keras.categorical_crossentropy", "keras.sparse_categorical_crossentropy",
                                       "keras.categorical_focal_crossentropy", "keras.categorical_hinge",
                                       "keras.cosine_similarity", "keras.dice", "keras.tversky"};
  const char* name = kNames[st.range(0)];
  st.SetLabel(std::string(name) + (backward ? " fwd+bwd" : " fwd"));
  // y_pred: probabilities in [0.02, 0.98]; y_true in [0, 1]; sparse labels.
  Buffers& b = GetBuffers(std::string(name) + std::to_string(n), n, Domain::kProb, N, C);
  const bool sparse = kind == lossx::KerasLoss::kSparseCategoricalCE;
  auto args = [&](lossx::DType dt, const void* t, const void* p, void* loss, void* g) {
    lossx::KerasRowsArgs a;
    a.dtype = dt;
    a.kind = kind;
    a.rows = N;
    a.cols = C;
    a.y_true = sparse ? nullptr : t;
    a.labels = sparse ? b.labels.data() : nullptr;
    a.y_pred = p;
    a.reduction = lossx::Reduction::kMean;
    a.loss = loss;
    a.grad = g;
    return a;
  };
  float loss = 0;
  std::vector<float> g(backward ? n : 0);
  // Buffers' kProb domain: f[0] in [0.02, 0.98] (y_pred), f[1] in [0, 1] (y_true).
  const auto a = args(lossx::DType::kF32, b.f[1].data(), b.f[0].data(), &loss, backward ? g.data() : nullptr);
  lossx::StatusInfo info;
  static std::set<std::string> done;
  if (done.insert(b.key + (backward ? "b" : "f")).second) {
    double dl = 0;
    std::vector<double> dg(backward ? n : 0);
    Ok(lossx::keras_rows(args(lossx::DType::kF64, b.d[1].data(), b.d[0].data(), &dl, backward ? dg.data() : nullptr),
                         &info), info, name);
    Ok(lossx::keras_rows(a, &info), info, name);
    if (!Close(loss, dl)) Die(name, N, C, "loss " + std::to_string(loss) + " vs float64 " + std::to_string(dl));
    if (backward) CheckClose(name, "grad", g.data(), dg.data(), n);
  }
  for (auto _ : st) {
    Ok(lossx::keras_rows(a, &info), info, name);
    benchmark::DoNotOptimize(loss);
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(st.iterations() * n * int64_t{4} * (sparse ? 1 : 2) + (backward ? n * 4 : 0) * st.iterations());
  st.counters["threads"] = threads;
}

// tf.nn.sigmoid_cross_entropy_with_logits (per-element output): arg 0 log2(n), arg 1 gradient.
void BM_SigmoidCE(benchmark::State& st) {
  const int64_t n = int64_t{1} << st.range(0);
  const bool backward = st.range(1) != 0;
  const int threads = BenchThreads();
  lossx::set_num_threads(threads);
  const char* name = "tf.sigmoid_cross_entropy_with_logits";
  st.SetLabel(std::string(name) + (backward ? " fwd+bwd" : " fwd"));
  Buffers& b = GetBuffers(std::string(name) + std::to_string(n), n, Domain::kUnitTarget);
  auto args = [&](lossx::DType dt, const void* z, const void* x, void* loss, void* g) {
    lossx::SigmoidCEArgs a;
    a.dtype = dt;
    a.n = n;
    a.labels = z;
    a.logits = x;
    a.loss = loss;
    a.grad = g;
    return a;
  };
  std::vector<float> loss(static_cast<size_t>(n)), g(backward ? n : 0);
  const auto a = args(lossx::DType::kF32, b.f[1].data(), b.f[0].data(), loss.data(), backward ? g.data() : nullptr);
  lossx::StatusInfo info;
  static std::set<std::string> done;
  if (done.insert(b.key + (backward ? "b" : "f")).second) {
    std::vector<double> dl(static_cast<size_t>(n)), dg(backward ? n : 0);
    Ok(lossx::sigmoid_cross_entropy(args(lossx::DType::kF64, b.d[1].data(), b.d[0].data(), dl.data(),
                                         backward ? dg.data() : nullptr), &info), info, name);
    Ok(lossx::sigmoid_cross_entropy(a, &info), info, name);
    CheckClose(name, "loss", loss.data(), dl.data(), n);
    if (backward) CheckClose(name, "grad", g.data(), dg.data(), n);
  }
  for (auto _ : st) {
    Ok(lossx::sigmoid_cross_entropy(a, &info), info, name);
    benchmark::DoNotOptimize(loss.data());
    benchmark::ClobberMemory();
  }
  st.SetBytesProcessed(st.iterations() * n * int64_t{4} * (3 + (backward ? 1 : 0)));
  st.counters["threads"] = threads;
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

// Every pointwise loss at 2^24 elements (and 2^16 for the per-call overhead).
void PointwiseSizes(benchmark::internal::Benchmark* b) {
  const int count = static_cast<int>(sizeof(kPointwiseNames) / sizeof(kPointwiseNames[0]));
  for (int k = 0; k < count; ++k) b->Args({k, 16})->Args({k, 24});
  b->ArgNames({"loss", "log2n"})->UseRealTime()->Unit(benchmark::kMillisecond);
}
BENCHMARK_CAPTURE(BM_Pointwise, fwd, false)->Apply(PointwiseSizes);
BENCHMARK_CAPTURE(BM_Pointwise, fwd_bwd, true)->Apply(PointwiseSizes);

void PairwiseSizes(benchmark::internal::Benchmark* b) {
  for (int kind = 0; kind < 2; ++kind)
    for (int bwd = 0; bwd < 2; ++bwd) b->Args({kind, 1000, 128, bwd})->Args({kind, 65536, 128, bwd});
  b->ArgNames({"kind", "N", "D", "bwd"})->UseRealTime()->Unit(benchmark::kMillisecond);
}
BENCHMARK(BM_Pairwise)->Apply(PairwiseSizes);

void MarginSizes(benchmark::internal::Benchmark* b) {
  for (int kind = 2; kind <= 3; ++kind)
    for (int bwd = 0; bwd < 2; ++bwd) b->Args({kind, 256, 100, bwd})->Args({kind, 4096, 1000, bwd});
  b->ArgNames({"kind", "N", "C", "bwd"})->UseRealTime()->Unit(benchmark::kMillisecond);
}
BENCHMARK(BM_Margin)->Apply(MarginSizes);

void CtcSizes(benchmark::internal::Benchmark* b) {
  for (int bwd = 0; bwd < 2; ++bwd) b->Args({50, 8, 29, 10, bwd})->Args({200, 32, 128, 40, bwd});
  b->ArgNames({"T", "N", "C", "S", "bwd"})->UseRealTime()->Unit(benchmark::kMillisecond);
}
BENCHMARK(BM_Ctc)->Apply(CtcSizes);

void RowSizes(benchmark::internal::Benchmark* b, int kinds) {
  for (int k = 0; k < kinds; ++k)
    for (int bwd = 0; bwd < 2; ++bwd) b->Args({k, 256, 100, bwd})->Args({k, 4096, 1000, bwd});
  b->ArgNames({"kind", "N", "C", "bwd"})->UseRealTime()->Unit(benchmark::kMillisecond);
}
// nll_loss, poly1_cross_entropy and tf.(sparse_)softmax_cross_entropy_with_logits run
// the cross_entropy kernel timed above; these are the other row kernels.
BENCHMARK(BM_Softmax)->Apply([](benchmark::internal::Benchmark* b) { RowSizes(b, 2); });
BENCHMARK(BM_KerasRows)->Apply([](benchmark::internal::Benchmark* b) { RowSizes(b, 7); });
BENCHMARK(BM_SigmoidCE)->Args({16, 0})->Args({16, 1})->Args({24, 0})->Args({24, 1})
    ->ArgNames({"log2n", "bwd"})->UseRealTime()->Unit(benchmark::kMillisecond);
// Arg 1: one thread; arg 0: the benchmark's thread count.
BENCHMARK(BM_Copy)->Arg(1)->Arg(0)->ArgName("threads1_or_default")->UseRealTime()->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
