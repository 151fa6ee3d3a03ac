// Second translation unit of the ODR check: every inline definition must be identical here.
#include "torchlet/torchlet.hpp"

torchlet::Tensor odr_make_in_b() { return torchlet::arange(6).view({2, 3}).t().contiguous().t(); }
