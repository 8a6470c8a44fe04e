#pragma once
// The build context: the body of POST /build, a tar stream (plain, gzip, bzip2
// or xz), unpacked to a private directory as it arrives, never held in memory
// whole. Names are checked before anything is written: an absolute name or one
// with ".." is refused in dockerd's words, and no entry is written through a
// symlink of the context (image/beneath.h).
#include <cstdint>
#include <filesystem>
#include <string>

#include "agent/image/layer.h"  // ReadFn

namespace berth::agent::build {

struct ContextInfo {
  std::uint64_t bytes = 0;    // compressed bytes read from the body
  std::uint64_t files = 0;    // entries written
  std::uint64_t content = 0;  // regular file bytes written
};

// Unpacks `body` into `dir` (which must exist and be empty). Owners, modes,
// times and symlinks are kept (the owners as in the tar: COPY without --chown
// makes them root's, as dockerd does). Throws BuildError:
//   - past `max_bytes` of uncompressed tar: "the build context is larger than
//     the limit of N MiB (build.max_context_bytes in agent.json)", without
//     reading the rest;
//   - a malformed stream, an absolute or ".." name, an entry crossing a
//     symlink of the context.
ContextInfo receive_context(const image::ReadFn& body, const std::filesystem::path& dir,
                            std::uint64_t max_bytes);

}  // namespace berth::agent::build
