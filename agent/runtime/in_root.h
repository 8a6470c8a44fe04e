#pragma once
// Paths as a container sees them: every symlink, absolute or relative, resolves
// inside the container's root and never reaches the machine's files.
#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "agent/runtime/fd.h"

namespace berth::agent::runtime {

// openat2(RESOLVE_IN_ROOT), falling back to a walk of our own on kernels
// before 5.6; Walk forces the walk (tests).
enum class Resolver { Openat2, Walk };

// An O_PATH descriptor of `path` (absolute or relative to the container's
// root) resolved inside `root`; invalid with errno set when it does not exist.
UniqueFd open_in_root(const std::filesystem::path& root, std::string_view path,
                      Resolver resolver = Resolver::Openat2);

// The file at `path` inside `root` when it is a regular file of at most
// `limit` bytes; nullopt otherwise (absent, a device, FIFO, directory, or too
// large). Never blocks on a FIFO and never reads a device.
std::optional<std::string> read_regular_file_in_root(const std::filesystem::path& root,
                                                     std::string_view path, std::size_t limit,
                                                     Resolver resolver = Resolver::Openat2);

}  // namespace berth::agent::runtime
