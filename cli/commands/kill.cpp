#include <CLI/CLI.hpp>

#include "cli/commands/commands.h"
#include "cli/host.h"

namespace berth::cli {

void setup_kill(CLI::App& app, Context& ctx) {
  auto names = std::make_shared<std::vector<std::string>>();
  auto quiet = std::make_shared<bool>(false);
  auto* cmd = app.add_subcommand("kill", "Power a machine off at once");
  cmd->add_option("names", *names, "Machine names")->required();
  cmd->add_flag("-q,--quiet", *quiet, "Do not print the steps");
  cmd->callback([&ctx, names, quiet] {
    for (const auto& name : *names) change_power(ctx, name, PowerOp::Kill, *quiet);
  });
}

}  // namespace berth::cli
