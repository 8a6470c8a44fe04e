#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli/commands/commands.h"
#include "cli/host.h"
#include "core/error.h"

namespace berth::cli {

void setup_active(CLI::App& app, Context& ctx) {
  auto* cmd = app.add_subcommand("active", "Print the machine docker points at ($DOCKER_HOST or the current context)");
  cmd->callback([&ctx] {
    auto active = active_machine(ctx);
    if (!active) throw Error("no machine is active: DOCKER_HOST and the docker context name none of berth's machines");
    fmt::print("{}\n", *active);
  });
}

}  // namespace berth::cli
