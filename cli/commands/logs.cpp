#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <fstream>
#include <thread>

#include "cli/commands/commands.h"
#include "cli/host.h"
#include "cli/context.h"
#include "core/error.h"

namespace berth::cli {
namespace {

struct LogsOptions {
  std::string name;
  bool follow = false;
  bool forwarder = false;
};

void run_logs(Context& ctx, const LogsOptions& o) {
  const MachineRecord r = ctx.store().load(o.name);  // NotFound for an unknown machine
  if (o.forwarder && !driver_factory(ctx, r).capabilities().has_ssh)
    throw UserError("machine '" + o.name + "' uses the " + r.driver +
                    " driver: berth has no SSH to it, so no port forwarder runs and there is no forwarder log");
  const fs::path log = ctx.store().machine_dir(o.name) / (o.forwarder ? "forward.log" : "console.log");
  std::ifstream in(log, std::ios::binary);
  if (!in && o.forwarder)
    throw UserError("machine '" + o.name + "' has no port forwarder log (" + log.string() +
                    "); the forwarder has not run yet ('berth forward " + o.name + "' starts it)");
  if (!in)
    throw UserError("machine '" + o.name + "' has no console log (" + log.string() +
                    "); only VM drivers keep one ('berth logs --forwarder " + o.name + "' shows the port forwarder's)");
  if (o.follow) install_interrupt_handler(ctx);
  std::string chunk(64 * 1024, '\0');
  for (;;) {
    in.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
    if (auto n = in.gcount(); n > 0) {
      std::fwrite(chunk.data(), 1, static_cast<size_t>(n), stdout);
      std::fflush(stdout);
      continue;
    }
    if (!o.follow || ctx.interrupted) return;
    in.clear();
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

}  // namespace

void setup_logs(CLI::App& app, Context& ctx) {
  auto o = std::make_shared<LogsOptions>();
  auto* cmd = app.add_subcommand("logs", "Print a machine's serial console log, or its port forwarder's");
  cmd->add_option("name", o->name, "Machine name")->required();
  cmd->add_flag("-f,--follow", o->follow, "Keep printing what the console writes");
  cmd->add_flag("--forwarder", o->forwarder, "The port forwarder's log instead (ports it forwards, ports it could not)");
  cmd->callback([&ctx, o] { run_logs(ctx, *o); });
}

}  // namespace berth::cli
