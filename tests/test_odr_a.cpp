// ODR check: every umbrella header (torchlet, io, checkpoint, models, data, train) in two translation units linked into one program (see test_odr_b.cpp).
#include <doctest/doctest.h>

#include "torchlet/checkpoint.hpp"
#include "torchlet/data.hpp"
#include "torchlet/io.hpp"
#include "torchlet/models.hpp"
#include "torchlet/torchlet.hpp"
#include "torchlet/train/checkpoint_manager.hpp"
#include "torchlet/train/metrics_log.hpp"
#include "torchlet/train/progress.hpp"

torchlet::Tensor odr_make_in_b();

TEST_CASE("umbrella header links from two translation units") {
  torchlet::Tensor a = torchlet::arange(6).view({2, 3});
  torchlet::Tensor b = odr_make_in_b();
  CHECK(a.sizes() == b.sizes());
  CHECK(b[1][2].item<int64_t>() == 5);
  CHECK_FALSE(b.is_contiguous());
}
