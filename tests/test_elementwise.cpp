// Filled in by the kernel work for this area.
#include "helpers.hpp"
