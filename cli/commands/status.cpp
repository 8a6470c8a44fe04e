#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli/commands/commands.h"
#include "cli/host.h"

namespace berth::cli {

void setup_status(CLI::App& app, Context& ctx) {
  auto name = std::make_shared<std::string>();
  auto* cmd = app.add_subcommand("status", "Print a machine's state");
  cmd->add_option("name", *name, "Machine name (default: the active one)");
  cmd->callback([&ctx, name] {
    auto r = ctx.store().load(machine_name_or_active(ctx, *name));
    fmt::print("{}\n", to_string(load_driver(ctx, r)->state(std::chrono::seconds(10))));
  });
}

}  // namespace berth::cli
