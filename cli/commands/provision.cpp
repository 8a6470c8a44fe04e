#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli/commands/commands.h"
#include "cli/host.h"
#include "core/error.h"

namespace berth::cli {
namespace {

struct ProvisionOptions {
  std::vector<std::string> names;
  bool repin = false;
  bool quiet = false;
};

void run_provision(Context& ctx, const ProvisionOptions& o) {
  install_interrupt_handler(ctx);
  for (const auto& name : o.names) {
    auto lock = ctx.store().lock(name);
    MachineRecord record = ctx.store().load(name);
    refuse_on_engine_host(record, "provision");
    if (!driver_factory(ctx, record).capabilities().has_ssh)
      throw UserError("machine '" + name + "' uses the " + record.driver + " driver, which berth cannot provision");
    if (o.repin) {
      fmt::print(stderr, "{}: forgetting the pinned host key {}\n", name, record.ssh.host_key_fingerprint);
      record.ssh.host_key_fingerprint.clear();
    }
    Steps step(name, o.quiet);
    if (record.tls.server_cert.empty()) {
      step("issuing TLS certificates");
      issue_machine_certs(ctx, record);
      ctx.store().save(record);
    }
    refresh_certs_if_address_changed(ctx, record, step.reporter());
    provision_machine(ctx, record, step.reporter());
    record.phase = "ready";
    ctx.store().save(record);
    step("");
    fmt::print("Machine {} is provisioned\n", name);
  }
}

}  // namespace

void setup_provision(CLI::App& app, Context& ctx) {
  auto o = std::make_shared<ProvisionOptions>();
  auto* cmd = app.add_subcommand("provision", "Install or re-install berth-agent on machines");
  cmd->add_option("names", o->names, "Machine names")->required();
  cmd->add_flag("-q,--quiet", o->quiet, "Do not print the steps");
  cmd->add_flag("--repin-host-key", o->repin, "Trust the host's current SSH host key (after a reinstall)");
  cmd->callback([&ctx, o] { run_provision(ctx, *o); });
}

}  // namespace berth::cli
