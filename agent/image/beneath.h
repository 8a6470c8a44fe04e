#pragma once
// Paths beneath a root directory, resolved one component at a time from a
// directory fd: no symlink is ever followed and ".." is refused, so writing an
// untrusted tree (a layer, docker cp, a build context) cannot leave the root.
// Every path is relative to the root ("/a/b" and "./a/b" are "a/b"); the root
// itself is "", "." or "/".
#include <sys/types.h>

#include <array>
#include <ctime>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

struct archive;
struct archive_entry;

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

// --- Tar entries beneath a root: what unpack_layer and the build context share.

// A member name cleaned: "./a//b/" -> "a/b" ("" for the root). Throws
// BreakoutError for a name with "..", calling the name `what`, and
// std::runtime_error for no name at all.
std::string clean_member(const char* raw, std::string_view what);

// dockerd's check of a symlink `member` -> `target`: a relative target, read
// from the link's directory, must stay beneath the root (BreakoutError).
// Absolute targets resolve in the container and pass.
void check_symlink_target(const std::string& member, const std::string& target);

// The tar's input failed while an entry's content was read.
class ArchiveInputError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Writes the entries of a tar beneath a root, never through a symlink, with
// their owners (kept when settable), modes, times and xattrs (overlayfs' own
// trusted.overlay.* left out). An entry replaces what is there, except that a
// directory is kept for a directory.
class EntryWriter {
 public:
  // `input_error` is where the tar's reader keeps its input's error, if any,
  // for messages; it must outlive the writer.
  EntryWriter(const std::filesystem::path& root, const std::string& input_error);

  // The entry `e`, named `member` (cleaned), a regular file's content read
  // from `tar`. Throws BreakoutError for a symlink pointing above the root or
  // a path crossing a symlink, ArchiveInputError when the input fails.
  void entry(archive* tar, archive_entry* e, const std::string& member);
  // `name` in `dir` as a whiteout: a 0:0 character device.
  void whiteout(const std::string& dir, const std::string& name);
  // `dir` marked opaque (trusted.overlay.opaque=y).
  void opaque(const std::string& dir);
  // Sets the directories' times, once their entries stopped changing them.
  void finish();

 private:
  Beneath tree_;
  const std::string& input_error_;
  std::vector<std::pair<std::string, std::array<timespec, 2>>> dir_times_;
};

}  // namespace berth::agent::image
