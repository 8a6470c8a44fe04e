#pragma once
// COPY and ADD as dockerd's classic builder does them, made into a layer
// without a container: sources are resolved in a root (the build context, or
// the file system of an earlier stage or another image, mounted read-only),
// written under the destination as a tar stream that becomes the step's
// layer, with a checksum of what was copied for the build cache.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "agent/build/dockerignore.h"
#include "agent/image/diff.h"

namespace berth::agent::build {

// One file or directory to copy, as resolved.
struct CopySource {
  std::string pattern;            // as written in the Dockerfile (after expansion)
  std::string path;               // relative to the root, "" for the root itself
  bool is_dir = false;
};

// Sources in `root` for `patterns` (relative to the root; a leading "/" or
// "./" is the root). Wildcards (* ? [..], path.Match per component) match in
// the root; a path that is not there is dockerd's error
// "COPY failed: file not found in build context or excluded by
// .dockerignore: stat PATTERN: file does not exist" (`instruction` names COPY
// or ADD; `from_image` true gives the wording for --from sources: "COPY
// failed: stat PATTERN: file does not exist"). As in dockerd, a wildcard
// matching nothing is skipped, and nothing found at all is "COPY failed: no
// source files were specified". Symlinks resolve inside the root, as
// dockerd's FollowSymlinkInScope does (an absolute target starts from the
// root, ".." stops there), so none leads out; a pattern whose ".." leaves
// the root, or a symlink loop, is "COPY failed: forbidden path outside the
// build context: PATTERN ()". `ignore` (context sources only) hides excluded
// files, as if absent. `path` is the source as named (a symlink's own name),
// `is_dir` what it resolves to.
std::vector<CopySource> resolve_sources(const std::filesystem::path& root,
                                        const std::vector<std::string>& patterns,
                                        const IgnoreMatcher* ignore, const std::string& instruction,
                                        bool from_image);

// A file made inline by a heredoc source (`COPY <<EOF /etc/motd`).
struct InlineSource {
  std::string name;
  std::string content;
  std::uint32_t mode = 0644;  // before --chmod (dockerd writes ADD's downloads 0600)
  std::int64_t mtime = -1;    // seconds; -1: the time of the copy
};

struct CopyPlan {
  std::filesystem::path root;          // where `sources` live
  std::vector<CopySource> sources;
  std::vector<InlineSource> inline_sources;
  std::string dest;                    // absolute, WORKDIR already applied, trailing '/' kept
  // Whether a path (absolute, in the image being built) is an existing
  // directory there; dockerd copies into an existing directory.
  std::function<bool(const std::string& path)> dest_is_dir;
  // Better, when set: the image being built, read-only. `dest` then resolves
  // in it as dockerd resolves it in the container (every symlink followed,
  // inside it, so COPY x /bin/ lands in /usr/bin when /bin -> usr/bin), and
  // the existing directories the layer must hold keep their owner, mode and
  // mtime there (as overlayfs' copy-up does); dest_is_dir is then unused.
  std::filesystem::path dest_root;
  std::optional<std::uint32_t> uid, gid;  // --chown, resolved; unset: keep (0:0 for context files)
  std::optional<std::uint32_t> mode;      // --chmod, octal parsed
  bool context_owner_root = true;         // context files become 0:0 unless --chown
  bool unpack_archives = false;           // ADD: a local tar (any compression) is extracted
  const IgnoreMatcher* ignore = nullptr;  // applied below directory sources
};

struct CopyResult {
  image::LayerTar layer;
  // dockerd's cache text for the step: "file:<sha256>" for one file,
  // "dir:<sha256>" for a directory, "multi:<sha256>" for several sources; a
  // hash of paths (in the image), kinds, modes, owners, sizes, link targets
  // and contents as copied; not of times (dockerd's tarsum leaves mtime out).
  std::string checksum;
};

// Writes the layer for `plan` to `out`: the parent directories of the
// destination (new ones mode 0755, owned by the chown user when given, as
// dockerd; with dest_root, existing ones as the image has them), then the
// copied entries, in a stable order (sources in order, each directory walked
// sorted; an archive in its own order). dockerd's rules: a directory source
// copies its contents, not itself; several sources (or a wildcard matching
// several) need a destination ending in "/" ("When using COPY with more than
// one source file, the destination must be a directory and end with a /");
// one file to a destination ending in "/" or an existing directory lands
// inside it, under its own name; ADD extracts a local tar (gzip, bzip2, xz,
// zstd or none) into the destination, keeping its owners unless --chown.
// With no source at all it makes the destination directory (WORKDIR).
// Throws BuildError; what `out` throws passes through as is.
CopyResult write_copy_layer(const CopyPlan& plan,
                            const std::function<void(const char*, std::size_t)>& out);

}  // namespace berth::agent::build
