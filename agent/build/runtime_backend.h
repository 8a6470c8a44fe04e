#pragma once
// The builder's Backend on the real daemon: images from the image store (or
// pulled), RUN steps as containers of the container manager, their changes
// (the overlayfs upper directory) stored as layers, read-only overlay mounts
// for looking into images, and the build cache.
#include <memory>

#include "agent/build/backend.h"
#include "agent/build/cache.h"

namespace berth::agent {
struct Engine;
}

namespace berth::agent::build {

class RuntimeBackend final : public Backend {
 public:
  RuntimeBackend(Engine& engine, BuildCache& cache, std::string registry_auth_header);
  ~RuntimeBackend() override;

  Image image(const std::string& ref, bool pull, BuildOutput& out) override;
  RunResult run(const RunSpec& spec, BuildOutput& out) override;
  image::LayerTar add_layer(const std::string& image_id, const TarWriter& write) override;
  std::string commit(const nlohmann::json& config) override;
  std::unique_ptr<ImageView> view(const std::string& image_id) override;
  std::optional<std::string> cached(const std::string& key) override;
  void remember(const std::string& key, const std::string& image_id) override;
  void tag(const std::string& image_id, const std::string& reference) override;

 private:
  Engine& engine_;
  BuildCache& cache_;
  std::string auth_header_;
};

}  // namespace berth::agent::build
