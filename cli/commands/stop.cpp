#include <CLI/CLI.hpp>

#include "cli/commands/commands.h"
#include "cli/host.h"

namespace berth::cli {

void setup_stop(CLI::App& app, Context& ctx) {
  auto names = std::make_shared<std::vector<std::string>>();
  auto* cmd = app.add_subcommand("stop", "Stop a machine cleanly");
  cmd->add_option("names", *names, "Machine names")->required();
  cmd->callback([&ctx, names] {
    for (const auto& name : *names) change_power(ctx, name, PowerOp::Stop);
  });
}

}  // namespace berth::cli
