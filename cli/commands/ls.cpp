#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <future>

#include "cli/commands/commands.h"
#include "cli/forwarder.h"
#include "cli/host.h"
#include "cli/output/ls_format.h"
#include "core/error.h"

namespace berth::cli {
namespace {

struct LsOptions {
  std::vector<std::string> filters;
  bool quiet = false;
  std::string format;
  int timeout_s = 10;
};

// FORWARDS: the ports forwarded now, "on" with none, "off"; trouble goes to ERRORS.
void describe_forwarder(Context& ctx, const std::string& name, LsRow& row) {
  const ForwarderView v = read_forwarder(ctx, name);
  if (!v.running) {
    row.forwards = "off";
    return;
  }
  row.forwards = v.ports.empty() ? "on" : fmt::format("{}", fmt::join(v.ports, ","));
  for (const auto& w : v.warnings) row.error += (row.error.empty() ? "" : "; ") + w;
}

LsRow probe(Context& ctx, const StoredMachine& m, const std::optional<std::string>& active,
            std::chrono::milliseconds timeout) {
  LsRow row;
  row.name = m.name;
  row.active = active && *active == m.name;
  if (!m.record) {
    row.state = "Error";
    row.error = m.error;
    return row;
  }
  const MachineRecord& r = *m.record;
  row.driver = r.driver;
  row.labels = r.engine.labels;
  try {
    auto driver = load_driver(ctx, r);
    row.url = driver->url(r.engine.port);
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    auto state = driver->state(timeout);
    row.state = to_string(state);
    if (r.phase != "ready") {
      const bool busy = !FileLock::try_acquire(ctx.store().machine_dir(r.name) / ".lock");
      row.error = busy ? "being created" : "create did not finish; remove it with 'berth rm -f " + r.name + "'";
    } else if (state == MachineState::Running) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      std::string err;
      row.docker = agent_docker_version(agent_endpoint(ctx, r), std::max(left, std::chrono::milliseconds(200)), &err);
      if (row.docker.empty()) {
        row.docker = "Unknown";
        row.error = "agent: " + err;
      }
      if (driver_factory(ctx, r).capabilities().has_ssh) describe_forwarder(ctx, r.name, row);
    }
  } catch (const Error& e) {
    row.state = "Error";
    row.error = e.what();
  }
  return row;
}

void run_ls(Context& ctx, const LsOptions& o) {
  if (o.timeout_s < 1) throw UserError("--timeout must be at least 1 second");
  LsFilter filter = LsFilter::parse(o.filters);
  auto machines = ctx.store().list();
  auto active = active_machine(ctx);
  const auto timeout = std::chrono::milliseconds(o.timeout_s * 1000);
  std::vector<std::future<LsRow>> pending;
  pending.reserve(machines.size());
  for (const auto& m : machines)
    pending.push_back(std::async(std::launch::async, [&, m] { return probe(ctx, m, active, timeout); }));
  std::vector<LsRow> rows;
  for (auto& f : pending) {
    LsRow row = f.get();
    if (filter.matches(row)) rows.push_back(std::move(row));
  }
  fmt::print("{}", format_ls(rows, o.format, o.quiet));
}

}  // namespace

void setup_ls(CLI::App& app, Context& ctx) {
  auto o = std::make_shared<LsOptions>();
  auto* cmd = app.add_subcommand("ls", "List machines");
  cmd->alias("list");
  cmd->add_option("-f,--filter", o->filters, "Filter: driver=, state=, name= (regex), label=KEY[=VALUE]");
  cmd->add_flag("-q,--quiet", o->quiet, "Only names");
  cmd->add_option("--format", o->format, "table, json, or a template such as '{{.Name}} {{.State}}'");
  cmd->add_option("-t,--timeout", o->timeout_s, "Seconds to wait for each host");
  cmd->callback([&ctx, o] { run_ls(ctx, *o); });
}

}  // namespace berth::cli
