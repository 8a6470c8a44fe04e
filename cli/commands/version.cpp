#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli/commands/commands.h"
#include "cli/host.h"
#include "core/error.h"

namespace berth::cli {

void setup_version(CLI::App& app, Context& ctx) {
  auto name = std::make_shared<std::string>();
  auto* cmd = app.add_subcommand("version", "Print berth's version, and a machine's agent version");
  cmd->add_option("name", *name, "Machine name");
  cmd->callback([&ctx, name] {
    fmt::print("berth version {}\n", BERTH_VERSION);
    if (name->empty()) return;
    auto r = ctx.store().load(*name);
    std::string err;
    std::string v = agent_docker_version(agent_endpoint(ctx, r), std::chrono::seconds(10), &err);
    if (v.empty()) throw Error("machine '" + *name + "': the agent did not answer: " + err);
    fmt::print("{}: berth-agent {}\n", *name, v);
  });
}

}  // namespace berth::cli
