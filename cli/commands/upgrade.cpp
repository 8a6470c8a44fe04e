// berth upgrade NAME...: installs the berth-agent that ships with this berth
// and restarts it. The binary is staged and renamed into place (container
// shims keep executing the old file), and only the agent process restarts, so
// containers, images and volumes are kept.
#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli/cluster.h"
#include "cli/commands/commands.h"
#include "cli/host.h"
#include "core/error.h"
#include "provision/provision.h"

namespace berth::cli {
namespace {

struct UpgradeOptions {
  std::vector<std::string> names;
  bool quiet = false;
};

void upgrade(Context& ctx, const std::string& name, bool quiet) {
  auto lock = ctx.store().lock(name);
  MachineRecord record = ctx.store().load(name);
  if (is_engine_host(record))
    throw UserError(fmt::format("machine '{}' runs docker-machine's dockerd, not berth-agent; there is no agent to upgrade",
                                name));
  const auto& factory = driver_factory(ctx, record);
  if (!factory.capabilities().has_ssh)
    throw UserError(fmt::format("machine '{}': its {} driver has no SSH access, so berth cannot upgrade its agent",
                                name, record.driver));
  const std::string before = record.agent_version;
  const auto binary = ctx.agent_binary();
  auto cancel = ctx.cancel();
  Steps step(name, quiet);
  step("waiting for SSH");
  auto ssh = connect_ssh(ctx, record, std::chrono::seconds(60));
  cancel.throw_if_cancelled();
  step("detecting the host's OS");
  auto prov = provision::detect(*ssh);
  provision::AgentInstall spec{"", binary, {}, record.engine, cluster_install(ctx, record)};
  prov->upgrade_agent(spec, [&](std::string_view s) {
    cancel.throw_if_cancelled();
    step(s);
  });
  step("waiting for the agent over TLS");
  wait_for_agent(agent_endpoint(ctx, record), std::chrono::seconds(30));
  std::string err;
  record.agent_version = agent_docker_version(agent_endpoint(ctx, record), std::chrono::seconds(5), &err);
  if (record.agent_version.empty())
    throw Error(fmt::format("machine '{}': the upgraded agent does not answer: {}; see 'berth logs {}'", name, err, name));
  ctx.store().save(record);
  step("");
  if (before.empty() || before == record.agent_version)
    fmt::print("{}: berth-agent {}\n", name, record.agent_version);
  else
    fmt::print("{}: berth-agent {} (was {})\n", name, record.agent_version, before);
}

}  // namespace

void setup_upgrade(CLI::App& app, Context& ctx) {
  auto o = std::make_shared<UpgradeOptions>();
  auto* cmd = app.add_subcommand(
      "upgrade", "Install this berth's agent on machines and restart it; containers, images and volumes are kept");
  cmd->add_option("names", o->names, "Machine names")->required();
  cmd->add_flag("-q,--quiet", o->quiet, "Do not print the steps");
  cmd->callback([&ctx, o] {
    for (const auto& name : o->names) upgrade(ctx, name, o->quiet);
  });
}

}  // namespace berth::cli
