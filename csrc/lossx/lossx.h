// lossx plain C++ API: pointers + sizes + options -> Status.
// No pybind11, Highway or CUDA types here: the C++ benchmark and any C++ user
// include only this header and link liblossx_core.
#pragma once
#include <cstddef>
#include <cstdint>

namespace lossx {

enum class DType : int { kF32 = 0, kF64 = 1, kF16 = 2, kBF16 = 3 };
enum class Device : int { kCPU = 0, kCUDA = 1 };
enum class Reduction : int { kNone = 0, kMean = 1, kSum = 2 };

enum class Status : int {
  kOk = 0,
  kInvalidArgument = 1,  // -> ValueError
  kIndexError = 2,       // label out of range -> IndexError (position, value)
  kNotCompiled = 3,      // e.g. CUDA requested but not built -> RuntimeError
  kDeviceError = 4,      // CUDA runtime error -> RuntimeError
  kUnsupported = 5,      // dtype/device combination has no kernel -> TypeError
};

// Filled on failure. `position` is the flat index of the first offending
// element (smallest index, whatever the thread count), `value` its value.
struct StatusInfo {
  Status code = Status::kOk;
  int64_t position = -1;
  int64_t value = 0;
  char message[256] = {0};
};

// The accumulation type: float64 for float64 inputs, float32 for every other
// dtype. Losses, lse, weights, sample weights and grad_output use it.
inline bool acc_is_f64(DType d) { return d == DType::kF64; }
inline size_t dtype_size(DType d) { return d == DType::kF64 ? 8 : d == DType::kF32 ? 4 : 2; }

// How a mean is normalised when sample weights are given (PyTorch semantics
// when they are not: sum of class weights of the non-ignored targets).
enum class Normalizer : int {
  kAuto = 0,     // PyTorch: sum_i w[y_i] over non-ignored rows (rows count for soft targets)
  kValid = 1,    // number of non-ignored rows
  kWeights = 2,  // sum_i w[y_i] * sample_weight_i over non-ignored rows
  kValue = 3,    // normalizer_value
};

// Row-softmax family: cross_entropy (hard or soft targets) and nll_loss.
// Logits are `rows x classes`, row-major and contiguous (the Python layer moves
// the class axis last and copies once when needed).
struct CrossEntropyArgs {
  DType dtype = DType::kF32;
  Device device = Device::kCPU;
  void* stream = nullptr;  // cudaStream_t for Device::kCUDA
  int64_t rows = 0, classes = 0;
  const void* logits = nullptr;
  bool log_probs_input = false;   // nll_loss: `logits` already hold log-probabilities
  const int64_t* labels = nullptr;  // hard labels (rows), or nullptr with target
  const void* target = nullptr;     // soft targets (rows x classes, dtype), or nullptr
  const void* weight = nullptr;     // class weights (classes, acc type) or nullptr
  const void* sample_weight = nullptr;  // per-row weights (rows, acc type) or nullptr
  int64_t ignore_index = -100;
  double label_smoothing = 0.0;
  double z_loss = 0.0;   // coefficient of lse^2 added to every non-ignored row
  double softcap = 0.0;  // 0: off; else logits -> softcap * tanh(logits / softcap)
  Reduction reduction = Reduction::kMean;
  Normalizer normalizer = Normalizer::kAuto;
  double normalizer_value = 1.0;
  // Outputs (any may be nullptr when not wanted, except loss).
  void* loss = nullptr;         // acc type: rows values for kNone, else one value
  void* lse = nullptr;          // acc type, rows values
  void* grad_logits = nullptr;  // dtype, rows x classes; may equal `logits` (in place)
  void* grad_target = nullptr;  // dtype, rows x classes (soft targets only)
  const void* grad_output = nullptr;  // acc type: one value, or rows values for kNone; nullptr = 1
};

Status cross_entropy(const CrossEntropyArgs& args, StatusInfo* info);

// log_softmax / logsumexp over the last axis of a `rows x cols` contiguous array.
struct SoftmaxArgs {
  DType dtype = DType::kF32;
  Device device = Device::kCPU;
  void* stream = nullptr;
  int64_t rows = 0, cols = 0;
  const void* input = nullptr;
  bool log_softmax = true;  // false: logsumexp
  void* out = nullptr;      // log_softmax: dtype rows x cols; logsumexp: dtype rows
  const void* grad_output = nullptr;  // same shape/dtype as out; nullptr = ones
  void* grad_input = nullptr;         // dtype rows x cols, or nullptr
};

Status softmax_family(const SoftmaxArgs& args, StatusInfo* info);

// Keras 3 row losses (lossx.keras): y_true / y_pred are `rows x cols`, row-major
// and contiguous (the Python layer moves the reduced axes last). Probabilities
// are normalised (p / sum p) and clipped to [1e-7, 1 - 1e-7] exactly as Keras'
// ops do; the gradient (with respect to y_pred) is zero where the clip is active.
enum class KerasLoss : int {
  kCategoricalCE = 0,        // -sum t' log q; from_logits -> the row-softmax kernel
  kSparseCategoricalCE = 1,  // -log q[y]; ignore_class rows give 0
  kCategoricalFocalCE = 2,   // -sum alpha t' (1-q)^gamma log q
  kCategoricalHinge = 3,     // max(max((1-t) p) - sum t p + 1, 0)
  kCosineSimilarity = 4,     // -sum l2_normalize(t) l2_normalize(p)
  kDice = 5,                 // 1 - 2 sum(tp) / (sum t + sum p + 1e-7)
  kTversky = 6,              // 1 - I / (I + alpha sum((1-p)t) + beta sum(p(1-t)) + 1e-7)
};

struct KerasRowsArgs {
  DType dtype = DType::kF32;
  Device device = Device::kCPU;
  void* stream = nullptr;
  KerasLoss kind = KerasLoss::kCategoricalCE;
  int64_t rows = 0, cols = 0;
  const void* y_true = nullptr;     // dtype, rows x cols (nullptr for sparse)
  const int64_t* labels = nullptr;  // sparse: rows labels
  const void* y_pred = nullptr;     // dtype, rows x cols
  bool from_logits = false;
  double label_smoothing = 0.0;     // t' = t (1 - e) + e / cols
  double alpha = 0.25, beta = 0.5, gamma = 2.0;
  const void* alpha_vec = nullptr;  // focal: per-class alpha (cols, acc type) or nullptr
  bool has_ignore_class = false;
  int64_t ignore_class = 0;
  // kMean is Keras' "sum_over_batch_size": sum / rows (sum / non-ignored rows
  // with ignore_class), and 0 when that count is 0 (Keras' divide_no_nan).
  Reduction reduction = Reduction::kNone;
  void* loss = nullptr;               // acc type: rows values for kNone, else one
  void* grad = nullptr;               // dtype rows x cols (d loss / d y_pred), or nullptr
  const void* grad_output = nullptr;  // acc type: one value, or rows values for kNone
};

Status keras_rows(const KerasRowsArgs& args, StatusInfo* info);

// tf.nn.sigmoid_cross_entropy_with_logits, element-wise:
// max(x, 0) - x z + log1p(exp(-|x|)); gradient sigmoid(x) - z.
struct SigmoidCEArgs {
  DType dtype = DType::kF32;
  Device device = Device::kCPU;
  void* stream = nullptr;
  int64_t n = 0;
  const void* labels = nullptr;  // dtype, n
  const void* logits = nullptr;  // dtype, n
  void* loss = nullptr;          // acc type, n
  void* grad = nullptr;          // dtype, n (d loss / d logits) or nullptr
  const void* grad_output = nullptr;  // acc type, n, or nullptr = ones
};

Status sigmoid_cross_entropy(const SigmoidCEArgs& args, StatusInfo* info);

// Runtime information and control.
int num_threads();
void set_num_threads(int n);          // n <= 0: OpenMP default
const char* simd_target();            // the target HWY_DYNAMIC_DISPATCH picks now
// compiled=false: targets compiled in AND supported by this CPU; true: all compiled.
int simd_targets(const char** names, int max, bool compiled = false);
bool force_simd_target(const char* name);  // private test hook; "" resets
bool cuda_compiled();
bool cuda_available();
const char* version();

}  // namespace lossx

namespace lossx {

// Pointwise family (torch.nn.functional semantics): one value per element of
// `input` and `target` (same shape, n elements, contiguous), reduced or not.
// The list of losses lives in lossx/pointwise_losses.def.
enum class PointwiseLoss : int {
#define LOSSX_POINTWISE(id, name, fn) id,
#include "lossx/pointwise_losses.def"
#undef LOSSX_POINTWISE
  kCount
};

struct PointwiseArgs {
  DType dtype = DType::kF32;
  Device device = Device::kCPU;
  void* stream = nullptr;
  PointwiseLoss kind = PointwiseLoss::kMse;
  int64_t n = 0;
  const void* input = nullptr;   // dtype, n
  const void* target = nullptr;  // dtype, n
  // Element i uses weight[i % weight_period] (acc type): a weight broadcast
  // over the leading axes only needs its trailing block; nullptr = 1.
  const void* weight = nullptr;
  int64_t weight_period = 1;
  const void* pos_weight = nullptr;  // BCE with logits, same convention
  int64_t pos_weight_period = 1;
  double beta = 1.0;        // smooth_l1 beta, huber delta, poisson eps
  bool log_target = false;  // kl_div
  bool log_input = true;    // poisson_nll_loss
  bool full = false;        // poisson_nll_loss: Stirling term; gaussian_nll_loss: + log(2 pi) / 2
  // gaussian_nll_loss: var (dtype, n; a broadcast var is materialised by the
  // caller) and its per-element gradient (acc type, n, or nullptr): the caller
  // sums it over the broadcast axes, so no chunk ever adds into another's output.
  const void* var = nullptr;
  void* grad_var = nullptr;
  // sigmoid_focal_loss and keras.binary_focal_crossentropy: alpha y + (1 - alpha)(1 - y)
  // weighting (sigmoid_focal_loss: none when < 0; Keras: with class_balancing) and
  // the focusing exponent gamma >= 0.
  double alpha = -1.0;
  double gamma = 2.0;
  double margin = 1.0;  // hinge_embedding_loss
  Reduction reduction = Reduction::kMean;
  double mean_divisor = 0;  // kMean divides by this (0: n, or the row count in row mode); kl_div batchmean passes the batch size
  // Row mode (lossx.keras): row_len L > 0 cuts the n elements into n / L rows of L
  // consecutive elements; a row's loss is row_scale * (sum of its element losses)
  // (row_scale 1/L: Keras' mean over the last axis). kNone writes n / L row losses
  // (and reads n / L grad_output values); kSum / kMean sum / average the row losses.
  // Every row is summed in a fixed order, whatever the thread count. 0: element-wise.
  int64_t row_len = 0;
  double row_scale = 1.0;
  // Options of the Keras element-wise losses (kinds named "keras.*" in the .def;
  // input = y_pred, target = y_true, and they give no grad_target).
  bool from_logits = false;       // binary (focal) crossentropy: input holds logits
  double label_smoothing = 0.0;   // target -> target (1 - e) + e / 2
  bool class_balancing = false;   // binary focal: weight alpha t + (1 - alpha) (1 - t)
  bool binary_labels = false;     // hinge: targets {0, 1} -> {-1, 1} (Keras does when all are 0 or 1)
  void* loss = nullptr;          // acc type: n (row mode: n / row_len) values for kNone, else one
  void* grad_input = nullptr;    // dtype n, or nullptr
  void* grad_target = nullptr;   // dtype n, or nullptr
  const void* grad_output = nullptr;  // acc type: one value, or n (n / row_len) for kNone; nullptr = 1
};

Status pointwise(const PointwiseArgs& args, StatusInfo* info);
const char* pointwise_name(PointwiseLoss kind);
// True when this build has a CUDA kernel for the loss (false without CUDA).
bool pointwise_has_cuda(PointwiseLoss kind);

}  // namespace lossx

// ---- Pairwise/embedding family (csrc/cpu/embedding.cc) ---------------------
namespace lossx {

enum class PairLoss : int { kTriplet = 0, kCosine = 1 };

// Losses over pairs/triplets of `rows x dim` contiguous rows, one value per row.
// triplet: x0 anchor, x1 positive, x2 negative; distance ||u - v + eps||_p.
// cosine: x0, x1 and target (acc type, +-1 per row).
struct PairwiseArgs {
  DType dtype = DType::kF32;
  Device device = Device::kCPU;
  void* stream = nullptr;
  PairLoss loss = PairLoss::kTriplet;
  int64_t rows = 0, dim = 0;
  const void* x0 = nullptr;
  const void* x1 = nullptr;
  const void* x2 = nullptr;
  const void* target = nullptr;
  double margin = 0.0, p = 2.0, eps = 1e-6;
  bool swap = false;
  Reduction reduction = Reduction::kMean;
  void* loss_out = nullptr;  // acc type: rows values for kNone, else one value
  void* grad0 = nullptr;     // dtype rows x dim, or nullptr (all null: forward only)
  void* grad1 = nullptr;
  void* grad2 = nullptr;
  const void* grad_output = nullptr;  // acc type: one value, or rows for kNone; nullptr = 1
};

Status pairwise_embedding(const PairwiseArgs& args, StatusInfo* info);

}  // namespace lossx

// ---- Margin family (csrc/cpu/margin.cc) -----------------------------------
namespace lossx {

// kMultiMargin: (1/C) sum_{j != y} w_y max(0, margin - x_y + x_j)^p, p in {1, 2}; labels (rows).
// kMultilabelMargin: (1/C) sum_{j in Y} sum_{k not in Y} max(0, 1 - x_j + x_k); labels rows x C,
//   the list of each row ends at its first negative entry.
// (margin_ranking_loss is element-wise: it lives in the pointwise family, and so
// does multilabel_soft_margin_loss: binary_cross_entropy_with_logits in row mode.)
enum class MarginLoss : int { kMultiMargin = 2, kMultilabelMargin = 3 };

struct MarginArgs {
  DType dtype = DType::kF32;
  Device device = Device::kCPU;
  void* stream = nullptr;
  MarginLoss loss = MarginLoss::kMultiMargin;
  int64_t rows = 0, classes = 1;
  const void* x0 = nullptr;       // dtype rows x classes
  const int64_t* labels = nullptr;  // kMultiMargin (rows), kMultilabelMargin (rows x classes)
  const void* weight = nullptr;   // acc type, classes values, or nullptr
  double margin = 1.0;
  int p = 1;
  Reduction reduction = Reduction::kMean;
  void* loss_out = nullptr;  // acc type: rows values for kNone, else one value
  void* grad0 = nullptr;     // dtype rows x classes, or nullptr
  const void* grad_output = nullptr;  // acc type: one value, or rows for kNone; nullptr = 1
};

Status margin_loss(const MarginArgs& args, StatusInfo* info);

}  // namespace lossx

// ---- Sequence family (csrc/cpu/ctc.cc) ---------------------------------------
namespace lossx {

// torch.nn.functional.ctc_loss: log_probs `T x N x C` (time-major, contiguous),
// one target label sequence per sample, either padded (`N x S`, row-major,
// sample i's labels are targets[i*S .. i*S + target_lengths[i])) or
// concatenated (S = sum(target_lengths) labels, sample after sample).
// loss_i = -log sum over CTC alignments of exp(sum_t log_probs[t, i, path_t]),
// inf when no alignment exists. kMean averages loss_i / max(target_length_i, 1).
// The gradient is PyTorch's: exp(log_probs) - gamma on the sample's first
// input_length frames (gamma = posterior occupation), 0 on the others; that is
// the gradient with respect to logits when log_probs = log_softmax(logits).
struct CtcArgs {
  DType dtype = DType::kF32;
  Device device = Device::kCPU;
  void* stream = nullptr;
  int64_t T = 0, N = 0, C = 0;
  const void* log_probs = nullptr;      // dtype, T x N x C
  const int64_t* targets = nullptr;     // device memory for kCUDA
  bool concatenated = false;
  int64_t S = 0;                        // padded: labels per row of targets; concatenated: total labels
  const int64_t* input_lengths = nullptr;   // N values in [0, T]; host memory on every device
  const int64_t* target_lengths = nullptr;  // N values >= 0; host memory on every device
  int64_t blank = 0;                    // in [0, C); no target label may equal it
  bool zero_infinity = false;           // infinite losses (and their gradients) become 0
  Reduction reduction = Reduction::kMean;
  void* loss = nullptr;                 // acc type: N values for kNone, else one value
  void* grad = nullptr;                 // dtype T x N x C (d loss / d log_probs, torch's convention), or nullptr
  const void* grad_output = nullptr;    // acc type: one value, or N values for kNone; nullptr = 1
};

Status ctc_loss(const CtcArgs& args, StatusInfo* info);

}  // namespace lossx
