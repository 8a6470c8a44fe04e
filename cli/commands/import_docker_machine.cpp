#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli/commands/commands.h"
#include "cli/host.h"
#include "core/docker_machine_store.h"
#include "core/error.h"

namespace berth::cli {
namespace {

namespace dm = docker_machine;

struct ImportOptions {
  std::string from;
  std::vector<std::string> names;
};

// Checks that this berth can load the planned machine before anything is written.
void check_loadable(Context& ctx, const dm::ImportPlan& plan) {
  const MachineRecord& r = plan.record;
  if (!ctx.drivers.find(r.driver))
    throw UserError("docker-machine host '" + r.name + "' uses the " + r.driver +
                    " driver, which this berth was built without; skipped");
  load_driver(ctx, r)->url(r.engine.port);
}

void run_import(Context& ctx, const ImportOptions& o) {
  const fs::path root = o.from.empty() ? dm::default_root() : fs::path(o.from);
  std::vector<std::string> names = o.names;
  if (names.empty()) {
    names = dm::list_hosts(root);
    if (names.empty()) {
      fmt::print("No docker-machine hosts in {}\n", root.string());
      return;
    }
  }
  const auto env = dm::Environment::from_process();
  int imported = 0, skipped = 0, failed = 0;
  for (const auto& name : names) {
    try {
      if (ctx.store().exists(name)) {
        fmt::print(stderr, "berth: {}: skipped: berth already has a machine named '{}' (left as it is; "
                           "'berth rm {}' first to import it again)\n", name, name, name);
        ++skipped;
        continue;
      }
      dm::Host host = dm::read_host(root, name);
      dm::ImportPlan plan = dm::plan_import(host, ctx.store().machine_dir(name), ctx.secrets(), env);
      check_loadable(ctx, plan);
      dm::write_import(ctx.store(), plan);
      const MachineRecord& r = plan.record;
      fmt::print("Imported {} ({} driver, dockerd at {})\n", name, r.driver, load_driver(ctx, r)->url(r.engine.port));
      ++imported;
    } catch (const Interrupted&) {
      throw;
    } catch (const Error& e) {
      fmt::print(stderr, "berth: error: {}\n", e.what());
      ++failed;
    }
  }
  if (names.size() > 1) fmt::print("{} imported, {} skipped, {} failed\n", imported, skipped, failed);
  if (failed) ctx.exit_code = kExitError;
}

}  // namespace

void setup_import_docker_machine(CLI::App& app, Context& ctx) {
  auto o = std::make_shared<ImportOptions>();
  auto* cmd = app.add_subcommand(
      "import-docker-machine",
      "Take over docker-machine hosts (generic, none, virtualbox, digitalocean, amazonec2); they keep their dockerd");
  cmd->add_option("--from", o->from, "docker-machine's store (default $MACHINE_STORAGE_PATH or ~/.docker/machine)");
  cmd->add_option("names", o->names, "Hosts to import (default: all)");
  cmd->callback([&ctx, o] { run_import(ctx, *o); });
}

}  // namespace berth::cli
