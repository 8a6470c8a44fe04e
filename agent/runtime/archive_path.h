#pragma once
// Paths in a container's file tree, for docker cp: its root file system with
// its volumes and bind mounts on it, as the container sees them. Symlinks
// resolve inside the tree (an absolute target restarts at the container's
// "/", ".." stops there) and a path below a mount's destination lands in the
// mount's source. Every lookup goes from the directory fds opened here, one
// component at a time and never through a symlink of the machine's, so
// nothing outside the root and the mounts' sources is ever named.
#include <sys/stat.h>

#include <filesystem>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "agent/runtime/fd.h"

namespace berth::agent::runtime {

// A volume or bind mount: `source` on the machine shows at `destination`.
struct TreeMount {
  std::string destination;       // in the container: "/data"
  std::filesystem::path source;  // on the machine: a directory or a file
  bool writable = true;
};

// Where a container path lives.
struct TreePlace {
  std::string path;  // the container path, clean and absolute: "/", "/data/x"
  int mount = -1;    // -1: the root file system; else an index in ContainerTree::mounts()
  std::string rel;   // below that file system's top, "/"-separated; "" for the top
};

enum class FollowLast { kNo, kYes };

// What resolve() found. `error` 0 and `exists` false: everything but the last
// component was found (a place to create).
struct Resolved {
  int error = 0;  // 0, ENOENT (a directory on the way is missing), ENOTDIR, ELOOP, ...
  bool exists = false;
  TreePlace place;
  struct stat st {};  // lstat of the place, when it exists
};

// "a//b/./c/" -> "/a/b/c"; ".." resolved lexically and never above "/" (Go's
// filepath.Join("/", path)).
std::string clean_container_path(std::string_view path);
// "/a/b" -> "b"; "/" -> "/"; "a/b/" -> "b"; "a/." -> "." (Go's filepath.Base).
std::string base_name(std::string_view path);

class ContainerTree {
 public:
  // Opens `rootfs` (a directory) and every mount's source. Each destination
  // is resolved in the tree as the runtime mounts it (its symlinks followed,
  // the mounts before it in place), shallow destinations first. Throws
  // std::system_error when the root cannot be opened; a mount whose source
  // is gone is left out.
  ContainerTree(const std::filesystem::path& rootfs, std::vector<TreeMount> mounts);

  const std::vector<TreeMount>& mounts() const { return mounts_; }

  // `path` (absolute or relative to "/") as the kernel resolves it in the
  // container: "." and ".." in place, symlinks followed except a last
  // component's unless `last` says so (a trailing "/" or "/." always follows).
  Resolved resolve(std::string_view path, FollowLast last) const;

  // dockerd's FollowSymlinkInScope: every symlink followed, missing
  // components taken as they are; the container path, or "" with `error` set.
  std::string follow_in_scope(std::string_view path, int& error) const;

  // The file system a clean container path falls in (the longest mount
  // destination at or above it), without looking at the disk.
  TreePlace place_of(const std::string& path) const;

  // The top of a file system: the root (-1) or a mount's source (O_PATH).
  int top_fd(int mount) const { return mount < 0 ? root_.get() : tops_[static_cast<std::size_t>(mount)].get(); }

  // The directory holding `place` and the place's name in it ("" for a
  // top), opened without following any symlink; an invalid fd with `error`
  // set when a component is missing, not a directory or a symlink.
  std::pair<UniqueFd, std::string> open_parent(const TreePlace& place, int& error) const;
  // lstat of `place` (not followed); errno-style result, 0 on success.
  int lstat(const TreePlace& place, struct stat& st) const;

  // Makes each mount's point (a directory, or a file for a file's bind mount)
  // where it is missing, in the file system below it, as dockerd's view and
  // the runtime do; never through a symlink and never in a read-only mount.
  // Best effort: what cannot be made is left out.
  void make_mount_points() const;

  // The names of mount destinations directly below the container directory
  // `path`: a directory listing of the tree adds them when missing.
  std::vector<std::string> mounts_below(const std::string& path) const;

 private:
  UniqueFd root_;
  std::vector<TreeMount> mounts_;
  std::vector<UniqueFd> tops_;
};

}  // namespace berth::agent::runtime
