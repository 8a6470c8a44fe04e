#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli/commands/commands.h"
#include "cli/host.h"
#include "core/error.h"

namespace berth::cli {

// berth version [NAME]: this berth's version, and what the machine's engine
// (berth-agent, or an imported host's dockerd) reports over mutual TLS.
void setup_version(CLI::App& app, Context& ctx) {
  auto name = std::make_shared<std::string>();
  auto* cmd = app.add_subcommand("version", "Print berth's version, and a machine's agent version");
  cmd->add_option("name", *name, "Machine name");
  cmd->callback([&ctx, name] {
    if (name->empty()) {
      fmt::print("berth version {}\n", BERTH_VERSION);
      return;
    }
    auto r = ctx.store().load(*name);  // an unknown machine: only the error
    fmt::print("berth version {}\n", BERTH_VERSION);
    std::string err;
    std::string v = agent_docker_version(agent_endpoint(ctx, r), std::chrono::seconds(10), &err);
    if (v.empty()) throw Error("machine '" + *name + "': the agent did not answer: " + err);
    if (is_engine_host(r)) {
      fmt::print("{}: dockerd {}\n", *name, v);
    } else if (v != BERTH_VERSION) {
      fmt::print("{}: berth-agent {} (this berth ships {}; 'berth upgrade {}' installs it)\n", *name, v,
                 BERTH_VERSION, *name);
    } else {
      fmt::print("{}: berth-agent {}\n", *name, v);
    }
  });
}

}  // namespace berth::cli
