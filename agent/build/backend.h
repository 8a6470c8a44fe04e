#pragma once
// What the builder needs from the daemon, and nothing more: images to start
// from, a container to run a step in, layers and image configs to store, a
// read-only view of an image's files, and the build cache. The dispatcher
// (builder.h) only talks to this interface, so it is tested with a fake and
// never reaches into the container manager or the image store.
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/image/diff.h"

namespace berth::agent::build {

// Where a build's progress goes: the client's stream of JSON messages.
class BuildOutput {
 public:
  virtual ~BuildOutput() = default;
  // {"stream": text}: step lines and what RUN prints, as it comes.
  virtual void stream(std::string_view text) = 0;
  // A message passed through as is: pull progress, {"aux": ...}.
  virtual void message(const nlohmann::json& message) = 0;
  // The client went away: stop at the next chance.
  virtual bool cancelled() = 0;
};

// An image to build on: its id and whole config blob ("config", "rootfs",
// "history", ...). Scratch has an empty id and no layers.
struct Image {
  std::string id;
  nlohmann::json config = nlohmann::json::object();
};

// One RUN: a container on `image_id` running `argv`.
struct RunSpec {
  std::string image_id;
  nlohmann::json config;       // Env, User, WorkingDir, Volumes... of the step (Cmd replaced)
  std::vector<std::string> argv;
  nlohmann::json host_config;  // NetworkMode, ExtraHosts, resources, SecurityOpt
  bool remove_on_success = true;   // rm
  bool remove_on_failure = false;  // forcerm
};

struct RunResult {
  int exit_code = 0;
  std::string container_id;
  std::optional<image::LayerTar> layer;  // the container's changes, stored (exit code 0 only)
};

// An image's files, mounted read-only until this goes.
class ImageView {
 public:
  virtual ~ImageView() = default;
  virtual const std::filesystem::path& root() const = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;

  // The image `ref` for FROM or COPY --from: local, else (or always, with
  // `pull`) pulled with its progress sent to `out`. Throws BuildError with
  // dockerd's message when it is not there and cannot be pulled.
  virtual Image image(const std::string& ref, bool pull, BuildOutput& out) = 0;

  // Runs `spec` in a new container whose output goes to `out` as it comes;
  // prints " ---> Running in ID". On exit code 0 stores the container's
  // changes as a layer on top of the image's. The container is then removed
  // as `spec` says ("Removing intermediate container ID"). When `out` is
  // cancelled the container is killed and removed, and BuildError "Build
  // cancelled" thrown.
  virtual RunResult run(const RunSpec& spec, BuildOutput& out) = 0;

  // Stores the layer `write` produces (a tar stream) on top of `image_id`'s
  // layers ("" for none).
  using TarWriter = std::function<void(const std::function<void(const char*, std::size_t)>&)>;
  virtual image::LayerTar add_layer(const std::string& image_id, const TarWriter& write) = 0;

  // Stores an image config whose layers are all stored; returns its id.
  virtual std::string commit(const nlohmann::json& config) = 0;

  // A read-only view of `image_id`'s files ("" for an empty one).
  virtual std::unique_ptr<ImageView> view(const std::string& image_id) = 0;

  // The build cache: the image a step made before, from its key.
  virtual std::optional<std::string> cached(const std::string& key) = 0;
  virtual void remember(const std::string& key, const std::string& image_id) = 0;

  // name:tag -> id, as docker tag.
  virtual void tag(const std::string& image_id, const std::string& reference) = 0;
};

}  // namespace berth::agent::build
