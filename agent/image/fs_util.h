#pragma once
// Small file helpers for the image store: whole-file reads and atomic writes
// (a temp file in the same filesystem, fsync, rename).
#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace berth::agent::image {

std::optional<std::string> read_file(const std::filesystem::path& path);  // nullopt when absent
void write_file_atomic(const std::filesystem::path& path, std::string_view bytes,
                       const std::filesystem::path& tmp_dir);
std::string random_suffix();  // 16 hex digits

// A file being written under tmp_dir; removed unless commit() moved it.
class TempFile {
 public:
  explicit TempFile(const std::filesystem::path& tmp_dir);
  ~TempFile();
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;

  void write(const void* data, std::size_t size);
  // fsync, close and rename to `dest` (replacing it).
  void commit(const std::filesystem::path& dest);
  const std::filesystem::path& path() const { return path_; }
  std::uint64_t size() const { return size_; }

 private:
  std::filesystem::path path_;
  int fd_ = -1;
  std::uint64_t size_ = 0;
  bool committed_ = false;
};

}  // namespace berth::agent::image
