// The one dispatch table: (loss family, device) -> implementation. dtype
// dispatch happens inside each backend (one templated kernel per compute type,
// SIMD target chosen by Highway at run time). Combinations that do not exist
// return a clear status instead of failing somewhere deeper.
#include <cstdio>

#include "cpu/keras_rows.h"
#include "cpu/pointwise.h"
#include "cpu/softmax.h"
#include "lossx/lossx.h"
#include "status.h"
#ifdef LOSSX_WITH_CUDA
#include "lossx/cuda.h"
#endif

namespace lossx {
namespace {


Status no_cuda(StatusInfo* info) {
  return fail(info, Status::kNotCompiled,
              "this lossx was built without CUDA (nvcc was not found at build time); "
              "rebuild with LOSSX_CUDA=ON to use GPU arrays");
}

bool valid_dtype(DType d) {
  return d == DType::kF32 || d == DType::kF64 || d == DType::kF16 || d == DType::kBF16;
}

}  // namespace

Status cross_entropy(const CrossEntropyArgs& a, StatusInfo* info) {
  if (!valid_dtype(a.dtype)) return fail(info, Status::kUnsupported, "unsupported dtype");
  if (a.rows < 0 || a.classes < 1) return fail(info, Status::kInvalidArgument, "need rows >= 0 and classes >= 1");
  if ((a.labels == nullptr) == (a.target == nullptr))
    return fail(info, Status::kInvalidArgument, "give exactly one of labels and target");
  if (!(a.label_smoothing >= 0.0 && a.label_smoothing <= 1.0))
    return fail(info, Status::kInvalidArgument, "label_smoothing must be in [0, 1]");
  if (!(a.softcap >= 0.0)) return fail(info, Status::kInvalidArgument, "softcap must be >= 0");
  if (a.loss == nullptr) return fail(info, Status::kInvalidArgument, "loss output is required");
  switch (a.device) {
    case Device::kCPU:
      return cpu::cpu_cross_entropy(a, info);
    case Device::kCUDA:
#ifdef LOSSX_WITH_CUDA
      return cuda::cross_entropy(a, info);
#else
      return no_cuda(info);
#endif
  }
  return fail(info, Status::kUnsupported, "unknown device");
}

Status softmax_family(const SoftmaxArgs& a, StatusInfo* info) {
  if (!valid_dtype(a.dtype)) return fail(info, Status::kUnsupported, "unsupported dtype");
  if (a.rows < 0 || a.cols < 1) return fail(info, Status::kInvalidArgument, "need rows >= 0 and cols >= 1");
  switch (a.device) {
    case Device::kCPU:
      return cpu::cpu_softmax_family(a, info);
    case Device::kCUDA:
#ifdef LOSSX_WITH_CUDA
      return cuda::softmax_family(a, info);
#else
      return no_cuda(info);
#endif
  }
  return fail(info, Status::kUnsupported, "unknown device");
}

Status keras_rows(const KerasRowsArgs& a, StatusInfo* info) {
  if (!valid_dtype(a.dtype)) return fail(info, Status::kUnsupported, "unsupported dtype");
  if (a.rows < 0 || a.cols < 1) return fail(info, Status::kInvalidArgument, "need rows >= 0 and cols >= 1");
  if (a.loss == nullptr || a.y_pred == nullptr) return fail(info, Status::kInvalidArgument, "y_pred and loss are required");
  const bool sparse = a.kind == KerasLoss::kSparseCategoricalCE;
  if (sparse ? a.labels == nullptr : a.y_true == nullptr)
    return fail(info, Status::kInvalidArgument, "sparse losses need labels, the others y_true");
  if (!(a.label_smoothing >= 0.0 && a.label_smoothing <= 1.0))
    return fail(info, Status::kInvalidArgument, "label_smoothing must be in [0, 1]");
  switch (a.device) {
    case Device::kCPU:
      return cpu::cpu_keras_rows(a, info);
    case Device::kCUDA:
      return fail(info, Status::kNotCompiled, "Keras row losses have no CUDA kernel yet");
  }
  return fail(info, Status::kUnsupported, "unknown device");
}

Status sigmoid_cross_entropy(const SigmoidCEArgs& a, StatusInfo* info) {
  if (!valid_dtype(a.dtype)) return fail(info, Status::kUnsupported, "unsupported dtype");
  if (a.n < 0) return fail(info, Status::kInvalidArgument, "need n >= 0");
  if (a.loss == nullptr) return fail(info, Status::kInvalidArgument, "loss output is required");
  switch (a.device) {
    case Device::kCPU:
      return cpu::cpu_sigmoid_cross_entropy(a, info);
    case Device::kCUDA:
      return fail(info, Status::kNotCompiled, "sigmoid_cross_entropy_with_logits has no CUDA kernel yet");
  }
  return fail(info, Status::kUnsupported, "unknown device");
}

Status pointwise(const PointwiseArgs& a, StatusInfo* info) {
  if (!valid_dtype(a.dtype)) return fail(info, Status::kUnsupported, "unsupported dtype");
  if (static_cast<int>(a.kind) < 0 || a.kind >= PointwiseLoss::kCount)
    return fail(info, Status::kInvalidArgument, "unknown pointwise loss");
  if (a.n < 0) return fail(info, Status::kInvalidArgument, "need n >= 0");
  if (a.loss == nullptr || (a.n > 0 && (a.input == nullptr || a.target == nullptr)))
    return fail(info, Status::kInvalidArgument, "input, target and loss are required");
  if ((a.weight && a.weight_period < 1) || (a.pos_weight && a.pos_weight_period < 1))
    return fail(info, Status::kInvalidArgument, "weight periods must be >= 1");
  if (!(a.beta >= 0.0)) return fail(info, Status::kInvalidArgument, "beta/delta/eps must be >= 0");
  switch (a.device) {
    case Device::kCPU:
      return cpu::cpu_pointwise(a, info);
    case Device::kCUDA:
#ifdef LOSSX_WITH_CUDA
      return cuda::pointwise(a, info);
#else
      return no_cuda(info);
#endif
  }
  return fail(info, Status::kUnsupported, "unknown device");
}

bool pointwise_has_cuda(PointwiseLoss kind) {
#ifdef LOSSX_WITH_CUDA
  return cuda::pointwise_supported(kind);
#else
  (void)kind;
  return false;
#endif
}

const char* pointwise_name(PointwiseLoss kind) {
  static const char* const kNames[] = {
#define LOSSX_POINTWISE(id, name, fn) name,
#include "lossx/pointwise_losses.def"
#undef LOSSX_POINTWISE
  };
  const int k = static_cast<int>(kind);
  return k >= 0 && k < static_cast<int>(PointwiseLoss::kCount) ? kNames[k] : "";
}

}  // namespace lossx

// ---- Pairwise/embedding family ---------------------------------------------
#include <cmath>

#include "cpu/embedding.h"

namespace lossx {

Status pairwise_embedding(const PairwiseArgs& a, StatusInfo* info) {
  if (!valid_dtype(a.dtype)) return fail(info, Status::kUnsupported, "unsupported dtype");
  if (a.rows < 0 || a.dim < 0) return fail(info, Status::kInvalidArgument, "need rows >= 0 and dim >= 0");
  if (a.loss_out == nullptr || a.x0 == nullptr || a.x1 == nullptr)
    return fail(info, Status::kInvalidArgument, "inputs and the loss output are required");
  if (a.loss == PairLoss::kTriplet) {
    if (a.x2 == nullptr) return fail(info, Status::kInvalidArgument, "triplet_margin_loss needs a negative");
    if (!(a.p > 0.0) || !std::isfinite(a.p))
      return fail(info, Status::kInvalidArgument, "triplet_margin_loss: p must be finite and > 0");
  } else if (a.loss == PairLoss::kCosine) {
    if (a.target == nullptr) return fail(info, Status::kInvalidArgument, "cosine_embedding_loss needs a target");
  } else {
    return fail(info, Status::kInvalidArgument, "unknown pairwise loss");
  }
  switch (a.device) {
    case Device::kCPU:
      return cpu::cpu_pairwise(a, info);
    case Device::kCUDA:
#ifdef LOSSX_WITH_CUDA
      return cuda::pairwise(a, info);
#else
      return no_cuda(info);
#endif
  }
  return fail(info, Status::kUnsupported, "unknown device");
}

}  // namespace lossx

// ---- Margin family -----------------------------------------------------------
namespace lossx {
namespace cpu {
Status cpu_margin(const MarginArgs& a, StatusInfo* info);
}

Status margin_loss(const MarginArgs& a, StatusInfo* info) {
  if (!valid_dtype(a.dtype)) return fail(info, Status::kUnsupported, "unsupported dtype");
  if (a.rows < 0 || a.classes < 1) return fail(info, Status::kInvalidArgument, "need rows >= 0 and classes >= 1");
  if (a.loss_out == nullptr || a.x0 == nullptr) return fail(info, Status::kInvalidArgument, "input and loss are required");
  switch (a.loss) {
    case MarginLoss::kRanking:
      if (a.x1 == nullptr || a.target == nullptr || a.classes != 1)
        return fail(info, Status::kInvalidArgument, "margin_ranking_loss needs input2, target and classes = 1");
      break;
    case MarginLoss::kMultilabelSoft:
      if (a.target == nullptr) return fail(info, Status::kInvalidArgument, "multilabel_soft_margin_loss needs a target");
      break;
    case MarginLoss::kMultiMargin:
      if (a.labels == nullptr) return fail(info, Status::kInvalidArgument, "multi_margin_loss needs labels");
      if (a.p != 1 && a.p != 2) return fail(info, Status::kInvalidArgument, "multi_margin_loss: p must be 1 or 2");
      break;
    case MarginLoss::kMultilabelMargin:
      if (a.labels == nullptr) return fail(info, Status::kInvalidArgument, "multilabel_margin_loss needs labels");
      break;
    default:
      return fail(info, Status::kInvalidArgument, "unknown margin loss");
  }
  switch (a.device) {
    case Device::kCPU:
      return cpu::cpu_margin(a, info);
    case Device::kCUDA:
      return fail(info, Status::kNotCompiled, "margin losses have no CUDA kernel yet");
  }
  return fail(info, Status::kUnsupported, "unknown device");
}

}  // namespace lossx
