#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <filesystem>

#include "cli/commands/commands.h"
#include "cli/host.h"
#include "cli/prompt.h"
#include "core/docker_context.h"
#include "core/error.h"
#include "core/log.h"

namespace berth::cli {
namespace {

struct RmOptions {
  std::vector<std::string> names;
  bool force = false;
  bool yes = false;
};

void forget_docker_context(Context& ctx, const std::string& name) {
  const std::string context = "berth-" + name;
  if (!docker_context_exists(context)) return;
  if (current_docker_context() == context) {
    std::string previous = recall_previous_context(ctx.store().root());
    set_current_docker_context(docker_context_exists(previous) ? previous : "");
  }
  remove_docker_context(context);
}

void run_rm(Context& ctx, const RmOptions& o) {
  for (const auto& name : o.names) {  // before asking: a question about nothing leads nowhere
    std::error_code ec;
    if (!is_valid_machine_name(name) || !std::filesystem::is_directory(ctx.store().machine_dir(name), ec))
      ctx.store().load(name);  // throws NotFound, saying why
  }
  if (!o.force && !o.yes &&
      !confirm("About to remove " + fmt::format("{}", fmt::join(o.names, ", ")) + ". Are you sure?", "-y")) {
    fmt::print("Nothing removed\n");
    return;
  }
  install_interrupt_handler(ctx);
  int failed_code = 0;
  std::string first_error;
  for (const auto& name : o.names) {
    try {
      remove_machine(ctx, name, o.force);
      forget_docker_context(ctx, name);
      fmt::print("Removed {}\n", name);
    } catch (const Error& e) {
      if (o.names.size() == 1) throw;
      fmt::print(stderr, "berth: error: {}\n", e.what());
      if (!failed_code) failed_code = e.exit_code();
    }
  }
  ctx.exit_code = failed_code;
}

}  // namespace

void setup_rm(CLI::App& app, Context& ctx) {
  auto o = std::make_shared<RmOptions>();
  auto* cmd = app.add_subcommand("rm", "Remove machines, with their agent, VM or server, and keys");
  cmd->alias("remove");
  cmd->add_option("names", o->names, "Machine names")->required();
  cmd->add_flag("-f,--force", o->force, "Remove even when the host cannot be reached or the record is corrupt");
  cmd->add_flag("-y", o->yes, "Do not ask for confirmation");
  cmd->callback([&ctx, o] { run_rm(ctx, *o); });
}

}  // namespace berth::cli
