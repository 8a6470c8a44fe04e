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

// What the store alone says: name, driver, labels (no host is asked).
LsRow stored_row(const StoredMachine& m) {
  LsRow row;
  row.name = m.name;
  if (!m.record) {
    row.state = "Error";
    row.error = m.error;
    return row;
  }
  row.driver = m.record->driver;
  row.labels = m.record->engine.labels;
  return row;
}

LsRow probe(Context& ctx, const StoredMachine& m, const std::optional<std::string>& active,
            std::chrono::milliseconds timeout) {
  LsRow row = stored_row(m);
  row.active = active && *active == m.name;
  if (!m.record) return row;
  const MachineRecord& r = *m.record;
  try {
    auto driver = load_driver(ctx, r);
    row.url = driver->url(r.engine.port);
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    auto state = driver->state(timeout);
    row.state = to_string(state);
    if (state == MachineState::Error) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      row.error = error_state_reason(ctx, r, *driver, std::max(left, std::chrono::milliseconds(200)));
    }
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
  if (o.timeout_s < 1) throw UsageError("--timeout must be at least 1 second");
  LsFilter filter = LsFilter::parse(o.filters);
  format_ls({}, o.format, o.quiet);  // a bad template fails before any host is asked
  std::error_code ec;
  if (!ctx.storage_path.empty() && !fs::is_directory(ctx.storage_path, ec))
    throw UserError("storage path " + ctx.storage_path + " is not a directory; 'berth create' makes it, or check -s/BERTH_STORAGE_PATH");
  if (o.quiet && !filter.uses_record()) {  // names only: no record is even read
    for (const auto& name : ctx.store().names()) {
      LsRow row;
      row.name = name;
      if (filter.matches(row)) fmt::print("{}\n", name);
    }
    return;
  }
  auto machines = ctx.store().list();
  // Name, driver and label filters need only the store: hosts are asked only about the machines left.
  std::erase_if(machines, [&](const StoredMachine& m) { return !filter.matches_stored(stored_row(m)); });
  if (o.quiet && !filter.uses_state()) {
    for (const auto& m : machines) fmt::print("{}\n", m.name);
    return;
  }
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
  cmd->add_option("--filter", o->filters, "Filter: driver=, state=, name= (regex), label=KEY[=VALUE]");
  cmd->add_flag("-q,--quiet", o->quiet, "Only names (from the store: no host is asked)");
  // -f is --format, as in docker-machine.
  cmd->add_option("-f,--format", o->format, "table, json, or a template such as '{{.Name}} {{.State}}'");
  cmd->add_option("-t,--timeout", o->timeout_s, "Seconds to wait for each host");
  cmd->callback([&ctx, o] { run_ls(ctx, *o); });
}

}  // namespace berth::cli
