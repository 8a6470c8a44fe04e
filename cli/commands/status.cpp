#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli/commands/commands.h"
#include "cli/host.h"
#include "core/error.h"

namespace berth::cli {

void setup_status(CLI::App& app, Context& ctx) {
  auto name = std::make_shared<std::string>();
  auto* cmd = app.add_subcommand("status", "Print a machine's state");
  cmd->add_option("name", *name, "Machine name (default: the active one)");
  cmd->callback([&ctx, name] {
    auto r = ctx.store().load(machine_name_or_active(ctx, *name));
    auto driver = load_driver(ctx, r);
    const auto state = driver->state(std::chrono::seconds(10));
    fmt::print("{}\n", to_string(state));
    // The state alone on stdout, for scripts; why it is Error on stderr.
    if (state == MachineState::Error) {
      std::fflush(stdout);
      if (auto why = error_state_reason(ctx, r, *driver, std::chrono::seconds(5)); !why.empty())
        fmt::print(stderr, "berth: machine '{}': {}\n", r.name, why);
    }
  });
}

}  // namespace berth::cli
