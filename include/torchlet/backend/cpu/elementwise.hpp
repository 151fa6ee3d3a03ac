#pragma once
/// \file The elementwise CPU kernel: out[i] = f(in0[i], in1[i], ...) over operands already broadcast to
/// out's shape (any strides), with a contiguous fast path the compiler vectorises.
#include <array>
#include <cstdint>
#include <tuple>
#include <utility>

#include "torchlet/tensor/strided_loop.hpp"
#include "torchlet/tensor/tensor.hpp"

namespace torchlet::detail {
// Names "a Tensor" once per input element type, so the inputs can be a pack.
template <class>
struct tensor_for { using type = Tensor; };

template <class Out, class... In, class F, size_t... I>
inline void map_run(std::array<char*, 1 + sizeof...(In)> p, std::array<int64_t, 1 + sizeof...(In)> s, int64_t n,
                    const F& f, std::index_sequence<I...>) {
  const bool dense = s[0] == static_cast<int64_t>(sizeof(Out)) &&
                     ((s[I + 1] == static_cast<int64_t>(sizeof(In))) && ...);
  if (dense) {
    Out* __restrict o = reinterpret_cast<Out*>(p[0]);
    const std::tuple<const In*...> in{reinterpret_cast<const In*>(p[I + 1])...};
    for (int64_t i = 0; i < n; ++i) o[i] = f(std::get<I>(in)[i]...);
  } else {
    for (int64_t i = 0; i < n; ++i)
      *reinterpret_cast<Out*>(p[0] + i * s[0]) = f(*reinterpret_cast<const In*>(p[I + 1] + i * s[I + 1])...);
  }
}
}  // namespace torchlet::detail

namespace torchlet::cpu {
/// Writes f(in...) into every element of `out`. Each input must have out's shape (expand() it first) and
/// the C++ element types Out / In... must match the tensors' dtypes. Runs on several threads for large work.
template <class Out, class... In, class F>
void map_elements(const Tensor& out, const F& f, const typename detail::tensor_for<In>::type&... in) {
  constexpr size_t K = 1 + sizeof...(In);
  std::array<char*, K> base{static_cast<char*>(out.data_ptr()), static_cast<char*>(in.data_ptr())...};
  std::array<Shape, K> st{detail::byte_strides(out.strides(), sizeof(Out)),
                          detail::byte_strides(in.strides(), sizeof(In))...};
  detail::for_each_strided<K>(
      out.sizes(), base, st, [&f](std::array<char*, K> p, std::array<int64_t, K> s, int64_t n) {
        detail::map_run<Out, In...>(p, s, n, f, std::index_sequence_for<In...>{});
      });
}
}  // namespace torchlet::cpu
