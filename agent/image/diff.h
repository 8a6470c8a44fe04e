#pragma once
// A container's changes as a docker layer: the overlayfs upper directory
// (whiteouts as 0:0 character devices, opaque directories marked with the
// trusted.overlay.opaque xattr) written as the tar stream an image layer is:
// `.wh.NAME` for a deleted NAME, `DIR/.wh..wh..opq` for an opaque directory.
// Used by the builder (RUN) and by `docker commit`.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace berth::agent::image {

class Sha256;

struct LayerTar {
  std::string diff_id;         // "sha256:..." of the tar bytes written
  std::uint64_t tar_size = 0;  // bytes written
  std::uint64_t size = 0;      // bytes of regular file content (docker's layer Size)
  std::uint64_t entries = 0;   // tar members written (0: nothing changed)
};

// Writes the tar of everything under `upper` to `out`, in a stable order
// (sorted by path, parents before children), as PAX: owners, modes, mtimes,
// xattrs (trusted.overlay.* left out), hard links within the tree as links,
// symlinks, devices and FIFOs. Throws std::runtime_error naming the path.
LayerTar write_layer_tar(const std::filesystem::path& upper,
                         const std::function<void(const char*, std::size_t)>& out);

// One member of a layer tar, as LayerTarWriter takes it.
struct TarMember {
  enum class Type { kFile, kDir, kSymlink, kHardlink, kCharDevice, kBlockDevice, kFifo };
  std::string name;  // relative, "/"-separated, no "." or ".."
  Type type = Type::kFile;
  std::uint32_t mode = 0;  // permission bits (07777)
  std::uint32_t uid = 0, gid = 0;
  std::int64_t mtime = 0;  // seconds: whole, as docker writes layers
  std::uint64_t size = 0;  // kFile: the bytes of content that follow
  std::string link;        // kSymlink: the target; kHardlink: the member linked to
  std::uint32_t dev_major = 0, dev_minor = 0;
  std::vector<std::pair<std::string, std::string>> xattrs;
};

// The tar writer under write_layer_tar, for whoever else makes layers (COPY):
// members in, PAX (restricted) bytes out to `out`, hashed and counted.
class LayerTarWriter {
 public:
  explicit LayerTarWriter(std::function<void(const char*, std::size_t)> out);
  ~LayerTarWriter();
  LayerTarWriter(const LayerTarWriter&) = delete;
  LayerTarWriter& operator=(const LayerTarWriter&) = delete;

  // Starts a member; a kFile's `size` bytes follow through data() (short
  // content is padded with zeros, extra bytes are dropped).
  void add(const TarMember& member);
  void data(const void* bytes, std::size_t size);
  // Sends the current kFile's content read from `fd` (to its end or `size`),
  // adding it to `content` too when given. Throws std::system_error.
  void data_from_fd(int fd, Sha256* content = nullptr);
  // Ends the archive; the writer takes nothing more.
  LayerTar finish();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace berth::agent::image
