#include "agent/image/beneath.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <system_error>

namespace berth::agent::image {
namespace {

[[noreturn]] void throw_errno(int err, const std::string& what) {
  throw std::system_error(err, std::generic_category(), what);
}

std::string shown(std::string_view path) { return path.empty() ? std::string(".") : std::string(path); }

// One step down from `dir` into its subdirectory `name`; `walked` is the path
// so far, for messages.
Fd step_into(int dir, const std::string& name, MissingDirs missing, const std::string& walked) {
  for (int attempt = 0;; ++attempt) {
    int fd = ::openat(dir, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0) return Fd(fd);
    int err = errno;
    if (err == ENOENT && missing == MissingDirs::kCreate && attempt < 2) {
      if (::mkdirat(dir, name.c_str(), 0755) == 0 || errno == EEXIST) continue;
      throw_errno(errno, "cannot create " + walked);
    }
    if (err == ELOOP || err == ENOTDIR) {
      struct stat st {};
      if (::fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
        throw BreakoutError("path crosses the symlink " + walked);
      throw_errno(ENOTDIR, walked);
    }
    throw_errno(err, "cannot open " + walked);
  }
}

}  // namespace

Fd& Fd::operator=(Fd&& other) noexcept {
  if (this != &other) reset(other.release());
  return *this;
}

int Fd::release() noexcept {
  int fd = fd_;
  fd_ = -1;
  return fd;
}

void Fd::reset(int fd) noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

std::vector<std::string> split_beneath(std::string_view path) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  while (start <= path.size()) {
    std::size_t slash = path.find('/', start);
    if (slash == std::string_view::npos) slash = path.size();
    std::string_view part = path.substr(start, slash - start);
    if (part == "..") throw BreakoutError(std::string(path) + " names \"..\"");
    if (!part.empty() && part != ".") parts.emplace_back(part);
    start = slash + 1;
  }
  return parts;
}

Beneath::Beneath(const std::filesystem::path& root)
    : root_(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) {
  if (!root_) throw_errno(errno, "cannot open " + root.string());
}

Fd Beneath::open_dir(std::string_view path, MissingDirs missing) const {
  Fd dir(::fcntl(root_.get(), F_DUPFD_CLOEXEC, 0));
  if (!dir) throw_errno(errno, "cannot duplicate the root fd");
  std::string walked;
  for (const auto& part : split_beneath(path)) {
    walked += (walked.empty() ? "" : "/") + part;
    dir = step_into(dir.get(), part, missing, walked);
  }
  return dir;
}

Beneath::Slot Beneath::open_parent(std::string_view path, MissingDirs missing) const {
  std::vector<std::string> parts = split_beneath(path);
  if (parts.empty()) return {open_dir("", missing), ""};
  std::string name = std::move(parts.back());
  parts.pop_back();
  std::string parent;
  for (const auto& part : parts) parent += (parent.empty() ? "" : "/") + part;
  return {open_dir(parent, missing), std::move(name)};
}

Fd Beneath::open(std::string_view path, int flags, mode_t mode) const {
  Slot slot = open_parent(path, MissingDirs::kFail);
  const char* name = slot.name.empty() ? "." : slot.name.c_str();
  int fd = ::openat(slot.dir.get(), name, flags | O_NOFOLLOW | O_CLOEXEC, mode);
  if (fd < 0) throw_errno(errno, "cannot open " + shown(path));
  return Fd(fd);
}

void remove_at(int dir, const std::string& name) {
  struct stat st {};
  if (::fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return;
    throw_errno(errno, "cannot remove " + name);
  }
  if (S_ISDIR(st.st_mode)) {
    Fd sub(::openat(dir, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!sub) throw_errno(errno, "cannot remove " + name);
    // The names first, then the removals: readdir need not see a changing directory.
    std::vector<std::string> children;
    {
      Fd listed(::fcntl(sub.get(), F_DUPFD_CLOEXEC, 0));
      std::unique_ptr<DIR, int (*)(DIR*)> list(listed ? ::fdopendir(listed.get()) : nullptr, ::closedir);
      if (!list) throw_errno(errno, "cannot list " + name);
      listed.release();  // the DIR owns it now
      errno = 0;
      while (const dirent* d = ::readdir(list.get())) {
        std::string child = d->d_name;
        if (child != "." && child != "..") children.push_back(std::move(child));
      }
      if (errno != 0) throw_errno(errno, "cannot list " + name);
    }
    for (const auto& child : children) remove_at(sub.get(), child);
  }
  if (::unlinkat(dir, name.c_str(), S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0) != 0 && errno != ENOENT)
    throw_errno(errno, "cannot remove " + name);
}

}  // namespace berth::agent::image
