#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "cli/commands/commands.h"
#include "cli/forwarder.h"
#include "cli/host.h"
#include "core/error.h"

namespace berth::cli {
namespace {

struct ForwardOptions {
  std::string name;
  bool off = false;
  bool status = false;
  bool foreground = false;
};

void print_status(Context& ctx, const std::string& name) {
  const auto view = read_forwarder(ctx, name);
  if (!view.running) {
    fmt::print("{}: port forwarding is off{}\n", name,
               forwarder_disabled(ctx, name) ? " (turned off; 'berth forward " + name + "' turns it on)" : "");
    return;
  }
  std::ifstream in(ctx.store().machine_dir(name) / "forward.json");
  const auto doc = nlohmann::json::parse(in, nullptr, false);
  fmt::print("{:<8} {:<22} {:<20} {:<10} {:<11} {}\n", "PORT", "TARGET", "CONTAINER", "VIA", "STATE", "CONNECTIONS");
  if (doc.is_object() && doc.contains("forwards"))
    for (const auto& f : doc["forwards"])
      fmt::print("{:<8} {:<22} {:<20} {:<10} {:<11} {}\n", f.value("port", 0), f.value("target", ""),
                 f.value("container", ""), f.value("via", "ssh"), f.value("listening", false) ? "listening" : "failed",
                 f.contains("connections") ? std::to_string(f.value("connections", 0)) : "-");
  for (const auto& w : view.warnings) fmt::print(stderr, "berth: warning: {}: {}\n", name, w);
}

void run_forward(Context& ctx, const ForwardOptions& o) {
  MachineRecord record = ctx.store().load(o.name);  // NotFound for an unknown machine
  if (o.foreground) return run_forwarder(ctx, o.name);
  if (o.status) return print_status(ctx, o.name);
  if (o.off) {
    set_forwarder_disabled(ctx, o.name, true);
    stop_forwarder(ctx, o.name);
    fmt::print("{}: port forwarding is off; 'berth forward {}' turns it on again\n", o.name, o.name);
    return;
  }
  if (!driver_factory(ctx, record).capabilities().has_ssh)
    throw UserError(fmt::format("machine '{}': the {} driver has no SSH, so berth cannot forward its ports",
                                o.name, record.driver));
  if (load_driver(ctx, record)->state(std::chrono::seconds(10)) != MachineState::Running)
    throw UserError(fmt::format("machine '{}' is not running; 'berth start {}' starts it and its forwarder",
                                o.name, o.name));
  set_forwarder_disabled(ctx, o.name, false);
  start_forwarder(ctx, o.name, /*quiet=*/true);
  print_status(ctx, o.name);
}

}  // namespace

void setup_forward(CLI::App& app, Context& ctx) {
  auto o = std::make_shared<ForwardOptions>();
  auto* cmd = app.add_subcommand(
      "forward", "Forward a machine's published ports to 127.0.0.1 (on by default; runs while the machine does)");
  cmd->add_option("name", o->name, "Machine name")->required();
  auto* off = cmd->add_flag("--off", o->off, "Stop forwarding and keep it off across start/restart");
  auto* status = cmd->add_flag("--status", o->status, "Show what is forwarded now");
  auto* fg = cmd->add_flag("--foreground", o->foreground, "Run the forwarder in this process (what the background one runs)");
  off->excludes(status)->excludes(fg);
  status->excludes(fg);
  cmd->callback([&ctx, o] { run_forward(ctx, *o); });
}

}  // namespace berth::cli
