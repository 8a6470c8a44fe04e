#include "agent/image/beneath.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
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

namespace {

[[noreturn]] void throw_errno(const std::string& what) { throw_errno(errno, what); }

std::string parent_of(const std::string& member) {
  auto slash = member.rfind('/');
  return slash == std::string::npos ? "" : member.substr(0, slash);
}

std::string archive_message(archive* a, std::string_view what) {
  const char* msg = archive_error_string(a);
  return std::string(what) + ": " + (msg ? msg : "unknown archive error");
}

// Owner, mode, times and xattrs of an entry, applied after its content.
struct Meta {
  uid_t uid = 0;
  gid_t gid = 0;
  mode_t perm = 0;
  bool has_times = false;
  timespec times[2] = {};  // atime, mtime
  std::vector<std::pair<std::string, std::string>> xattrs;
};

Meta meta_of(archive_entry* e) {
  Meta m;
  la_int64_t uid = archive_entry_uid(e), gid = archive_entry_gid(e);
  constexpr la_int64_t kMaxId = 0xfffffffe;  // (uid_t)-1 means "unchanged" to chown
  if (uid < 0 || uid > kMaxId || gid < 0 || gid > kMaxId) throw std::runtime_error("invalid owner");
  m.uid = static_cast<uid_t>(uid);
  m.gid = static_cast<gid_t>(gid);
  m.perm = archive_entry_perm(e) & 07777;
  m.has_times = archive_entry_mtime_is_set(e);
  m.times[1] = {archive_entry_mtime(e), archive_entry_mtime_nsec(e)};
  m.times[0] = archive_entry_atime_is_set(e) ? timespec{archive_entry_atime(e), archive_entry_atime_nsec(e)} : m.times[1];
  const char* name = nullptr;
  const void* value = nullptr;
  std::size_t size = 0;
  archive_entry_xattr_reset(e);
  while (archive_entry_xattr_next(e, &name, &value, &size) == ARCHIVE_OK) {
    // overlayfs' own attributes (opaque, redirect, metacopy) come from whiteouts only.
    if (std::string_view(name).rfind("trusted.overlay.", 0) == 0) continue;
    m.xattrs.emplace_back(name, std::string(static_cast<const char*>(value), size));
  }
  return m;
}

// Not root, or the id is not mapped in this user namespace: the entry keeps
// our ids, as libarchive did.
bool owner_unsettable(int err) { return err == EPERM || err == EINVAL; }
// The filesystem has no xattrs, or not this namespace (dockerd skips them too).
bool xattr_unsupported(int err) { return err == ENOTSUP || err == EPERM; }

void apply_meta(int fd, const Meta& m, bool with_times) {
  if (::fchown(fd, m.uid, m.gid) != 0 && !owner_unsettable(errno)) throw_errno("chown");
  if (::fchmod(fd, m.perm) != 0) throw_errno("chmod");
  for (const auto& [name, value] : m.xattrs)
    if (::fsetxattr(fd, name.c_str(), value.data(), value.size(), 0) != 0 && !xattr_unsupported(errno))
      throw_errno("xattr " + name);
  if (with_times && m.has_times && ::futimens(fd, m.times) != 0) throw_errno("times");
}

// For what cannot be opened safely: symlinks, devices, fifos.
void apply_meta_at(int dir, const std::string& name, const Meta& m, bool is_symlink) {
  if (::fchownat(dir, name.c_str(), m.uid, m.gid, AT_SYMLINK_NOFOLLOW) != 0 && !owner_unsettable(errno))
    throw_errno("chown");
  if (!is_symlink && ::fchmodat(dir, name.c_str(), m.perm, AT_SYMLINK_NOFOLLOW) != 0) throw_errno("chmod");
  std::string path = "/proc/self/fd/" + std::to_string(dir) + "/" + name;  // the entry itself, not followed
  for (const auto& [key, value] : m.xattrs)
    if (::lsetxattr(path.c_str(), key.c_str(), value.data(), value.size(), 0) != 0 && !xattr_unsupported(errno))
      throw_errno("xattr " + key);
  if (m.has_times && ::utimensat(dir, name.c_str(), m.times, AT_SYMLINK_NOFOLLOW) != 0) throw_errno("times");
}

void pwrite_all(int fd, const void* data, std::size_t size, la_int64_t offset) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::pwrite(fd, p, size, offset);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("write");
    }
    p += n;
    size -= static_cast<std::size_t>(n);
    offset += n;
  }
}

// Clears the way for a new entry: a directory is kept for a directory
// (returns true), anything else is removed, without following symlinks.
bool make_room(const Beneath::Slot& slot, bool keep_dir) {
  struct stat st {};
  if (::fstatat(slot.dir.get(), slot.name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return false;
    throw_errno("stat");
  }
  if (keep_dir && S_ISDIR(st.st_mode)) return true;
  remove_at(slot.dir.get(), slot.name);
  return false;
}

using DirTimes = std::vector<std::pair<std::string, std::array<timespec, 2>>>;

void write_directory(const Beneath::Slot& slot, const std::string& member, const Meta& meta, DirTimes& dir_times) {
  if (slot.name.empty()) return;  // the root keeps its own metadata
  if (!make_room(slot, true) && ::mkdirat(slot.dir.get(), slot.name.c_str(), 0700) != 0) throw_errno("mkdir");
  Fd fd(::openat(slot.dir.get(), slot.name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) throw_errno("open");
  apply_meta(fd.get(), meta, false);
  if (meta.has_times) dir_times.emplace_back(member, std::array<timespec, 2>{meta.times[0], meta.times[1]});
}

void write_regular(const Beneath::Slot& slot, archive* tar, archive_entry* e, const Meta& meta,
                   const std::string& input_error) {
  make_room(slot, false);
  Fd fd(::openat(slot.dir.get(), slot.name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd) throw_errno("create");
  la_int64_t end = 0;
  while (true) {
    const void* buf = nullptr;
    std::size_t size = 0;
    la_int64_t offset = 0;
    int r = archive_read_data_block(tar, &buf, &size, &offset);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN) throw ArchiveInputError(input_error.empty() ? archive_message(tar, "layer") : input_error);
    pwrite_all(fd.get(), buf, size, offset);
    end = std::max(end, offset + static_cast<la_int64_t>(size));
  }
  // A sparse file may end in a hole. (Only then: ext4 flushes a file truncated to 0 when it is closed.)
  if (archive_entry_size_is_set(e) && archive_entry_size(e) > end && ::ftruncate(fd.get(), archive_entry_size(e)) != 0)
    throw_errno("truncate");
  apply_meta(fd.get(), meta, true);
}

void write_hardlink(const Beneath& tree, const std::string& member, const std::string& target) {
  Beneath::Slot from;
  try {
    from = tree.open_parent(target);
  } catch (const BreakoutError& e) {
    throw BreakoutError("hardlink target " + target + ": " + e.what());
  }
  struct stat src {};
  if (from.name.empty() || ::fstatat(from.dir.get(), from.name.c_str(), &src, AT_SYMLINK_NOFOLLOW) != 0)
    throw std::runtime_error("hardlink target " + target + " does not exist");
  if (S_ISDIR(src.st_mode)) throw std::runtime_error("hardlink target " + target + " is a directory");
  Beneath::Slot slot = tree.open_parent(member, MissingDirs::kCreate);
  struct stat here {};
  if (::fstatat(slot.dir.get(), slot.name.c_str(), &here, AT_SYMLINK_NOFOLLOW) == 0 && here.st_dev == src.st_dev &&
      here.st_ino == src.st_ino)
    return;  // already that file
  make_room(slot, false);
  if (::linkat(from.dir.get(), from.name.c_str(), slot.dir.get(), slot.name.c_str(), 0) != 0) throw_errno("link");
}

}  // namespace

std::string clean_member(const char* raw, std::string_view what) {
  if (!raw) throw std::runtime_error(std::string(what) + " without a name");
  std::vector<std::string> parts;
  try {
    parts = split_beneath(raw);
  } catch (const BreakoutError&) {
    throw BreakoutError(std::string(what) + " escapes the layer: " + raw);
  }
  std::string out;
  for (const auto& part : parts) out += (out.empty() ? "" : "/") + part;
  return out;
}

void check_symlink_target(const std::string& member, const std::string& target) {
  if (target.empty()) throw std::runtime_error("symlink without a target");
  if (target.front() == '/') return;
  std::size_t depth = split_beneath(parent_of(member)).size();
  std::size_t start = 0;
  while (start <= target.size()) {
    std::size_t slash = target.find('/', start);
    if (slash == std::string::npos) slash = target.size();
    std::string_view part = std::string_view(target).substr(start, slash - start);
    if (part == "..") {
      if (depth == 0) throw BreakoutError("symlink target " + target + " points outside the layer");
      --depth;
    } else if (!part.empty() && part != ".") {
      ++depth;
    }
    start = slash + 1;
  }
}

EntryWriter::EntryWriter(const std::filesystem::path& root, const std::string& input_error)
    : tree_(root), input_error_(input_error) {}

void EntryWriter::entry(archive* tar, archive_entry* e, const std::string& member) {
  Meta meta = meta_of(e);
  if (const char* link = archive_entry_hardlink(e))
    return write_hardlink(tree_, member, clean_member(link, "hardlink target"));
  Beneath::Slot slot = tree_.open_parent(member, MissingDirs::kCreate);
  switch (archive_entry_filetype(e)) {
    case AE_IFDIR:
      return write_directory(slot, member, meta, dir_times_);
    case AE_IFREG:
      return write_regular(slot, tar, e, meta, input_error_);
    case AE_IFLNK: {
      const char* target = archive_entry_symlink(e);
      check_symlink_target(member, target ? target : "");
      make_room(slot, false);
      if (::symlinkat(target, slot.dir.get(), slot.name.c_str()) != 0) throw_errno("symlink");
      return apply_meta_at(slot.dir.get(), slot.name, meta, true);
    }
    case AE_IFCHR:
    case AE_IFBLK:
    case AE_IFIFO: {
      make_room(slot, false);
      mode_t type = archive_entry_filetype(e);
      dev_t rdev = type == AE_IFIFO ? 0 : archive_entry_rdev(e);
      if (::mknodat(slot.dir.get(), slot.name.c_str(), type | (meta.perm & 0777), rdev) != 0) throw_errno("mknod");
      return apply_meta_at(slot.dir.get(), slot.name, meta, false);
    }
    default:
      throw std::runtime_error("unsupported entry type " + std::to_string(archive_entry_filetype(e)));
  }
}

void EntryWriter::whiteout(const std::string& dir, const std::string& name) {
  Beneath::Slot slot{tree_.open_dir(dir, MissingDirs::kCreate), name};
  make_room(slot, false);
  if (::mknodat(slot.dir.get(), name.c_str(), S_IFCHR, makedev(0, 0)) != 0) throw_errno("mknod");
  if (::fchownat(slot.dir.get(), name.c_str(), 0, 0, AT_SYMLINK_NOFOLLOW) != 0 && !owner_unsettable(errno))
    throw_errno("chown");
}

void EntryWriter::opaque(const std::string& dir) {
  Fd fd = tree_.open_dir(dir, MissingDirs::kCreate);
  if (::fsetxattr(fd.get(), "trusted.overlay.opaque", "y", 1, 0) != 0) throw_errno("cannot mark it opaque");
}

void EntryWriter::finish() {
  for (const auto& [dir, times] : dir_times_) {
    Fd fd;
    try {
      fd = tree_.open_dir(dir);
    } catch (const std::exception&) {
      continue;  // a later entry replaced it
    }
    if (::futimens(fd.get(), times.data()) != 0) throw_errno("layer: " + dir + ": times");
  }
}

}  // namespace berth::agent::image
