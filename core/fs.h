#pragma once
#include <filesystem>
#include <string>
#include <string_view>
#include <sys/types.h>

namespace berth {

namespace fs = std::filesystem;

// Writes through a temp file in the same directory, fsyncs it, renames it over
// `path` and fsyncs the directory. Readers see the old or the new file, never a mix.
void write_file_atomic(const fs::path& path, std::string_view content, mode_t mode = 0600);

// Throws berth::Error naming the file when it cannot be read.
std::string read_file(const fs::path& path);

// mkdir -p, then chmod 0700 on the leaf (and on every directory it created).
void ensure_private_dir(const fs::path& path);

// Copies a file and sets its mode (atomic at the destination).
void copy_file_private(const fs::path& from, const fs::path& to, mode_t mode = 0600);

fs::path home_dir();

}  // namespace berth
