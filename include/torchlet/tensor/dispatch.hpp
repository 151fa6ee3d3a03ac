#pragma once
/// \file Runs a templated lambda with the C++ type of a runtime dtype: `dispatch_all(t, "op", [&]<class T>() {...})`.
#include "torchlet/core/dtype.hpp"
#include "torchlet/core/error.hpp"

namespace torchlet::detail {

/// Calls f.template operator()<T>() for any computable dtype (bool, integers, the four floats).
template <class F>
decltype(auto) dispatch_all(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::Bool: return f.template operator()<bool>();
    case DType::UInt8: return f.template operator()<uint8_t>();
    case DType::Int8: return f.template operator()<int8_t>();
    case DType::Int16: return f.template operator()<int16_t>();
    case DType::Int32: return f.template operator()<int32_t>();
    case DType::Int64: return f.template operator()<int64_t>();
    case DType::Float16: return f.template operator()<Half>();
    case DType::BFloat16: return f.template operator()<BFloat16>();
    case DType::Float32: return f.template operator()<float>();
    case DType::Float64: return f.template operator()<double>();
    default: break;
  }
  TORCHLET_THROW(DTypeError, "[", op, "] dtype ", t, " is storage-only: no kernel computes on it");
}

/// Like dispatch_all, but also moves the storage-only integer dtypes (uint16/32/64) and float8 as raw bits;
/// for copies between identical dtypes.
template <class F>
decltype(auto) dispatch_bits(DType t, const char* op, F&& f) {
  switch (element_size(t)) {
    case 1: return f.template operator()<uint8_t>();
    case 2: return f.template operator()<uint16_t>();
    case 4: return f.template operator()<uint32_t>();
    case 8: return f.template operator()<uint64_t>();
    default: break;
  }
  TORCHLET_THROW(DTypeError, "[", op, "] unsupported dtype ", t);
}

/// Calls f for float16, bfloat16, float32 and float64; raises DTypeError naming `op` otherwise.
template <class F>
decltype(auto) dispatch_floating(DType t, const char* op, F&& f) {
  switch (t) {
    case DType::Float16: return f.template operator()<Half>();
    case DType::BFloat16: return f.template operator()<BFloat16>();
    case DType::Float32: return f.template operator()<float>();
    case DType::Float64: return f.template operator()<double>();
    default: break;
  }
  TORCHLET_THROW(DTypeError, "[", op, "] expected a floating point dtype (float16, bfloat16, float32, float64), got ",
                 t);
}
}  // namespace torchlet::detail
