// The CUDA backend's entry points (implemented in cuda/*.cu). Same argument
// structs as the CPU path; pointers are device pointers and `stream` is a
// cudaStream_t. Plain C++: no CUDA types leak into this header.
#pragma once
#include "lossx/lossx.h"

namespace lossx {
namespace cuda {

int device_count();  // 0 when no driver or no GPU; never throws
Status cross_entropy(const CrossEntropyArgs& args, StatusInfo* info);
Status softmax_family(const SoftmaxArgs& args, StatusInfo* info);
Status pointwise(const PointwiseArgs& args, StatusInfo* info);
bool pointwise_supported(PointwiseLoss kind);  // cuda/pointwise.cu has a functor for it
Status pairwise(const PairwiseArgs& args, StatusInfo* info);
Status keras_rows(const KerasRowsArgs& args, StatusInfo* info);
Status ctc(const CtcArgs& args, StatusInfo* info);
Status margin(const MarginArgs& args, StatusInfo* info);  // labels are device memory, checked there

}  // namespace cuda
}  // namespace lossx
