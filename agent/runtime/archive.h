#pragma once
// docker cp and docker export on a ContainerTree, with dockerd's rules
// (daemon/archive*.go, pkg/archive):
//   stat_path        HEAD /containers/{id}/archive: the X-Docker-Container-Path-Stat
//   find_resource +  GET: the path cleaned ("/." and a trailing "/" kept), its
//   write_resource   last component not followed unless they say so; a
//                    directory is archived with its content, named after the path
//   extract_archive  PUT: a tar (any compression) unpacked into a directory,
//                    every symlink of the destination followed in the tree
//   write_export     GET /containers/{id}/export: the root file system
// Errors: PathNotFound (dockerd's 404), api::HttpError(400) for what dockerd
// calls invalid parameters, std::runtime_error otherwise (500).
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include "agent/runtime/archive_path.h"

namespace berth::agent::runtime {

// dockerd's container.PathStat.
struct PathStat {
  std::string name;
  std::int64_t size = 0;
  std::uint32_t mode = 0;   // Go's os.FileMode bits
  std::string mtime;        // RFC 3339 with nanoseconds
  std::string link_target;  // the container path a symlink finally names
};
// st_mode as Go's os.FileMode: permission bits, ModeDir, ModeSymlink, ...
std::uint32_t go_file_mode(mode_t mode);
// {"name","size","mode","mtime","linkTarget"} in dockerd's order (the
// X-Docker-Container-Path-Stat header is its base64).
nlohmann::ordered_json to_json(const PathStat& stat);

// A path the operation needs is not there: dockerd's 404 "Could not find the
// file PATH in container NAME" (the route knows the names).
class PathNotFound : public std::runtime_error {
 public:
  PathNotFound() : std::runtime_error("no such file or directory") {}
};

// HEAD: lstat of `path` as given (a relative path starts at "/").
PathStat stat_path(const ContainerTree& tree, std::string_view path);

// GET: what dockerd archives for `path`.
struct Resource {
  std::string path;  // cleaned, a trailing "/" or "/." kept
  PathStat stat;
};
Resource find_resource(const ContainerTree& tree, std::string_view path);

// Tar bytes out; throws to stop (the client went away).
using TarSink = std::function<void(const char*, std::size_t)>;
void write_resource(const ContainerTree& tree, const Resource& resource, const TarSink& out);

// PUT.
struct ExtractOptions {
  bool no_overwrite_dir_non_dir = false;
  bool readonly_rootfs = false;  // HostConfig.ReadonlyRootfs
  // copyUIDGID: the owner every entry gets (the container's user), asked
  // once the destination passed its checks; nullopt keeps the tar's owners.
  std::function<std::optional<std::pair<std::uint32_t, std::uint32_t>>()> owner;
};
// Reads up to n bytes into buf; 0 at the end.
using ArchiveInput = std::function<std::size_t(char* buf, std::size_t n)>;
void extract_archive(const ContainerTree& tree, std::string_view path, const ArchiveInput& input,
                     const ExtractOptions& options);

// export: the root file system (mounts left out), names relative ("bin/sh").
void write_export(const ContainerTree& tree, const TarSink& out);

}  // namespace berth::agent::runtime
