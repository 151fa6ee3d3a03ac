#pragma once
/// \file gradcheck: compares the gradients autograd computes with central finite differences (use float64).
#include <cmath>
#include <functional>
#include <sstream>
#include <string>

#include "torchlet/autograd/node.hpp"
#include "torchlet/tensor/random.hpp"

namespace torchlet::autograd {

/// Step and tolerances of gradcheck (PyTorch's defaults: eps 1e-6, atol 1e-5, rtol 1e-3).
struct GradcheckOptions {
  double eps = 1e-6;
  double atol = 1e-5;
  double rtol = 1e-3;
  uint64_t seed = 1234;  ///< seeds the random projection of non-scalar outputs
};

/// Outcome of gradcheck: ok, or the first mismatch described in `message`.
struct GradcheckResult {
  bool ok = true;
  std::string message;
  double max_abs_error = 0;
};

/// Checks d f(inputs) / d inputs for every input that requires grad. The output is reduced to a scalar by a
/// fixed random projection, so every output element matters. Inputs should be float64 leaves.
inline GradcheckResult gradcheck(const std::function<Tensor(const TensorList&)>& f, const TensorList& inputs,
                                 const GradcheckOptions& opt = {}) {
  GradcheckResult result;
  // analytical: backward of sum(out * projection), i.e. out.backward(projection)
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) {
      Tensor h = t;
      h.set_grad(Tensor());
    }
  const Tensor out = f(inputs);
  Tensor projection = empty(out.sizes(), TensorOptions(out.dtype()));
  {
    Generator g(opt.seed);
    NoGradGuard no_grad;
    normal_(projection, 0, 1, g);
  }
  out.backward(projection);
  auto project = [&](const Tensor& o) {
    const Tensor a = o.detach().to(kFloat64).contiguous(), p = projection.to(kFloat64).contiguous();
    double s = 0;
    for (int64_t i = 0; i < a.numel(); ++i) s += a.data<double>()[i] * p.data<double>()[i];
    return s;
  };
  NoGradGuard no_grad;
  for (size_t k = 0; k < inputs.size(); ++k) {
    const Tensor& x = inputs[k];
    if (!x.defined() || !x.requires_grad()) continue;
    TORCHLET_CHECK(x.dtype() == kFloat64 && x.is_contiguous(), DTypeError,
                   "[gradcheck] inputs must be contiguous float64 tensors, input ", k, " is ", x.dtype());
    const Tensor analytical = x.grad().defined() ? x.grad().to(kFloat64) : zeros(x.sizes(), kFloat64);
    double* data = x.data<double>();
    for (int64_t i = 0; i < x.numel(); ++i) {
      const double saved = data[i];
      data[i] = saved + opt.eps;
      const double up = project(f(inputs));
      data[i] = saved - opt.eps;
      const double down = project(f(inputs));
      data[i] = saved;
      const double numerical = (up - down) / (2 * opt.eps);
      const double got = analytical.contiguous().data<double>()[i];
      const double err = std::fabs(got - numerical);
      result.max_abs_error = std::max(result.max_abs_error, err);
      if (result.ok && err > opt.atol + opt.rtol * std::fabs(numerical)) {
        std::ostringstream os;
        os << "input " << k << " element " << i << ": analytical " << got << ", numerical " << numerical;
        result.ok = false;
        result.message = os.str();
      }
    }
  }
  return result;
}
}  // namespace torchlet::autograd
