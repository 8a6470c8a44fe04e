#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cli/commands/commands.h"
#include "cli/host.h"

namespace berth::cli {

void setup_config(CLI::App& app, Context& ctx) {
  auto name = std::make_shared<std::string>();
  auto* cmd = app.add_subcommand("config", "Print the docker flags that reach a machine");
  cmd->add_option("name", *name, "Machine name (default: the active one)");
  cmd->callback([&ctx, name] {
    auto r = ctx.store().load(machine_name_or_active(ctx, *name));
    fmt::print("--tlsverify\n--tlscacert=\"{}\"\n--tlscert=\"{}\"\n--tlskey=\"{}\"\n-H={}\n", r.tls.ca_cert,
               r.tls.client_cert, r.tls.client_key, machine_url(ctx, r));
  });
}

}  // namespace berth::cli
