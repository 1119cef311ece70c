// The one dispatch table: (loss family, device) -> implementation. dtype
// dispatch happens inside each backend (one templated kernel per compute type,
// SIMD target chosen by Highway at run time). Combinations that do not exist
// return a clear status instead of failing somewhere deeper.
#include <cstdio>
#include <cstring>

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
#ifdef LOSSX_WITH_CUDA
      return cuda::keras_rows(a, info);
#else
      return no_cuda(info);
#endif
  }
  return fail(info, Status::kUnsupported, "unknown device");
}

Status sigmoid_cross_entropy(const SigmoidCEArgs& a, StatusInfo* info) {
  if (!valid_dtype(a.dtype)) return fail(info, Status::kUnsupported, "unsupported dtype");
  if (a.n < 0) return fail(info, Status::kInvalidArgument, "need n >= 0");
  if (a.loss == nullptr) return fail(info, Status::kInvalidArgument, "loss output is required");
  // The pointwise family's kernel (reduction "none"), on either device.
  PointwiseArgs p;
  p.dtype = a.dtype;
  p.device = a.device;
  p.stream = a.stream;
  p.kind = PointwiseLoss::kTfSigmoidCE;
  p.n = a.n;
  p.input = a.logits;
  p.target = a.labels;
  p.reduction = Reduction::kNone;
  p.loss = a.loss;
  p.grad_input = a.grad;
  p.grad_output = a.grad_output;
  return pointwise(p, info);
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
  if (a.kind == PointwiseLoss::kGaussianNLL && a.n > 0 && a.var == nullptr)
    return fail(info, Status::kInvalidArgument, "gaussian_nll_loss needs var");
  if (a.kind == PointwiseLoss::kMarginRanking && a.n > 0 && a.var == nullptr)
    return fail(info, Status::kInvalidArgument, "margin_ranking_loss needs its +-1 target (the var operand)");
  if (!(a.gamma >= 0.0)) return fail(info, Status::kInvalidArgument, "gamma must be >= 0");
  if (a.row_len < 0 || (a.row_len > 0 && a.n % a.row_len != 0))
    return fail(info, Status::kInvalidArgument, "row_len must be >= 0 and divide n");
  if (a.grad_target && std::strncmp(pointwise_name(a.kind), "keras.", 6) == 0)
    return fail(info, Status::kInvalidArgument, "Keras losses give no gradient with respect to y_true (target)");
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
#ifdef LOSSX_WITH_CUDA
      return cuda::margin(a, info);
#else
      return no_cuda(info);
#endif
  }
  return fail(info, Status::kUnsupported, "unknown device");
}

}  // namespace lossx

// ---- Sequence family (CTC) ---------------------------------------------------
#include "cpu/ctc.h"

namespace lossx {

// Lengths live in host memory on every device (as in PyTorch), so they are
// checked here once; labels are checked by each backend, where they live.
// Every check runs before any kernel reads log_probs or targets through them.
Status ctc_loss(const CtcArgs& a, StatusInfo* info) {
  if (!valid_dtype(a.dtype)) return fail(info, Status::kUnsupported, "ctc_loss: unsupported dtype");
  if (a.T < 0 || a.N < 0 || a.C < 0 || a.S < 0)
    return fail(info, Status::kInvalidArgument, "ctc_loss: need T, N, C and S >= 0");
  char msg[240];
  if (a.blank < 0 || a.blank >= a.C) {
    std::snprintf(msg, sizeof(msg), "ctc_loss: blank is %lld but must be in [0, C) = [0, %lld)",
                  static_cast<long long>(a.blank), static_cast<long long>(a.C));
    return fail(info, Status::kInvalidArgument, msg, -1, a.blank);
  }
  if (a.reduction != Reduction::kNone && a.reduction != Reduction::kMean && a.reduction != Reduction::kSum)
    return fail(info, Status::kInvalidArgument, "ctc_loss: unknown reduction");
  if (a.loss == nullptr || (a.T * a.N * a.C > 0 && a.log_probs == nullptr) ||
      (a.N > 0 && (a.input_lengths == nullptr || a.target_lengths == nullptr)) || (a.S > 0 && a.targets == nullptr))
    return fail(info, Status::kInvalidArgument, "ctc_loss: log_probs, targets, lengths and loss are required");
  if (!a.concatenated && a.S > 0 && a.N > INT64_MAX / a.S)
    return fail(info, Status::kInvalidArgument, "ctc_loss: targets are too large");
  int64_t total = 0;  // labels used so far (concatenated layout)
  for (int64_t i = 0; i < a.N; ++i) {
    const int64_t il = a.input_lengths[i], tl = a.target_lengths[i];
    if (il < 0 || il > a.T) {
      std::snprintf(msg, sizeof(msg),
                    "ctc_loss: input_lengths[%lld] is %lld, but it must be in [0, T] = [0, %lld] "
                    "(log_probs has %lld frames)",
                    static_cast<long long>(i), static_cast<long long>(il), static_cast<long long>(a.T),
                    static_cast<long long>(a.T));
      return fail(info, Status::kInvalidArgument, msg, i, il);
    }
    if (tl < 0) {
      std::snprintf(msg, sizeof(msg), "ctc_loss: target_lengths[%lld] is %lld; lengths must be >= 0",
                    static_cast<long long>(i), static_cast<long long>(tl));
      return fail(info, Status::kInvalidArgument, msg, i, tl);
    }
    if (!a.concatenated && tl > a.S) {
      std::snprintf(msg, sizeof(msg),
                    "ctc_loss: target_lengths[%lld] is %lld, but padded targets hold only S = %lld labels "
                    "per sample",
                    static_cast<long long>(i), static_cast<long long>(tl), static_cast<long long>(a.S));
      return fail(info, Status::kInvalidArgument, msg, i, tl);
    }
    if (a.concatenated) {
      if (tl > a.S - total) {  // never overflows: both sides are in [0, S]
        std::snprintf(msg, sizeof(msg),
                      "ctc_loss: target_lengths[%lld] is %lld, which takes the running sum of target_lengths "
                      "to %lld, past the %lld concatenated targets",
                      static_cast<long long>(i), static_cast<long long>(tl),
                      static_cast<long long>(total) + static_cast<long long>(tl), static_cast<long long>(a.S));
        return fail(info, Status::kInvalidArgument, msg, i, tl);
      }
      total += tl;
    }
  }
  if (a.concatenated && total != a.S) {
    std::snprintf(msg, sizeof(msg),
                  "ctc_loss: target_lengths sum to %lld, but there are %lld concatenated targets; "
                  "1-D targets must hold exactly sum(target_lengths) labels",
                  static_cast<long long>(total), static_cast<long long>(a.S));
    return fail(info, Status::kInvalidArgument, msg, -1, total);
  }
  switch (a.device) {
    case Device::kCPU:
      return cpu::cpu_ctc(a, info);
    case Device::kCUDA:
#ifdef LOSSX_WITH_CUDA
      return cuda::ctc(a, info);
#else
      return no_cuda(info);
#endif
  }
  return fail(info, Status::kUnsupported, "unknown device");
}

}  // namespace lossx
