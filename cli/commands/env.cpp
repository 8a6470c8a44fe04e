#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <cstdlib>

#include "cli/commands/commands.h"
#include "cli/host.h"
#include "cli/output/shell_env.h"
#include "core/error.h"

namespace berth::cli {
namespace {

struct EnvOptions {
  std::string name;
  std::string shell;
  bool unset = false;
  bool no_proxy = false;
};

// DOCKER_MACHINE_NAME too, for prompts and scripts written for docker-machine.
const std::vector<std::string> kVars = {"DOCKER_TLS_VERIFY", "DOCKER_HOST", "DOCKER_CERT_PATH", "BERTH_MACHINE_NAME",
                                        "DOCKER_MACHINE_NAME"};

void run_env(Context& ctx, const EnvOptions& o) {
  Shell shell = o.shell.empty() ? detect_shell() : parse_shell(o.shell);
  if (o.unset) {
    std::vector<std::string> unset = kVars;
    if (o.no_proxy) unset.push_back("NO_PROXY");
    fmt::print("{}", render_env(shell, {}, unset, o.shell.empty() ? "berth env --unset" : "berth env --unset --shell " + o.shell));
    return;
  }
  const std::string name = machine_name_or_active(ctx, o.name);
  MachineRecord r = ctx.store().load(name);
  if (r.phase != "ready")
    throw Error("machine '" + name + "' is not ready (its create did not finish); remove it with 'berth rm -f " +
                name + "' and create it again");
  if (r.tls.ca_cert.empty())
    throw Error("machine '" + name + "' has no TLS material; run 'berth regenerate-certs " + name + "'");
  auto driver = load_driver(ctx, r);
  std::vector<EnvVar> set = {
      {"DOCKER_TLS_VERIFY", "1"},
      {"DOCKER_HOST", driver->url(r.engine.port)},
      {"DOCKER_CERT_PATH", ctx.store().machine_dir(name).string()},
      {"BERTH_MACHINE_NAME", name},
      {"DOCKER_MACHINE_NAME", name},
  };
  if (o.no_proxy) {
    const char* existing = std::getenv("NO_PROXY");
    if (!existing) existing = std::getenv("no_proxy");
    set.push_back({"NO_PROXY", add_no_proxy(existing ? existing : "", driver->ip())});
  }
  std::string usage = "berth env " + name;
  if (!o.shell.empty()) usage = "berth env --shell " + o.shell + " " + name;
  fmt::print("{}", render_env(shell, set, {}, usage));
}

}  // namespace

void setup_env(CLI::App& app, Context& ctx) {
  auto o = std::make_shared<EnvOptions>();
  auto* cmd = app.add_subcommand("env", "Print the commands that point docker at a machine");
  cmd->add_option("name", o->name, "Machine name (default: the active one)");
  cmd->add_option("--shell", o->shell, "bash, zsh, fish, powershell, cmd, tcsh or emacs (default: detected)");
  cmd->add_flag("-u,--unset", o->unset, "Print the commands that undo it");
  cmd->add_flag("--no-proxy", o->no_proxy, "Add the machine's IP to NO_PROXY");
  cmd->callback([&ctx, o] { run_env(ctx, *o); });
}

}  // namespace berth::cli
