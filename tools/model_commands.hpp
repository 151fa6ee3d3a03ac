#pragma once
// The `torchlet` tool's model commands (predict, check, info), compiled in their own translation unit because
// they pull in the models; tools/torchlet.cpp dispatches to them.
#include <stdexcept>
#include <string>
#include <vector>

namespace torchlet::cli {

/// A command line that does not make sense: the tool prints it with the usage and exits 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Runs `args` = {"predict" | "check" | "info", options...}; returns the exit status. Throws UsageError for a bad
/// command line and torchlet::Error for a refused file.
int run_model_command(const std::vector<std::string>& args);

}  // namespace torchlet::cli
