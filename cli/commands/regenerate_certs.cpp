#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli/commands/commands.h"
#include "cli/host.h"
#include "cli/prompt.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/tls.h"
#include "provision/provision.h"

namespace berth::cli {
namespace {

struct RegenerateOptions {
  std::vector<std::string> names;
  bool force = false;
  bool client_certs = false;
};

void run_regenerate(Context& ctx, const RegenerateOptions& o) {
  for (const auto& name : o.names) ctx.store().load(name);  // before asking: NotFound says which
  if (!o.force && !confirm("Regenerate TLS certificates for " + fmt::format("{}", fmt::join(o.names, ", ")) + "?", "-f"))
    return;
  install_interrupt_handler(ctx);
  bool renewed = false;
  for (const auto& name : o.names) {
    auto lock = ctx.store().lock(name);
    MachineRecord record = ctx.store().load(name);
    refuse_on_engine_host(record, "regenerate the certificates of");
    const bool has_ssh = driver_factory(ctx, record).capabilities().has_ssh;
    Steps step(name);
    if (o.client_certs && !renewed) {
      step("renewing the CA and the client certificate");
      tls::ensure_store_certs(ctx.store().certs_dir(), tls::parse_key_type(record.tls.key_type), /*renew=*/true);
      renewed = true;
    }
    step("issuing a new server certificate");
    issue_machine_certs(ctx, record);
    ctx.store().save(record);
    if (!has_ssh) {  // berth can't reach the daemon: its owner installs the files
      step("");
      fmt::print("{}: berth has no SSH to this {} machine: install {} and {} (CA {}) on its Docker daemon "
                 "and restart it\n",
                 name, record.driver, record.tls.server_cert, record.tls.server_key, record.tls.ca_cert);
      continue;
    }
    step("installing it and reloading the agent");
    auto ssh = connect_ssh(ctx, record, std::chrono::seconds(60));
    provision::detect(*ssh)->install_certs(
        {read_file(record.tls.ca_cert), read_file(record.tls.server_cert), read_file(record.tls.server_key)});
    step("waiting for the agent over TLS");
    wait_for_agent(agent_endpoint(ctx, record), std::chrono::seconds(30));
    step("");
  }
  if (renewed)
    fmt::print(stderr, "berth: the CA changed: run 'berth regenerate-certs -f' on every other machine too\n");
}

}  // namespace

void setup_regenerate_certs(CLI::App& app, Context& ctx) {
  auto o = std::make_shared<RegenerateOptions>();
  auto* cmd = app.add_subcommand("regenerate-certs", "Issue and install new TLS certificates for machines");
  cmd->add_option("names", o->names, "Machine names")->required();
  cmd->add_flag("-f,--force", o->force, "Do not ask for confirmation");
  cmd->add_flag("--client-certs", o->client_certs, "Also renew the CA and the client certificate");
  cmd->callback([&ctx, o] { run_regenerate(ctx, *o); });
}

}  // namespace berth::cli
