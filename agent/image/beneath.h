#pragma once
// Paths beneath a root directory, resolved one component at a time from a
// directory fd: no symlink is ever followed and ".." is refused, so writing an
// untrusted tree (a layer, docker cp, a build context) cannot leave the root.
// Every path is relative to the root ("/a/b" and "./a/b" are "a/b"); the root
// itself is "", "." or "/".
#include <sys/types.h>

#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace berth::agent::image {

// An owned file descriptor, closed when it goes.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) noexcept : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(Fd&& other) noexcept : fd_(other.release()) {}
  Fd& operator=(Fd&& other) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;

  int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }
  int release() noexcept;
  void reset(int fd = -1) noexcept;

 private:
  int fd_ = -1;
};

// A path that would leave the root: it names ".." or crosses a symlink.
class BreakoutError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// "./a//b/." -> {"a", "b"}. Throws BreakoutError for a ".." component.
std::vector<std::string> split_beneath(std::string_view path);

enum class MissingDirs {
  kFail,    // a missing directory is an error (ENOENT)
  kCreate,  // missing directories are made, mode 0755 (less the umask)
};

// A directory tree opened once, in which paths are looked up safely.
// Failures are std::system_error (with the errno) naming the path, or
// BreakoutError. Lookups hold no state, so threads may share one.
class Beneath {
 public:
  explicit Beneath(const std::filesystem::path& root);  // throws when not a directory

  int root_fd() const noexcept { return root_.get(); }

  // The directory at `path`; every component must be a real directory.
  Fd open_dir(std::string_view path, MissingDirs missing = MissingDirs::kFail) const;

  // The directory holding `path`'s last component, and that component
  // ("" when `path` is the root itself).
  struct Slot {
    Fd dir;
    std::string name;
  };
  Slot open_parent(std::string_view path, MissingDirs missing = MissingDirs::kFail) const;

  // open(2) of `path` with `flags` (O_NOFOLLOW and O_CLOEXEC added): a symlink
  // as the last component fails (ELOOP; ENOTDIR with O_DIRECTORY).
  Fd open(std::string_view path, int flags, mode_t mode = 0) const;

 private:
  Fd root_;
};

// Removes `name` in `dir`, recursively for a directory, never following a
// symlink. Absent is fine.
void remove_at(int dir, const std::string& name);

}  // namespace berth::agent::image
