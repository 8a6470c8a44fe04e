#include "agent/runtime/restart_policy.h"

#include "agent/api/http.h"

namespace berth::agent::runtime {

RestartPolicy RestartPolicy::from_json(const nlohmann::json& host_config) {
  RestartPolicy p;
  if (!host_config.is_object()) return p;
  auto it = host_config.find("RestartPolicy");
  if (it == host_config.end() || !it->is_object()) return p;
  if (auto n = it->find("Name"); n != it->end() && n->is_string()) p.name = n->get<std::string>();
  if (auto m = it->find("MaximumRetryCount"); m != it->end() && m->is_number_integer())
    p.max_retries = m->get<int>();
  if (p.name != "" && p.name != "no" && p.name != "always" && p.name != "unless-stopped" &&
      p.name != "on-failure")
    throw api::HttpError(400, "invalid restart policy: unknown policy '" + p.name +
                                  "'; use one of 'no', 'always', 'on-failure', or "
                                  "'unless-stopped'");
  if (p.max_retries < 0)
    throw api::HttpError(400, "invalid restart policy: maximum retry count cannot be negative");
  if (p.max_retries > 0 && p.name != "on-failure")
    throw api::HttpError(400, "invalid restart policy: maximum retry count can only be used "
                              "with 'on-failure'");
  return p;
}

bool should_restart(const RestartPolicy& p, const ExitFacts& f) {
  if (f.stopped_by_user || p.is_none()) return false;
  if (p.name == "always" || p.name == "unless-stopped") return true;
  // on-failure
  if (f.exit_code == 0) return false;
  return p.max_retries == 0 || f.restart_count < p.max_retries;
}

bool should_start_on_boot(const RestartPolicy& p, const ExitFacts& f) {
  if (p.is_none()) return false;
  if (p.name == "always") return true;
  if (p.name == "unless-stopped") return !f.stopped_by_user;
  return !f.stopped_by_user && f.exit_code != 0 &&
         (p.max_retries == 0 || f.restart_count < p.max_retries);
}

std::chrono::milliseconds restart_delay(int n) {
  if (n < 0) n = 0;
  if (n > 10) return std::chrono::minutes(1);
  auto d = std::chrono::milliseconds(100) * (1 << n);
  return d > std::chrono::minutes(1) ? std::chrono::milliseconds(std::chrono::minutes(1)) : d;
}

}  // namespace berth::agent::runtime
