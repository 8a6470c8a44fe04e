#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli/commands/commands.h"
#include "cli/host.h"

namespace berth::cli {

void setup_url(CLI::App& app, Context& ctx) {
  auto name = std::make_shared<std::string>();
  auto* cmd = app.add_subcommand("url", "Print a machine's Docker URL");
  cmd->add_option("name", *name, "Machine name (default: the active one)");
  cmd->callback([&ctx, name] {
    auto r = ctx.store().load(machine_name_or_active(ctx, *name));
    fmt::print("{}\n", machine_url(ctx, r));
  });
}

}  // namespace berth::cli
