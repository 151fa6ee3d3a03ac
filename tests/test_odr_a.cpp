// ODR check: the umbrella header in two translation units linked into one program (see test_odr_b.cpp).
#include <doctest/doctest.h>

#include "torchlet/torchlet.hpp"

torchlet::Tensor odr_make_in_b();

TEST_CASE("umbrella header links from two translation units") {
  torchlet::Tensor a = torchlet::arange(6).view({2, 3});
  torchlet::Tensor b = odr_make_in_b();
  CHECK(a.sizes() == b.sizes());
  CHECK(b[1][2].item<int64_t>() == 5);
  CHECK_FALSE(b.is_contiguous());
}
