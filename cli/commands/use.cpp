#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <cstdlib>

#include "cli/commands/commands.h"
#include "cli/host.h"
#include "core/docker_context.h"
#include "core/error.h"

namespace berth::cli {
namespace {

struct UseOptions {
  std::string name;
  bool unset = false;
};

void run_use(Context& ctx, const UseOptions& o) {
  Store& store = ctx.store();
  if (o.unset) {
    std::string previous = recall_previous_context(store.root());
    if (!previous.empty() && !docker_context_exists(previous)) {
      fmt::print(stderr, "berth: warning: the previous docker context '{}' no longer exists; using default\n", previous);
      previous.clear();
    }
    set_current_docker_context(previous);
    remember_previous_context(store.root(), "");
    fmt::print("docker now uses the {} context\n", previous.empty() ? "default" : previous);
    return;
  }
  if (o.name.empty()) throw UsageError("use needs a machine name (or --unset)");
  MachineRecord r = store.load(o.name);
  if (r.phase != "ready")
    throw Error("machine '" + o.name + "' is not ready (its create did not finish); remove it with 'berth rm -f " +
                o.name + "'");
  const std::string context = "berth-" + o.name;
  write_docker_context({context, machine_url(ctx, r), r.tls.ca_cert, r.tls.client_cert, r.tls.client_key,
                        "berth machine " + o.name});
  std::string current = current_docker_context();
  if (current != context) remember_previous_context(store.root(), current);
  set_current_docker_context(context);
  fmt::print("docker now uses machine {} (context {})\n", o.name, context);
  if (const char* host = std::getenv("DOCKER_HOST"); host && *host)
    fmt::print(stderr, "berth: warning: DOCKER_HOST is set and overrides the context; run 'eval \"$(berth env --unset)\"'\n");
}

}  // namespace

void setup_use(CLI::App& app, Context& ctx) {
  auto o = std::make_shared<UseOptions>();
  auto* cmd = app.add_subcommand("use", "Make a machine docker's current context (berth-NAME)");
  cmd->add_option("name", o->name, "Machine name");
  cmd->add_flag("-u,--unset", o->unset, "Go back to the context that was current before");
  cmd->callback([&ctx, o] { run_use(ctx, *o); });
}

}  // namespace berth::cli
