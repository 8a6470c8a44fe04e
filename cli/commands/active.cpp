#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli/commands/commands.h"
#include "cli/host.h"
#include "core/error.h"

namespace berth::cli {

void setup_active(CLI::App& app, Context& ctx) {
  auto timeout = std::make_shared<int>(10);
  auto* cmd = app.add_subcommand("active", "Print the machine docker points at ($DOCKER_HOST or the current context)");
  // docker-machine's -t bounds its host checks; berth asks no host, so it only accepts it.
  cmd->add_option("-t,--timeout", *timeout, "Accepted for docker-machine's scripts: berth asks no host");
  cmd->callback([&ctx, timeout] {
    auto active = active_machine(ctx);
    if (!active) throw Error("no machine is active: DOCKER_HOST and the docker context name none of berth's machines");
    fmt::print("{}\n", *active);
  });
}

}  // namespace berth::cli
