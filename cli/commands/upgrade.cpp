#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli/commands/commands.h"
#include "cli/host.h"
#include "core/error.h"
#include "provision/provision.h"

namespace berth::cli {

void setup_upgrade(CLI::App& app, Context& ctx) {
  auto names = std::make_shared<std::vector<std::string>>();
  auto* cmd = app.add_subcommand("upgrade", "Install this berth's agent on machines and restart it");
  cmd->add_option("names", *names, "Machine names")->required();
  cmd->callback([&ctx, names] {
    for (const auto& name : *names) {
      auto lock = ctx.store().lock(name);
      MachineRecord record = ctx.store().load(name);
      Steps step(name);
      step("uploading berth-agent");
      auto ssh = connect_ssh(ctx, record, std::chrono::seconds(60));
      provision::detect(*ssh)->replace_agent(ctx.agent_binary());
      step("waiting for the agent over TLS");
      wait_for_agent(agent_endpoint(ctx, record), std::chrono::seconds(30));
      std::string err;
      record.agent_version = agent_docker_version(agent_endpoint(ctx, record), std::chrono::seconds(5), &err);
      ctx.store().save(record);
      step("");
      fmt::print("{}: berth-agent {}\n", name, record.agent_version);
    }
  });
}

}  // namespace berth::cli
