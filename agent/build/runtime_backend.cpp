#include "agent/build/runtime_backend.h"

#include <sys/mount.h>

#include <cstring>

#include "agent/api/http.h"
#include "agent/build/error.h"
#include "agent/build/store_layer.h"
#include "agent/engine.h"
#include "agent/image/digest.h"
#include "agent/image/fs_util.h"
#include "agent/image/http_client.h"
#include "agent/image/reference.h"
#include "agent/image/registry.h"
#include "agent/runtime/container_manager.h"

namespace berth::agent::build {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string short_id(const std::string& id) {
  return (id.rfind("sha256:", 0) == 0 ? id.substr(7) : id).substr(0, 12);
}

// An image's layers as one read-only overlay mount (or an empty directory).
class OverlayView final : public ImageView {
 public:
  OverlayView(fs::path dir, const std::vector<fs::path>& layers) : dir_(std::move(dir)) {
    fs::create_directories(dir_ / "empty");
    fs::create_directories(dir_ / "root");
    if (layers.empty()) {
      root_ = dir_ / "empty";
      return;
    }
    std::string lower;
    for (auto it = layers.rbegin(); it != layers.rend(); ++it) lower += it->string() + ":";
    lower += (dir_ / "empty").string();  // overlayfs wants two lower dirs without an upper
    std::string data = "lowerdir=" + lower;
    if (::mount("overlay", (dir_ / "root").c_str(), "overlay", MS_RDONLY, data.c_str()) != 0)
      throw BuildError(std::string("cannot mount the image's file system: ") + std::strerror(errno));
    mounted_ = true;
    root_ = dir_ / "root";
  }
  ~OverlayView() override {
    if (mounted_) ::umount2((dir_ / "root").c_str(), MNT_DETACH);
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  const fs::path& root() const override { return root_; }

 private:
  fs::path dir_, root_;
  bool mounted_ = false;
};

// Strips the 8-byte stdout/stderr frame headers of non-TTY logs.
void demux(std::string_view chunk, BuildOutput& out) {
  while (chunk.size() >= 8) {
    const auto* h = reinterpret_cast<const unsigned char*>(chunk.data());
    std::size_t n = (std::size_t{h[4]} << 24) | (std::size_t{h[5]} << 16) | (std::size_t{h[6]} << 8) | h[7];
    n = std::min(n, chunk.size() - 8);
    if (n) out.stream(chunk.substr(8, n));
    chunk.remove_prefix(8 + n);
  }
}

// X-Registry-Config: base64 JSON {"registry": {"username", "password", ...}}
// for every registry the client knows: the entry for `ref`'s registry as an
// X-Registry-Auth value.
std::string auth_for(const std::string& header, const image::Reference& ref) {
  if (header.empty()) return "";
  auto decoded = image::base64_decode(header);
  if (!decoded) return "";
  json all = json::parse(*decoded, nullptr, false);
  if (!all.is_object()) return "";
  const std::string domain = ref.domain;
  for (const auto& [key, value] : all.items()) {
    std::string host = key;
    for (const char* prefix : {"https://", "http://"})
      if (host.rfind(prefix, 0) == 0) host = host.substr(std::strlen(prefix));
    host = host.substr(0, host.find('/'));
    bool docker_hub = domain == "docker.io" && (host == "index.docker.io" || host == "docker.io" ||
                                                host == "registry-1.docker.io");
    if (host == domain || docker_hub) return image::base64_encode(value.dump());
  }
  return "";
}

}  // namespace

RuntimeBackend::RuntimeBackend(Engine& engine, BuildCache& cache, std::string registry_config)
    : engine_(engine), cache_(cache), auth_header_(std::move(registry_config)) {}
RuntimeBackend::~RuntimeBackend() = default;

Image RuntimeBackend::image(const std::string& ref, bool pull, BuildOutput& out) {
  auto local = [&]() -> std::optional<Image> {
    auto r = engine_.images.resolve(ref);
    if (!r) return std::nullopt;
    return Image{r->id, r->config};
  };
  if (!pull)
    if (auto found = local()) return *found;
  if (ref.rfind("sha256:", 0) == 0) throw BuildError("No such image: " + ref);
  image::Reference parsed;
  try {
    parsed = image::parse_reference_default_tag(ref);
  } catch (const std::exception&) {
    throw BuildError("invalid reference format: repository name (" + ref + ") must be lowercase");
  }
  image::RegistryOptions registry{engine_.options.insecure_registries, engine_.options.registry_mirrors, {}};
  image::Pull p(engine_.images, registry, parsed,
                image::parse_registry_auth(auth_for(auth_header_, parsed)));
  try {
    p.resolve();
  } catch (const image::RegistryError& e) {
    throw BuildError(e.what());
  }
  std::string error;
  p.run([&](const json& m) {
    if (m.contains("error")) error = m.value("error", "pull failed");
    out.message(m);
    return !out.cancelled();
  });
  if (out.cancelled()) throw BuildError("Build cancelled");
  if (!error.empty()) throw BuildError(error);
  if (auto found = local()) return *found;
  throw BuildError("No such image: " + ref);
}

RunResult RuntimeBackend::run(const RunSpec& spec, BuildOutput& out) {
  runtime::ContainerManager& cm = engine_.containers;
  json body = spec.config;
  body["Image"] = spec.image_id;
  body["Cmd"] = spec.argv;
  body["Entrypoint"] = json::array({""});  // RUN never goes through the image's ENTRYPOINT
  for (const char* k : {"AttachStdin", "AttachStdout", "AttachStderr", "Tty", "OpenStdin", "StdinOnce"})
    body[k] = false;
  body["HostConfig"] = spec.host_config;
  RunResult result;
  try {
    result.container_id = cm.create("", body).id;
  } catch (const api::HttpError& e) {
    throw BuildError(e.what());
  }
  const std::string id = result.container_id;
  out.stream(" ---> Running in " + short_id(id) + "\n");
  auto remove = [&] {
    try {
      cm.remove(id, true, true);
    } catch (const std::exception&) {
    }
  };
  try {
    cm.start(id);
    runtime::ContainerManager::LogOptions logs;
    logs.follow = logs.stdout_stream = logs.stderr_stream = true;
    cm.logs(id, logs, [&](std::string_view chunk) {
      if (out.cancelled()) return false;
      demux(chunk, out);
      return true;
    });
    auto waiter = cm.prepare_wait(id, "not-running");
    auto status = waiter([&] { return out.cancelled(); });
    if (out.cancelled() || !status) {
      remove();
      throw BuildError("Build cancelled");
    }
    result.exit_code = status->value("StatusCode", 1);
    if (result.exit_code == 0) {
      const fs::path upper = cm.changes_dir(id);
      result.layer = add_layer(spec.image_id, [&](const auto& sink) { image::write_layer_tar(upper, sink); });
    }
  } catch (const BuildError&) {
    throw;
  } catch (const api::HttpError& e) {
    remove();
    throw BuildError(e.what());
  } catch (const std::exception& e) {
    remove();
    throw BuildError(std::string("the step's container failed: ") + e.what());
  }
  if (result.exit_code == 0 ? spec.remove_on_success : spec.remove_on_failure) {
    remove();
    out.stream("Removing intermediate container " + short_id(id) + "\n");
  }
  return result;
}

image::LayerTar RuntimeBackend::add_layer(const std::string& image_id, const TarWriter& write) {
  image::ImageStore& store = engine_.images;
  std::string parent;
  if (!image_id.empty()) {
    auto rec = store.image(image_id);
    if (!rec) throw BuildError("No such image: " + image_id);
    if (!rec->chain_ids.empty()) parent = rec->chain_ids.back();
  }
  return store_layer(store, parent, write);
}

std::string RuntimeBackend::commit(const json& config) { return engine_.images.add_image(config.dump()); }

std::unique_ptr<ImageView> RuntimeBackend::view(const std::string& image_id) {
  std::vector<fs::path> layers;
  if (!image_id.empty()) {
    auto r = engine_.images.resolve(image_id);
    if (!r) throw BuildError("No such image: " + image_id);
    layers = r->layers;
  }
  return std::make_unique<OverlayView>(engine_.images.make_temp_dir(), layers);
}

std::optional<std::string> RuntimeBackend::cached(const std::string& key) {
  return cache_.lookup(key, [&](const std::string& id) { return engine_.images.image(id).has_value(); });
}

void RuntimeBackend::remember(const std::string& key, const std::string& image_id) {
  cache_.remember(key, image_id);
}

void RuntimeBackend::tag(const std::string& image_id, const std::string& reference) {
  image::Reference ref = image::parse_reference_default_tag(reference);
  engine_.images.tag(image_id, ref);
  if (engine_.events) engine_.events->emit("image", "tag", image_id, {{"name", ref.familiar_string()}});
}

}  // namespace berth::agent::build
