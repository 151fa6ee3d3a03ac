// Second translation unit of the ODR check: every inline definition must be identical here.
#include "torchlet/checkpoint.hpp"
#include "torchlet/data.hpp"
#include "torchlet/io.hpp"
#include "torchlet/models.hpp"
#include "torchlet/torchlet.hpp"
#include "torchlet/train/checkpoint_manager.hpp"
#include "torchlet/train/metrics_log.hpp"
#include "torchlet/train/progress.hpp"

torchlet::Tensor odr_make_in_b() { return torchlet::arange(6).view({2, 3}).t().contiguous().t(); }
