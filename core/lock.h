#pragma once
#include <chrono>
#include <filesystem>
#include <optional>

namespace berth {

// An exclusive flock(2) on a file, released when the object dies (or the process does).
class FileLock {
 public:
  static std::optional<FileLock> try_acquire(const std::filesystem::path& path);
  // Waits up to `timeout`; nullopt when another holder kept it the whole time.
  static std::optional<FileLock> acquire(const std::filesystem::path& path,
                                         std::chrono::milliseconds timeout);
  FileLock(FileLock&& other) noexcept;
  FileLock& operator=(FileLock&& other) noexcept;
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;
  ~FileLock();

 private:
  explicit FileLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

}  // namespace berth
