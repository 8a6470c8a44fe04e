#pragma once
// The stores and managers behind the Engine API, built once by run_agent() and
// shared by every connection thread. Each module's routes are added by its own
// add_*_routes() in agent/api/.
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "agent/events/event_bus.h"
#include "agent/image/image_store.h"
#include "agent/log.h"
#include "agent/network/network_manager.h"
#include "agent/volume/volume_store.h"

namespace berth::agent {

namespace runtime {
class ContainerManager;
}
namespace build {
class BuildCache;
}

struct EngineOptions {
  std::string data_root = "/var/lib/berth";
  std::vector<std::string> insecure_registries;  // host[:port] or CIDR
  std::vector<std::string> registry_mirrors;     // URLs, for docker.io
  std::string runtime_path = "crun";             // the OCI runtime binary
  std::string agent_path;  // this binary, for "berth-agent shim" (from /proc/self/exe)
  // Containers' defaults (agent.json "security"): no_new_privileges, and the
  // seccomp profile: nullptr the built-in one, a JSON null "unconfined".
  bool no_new_privileges = false;
  std::shared_ptr<const nlohmann::json> seccomp_profile;
  // POST /build: the largest build context accepted (agent.json "build").
  std::uint64_t build_max_context_bytes = std::uint64_t{4} << 30;
};

struct Engine {
  EngineOptions options;
  Logger& log;
  image::ImageStore& images;
  volume::VolumeStore& volumes;
  network::NetworkManager& networks;
  runtime::ContainerManager& containers;
  // GET /events; every Engine has one (tests that build an Engine get their own).
  std::shared_ptr<events::EventBus> events = std::make_shared<events::EventBus>();
  // docker build's cache (agent/build/cache.h); null where nothing builds.
  std::shared_ptr<build::BuildCache> build_cache = nullptr;
  // Whether an image is one of the build cache's intermediate steps, which
  // `docker images` hides; empty where nothing builds.
  std::function<bool(const std::string& image_id)> intermediate_image = {};
};

}  // namespace berth::agent
