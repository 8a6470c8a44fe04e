// Health checks of the containers: the manager's side of health.h. A
// container with a probe gets State.Health when it starts; one
// HealthScheduler times every container's probes, one ProbeRunner runs them
// as `crun exec` of the bundle's process with the probe's command, and each
// probe is announced as dockerd announces it (exec_create, exec_start,
// exec_die; health_status when the status changes).
#include "agent/runtime/container_impl.h"

namespace berth::agent::runtime {

void ContainerManager::Impl::start_monitors() {
  ProbeRunner::Hooks hooks;
  hooks.started = [this](const std::string& id, std::uint64_t probe, const std::vector<std::string>& cmd) {
    probe_started(id, probe, cmd);
  };
  hooks.finished = [this](std::uint64_t probe, int code, std::string output) {
    probe_finished(probe, code, std::move(output));
  };
  probe_runner = std::make_unique<ProbeRunner>(std::move(hooks));
  health = std::make_unique<HealthScheduler>(
      *probe_runner, [this](const std::string& id, std::uint64_t generation, const HealthRecord& record,
                            bool changed) { health_report(id, generation, record, changed); });
  health->start();
  // Like dockerd's restore: running containers start over from "starting".
  std::lock_guard l(mu);
  for (const auto& [id, c] : containers) {
    if (c->status() != "running") continue;
    try {
      if (health_begin(*c, true)) save(*c);
    } catch (const std::exception& e) {
      log().warn("health check of " + short_id(id) + ": " + e.what());
    }
  }
}

void ContainerManager::Impl::stop_monitors() {
  if (probe_runner) probe_runner->stop();  // first: no more results
  if (health) health->stop();
  if (stats) stats->stop();
}

bool ContainerManager::Impl::health_begin(Container& c, bool fresh) {
  if (!health) return false;
  auto config = HealthConfig::from_config(c.doc["Config"]);
  if (!config) return false;
  json& state = c.doc["State"];
  HealthRecord record = HealthRecord::from_json(state.value("Health", json()));
  if (fresh) {
    record.status = "starting";
    record.failing_streak = 0;
  }
  state["Health"] = record.to_json();
  // Every probe execs the same process: the container's, with the probe's command.
  ProbeRunner::Target target;
  try {
    auto spec = read_file(c.dir / "bundle" / "config.json");
    if (!spec) throw std::runtime_error("the container has no bundle");
    json process = build_exec_process(json::parse(*spec), {{"Cmd", config->command}}, nullptr);
    const fs::path file = c.dir / "health-process.json";
    write_file_atomic(file, process.dump());
    target.pid_file = c.dir / "health.pid";
    target.argv = rt({"exec", "--process", file.string(), "--pid-file", target.pid_file.string(), c.id});
    target.cgroup = "/berth/" + c.id;
    target.command = config->command;
  } catch (const std::exception& e) {
    // Probes then fail with this, as a probe that cannot start does with dockerd.
    log().warn("health check of " + short_id(c.id) + ": " + e.what());
  }
  probe_runner->set_target(c.id, std::move(target));
  auto started = parse_rfc3339(state.value("StartedAt", std::string(kZeroTime)));
  health->watch(c.id, *config, std::move(record), started.value_or(to_unix_nanos(Clock::now())));
  return true;
}

void ContainerManager::Impl::health_end(Container& c) {
  if (!health || !health->unwatch(c.id)) return;
  probe_runner->forget(c.id);
  json& state = c.doc["State"];
  // dockerd: "unhealthy when the monitor has stopped for compatibility reasons".
  if (auto h = state.find("Health"); h != state.end() && h->is_object()) (*h)["Status"] = "unhealthy";
}

void ContainerManager::Impl::health_report(const std::string& id, std::uint64_t generation,
                                           const HealthRecord& record, bool changed) {
  std::lock_guard l(mu);
  if (!health || !health->current(id, generation)) return;  // stopped meanwhile
  auto it = containers.find(id);
  if (it == containers.end()) return;
  Container& c = *it->second;
  c.doc["State"]["Health"] = record.to_json();
  if (!changed) return;  // the log alone is not worth a write to disk
  try {
    save(c);
  } catch (const std::exception& e) {
    log().warn("cannot save " + short_id(id) + ": " + e.what());
  }
  emit(c, "health_status: " + record.status);
}

void ContainerManager::Impl::probe_started(const std::string& id, std::uint64_t probe,
                                           const std::vector<std::string>& command) {
  std::lock_guard l(mu);
  auto it = containers.find(id);
  if (it == containers.end()) return;
  const std::string exec_id = new_container_id();
  probe_execs[probe] = {id, exec_id};
  const json config = {{"Cmd", command}};
  emit(*it->second, exec_action("exec_create", config), {{"execID", exec_id}});
  emit(*it->second, exec_action("exec_start", config), {{"execID", exec_id}});
}

void ContainerManager::Impl::probe_finished(std::uint64_t probe, int exit_code, std::string output) {
  {
    std::lock_guard l(mu);
    if (auto e = probe_execs.find(probe); e != probe_execs.end()) {
      if (auto c = containers.find(e->second.first); c != containers.end())
        emit(*c->second, "exec_die", {{"execID", e->second.second}, {"exitCode", std::to_string(exit_code)}});
      probe_execs.erase(e);
    }
  }
  if (health) health->finished(probe, exit_code, std::move(output));
}

}  // namespace berth::agent::runtime
