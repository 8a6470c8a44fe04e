#pragma once
// System routes: /_ping, /version, /info.
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "agent/api/router.h"
#include "agent/build_info.h"
#include "agent/host_info.h"

namespace berth::agent::api {

struct EngineCounts {
  int running = 0, paused = 0, stopped = 0;
  std::size_t images = 0;
};

// What /info reports from the agent's configuration.
struct EngineSettings {
  std::string data_root;
  std::vector<std::string> labels;
  std::vector<std::string> insecure_registries;  // CIDRs or host[:port]
  std::vector<std::string> registry_mirrors;
  std::function<EngineCounts()> counts;  // containers and images; zeros when unset
  // dockerd's "name=seccomp,profile=builtin" list.
  std::vector<std::string> security_options;
};

Response ping(const Request& request);
nlohmann::json version_json(const HostFacts& host, const BuildInfo& build);
nlohmann::json info_json(const HostFacts& host, const EngineSettings& engine);

// GET+HEAD /_ping, GET /version, GET /info.
void add_system_routes(Router& router, std::shared_ptr<const SystemInfoProvider> host,
                       EngineSettings engine);

// True for "10.0.0.0/8" or "fd00::/8": what Go's net.ParseCIDR accepts.
bool is_cidr(const std::string& text);

}  // namespace berth::agent::api
