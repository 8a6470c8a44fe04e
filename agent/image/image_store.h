#pragma once
// Local images under <data_root>/image: content-addressed blobs, layers
// unpacked once each (overlayfs whiteouts) and the name:tag -> id references.
// Owned by the image module; the container runtime only uses resolve() and
// set_in_use_check(). Thread-safe.
//
// Layout:
//   blobs/sha256/<hex>               registry blobs and layer tarballs as received
//   layers/sha256/<chain hex>/diff   the unpacked layer (an overlayfs lowerdir)
//   layers/sha256/<chain hex>/layer.json   diff id, parent, sizes, known blobs
//   images/sha256/<hex>              image configs (the id is their sha256)
//   repositories.json                name -> {name:tag or name@digest -> id}
//   tmp/                             work in progress, renamed into place
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/image/layer.h"
#include "agent/image/reference.h"

namespace berth::agent::image {

struct ResolvedImage {
  std::string id;               // "sha256:<hex>" of the image config
  std::string reference;        // what the user asked for, normalized ("busybox:latest")
  nlohmann::json config;        // the image config blob (has "config": Env, Cmd, ...)
  std::vector<std::filesystem::path> layers;  // unpacked layer dirs, lowest first
};

// A blob known to hold a layer's tarball (compressed or not).
struct LayerBlob {
  std::string digest;
  std::string media_type;  // "application/vnd.docker.image.rootfs.diff.tar.gzip", ...
  std::uint64_t size = 0;
};

struct LayerInfo {
  std::string chain_id;
  std::string diff_id;
  std::string parent;           // chain id, "" for a bottom layer
  std::uint64_t size = 0;       // file content bytes
  std::uint64_t tar_size = 0;   // uncompressed tarball bytes
  std::vector<LayerBlob> blobs;
  std::filesystem::path dir;    // the unpacked diff
};

struct ImageRecord {
  std::string id;
  nlohmann::json config;
  std::vector<std::string> diff_ids;
  std::vector<std::string> chain_ids;
  std::uint64_t size = 0;  // sum of the layers' sizes
  std::vector<Reference> tags;     // name:tag
  std::vector<Reference> digests;  // name@digest
  std::int64_t last_tag_time = 0;  // unix nanoseconds, 0 when never tagged
};

// Thrown by remove(): dockerd's 409 conflicts and 404s.
struct RemoveResult {
  std::vector<std::string> untagged;  // familiar references
  std::vector<std::string> deleted;   // image id, then chain ids
};

class ImageStore {
 public:
  explicit ImageStore(std::filesystem::path root);  // <data_root>/image
  ~ImageStore();
  ImageStore(const ImageStore&) = delete;
  ImageStore& operator=(const ImageStore&) = delete;

  // By "name[:tag]", "name@sha256:...", full or short id ("sha256:ab12", "ab12").
  // nullopt when there is no such image locally.
  std::optional<ResolvedImage> resolve(std::string_view reference) const;

  // rmi refuses (409) an image for which this returns true, unless forced
  // while the container is stopped, like dockerd.
  void set_in_use_check(std::function<bool(const std::string& image_id)> in_use);
  // Optional, richer: the id of a container using the image ("" when none),
  // for dockerd's conflict messages.
  void set_in_use_lookup(std::function<std::string(const std::string& image_id)> lookup);
  std::string container_using(const std::string& image_id) const;  // "" when none

  std::size_t count() const;  // images, for /info
  const std::filesystem::path& root() const;

  // --- images and references
  // The image id for a reference or (short) id; nullopt when unknown.
  std::optional<std::string> find(std::string_view reference) const;
  std::optional<ImageRecord> image(const std::string& id) const;
  std::vector<ImageRecord> images() const;
  // Stores an image config whose layers are all present; returns its id.
  std::string add_image(const std::string& config_bytes);
  // name:tag -> id (moves the tag), name@digest -> id.
  void tag(const std::string& id, const Reference& ref);
  // Removes what `name` names, as DELETE /images/{name}. Throws api-style
  // errors (std::out_of_range 404 message, ConflictError 409).
  RemoveResult remove(std::string_view name, bool force, bool prune = true);

  // --- blobs
  std::filesystem::path blob_path(std::string_view digest) const;
  bool has_blob(std::string_view digest) const;
  // Stores what `input` yields; when expected_digest is set, a mismatch throws
  // and nothing is stored. Returns the digest.
  std::string put_blob(const ReadFn& input, std::string_view expected_digest = {},
                       const ProgressFn& progress = {});
  std::string put_blob_bytes(std::string_view bytes);
  std::optional<std::string> read_blob(std::string_view digest) const;

  // --- layers
  std::optional<LayerInfo> layer(std::string_view chain_id) const;
  // Unpacks the layer tarball stored as blob `blob_digest` on top of `parent`
  // (a chain id or ""), once: concurrent and repeated calls for the same
  // chain share one unpack. Verifies the diff id when `expected_diff_id` is set.
  LayerInfo add_layer(const std::string& parent, const LayerBlob& blob,
                      std::string_view expected_diff_id = {}, const ProgressFn& progress = {});
  // Records another blob holding the layer's tarball (a gzip made for push).
  void add_layer_blob(const std::string& chain_id, const LayerBlob& blob);

  // A fresh private directory under tmp/ (removed by the caller or at start).
  std::filesystem::path make_temp_dir() const;

  struct Impl;
  Impl& impl() { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

// 409 from remove(); the message is dockerd's.
struct ConflictError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// 404 from remove()/find-based operations; the message is dockerd's.
struct NoSuchImage : std::runtime_error {
  using std::runtime_error::runtime_error;
};

inline constexpr std::string_view kMediaLayerTar = "application/vnd.docker.image.rootfs.diff.tar";
inline constexpr std::string_view kMediaLayerGzip = "application/vnd.docker.image.rootfs.diff.tar.gzip";

}  // namespace berth::agent::image
