#pragma once
// dockerd's classic builder: the stages of a Dockerfile dispatched one
// instruction at a time on a small state (the image config, the build args,
// the stage), each step committed as an image so the next build can reuse it
// from the cache. Everything outside goes through Backend (backend.h).
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "agent/build/backend.h"

namespace berth::agent::build {

// POST /build's query, parsed.
struct BuildOptions {
  std::vector<std::string> tags;             // t (repeatable), normalized
  std::string dockerfile = "Dockerfile";     // a path inside the context
  std::map<std::string, std::optional<std::string>> build_args;  // buildargs
  std::map<std::string, std::string> labels;                     // labels
  std::string target;
  bool no_cache = false;
  bool pull = false;
  bool remove = true;        // rm: remove a successful step's container
  bool force_remove = false; // forcerm: remove it even when the step fails
  bool quiet = false;        // q: only the image id
  std::vector<std::string> cache_from;
  // The RUN containers' HostConfig: NetworkMode, ExtraHosts, ShmSize,
  // Memory, MemorySwap, CpuShares, CpusetCpus, CpuPeriod, CpuQuota, Ulimits.
  nlohmann::json host_config = nlohmann::json::object();
  std::filesystem::path work_dir;  // private scratch space for this build
};

class Builder {
 public:
  Builder(Backend& backend, BuildOutput& out, BuildOptions options);
  ~Builder();
  Builder(const Builder&) = delete;
  Builder& operator=(const Builder&) = delete;

  // Builds from the unpacked context and tags the result; returns the image
  // id. Throws BuildError in dockerd's words.
  std::string build(const std::filesystem::path& context);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace berth::agent::build
