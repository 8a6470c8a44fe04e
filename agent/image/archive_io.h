#pragma once
// docker load / save / import: image tarballs in and out of the store.
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/image/image_store.h"
#include "agent/image/progress.h"

namespace berth::agent::image {

// Loads a docker-archive (manifest.json) or OCI layout (index.json) tarball,
// possibly compressed. Returns the lines dockerd prints: "Loaded image:
// busybox:latest" or "Loaded image ID: sha256:...". Throws std::runtime_error.
std::vector<std::string> load_images(ImageStore& store, const ReadFn& input);

// Writes the images (references or ids, already known to exist) as one
// docker-archive tarball that is also an OCI layout, like docker 25+. `out`
// returns false when the client went away (writing stops).
void save_images(const ImageStore& store, const std::vector<std::string>& names,
                 const std::function<bool(std::string_view)>& out);

struct ImportOptions {
  std::string repo;                  // "name" or "name:tag"; may be empty
  std::string tag;                   // added to repo when set
  std::string message;               // history comment; default "Imported from -"
  std::vector<std::string> changes;  // Dockerfile-like: CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, EXPOSE
  std::string platform_os = "linux";
  std::string architecture = "amd64";
};
// docker import: a root filesystem tarball as a one-layer image. Returns its id.
std::string import_image(ImageStore& store, const ReadFn& input, const ImportOptions& options);

// Applies `docker commit/import --change` lines to an image's "config" object.
// Throws std::invalid_argument for an unsupported instruction.
void apply_changes(nlohmann::json& config, const std::vector<std::string>& changes);

}  // namespace berth::agent::image
