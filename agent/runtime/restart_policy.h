#pragma once
// HostConfig.RestartPolicy: validation and the decisions dockerd makes.
#include <chrono>
#include <nlohmann/json.hpp>
#include <string>

namespace berth::agent::runtime {

struct RestartPolicy {
  std::string name;  // "", "no", "always", "unless-stopped", "on-failure"
  int max_retries = 0;

  // Throws api::HttpError(400) with dockerd's words for an invalid policy.
  static RestartPolicy from_json(const nlohmann::json& host_config);
  bool is_none() const { return name.empty() || name == "no"; }
};

struct ExitFacts {
  int exit_code = 0;
  int restart_count = 0;         // restarts already done for this run
  bool stopped_by_user = false;  // docker stop/kill/restart, or rm -f
};

// After the container exited on its own (not at agent start).
bool should_restart(const RestartPolicy& p, const ExitFacts& f);
// At the first agent start after a boot, for a container that was running
// (or restarting) when the host went down.
bool should_start_on_boot(const RestartPolicy& p, const ExitFacts& f);
// dockerd's backoff: 100 ms doubling per consecutive restart, at most 1 minute.
std::chrono::milliseconds restart_delay(int consecutive_restarts);

}  // namespace berth::agent::runtime
