#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli/commands/commands.h"
#include "cli/host.h"

namespace berth::cli {

void setup_ip(CLI::App& app, Context& ctx) {
  auto name = std::make_shared<std::string>();
  auto* cmd = app.add_subcommand("ip", "Print a machine's IP address or host name");
  cmd->add_option("name", *name, "Machine name (default: the active one)");
  cmd->callback([&ctx, name] {
    auto r = ctx.store().load(machine_name_or_active(ctx, *name));
    fmt::print("{}\n", load_driver(ctx, r)->ip());
  });
}

}  // namespace berth::cli
