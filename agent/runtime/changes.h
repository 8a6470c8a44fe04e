#pragma once
// docker diff: what a container's overlayfs upper directory changed against
// the layers below it, as dockerd's archive.OverlayChanges reports it:
//   - a whiteout (0:0 character device) is a deletion, and so is an opaque
//     directory (it replaced the one below);
//   - anything else is an addition, or a modification when a lower layer has
//     the path; a directory equal in size, mode and mtime to the one below
//     is left out;
//   - the parent of an addition or deletion is listed as modified (once),
//     unless it is "/".
// Paths come in walk order: parents first, names sorted. Lower layers are
// looked into without following any of their symlinks.
#include <filesystem>
#include <string>
#include <vector>

namespace berth::agent::runtime {

struct Change {
  enum Kind { kModified = 0, kAdded = 1, kDeleted = 2 };
  std::string path;  // "/etc/passwd"
  Kind kind = kModified;
};

// `lowers` topmost first. Throws std::system_error when `upper` cannot be read.
std::vector<Change> overlay_changes(const std::filesystem::path& upper,
                                    const std::vector<std::filesystem::path>& lowers);

}  // namespace berth::agent::runtime
