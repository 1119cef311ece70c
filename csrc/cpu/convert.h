// Scalar conversions between the storage dtypes and the compute type, shared
// by every CPU family. Half types are converted row by row into a float
// scratch buffer: their kernels then run the float32 code.
#pragma once
#include <cstdint>
#include <cstring>

#include "hwy/base.h"
#include "lossx/lossx.h"

namespace lossx {
namespace cpu {

// hwy::BF16FromF32 truncates; round to nearest even as every framework does.
inline hwy::bfloat16_t BF16Round(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  hwy::bfloat16_t r;
  if ((u & 0x7fffffffu) > 0x7f800000u) {
    r.bits = static_cast<uint16_t>((u >> 16) | 0x40);  // quiet NaN
  } else {
    u += 0x7fffu + ((u >> 16) & 1u);
    r.bits = static_cast<uint16_t>(u >> 16);
  }
  return r;
}

// IEEE binary16 through the compiler's _Float16 (GCC >= 12, Clang >= 15 on
// x86-64 and AArch64): exact widening, round-to-nearest-even narrowing.
inline float F32FromF16Bits(uint16_t b) {
  _Float16 h;
  std::memcpy(&h, &b, 2);
  return static_cast<float>(h);
}
inline uint16_t F16BitsFromF32(float f) {
  const _Float16 h = static_cast<_Float16>(f);
  uint16_t b;
  std::memcpy(&b, &h, 2);
  return b;
}

template <typename T>
inline T LoadAs(const void* p, DType dt, int64_t i) {
  switch (dt) {
    case DType::kF16: return static_cast<T>(F32FromF16Bits(static_cast<const uint16_t*>(p)[i]));
    case DType::kBF16: return static_cast<T>(hwy::F32FromBF16(static_cast<const hwy::bfloat16_t*>(p)[i]));
    case DType::kF32: return static_cast<T>(static_cast<const float*>(p)[i]);
    default: return static_cast<T>(static_cast<const double*>(p)[i]);
  }
}

template <typename T>
inline void StoreAs(T v, void* p, DType dt, int64_t i) {
  switch (dt) {
    case DType::kF16: static_cast<uint16_t*>(p)[i] = F16BitsFromF32(static_cast<float>(v)); break;
    case DType::kBF16: static_cast<hwy::bfloat16_t*>(p)[i] = BF16Round(static_cast<float>(v)); break;
    case DType::kF32: static_cast<float*>(p)[i] = static_cast<float>(v); break;
    default: static_cast<double*>(p)[i] = static_cast<double>(v); break;
  }
}

// n elements from flat index `off` of a dtype buffer into compute-type `out`.
template <typename T>
inline void ConvertRow(const void* p, DType dt, int64_t off, int64_t n, T* out) {
  for (int64_t j = 0; j < n; ++j) out[j] = LoadAs<T>(p, dt, off + j);
}

// n compute-type values into a dtype buffer at flat index `off`.
template <typename T>
inline void StoreRow(const T* in, int64_t n, void* p, DType dt, int64_t off) {
  for (int64_t j = 0; j < n; ++j) StoreAs<T>(in[j], p, dt, off + j);
}

// True when T is the storage type itself (no conversion needed).
template <typename T>
inline bool IsNative(DType dt) {
  return sizeof(T) == 4 ? dt == DType::kF32 : dt == DType::kF64;
}

}  // namespace cpu
}  // namespace lossx
